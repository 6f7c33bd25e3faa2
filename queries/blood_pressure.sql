-- Blood pressure over sessions of cohort patients with vitals (a peak recorded), by the session's route:
-- one row per route and measure (sbp_peak, dbp_peak, sbp_rise, dbp_rise; a rise is peak - pre) and value,
-- with how many sessions had it (metrics.blood_pressure reads the medians off these counts, per route and
-- over all routes: counting values is cheaper than sorting millions of sessions), and one row per route
-- (measure NULL) with the patients with such a session, the sessions and how many reached
-- sbp_peak >= 180, dbp_peak >= 110 or either (bp_severe), from the per patient x route table, each with its
-- cell key (derive_05_cell_keys.sql; session counts weigh each patient's key by their sessions).
WITH s AS (
    SELECT route, sbp_peak, dbp_peak, sbp_peak - sbp_pre AS sbp_rise, dbp_peak - dbp_pre AS dbp_rise
    FROM cohort_sessions($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor)
    WHERE sbp_peak IS NOT NULL OR dbp_peak IS NOT NULL
),
distributions AS (
    SELECT
        route,
        CASE
            WHEN grouping(sbp_peak) = 0 THEN 'sbp_peak'
            WHEN grouping(dbp_peak) = 0 THEN 'dbp_peak'
            WHEN grouping(sbp_rise) = 0 THEN 'sbp_rise'
            ELSE 'dbp_rise'
        END AS measure,
        coalesce(sbp_peak, dbp_peak, sbp_rise, dbp_rise) AS value,
        count(*) AS sessions
    FROM s
    GROUP BY GROUPING SETS ((route, sbp_peak), (route, dbp_peak), (route, sbp_rise), (route, dbp_rise))
    HAVING coalesce(sbp_peak, dbp_peak, sbp_rise, dbp_rise) IS NOT NULL
),
counts AS (
    SELECT
        route,
        count(*) AS patients,
        sum(vitals) AS sessions_with_vitals,
        sum(sbp_180) AS sessions_sbp_180,
        sum(dbp_110) AS sessions_dbp_110,
        sum(e14) AS sessions_bp_severe,
        cell_key(sum(rk)) AS patients__key,
        cell_key(sum(rk * vitals)) AS sessions_with_vitals__key,
        cell_key(sum(rk * sbp_180)) AS sessions_sbp_180__key,
        cell_key(sum(rk * dbp_110)) AS sessions_dbp_110__key,
        cell_key(sum(rk * e14)) AS sessions_bp_severe__key
    FROM (SELECT *, record_key(pk) AS rk  -- the key once per row, not once per aggregate
          FROM cohort_route_effects($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                                    $treatment_resistant, $settings, $integration, $severities, $instrument,
                                    $mild_floor, $moderate_floor, $severe_floor))
    WHERE vitals > 0
    GROUP BY route
)
SELECT route, NULL AS measure, NULL::INTEGER AS value, patients, sessions_with_vitals, sessions_sbp_180,
       sessions_dbp_110, sessions_bp_severe, NULL::BIGINT AS sessions, patients__key, sessions_with_vitals__key,
       sessions_sbp_180__key, sessions_dbp_110__key, sessions_bp_severe__key
FROM counts
UNION ALL
SELECT route, measure, value, NULL, NULL, NULL, NULL, NULL, sessions, NULL, NULL, NULL, NULL, NULL
FROM distributions
ORDER BY route, measure NULLS FIRST, value;
