-- Blood pressure over sessions of cohort patients with vitals (a peak recorded), by the session's route and
-- in total (route NULL): medians of the peaks and of the rises (peak - pre), and how many sessions reached
-- sbp_peak >= $sbp_severe, dbp_peak >= $dbp_severe, or either (bp_severe).
SELECT
    f.route,
    grouping(f.route) = 1 AS is_total,
    count(DISTINCT f.patient_id) AS patients,
    count(*) AS sessions_with_vitals,
    quantile_cont(f.sbp_peak, 0.5) AS sbp_peak_median,
    quantile_cont(f.dbp_peak, 0.5) AS dbp_peak_median,
    quantile_cont(f.sbp_peak - f.sbp_pre, 0.5) AS sbp_rise_median,
    quantile_cont(f.dbp_peak - f.dbp_pre, 0.5) AS dbp_rise_median,
    count(*) FILTER (WHERE f.sbp_peak >= $sbp_severe) AS sessions_sbp_180,
    count(*) FILTER (WHERE f.dbp_peak >= $dbp_severe) AS sessions_dbp_110,
    count(*) FILTER (WHERE f.sbp_peak >= $sbp_severe OR f.dbp_peak >= $dbp_severe) AS sessions_bp_severe
FROM session_facts f
SEMI JOIN cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                 $treatment_resistant, $settings, $integration, $severities, $instrument,
                 $mild_floor, $moderate_floor, $severe_floor) c ON c.patient_id = f.patient_id
WHERE f.sbp_peak IS NOT NULL OR f.dbp_peak IS NOT NULL
GROUP BY ROLLUP (f.route)
ORDER BY is_total, route;
