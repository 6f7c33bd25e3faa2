-- Esketamine monitoring distributions over the same sessions as rems_sessions.sql (clinic esketamine
-- sessions of cohort patients), all sites together: minutes of monitoring and "ready to leave" minutes in
-- bins of $minute_bin (values at or above $minute_top pooled into the top bin), and the rise of systolic and
-- diastolic pressure from before dosing to 40 minutes in bins of $sbp_bin / $dbp_bin (pooled below
-- $sbp_low / $dbp_low and at or above $sbp_top / $dbp_top). Columns: measure, bin (lower bound), sessions,
-- sessions__key (the bin's cell key, derive_05_cell_keys.sql: a session counts its patient's key).
WITH es AS (
    -- the cohort's esketamine clinic sessions with their patients' record keys (derive_55): a scan
    SELECT rk, monitoring_minutes, ready_to_leave_minutes,
           sbp_40min - sbp_pre AS sbp_rise, dbp_40min - dbp_pre AS dbp_rise
    FROM cohort_esketamine_sessions($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                                    $treatment_resistant, $settings, $integration, $severities, $instrument,
                                    $mild_floor, $moderate_floor, $severe_floor)
),
binned AS (
    SELECT rk, 'monitoring_minutes' AS measure,
           least(floor(monitoring_minutes / $minute_bin) * $minute_bin, $minute_top) AS bin
    FROM es WHERE monitoring_minutes IS NOT NULL
    UNION ALL
    SELECT rk, 'ready_to_leave_minutes',
           least(floor(ready_to_leave_minutes / $minute_bin) * $minute_bin, $minute_top)
    FROM es WHERE ready_to_leave_minutes IS NOT NULL
    UNION ALL
    SELECT rk, 'sbp_rise_40min', greatest(least(floor(sbp_rise / $sbp_bin) * $sbp_bin, $sbp_top), $sbp_low)
    FROM es WHERE sbp_rise IS NOT NULL
    UNION ALL
    SELECT rk, 'dbp_rise_40min', greatest(least(floor(dbp_rise / $dbp_bin) * $dbp_bin, $dbp_top), $dbp_low)
    FROM es WHERE dbp_rise IS NOT NULL
)
SELECT measure, bin::INTEGER AS bin, count(*) AS sessions, cell_key(sum(rk)) AS sessions__key
FROM binned
GROUP BY measure, bin
ORDER BY measure, bin
