-- The cohort funnel and response counts per patient route, per group of $by (NULL: no grouping; 'site',
-- 'diagnosis', 'severity' or 'quarter', the start quarter: metrics.trend), with a row per group over every route (route NULL, is_total true).
-- Patients without a session have no route: they appear only in the total rows. responders_in_maintenance
-- (responders with a maintenance session) is the numerator of maintenance uptake, so the Overview's
-- headline needs no maintenance query (metrics.maintenance_uptake).
WITH o AS (
    SELECT
        *,
        CASE $by
            WHEN 'site' THEN site
            WHEN 'diagnosis' THEN primary_diagnosis
            WHEN 'severity' THEN severity
            WHEN 'quarter' THEN start_quarter
        END AS grp,
        record_key(pk) AS rk
    FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
)
SELECT
    grp,
    route,
    grouping(route) = 1 AS is_total,
    count(*) AS patients,
    count(*) FILTER (WHERE n_sessions > 0) AS with_sessions,
    count(*) FILTER (WHERE n_sessions > 0 AND baseline IS NOT NULL) AS with_baseline,
    count(*) FILTER (WHERE eligible) AS eligible,
    count(*) FILTER (WHERE eligible AND n_followups > 0) AS with_followup,
    count(*) FILTER (WHERE has_endpoint) AS with_endpoint,
    count(*) FILTER (WHERE responder) AS responders,
    count(*) FILTER (WHERE remitter) AS remitters,
    count(*) FILTER (WHERE responder AND n_maintenance > 0) AS responders_in_maintenance,
    -- cell keys of the counts above (derive_05_cell_keys.sql), in the same order, for disclosure control
    cell_key(sum(rk)) AS patients__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0)) AS with_sessions__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0 AND baseline IS NOT NULL)) AS with_baseline__key,
    cell_key(sum(rk) FILTER (WHERE eligible)) AS eligible__key,
    cell_key(sum(rk) FILTER (WHERE eligible AND n_followups > 0)) AS with_followup__key,
    cell_key(sum(rk) FILTER (WHERE has_endpoint)) AS with_endpoint__key,
    cell_key(sum(rk) FILTER (WHERE responder)) AS responders__key,
    cell_key(sum(rk) FILTER (WHERE remitter)) AS remitters__key,
    cell_key(sum(rk) FILTER (WHERE responder AND n_maintenance > 0)) AS responders_in_maintenance__key
FROM o
GROUP BY GROUPING SETS ((grp, route), (grp))
ORDER BY grp, is_total, route;
