-- What the latest import tolerated in reading each file (the Data and definitions page), in table order.
SELECT file, note
FROM import_notes
ORDER BY list_position(['patients', 'sessions', 'assessments', 'adverse_events'], table_name), rowid;
