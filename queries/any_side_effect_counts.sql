-- Sessions and patients with any side effect (any recorded event type, or bp_severe: sbp_peak >= $sbp_severe
-- or dbp_peak >= $dbp_severe), by the session's route and in total (route NULL), over every session of cohort
-- patients: the same denominators as side_effect_counts.sql. Eligibility does not apply.
WITH s AS (
    SELECT
        f.patient_id,
        f.route,
        f.event_mask <> 0 OR coalesce(f.sbp_peak >= $sbp_severe OR f.dbp_peak >= $dbp_severe, false) AS hit
    FROM session_facts f
    SEMI JOIN cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor) c ON c.patient_id = f.patient_id
)
SELECT
    route,
    grouping(route) = 1 AS is_total,
    count(*) AS sessions,
    count(*) FILTER (WHERE hit) AS sessions_with_event,
    count(DISTINCT patient_id) AS patients,
    count(DISTINCT patient_id) FILTER (WHERE hit) AS patients_with_event
FROM s
GROUP BY ROLLUP (route)
ORDER BY is_total, route;
