-- Value problems in the staged adverse_events table (all text): line, column, value, message.
-- $line0 turns a row's position into its line in the file (2 for CSV after the header, 1 for Parquet rows).
WITH e AS (SELECT rowid AS r, * FROM staging.adverse_events)
SELECT r + $line0 AS line, "column", value, message FROM (
    SELECT r, 'session_id' AS "column", session_id AS value, CASE
        -- a known id is valid (its own table checks it); only the others need a closer look
        WHEN session_id IN (SELECT session_id FROM staging.sessions WHERE session_id IS NOT NULL) THEN NULL
        ELSE coalesce(code_problem(session_id, 64), 'unknown session_id: not in sessions') END AS message FROM e
    UNION ALL
    SELECT r, 'event', event, enum_problem(event, $events, true) FROM e
    UNION ALL
    SELECT r, 'severity', severity, enum_problem(severity, $severities, false) FROM e
    UNION ALL
    SELECT r, 'intervention', intervention, bool_problem(intervention) FROM e
)
WHERE message IS NOT NULL
