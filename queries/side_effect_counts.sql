-- Side effects over every session (all phases) of cohort patients, by the session's route and in total
-- (route NULL), for each event type in $events (spec.SUMMARY_EVENTS: the columns e00..e14 of
-- patient_route_effects, bp_severe last), zeros included: sessions and patients of the route, and those with
-- the event. Eligibility does not apply. Sums over the cohort's rows of the per patient x route table.
WITH per_route AS (
    SELECT
        route,
        is_total,
        sum(sessions) AS sessions,
        count(*) AS patients,
        list_value(sum(e00), sum(e01), sum(e02), sum(e03), sum(e04), sum(e05), sum(e06), sum(e07), sum(e08), sum(e09), sum(e10), sum(e11), sum(e12), sum(e13), sum(e14)) AS with_event,
        cell_key(sum(rk * sessions)) AS sessions__key,
        cell_key(sum(rk)) AS patients__key,
        list_value(cell_key(sum(rk * e00)), cell_key(sum(rk * e01)), cell_key(sum(rk * e02)), cell_key(sum(rk * e03)), cell_key(sum(rk * e04)), cell_key(sum(rk * e05)), cell_key(sum(rk * e06)), cell_key(sum(rk * e07)), cell_key(sum(rk * e08)), cell_key(sum(rk * e09)), cell_key(sum(rk * e10)), cell_key(sum(rk * e11)), cell_key(sum(rk * e12)), cell_key(sum(rk * e13)), cell_key(sum(rk * e14))) AS with_event__key,
        list_value(cell_key(sum(rk) FILTER (WHERE e00 > 0)), cell_key(sum(rk) FILTER (WHERE e01 > 0)), cell_key(sum(rk) FILTER (WHERE e02 > 0)), cell_key(sum(rk) FILTER (WHERE e03 > 0)), cell_key(sum(rk) FILTER (WHERE e04 > 0)), cell_key(sum(rk) FILTER (WHERE e05 > 0)), cell_key(sum(rk) FILTER (WHERE e06 > 0)), cell_key(sum(rk) FILTER (WHERE e07 > 0)), cell_key(sum(rk) FILTER (WHERE e08 > 0)), cell_key(sum(rk) FILTER (WHERE e09 > 0)), cell_key(sum(rk) FILTER (WHERE e10 > 0)), cell_key(sum(rk) FILTER (WHERE e11 > 0)), cell_key(sum(rk) FILTER (WHERE e12 > 0)), cell_key(sum(rk) FILTER (WHERE e13 > 0)), cell_key(sum(rk) FILTER (WHERE e14 > 0))) AS patients_with_event__key,
        list_value(count(*) FILTER (WHERE e00 > 0), count(*) FILTER (WHERE e01 > 0), count(*) FILTER (WHERE e02 > 0), count(*) FILTER (WHERE e03 > 0), count(*) FILTER (WHERE e04 > 0), count(*) FILTER (WHERE e05 > 0), count(*) FILTER (WHERE e06 > 0), count(*) FILTER (WHERE e07 > 0), count(*) FILTER (WHERE e08 > 0), count(*) FILTER (WHERE e09 > 0), count(*) FILTER (WHERE e10 > 0), count(*) FILTER (WHERE e11 > 0), count(*) FILTER (WHERE e12 > 0), count(*) FILTER (WHERE e13 > 0), count(*) FILTER (WHERE e14 > 0)) AS patients_with_event
    FROM (SELECT *, record_key(pk) AS rk FROM cohort_route_effects($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                              $treatment_resistant, $settings, $integration, $severities, $instrument,
                              $mild_floor, $moderate_floor, $severe_floor))
    GROUP BY route, is_total
)
SELECT
    route,
    is_total,
    unnest($events) AS event,
    sessions::BIGINT AS sessions,
    unnest(with_event)::BIGINT AS sessions_with_event,
    patients,
    unnest(patients_with_event) AS patients_with_event,
    sessions__key,
    unnest(with_event__key) AS sessions_with_event__key,
    patients__key,
    unnest(patients_with_event__key) AS patients_with_event__key
FROM per_route
ORDER BY is_total, route;
