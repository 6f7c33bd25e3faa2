-- Esketamine (SPRAVATO REMS) monitoring per site and overall (metrics.md "Esketamine monitoring"):
-- over esketamine sessions held in the clinic by cohort patients, each measure as (sessions meeting it,
-- sessions where its columns were recorded); the ready-to-leave median; and over esketamine patients
-- (cohort patients with at least one such session) enrolment in the REMS before their first esketamine
-- session in any setting (a missing enrolment counts against it). Rows: one per site, then the total
-- (is_total). Columns an export lacked are NULL in every row; the caller empties those measures. Every count
-- comes with its cell key (`<count>__key`, derive_05_cell_keys.sql; a session counts its patient's key).
WITH es AS (
    -- the cohort's esketamine clinic sessions, each with its patient's record key (rk) and the patient
    -- measure's columns (derive_55_esketamine_clinic_sessions.sql): a scan, not a join
    SELECT *
    FROM cohort_esketamine_sessions($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                                    $treatment_resistant, $settings, $integration, $severities, $instrument,
                                    $mild_floor, $moderate_floor, $severe_floor)
),
-- Each site's counts with the raw sums of their record keys, in one pass over the sessions; the total row
-- adds the sites' rows up (counts and key sums are additive, so it equals a pass over every session) and
-- takes its own median. A second aggregation over every session for the total (GROUPING SETS) was about
-- half of this query's time. Conditional counts and key sums are written as sums of CASE, not as
-- FILTER clauses: with 41 aggregates over every esketamine session, the FILTER form took half as long again
-- (1,110 -> 761 ms at 1,000,000 patients, unfiltered).
per_site AS (
    SELECT
        site,
        count(*) AS sessions,
        sum(rk) AS sessions__rk,
        sum(CASE WHEN monitoring_minutes >= $rems_minutes THEN 1 ELSE 0 END)::BIGINT AS monitored_min,
        sum(CASE WHEN monitoring_minutes >= $rems_minutes THEN rk ELSE 0 END) AS monitored_min__rk,
        count(monitoring_minutes) AS monitored_min_of,
        sum(CASE WHEN monitoring_minutes IS NOT NULL THEN rk ELSE 0 END) AS monitored_min_of__rk,
        sum(CASE WHEN sbp_pre IS NOT NULL AND dbp_pre IS NOT NULL AND sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND sbp_discharge IS NOT NULL AND dbp_discharge IS NOT NULL THEN 1 ELSE 0 END)::BIGINT AS bp_three_points,
        sum(CASE WHEN sbp_pre IS NOT NULL AND dbp_pre IS NOT NULL AND sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND sbp_discharge IS NOT NULL AND dbp_discharge IS NOT NULL THEN rk ELSE 0 END) AS bp_three_points__rk,
        count(*) AS bp_three_points_of,
        sum(rk) AS bp_three_points_of__rk,
        sum(CASE WHEN pulse_oximetry THEN 1 ELSE 0 END)::BIGINT AS pulse_oximetry,
        sum(CASE WHEN pulse_oximetry THEN rk ELSE 0 END) AS pulse_oximetry__rk,
        count(pulse_oximetry) AS pulse_oximetry_of,
        sum(CASE WHEN pulse_oximetry IS NOT NULL THEN rk ELSE 0 END) AS pulse_oximetry_of__rk,
        sum(CASE WHEN form_submitted_day - day <= $form_days THEN 1 ELSE 0 END)::BIGINT AS form_within_7d,
        sum(CASE WHEN form_submitted_day - day <= $form_days THEN rk ELSE 0 END) AS form_within_7d__rk,
        count(*) AS form_within_7d_of,
        sum(rk) AS form_within_7d_of__rk,
        sum(CASE WHEN sedation THEN 1 ELSE 0 END)::BIGINT AS sedation,
        sum(CASE WHEN sedation THEN rk ELSE 0 END) AS sedation__rk,
        count(sedation) AS sedation_of,
        sum(CASE WHEN sedation IS NOT NULL THEN rk ELSE 0 END) AS sedation_of__rk,
        sum(CASE WHEN respiratory_depression THEN 1 ELSE 0 END)::BIGINT AS respiratory_depression,
        sum(CASE WHEN respiratory_depression THEN rk ELSE 0 END) AS respiratory_depression__rk,
        count(respiratory_depression) AS respiratory_depression_of,
        sum(CASE WHEN respiratory_depression IS NOT NULL THEN rk ELSE 0 END) AS respiratory_depression_of__rk,
        sum(CASE WHEN dissociated THEN 1 ELSE 0 END)::BIGINT AS dissociation,
        sum(CASE WHEN dissociated THEN rk ELSE 0 END) AS dissociation__rk,
        count(*) AS dissociation_of,
        sum(rk) AS dissociation_of__rk,
        sum(CASE WHEN resolved_at_discharge THEN 1 ELSE 0 END)::BIGINT AS resolved_at_discharge,
        sum(CASE WHEN resolved_at_discharge THEN rk ELSE 0 END) AS resolved_at_discharge__rk,
        count(resolved_at_discharge) AS resolved_at_discharge_of,
        sum(CASE WHEN resolved_at_discharge IS NOT NULL THEN rk ELSE 0 END) AS resolved_at_discharge_of__rk,
        sum(CASE WHEN sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND (sbp_40min >= $sbp_high OR dbp_40min >= $dbp_high) THEN 1 ELSE 0 END)::BIGINT AS bp_high_40min,
        sum(CASE WHEN sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND (sbp_40min >= $sbp_high OR dbp_40min >= $dbp_high) THEN rk ELSE 0 END) AS bp_high_40min__rk,
        sum(CASE WHEN sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL THEN 1 ELSE 0 END)::BIGINT AS bp_high_40min_of,
        sum(CASE WHEN sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL THEN rk ELSE 0 END) AS bp_high_40min_of__rk,
        quantile_cont(ready_to_leave_minutes, 0.5) AS ready_to_leave_median,
        count(ready_to_leave_minutes) AS ready_to_leave_sessions,
        sum(rk) FILTER (WHERE ready_to_leave_minutes IS NOT NULL) AS ready_to_leave_sessions__rk
    FROM es
    GROUP BY site
),
per_session AS (
    SELECT
        false AS is_total,
        site,
        sessions, cell_key(sessions__rk) AS sessions__key,
        monitored_min, cell_key(monitored_min__rk) AS monitored_min__key,
        monitored_min_of, cell_key(monitored_min_of__rk) AS monitored_min_of__key,
        bp_three_points, cell_key(bp_three_points__rk) AS bp_three_points__key,
        bp_three_points_of, cell_key(bp_three_points_of__rk) AS bp_three_points_of__key,
        pulse_oximetry, cell_key(pulse_oximetry__rk) AS pulse_oximetry__key,
        pulse_oximetry_of, cell_key(pulse_oximetry_of__rk) AS pulse_oximetry_of__key,
        form_within_7d, cell_key(form_within_7d__rk) AS form_within_7d__key,
        form_within_7d_of, cell_key(form_within_7d_of__rk) AS form_within_7d_of__key,
        sedation, cell_key(sedation__rk) AS sedation__key,
        sedation_of, cell_key(sedation_of__rk) AS sedation_of__key,
        respiratory_depression, cell_key(respiratory_depression__rk) AS respiratory_depression__key,
        respiratory_depression_of, cell_key(respiratory_depression_of__rk) AS respiratory_depression_of__key,
        dissociation, cell_key(dissociation__rk) AS dissociation__key,
        dissociation_of, cell_key(dissociation_of__rk) AS dissociation_of__key,
        resolved_at_discharge, cell_key(resolved_at_discharge__rk) AS resolved_at_discharge__key,
        resolved_at_discharge_of, cell_key(resolved_at_discharge_of__rk) AS resolved_at_discharge_of__key,
        bp_high_40min, cell_key(bp_high_40min__rk) AS bp_high_40min__key,
        bp_high_40min_of, cell_key(bp_high_40min_of__rk) AS bp_high_40min_of__key,
        ready_to_leave_median,
        ready_to_leave_sessions,
        cell_key(ready_to_leave_sessions__rk) AS ready_to_leave_sessions__key
    FROM per_site
    UNION ALL
    SELECT
        true AS is_total,
        NULL AS site,
        sum(sessions)::BIGINT AS sessions, cell_key(sum(sessions__rk)) AS sessions__key,
        sum(monitored_min)::BIGINT AS monitored_min, cell_key(sum(monitored_min__rk)) AS monitored_min__key,
        sum(monitored_min_of)::BIGINT AS monitored_min_of, cell_key(sum(monitored_min_of__rk)) AS monitored_min_of__key,
        sum(bp_three_points)::BIGINT AS bp_three_points, cell_key(sum(bp_three_points__rk)) AS bp_three_points__key,
        sum(bp_three_points_of)::BIGINT AS bp_three_points_of, cell_key(sum(bp_three_points_of__rk)) AS bp_three_points_of__key,
        sum(pulse_oximetry)::BIGINT AS pulse_oximetry, cell_key(sum(pulse_oximetry__rk)) AS pulse_oximetry__key,
        sum(pulse_oximetry_of)::BIGINT AS pulse_oximetry_of, cell_key(sum(pulse_oximetry_of__rk)) AS pulse_oximetry_of__key,
        sum(form_within_7d)::BIGINT AS form_within_7d, cell_key(sum(form_within_7d__rk)) AS form_within_7d__key,
        sum(form_within_7d_of)::BIGINT AS form_within_7d_of, cell_key(sum(form_within_7d_of__rk)) AS form_within_7d_of__key,
        sum(sedation)::BIGINT AS sedation, cell_key(sum(sedation__rk)) AS sedation__key,
        sum(sedation_of)::BIGINT AS sedation_of, cell_key(sum(sedation_of__rk)) AS sedation_of__key,
        sum(respiratory_depression)::BIGINT AS respiratory_depression, cell_key(sum(respiratory_depression__rk)) AS respiratory_depression__key,
        sum(respiratory_depression_of)::BIGINT AS respiratory_depression_of, cell_key(sum(respiratory_depression_of__rk)) AS respiratory_depression_of__key,
        sum(dissociation)::BIGINT AS dissociation, cell_key(sum(dissociation__rk)) AS dissociation__key,
        sum(dissociation_of)::BIGINT AS dissociation_of, cell_key(sum(dissociation_of__rk)) AS dissociation_of__key,
        sum(resolved_at_discharge)::BIGINT AS resolved_at_discharge, cell_key(sum(resolved_at_discharge__rk)) AS resolved_at_discharge__key,
        sum(resolved_at_discharge_of)::BIGINT AS resolved_at_discharge_of, cell_key(sum(resolved_at_discharge_of__rk)) AS resolved_at_discharge_of__key,
        sum(bp_high_40min)::BIGINT AS bp_high_40min, cell_key(sum(bp_high_40min__rk)) AS bp_high_40min__key,
        sum(bp_high_40min_of)::BIGINT AS bp_high_40min_of, cell_key(sum(bp_high_40min_of__rk)) AS bp_high_40min_of__key,
        (SELECT quantile_cont(ready_to_leave_minutes, 0.5) FROM es) AS ready_to_leave_median,
        sum(ready_to_leave_sessions)::BIGINT AS ready_to_leave_sessions,
        cell_key(sum(ready_to_leave_sessions__rk)) AS ready_to_leave_sessions__key
    FROM per_site
),
per_patient AS (
    -- over esketamine patients: one row each (their first esketamine clinic session)
    SELECT
        grouping(site) = 1 AS is_total,
        site,
        count(*) AS patients,
        sum(CASE WHEN enrolled_before_first_dose THEN 1 ELSE 0 END)::BIGINT AS enrolled_before_first_dose,
        count(*) AS enrolled_before_first_dose_of,
        cell_key(sum(rk)) AS patients__key,
        cell_key(sum(CASE WHEN enrolled_before_first_dose THEN rk ELSE 0 END)) AS enrolled_before_first_dose__key,
        cell_key(sum(rk)) AS enrolled_before_first_dose_of__key
    FROM es
    WHERE first_of_patient
    GROUP BY GROUPING SETS ((site), ())
)
SELECT s.*, p.patients, p.enrolled_before_first_dose, p.enrolled_before_first_dose_of, p.patients__key,
       p.enrolled_before_first_dose__key, p.enrolled_before_first_dose_of__key
FROM per_session s
JOIN per_patient p ON s.is_total = p.is_total AND s.site IS NOT DISTINCT FROM p.site
WHERE s.sessions > 0
ORDER BY s.is_total, s.site
