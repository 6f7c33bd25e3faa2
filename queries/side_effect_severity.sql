-- Sessions of cohort patients with at least one event of each type at each severity, by the session's
-- route and in total (route NULL), zeros included, for the event types in $events (bit i of session_facts'
-- severity masks is $events[i + 1]) and the severities in $severity_levels (mild, moderate, severe).
WITH s AS (
    SELECT f.route, f.mild_mask, f.moderate_mask, f.severe_mask
    FROM session_facts f
    SEMI JOIN cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor) c ON c.patient_id = f.patient_id
),
events AS (SELECT unnest($events) AS event, generate_subscripts($events, 1) - 1 AS bit),
levels AS (SELECT unnest($severity_levels) AS severity, generate_subscripts($severity_levels, 1) AS level_order),
flagged AS (
    SELECT route, 'mild' AS severity, mild_mask AS mask FROM s WHERE mild_mask <> 0
    UNION ALL
    SELECT route, 'moderate', moderate_mask FROM s WHERE moderate_mask <> 0
    UNION ALL
    SELECT route, 'severe', severe_mask FROM s WHERE severe_mask <> 0
),
counts AS (
    SELECT f.route, grouping(f.route) = 1 AS is_total, e.bit, f.severity, count(*) AS sessions_with_event
    FROM flagged f
    JOIN events e ON (f.mask >> e.bit) & 1 = 1
    GROUP BY GROUPING SETS ((f.route, e.bit, f.severity), (e.bit, f.severity))
),
routes AS (
    SELECT DISTINCT route, false AS is_total FROM s
    UNION ALL
    SELECT NULL, true WHERE EXISTS (SELECT 1 FROM s)
)
SELECT r.route, r.is_total, e.event, l.severity, coalesce(c.sessions_with_event, 0) AS sessions_with_event
FROM routes r
CROSS JOIN events e
CROSS JOIN levels l
LEFT JOIN counts c
    ON c.is_total = r.is_total AND c.bit = e.bit AND c.severity = l.severity AND (r.is_total OR c.route = r.route)
ORDER BY r.is_total, r.route, e.bit, l.level_order;
