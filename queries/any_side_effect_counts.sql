-- Sessions and patients with any side effect (any recorded event type, or bp_severe: see
-- derive_50_patient_route_effects.sql), by the session's route and in total (route NULL), over every session
-- of cohort patients: the same denominators as side_effect_counts.sql. Eligibility does not apply.
SELECT
    route,
    is_total,
    sum(sessions)::BIGINT AS sessions,
    sum(any_event)::BIGINT AS sessions_with_event,
    count(*) AS patients,
    count(*) FILTER (WHERE any_event > 0) AS patients_with_event,
    -- cell keys (derive_05_cell_keys.sql): session counts weigh each patient's key by their sessions
    cell_key(sum(rk * sessions)) AS sessions__key,
    cell_key(sum(rk * any_event)) AS sessions_with_event__key,
    cell_key(sum(rk)) AS patients__key,
    cell_key(sum(rk) FILTER (WHERE any_event > 0)) AS patients_with_event__key
FROM (SELECT *, record_key(pk) AS rk  -- the key once per row, not once per aggregate
      FROM cohort_route_effects($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                                $treatment_resistant, $settings, $integration, $severities, $instrument,
                                $mild_floor, $moderate_floor, $severe_floor))
GROUP BY route, is_total
ORDER BY is_total, route;
