-- Side effects by session number (1 = the patient's first session), by the session's route and in total
-- (route NULL): sessions with that number and those with at least one event of each type in $events
-- (masks and bp_severe as in side_effect_counts), zeros included.
WITH s AS (
    SELECT
        f.route,
        f.session_number,
        f.event_mask | CASE WHEN f.sbp_peak >= $sbp_severe OR f.dbp_peak >= $dbp_severe
                            THEN 1::BIGINT << $bp_bit ELSE 0 END AS mask
    FROM session_facts f
    SEMI JOIN cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor) c ON c.patient_id = f.patient_id
),
events AS (SELECT unnest($events) AS event, generate_subscripts($events, 1) - 1 AS bit),
totals AS (
    SELECT route, grouping(route) = 1 AS is_total, session_number, count(*) AS sessions
    FROM s
    GROUP BY GROUPING SETS ((route, session_number), (session_number))
),
counts AS (
    SELECT s.route, grouping(s.route) = 1 AS is_total, s.session_number, e.bit, count(*) AS sessions_with_event
    FROM s
    JOIN events e ON (s.mask >> e.bit) & 1 = 1
    WHERE s.mask <> 0
    GROUP BY GROUPING SETS ((s.route, s.session_number, e.bit), (s.session_number, e.bit))
)
SELECT t.route, t.is_total, e.event, t.session_number, t.sessions,
       coalesce(c.sessions_with_event, 0) AS sessions_with_event
FROM totals t
CROSS JOIN events e
LEFT JOIN counts c
    ON c.is_total = t.is_total AND c.session_number = t.session_number AND c.bit = e.bit
   AND (t.is_total OR c.route = t.route)
ORDER BY t.is_total, t.route, e.bit, t.session_number;
