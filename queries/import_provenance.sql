-- The latest import of the data set (for the summaries' provenance file).
SELECT import_id, imported_at, source, source_format, source_sha256, patients, sessions, assessments,
       adverse_events, program_version
FROM import_history
ORDER BY import_id DESC
LIMIT 1;
