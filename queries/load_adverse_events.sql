-- Typed adverse events from the checked staging table, sorted by session; empty values take their defaults.
INSERT INTO adverse_events
SELECT
    session_id,
    event::event_t,
    coalesce(severity, 'mild')::severity_t,
    bool_value(intervention, false)
FROM staging.adverse_events
ORDER BY session_id, event::event_t, coalesce(severity, 'mild')::severity_t, bool_value(intervention, false)
