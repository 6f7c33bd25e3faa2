-- Side effects by session number (1 = the patient's first session; $last_session_number pools that session and
-- every later one, so the cells still add up to side_effect_counts' totals), by the session's route and in total
-- (route NULL): sessions with that number and those with at least one event of each type in $events
-- (spec.SUMMARY_EVENTS: bit i of the mask is $events[i + 1]; bit $bp_bit is bp_severe, sbp_peak >= $sbp_severe
-- or dbp_peak >= $dbp_severe), zeros included. The cohort's sessions are first counted per route, number
-- and event mask (a few thousand distinct combinations), then the event types are read off the masks.
WITH s AS (
    SELECT
        f.route,
        record_key(f.pk) AS rk,  -- cell keys (derive_05_cell_keys.sql): a session counts its patient's key
        least(f.session_number, $last_session_number) AS session_number,
        f.event_mask | CASE WHEN f.sbp_peak >= $sbp_severe OR f.dbp_peak >= $dbp_severe
                            THEN 1::BIGINT << $bp_bit ELSE 0 END AS mask
    FROM cohort_sessions($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor) f
),
by_mask AS (
    SELECT route, session_number, mask, count(*) AS n, sum(rk) AS kn
    FROM s
    GROUP BY route, session_number, mask
),
counts AS (
    SELECT
        route,
        grouping(route) = 1 AS is_total,
        session_number,
        sum(n) AS sessions,
        list_value(
            sum(n) FILTER (WHERE (mask >> 0) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 1) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 2) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 3) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 4) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 5) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 6) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 7) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 8) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 9) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 10) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 11) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 12) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 13) & 1 = 1),
            sum(n) FILTER (WHERE (mask >> 14) & 1 = 1)
        ) AS with_event,
        cell_key(sum(kn)) AS sessions__key,
        list_value(
            cell_key(sum(kn) FILTER (WHERE (mask >> 0) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 1) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 2) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 3) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 4) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 5) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 6) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 7) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 8) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 9) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 10) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 11) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 12) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 13) & 1 = 1)),
            cell_key(sum(kn) FILTER (WHERE (mask >> 14) & 1 = 1))
        ) AS with_event__key
    FROM by_mask
    GROUP BY GROUPING SETS ((route, session_number), (session_number))
),
cells AS (
    SELECT route, is_total, session_number, sessions, sessions__key,
           unnest(with_event) AS sessions_with_event, unnest(with_event__key) AS sessions_with_event__key,
           unnest(range(len(with_event))) AS bit
    FROM counts
)
SELECT route, is_total, $events[bit + 1] AS event, session_number, sessions::BIGINT AS sessions,
       coalesce(sessions_with_event, 0)::BIGINT AS sessions_with_event, sessions__key,
       coalesce(sessions_with_event__key, 0) AS sessions_with_event__key
FROM cells
WHERE bit < len($events)
ORDER BY is_total, route, bit, session_number;
