-- Sessions of cohort patients with at least one event of each type at each severity, by the session's
-- route and in total (route NULL), zeros included, for the event types in $events (spec.EVENTS: the
-- columns *_e00..*_e13 of patient_route_effects) and the severities in $severity_levels (mild, moderate,
-- severe). Sums over the cohort's rows of the per patient x route table, listed event by event.
WITH per_route AS (
    SELECT
        route,
        is_total,
        list_value(sum(mild_e00), sum(moderate_e00), sum(severe_e00), sum(mild_e01), sum(moderate_e01), sum(severe_e01), sum(mild_e02), sum(moderate_e02), sum(severe_e02), sum(mild_e03), sum(moderate_e03), sum(severe_e03), sum(mild_e04), sum(moderate_e04), sum(severe_e04), sum(mild_e05), sum(moderate_e05), sum(severe_e05), sum(mild_e06), sum(moderate_e06), sum(severe_e06), sum(mild_e07), sum(moderate_e07), sum(severe_e07), sum(mild_e08), sum(moderate_e08), sum(severe_e08), sum(mild_e09), sum(moderate_e09), sum(severe_e09), sum(mild_e10), sum(moderate_e10), sum(severe_e10), sum(mild_e11), sum(moderate_e11), sum(severe_e11), sum(mild_e12), sum(moderate_e12), sum(severe_e12), sum(mild_e13), sum(moderate_e13), sum(severe_e13)) AS counts,
        -- each count's cell key (derive_05_cell_keys.sql): the patient's key weighed by their sessions with it
        list_value(cell_key(sum(rk * mild_e00)), cell_key(sum(rk * moderate_e00)), cell_key(sum(rk * severe_e00)), cell_key(sum(rk * mild_e01)), cell_key(sum(rk * moderate_e01)), cell_key(sum(rk * severe_e01)), cell_key(sum(rk * mild_e02)), cell_key(sum(rk * moderate_e02)), cell_key(sum(rk * severe_e02)), cell_key(sum(rk * mild_e03)), cell_key(sum(rk * moderate_e03)), cell_key(sum(rk * severe_e03)), cell_key(sum(rk * mild_e04)), cell_key(sum(rk * moderate_e04)), cell_key(sum(rk * severe_e04)), cell_key(sum(rk * mild_e05)), cell_key(sum(rk * moderate_e05)), cell_key(sum(rk * severe_e05)), cell_key(sum(rk * mild_e06)), cell_key(sum(rk * moderate_e06)), cell_key(sum(rk * severe_e06)), cell_key(sum(rk * mild_e07)), cell_key(sum(rk * moderate_e07)), cell_key(sum(rk * severe_e07)), cell_key(sum(rk * mild_e08)), cell_key(sum(rk * moderate_e08)), cell_key(sum(rk * severe_e08)), cell_key(sum(rk * mild_e09)), cell_key(sum(rk * moderate_e09)), cell_key(sum(rk * severe_e09)), cell_key(sum(rk * mild_e10)), cell_key(sum(rk * moderate_e10)), cell_key(sum(rk * severe_e10)), cell_key(sum(rk * mild_e11)), cell_key(sum(rk * moderate_e11)), cell_key(sum(rk * severe_e11)), cell_key(sum(rk * mild_e12)), cell_key(sum(rk * moderate_e12)), cell_key(sum(rk * severe_e12)), cell_key(sum(rk * mild_e13)), cell_key(sum(rk * moderate_e13)), cell_key(sum(rk * severe_e13))) AS count_keys
    -- the patient's key once per row: record_key's secret is a scalar subquery, and one per aggregate
    -- (42 here) took DuckDB's planner longer than the sums themselves
    FROM (SELECT *, record_key(pk) AS rk
          FROM cohort_route_effects($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                                    $treatment_resistant, $settings, $integration, $severities, $instrument,
                                    $mild_floor, $moderate_floor, $severe_floor))
    GROUP BY route, is_total
),
cells AS (
    SELECT route, is_total, unnest(counts) AS sessions_with_event, unnest(count_keys) AS sessions_with_event__key,
           unnest(range(len(counts))) AS i
    FROM per_route
)
SELECT
    route,
    is_total,
    $events[i // 3 + 1] AS event,
    $severity_levels[i % 3 + 1] AS severity,
    sessions_with_event::BIGINT AS sessions_with_event,
    sessions_with_event__key
FROM cells
ORDER BY is_total, route, i;
