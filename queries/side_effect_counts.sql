-- Side effects over every session (all phases) of cohort patients, by the session's route and in total
-- (route NULL), for each event type in $events (bit i of session_facts' masks is $events[i + 1]; bit
-- $bp_bit is bp_severe: sbp_peak >= $sbp_severe or dbp_peak >= $dbp_severe), zeros included: sessions and
-- patients of the route, and those with the event. Eligibility does not apply.
WITH s AS (
    SELECT
        f.patient_id,
        f.route,
        f.event_mask | CASE WHEN f.sbp_peak >= $sbp_severe OR f.dbp_peak >= $dbp_severe
                            THEN 1::BIGINT << $bp_bit ELSE 0 END AS mask
    FROM session_facts f
    SEMI JOIN cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor) c ON c.patient_id = f.patient_id
),
events AS (
    SELECT unnest($events) AS event, generate_subscripts($events, 1) - 1 AS bit
),
per_patient_route AS (
    SELECT patient_id, route, count(*) AS sessions FROM s GROUP BY patient_id, route
),
totals AS (
    SELECT route, false AS is_total, sum(sessions) AS sessions, count(*) AS patients
    FROM per_patient_route GROUP BY route
    UNION ALL
    SELECT NULL, true, sum(sessions), count(DISTINCT patient_id) FROM per_patient_route
),
hits AS (
    SELECT s.patient_id, s.route, e.bit, count(*) AS sessions
    FROM s
    JOIN events e ON (s.mask >> e.bit) & 1 = 1
    WHERE s.mask <> 0
    GROUP BY s.patient_id, s.route, e.bit
),
counts AS (
    SELECT route, false AS is_total, bit, sum(sessions) AS sessions_with_event, count(*) AS patients_with_event
    FROM hits GROUP BY route, bit
    UNION ALL
    SELECT NULL, true, bit, sum(sessions), count(DISTINCT patient_id) FROM hits GROUP BY bit
)
SELECT
    t.route,
    t.is_total,
    e.event,
    t.sessions::BIGINT AS sessions,
    coalesce(c.sessions_with_event, 0)::BIGINT AS sessions_with_event,
    t.patients,
    coalesce(c.patients_with_event, 0) AS patients_with_event
FROM totals t
CROSS JOIN events e
LEFT JOIN counts c ON c.is_total = t.is_total AND c.bit = e.bit AND (t.is_total OR c.route = t.route)
WHERE t.sessions IS NOT NULL
ORDER BY t.is_total, t.route, e.bit;
