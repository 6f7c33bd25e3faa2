-- Every import that built this database, newest first (the dashboard's Data and definitions page).
SELECT import_id, imported_at, source, source_format, patients, sessions, assessments, adverse_events,
       program_version, seconds
FROM import_history
ORDER BY import_id DESC;
