-- Side effects over every session (all phases) of cohort patients, by the session's route and in total
-- (route NULL), for each event type in $events (spec.SUMMARY_EVENTS: the columns e00..e14 of
-- patient_route_effects, bp_severe last), zeros included: sessions and patients of the route, and those with
-- the event. Eligibility does not apply. Sums over the cohort's rows of the per patient x route table.
-- Counts of patients with an event are sums of CASE, not FILTER clauses: over 30 such aggregates the FILTER
-- form took about twice as long (38 -> 22 ms at 100,000 patients, 195 -> 91 ms at 1,000,000).
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
        list_value(cell_key(sum(CASE WHEN e00 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e01 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e02 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e03 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e04 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e05 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e06 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e07 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e08 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e09 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e10 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e11 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e12 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e13 > 0 THEN rk ELSE 0 END)), cell_key(sum(CASE WHEN e14 > 0 THEN rk ELSE 0 END))) AS patients_with_event__key,
        list_value(sum(CASE WHEN e00 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e01 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e02 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e03 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e04 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e05 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e06 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e07 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e08 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e09 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e10 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e11 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e12 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e13 > 0 THEN 1 ELSE 0 END)::BIGINT, sum(CASE WHEN e14 > 0 THEN 1 ELSE 0 END)::BIGINT) AS patients_with_event
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
