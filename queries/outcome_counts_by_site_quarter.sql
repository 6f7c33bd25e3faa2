-- The funnel and response counts of queries/outcome_counts.sql per site, start quarter and patient route
-- (route NULL: patients without a session), with every cohort filter but the site applied ($sites is
-- bound NULL): a few hundred rows from which metrics adds up, exactly, every grouping a page shows — the
-- totals of the filtered sites (cohort, response), their start quarters (trend), sites (the site
-- breakdown) and the network's sites (benchmark) — in one scan instead of one per grouping. Cell keys are
-- sums modulo 2^32 (derive_05_cell_keys.sql), so the sum of the rows' keys modulo 2^32 is the key of
-- their union. Maintenance intensity (patients, sessions and the summed days from L to the last
-- maintenance session) is added for the headline, as maintenance_counts.sql counts it.
WITH o AS (
    SELECT *, record_key(pk) AS rk
    FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
)
SELECT
    site,
    start_quarter,
    route,
    count(*) AS patients,
    count(*) FILTER (WHERE n_sessions > 0) AS with_sessions,
    count(*) FILTER (WHERE n_sessions > 0 AND baseline IS NOT NULL) AS with_baseline,
    count(*) FILTER (WHERE eligible) AS eligible,
    count(*) FILTER (WHERE eligible AND n_followups > 0) AS with_followup,
    count(*) FILTER (WHERE has_endpoint) AS with_endpoint,
    count(*) FILTER (WHERE responder) AS responders,
    count(*) FILTER (WHERE remitter) AS remitters,
    count(*) FILTER (WHERE responder AND n_maintenance > 0) AS responders_in_maintenance,
    cell_key(sum(rk)) AS patients__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0)) AS with_sessions__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0 AND baseline IS NOT NULL)) AS with_baseline__key,
    cell_key(sum(rk) FILTER (WHERE eligible)) AS eligible__key,
    cell_key(sum(rk) FILTER (WHERE eligible AND n_followups > 0)) AS with_followup__key,
    cell_key(sum(rk) FILTER (WHERE has_endpoint)) AS with_endpoint__key,
    cell_key(sum(rk) FILTER (WHERE responder)) AS responders__key,
    cell_key(sum(rk) FILTER (WHERE remitter)) AS remitters__key,
    cell_key(sum(rk) FILTER (WHERE responder AND n_maintenance > 0)) AS responders_in_maintenance__key,
    -- maintenance intensity over patients with a session, as maintenance_counts.sql counts it
    count(*) FILTER (WHERE n_sessions > 0 AND n_maintenance > 0) AS maintenance_patients,
    coalesce(sum(n_maintenance) FILTER (WHERE n_sessions > 0), 0)::BIGINT AS maintenance_sessions,
    coalesce(sum(last_maintenance_day - last_induction_day) FILTER (WHERE n_sessions > 0 AND n_maintenance > 0),
             0)::BIGINT AS maintenance_span_days,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0 AND n_maintenance > 0)) AS maintenance_patients__key,
    cell_key(sum(rk * n_maintenance) FILTER (WHERE n_sessions > 0)) AS maintenance_sessions__key
FROM o
GROUP BY site, start_quarter, route
ORDER BY site, start_quarter, route;
