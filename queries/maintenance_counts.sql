-- Maintenance per patient route (and a total row, route NULL): responders (observed) and how many of them
-- had a maintenance session; over maintenance patients (any cohort patient with one): sessions, the median
-- days from L to the first, the summed days from L to the last (for sessions per patient-month) and the
-- gaps between a patient's consecutive maintenance sessions, pooled, as a gap -> count map
-- (metrics.maintenance takes its median: counting days is cheaper than sorting millions of gaps).
-- Eligible patients, those with an endpoint and remitters (with the responders: response_by_route's counts,
-- as outcome_counts.sql counts them) come along, so the Maintenance page can hide maintenance.csv's
-- responders where response_by_route.csv hides them without a second scan (metrics.maintenance_response;
-- which cells are hidden is decided on exact counts, so they need no cell keys).
WITH o AS (
    SELECT route, responder, eligible, has_endpoint, remitter, n_maintenance, first_maintenance_day,
           last_maintenance_day, last_induction_day, record_key(pk) AS rk
    FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
    WHERE n_sessions > 0
),
per_route AS (
    SELECT
        route,
        grouping(route) = 1 AS is_total,
        count(*) FILTER (WHERE responder) AS responders,
        count(*) FILTER (WHERE responder AND n_maintenance > 0) AS responders_in_maintenance,
        count(*) FILTER (WHERE n_maintenance > 0) AS maintenance_patients,
        coalesce(sum(n_maintenance), 0) AS maintenance_sessions,
        quantile_cont(first_maintenance_day - last_induction_day, 0.5) FILTER (WHERE n_maintenance > 0)
            AS median_days_to_first_maintenance,
        sum(last_maintenance_day - last_induction_day) FILTER (WHERE n_maintenance > 0) AS maintenance_span_days,
        -- cell keys (derive_05_cell_keys.sql) of the counts above; sessions weigh each key by the sessions
        cell_key(sum(rk) FILTER (WHERE responder)) AS responders__key,
        cell_key(sum(rk) FILTER (WHERE responder AND n_maintenance > 0)) AS responders_in_maintenance__key,
        cell_key(sum(rk) FILTER (WHERE n_maintenance > 0)) AS maintenance_patients__key,
        cell_key(sum(rk * n_maintenance)) AS maintenance_sessions__key,
        count(*) FILTER (WHERE eligible) AS eligible,
        count(*) FILTER (WHERE has_endpoint) AS with_endpoint,
        count(*) FILTER (WHERE remitter) AS remitters
    FROM o
    GROUP BY ROLLUP (route)
),
gaps AS (
    -- the gaps need the cohort only, not the outcomes
    SELECT route, unnest(maintenance_gaps) AS gap
    FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                $treatment_resistant, $settings, $integration, $severities, $instrument,
                $mild_floor, $moderate_floor, $severe_floor)
    WHERE n_sessions > 0 AND n_maintenance > 1
),
gap_medians AS (
    SELECT route, grouping(route) = 1 AS is_total, histogram(gap) AS interval_counts
    FROM gaps
    GROUP BY ROLLUP (route)
)
SELECT p.*, g.interval_counts
FROM per_route p
LEFT JOIN gap_medians g ON g.is_total = p.is_total AND (p.is_total OR g.route = p.route)
ORDER BY p.is_total, p.route;
