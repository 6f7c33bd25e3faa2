-- Esketamine (SPRAVATO REMS) monitoring per site and overall (metrics.md "Esketamine monitoring"):
-- over esketamine sessions held in the clinic by cohort patients, each measure as (sessions meeting it,
-- sessions where its columns were recorded); the ready-to-leave median; and over esketamine patients
-- (cohort patients with at least one such session) enrolment in the REMS before their first esketamine
-- session in any setting (a missing enrolment counts against it). Rows: one per site, then the total
-- (is_total). Columns an export lacked are NULL in every row; the caller empties those measures. Every count
-- comes with its cell key (`<count>__key`, derive_05_cell_keys.sql; a session counts its patient's key).
WITH c AS (
    SELECT patient_id, site, record_key(pk) AS rk  -- cell keys: derive_05_cell_keys.sql
    FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                $treatment_resistant, $settings, $integration, $severities, $instrument,
                $mild_floor, $moderate_floor, $severe_floor)
),
es AS (
    SELECT c.site, c.rk, s.*, d.session_id IS NOT NULL AS dissociated
    FROM sessions s
    JOIN c USING (patient_id)
    LEFT JOIN (SELECT DISTINCT session_id FROM adverse_events WHERE event = 'dissociation') d USING (session_id)
    WHERE s.drug = 'esketamine' AND s.setting = 'clinic'
),
per_session AS (
    SELECT
        grouping(site) = 1 AS is_total,
        site,
        count(*) AS sessions,
        cell_key(sum(rk)) AS sessions__key,
        count(*) FILTER (WHERE monitoring_minutes >= $rems_minutes) AS monitored_min,
        cell_key(sum(rk) FILTER (WHERE monitoring_minutes >= $rems_minutes)) AS monitored_min__key,
        count(monitoring_minutes) AS monitored_min_of,
        cell_key(sum(rk) FILTER (WHERE monitoring_minutes IS NOT NULL)) AS monitored_min_of__key,
        count(*) FILTER (WHERE sbp_pre IS NOT NULL AND dbp_pre IS NOT NULL AND sbp_40min IS NOT NULL
                         AND dbp_40min IS NOT NULL AND sbp_discharge IS NOT NULL AND dbp_discharge IS NOT NULL)
            AS bp_three_points,
        cell_key(sum(rk) FILTER (WHERE sbp_pre IS NOT NULL AND dbp_pre IS NOT NULL AND sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND sbp_discharge IS NOT NULL AND dbp_discharge IS NOT NULL)) AS bp_three_points__key,
        count(*) AS bp_three_points_of,
        cell_key(sum(rk)) AS bp_three_points_of__key,
        count(*) FILTER (WHERE pulse_oximetry) AS pulse_oximetry,
        cell_key(sum(rk) FILTER (WHERE pulse_oximetry)) AS pulse_oximetry__key,
        count(pulse_oximetry) AS pulse_oximetry_of,
        cell_key(sum(rk) FILTER (WHERE pulse_oximetry IS NOT NULL)) AS pulse_oximetry_of__key,
        -- over every session: a form never submitted (NULL) counts against it
        count(*) FILTER (WHERE form_submitted_day - day <= $form_days) AS form_within_7d,
        cell_key(sum(rk) FILTER (WHERE form_submitted_day - day <= $form_days)) AS form_within_7d__key,
        count(*) AS form_within_7d_of,
        cell_key(sum(rk)) AS form_within_7d_of__key,
        count(*) FILTER (WHERE sedation) AS sedation,
        cell_key(sum(rk) FILTER (WHERE sedation)) AS sedation__key,
        count(sedation) AS sedation_of,
        cell_key(sum(rk) FILTER (WHERE sedation IS NOT NULL)) AS sedation_of__key,
        count(*) FILTER (WHERE respiratory_depression) AS respiratory_depression,
        cell_key(sum(rk) FILTER (WHERE respiratory_depression)) AS respiratory_depression__key,
        count(respiratory_depression) AS respiratory_depression_of,
        cell_key(sum(rk) FILTER (WHERE respiratory_depression IS NOT NULL)) AS respiratory_depression_of__key,
        count(*) FILTER (WHERE dissociated) AS dissociation,
        cell_key(sum(rk) FILTER (WHERE dissociated)) AS dissociation__key,
        count(*) AS dissociation_of,
        cell_key(sum(rk)) AS dissociation_of__key,
        count(*) FILTER (WHERE resolved_at_discharge) AS resolved_at_discharge,
        cell_key(sum(rk) FILTER (WHERE resolved_at_discharge)) AS resolved_at_discharge__key,
        count(resolved_at_discharge) AS resolved_at_discharge_of,
        cell_key(sum(rk) FILTER (WHERE resolved_at_discharge IS NOT NULL)) AS resolved_at_discharge_of__key,
        count(*) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL
                         AND (sbp_40min >= $sbp_high OR dbp_40min >= $dbp_high)) AS bp_high_40min,
        cell_key(sum(rk) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL AND (sbp_40min >= $sbp_high OR dbp_40min >= $dbp_high))) AS bp_high_40min__key,
        count(*) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL) AS bp_high_40min_of,
        cell_key(sum(rk) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL)) AS bp_high_40min_of__key,
        quantile_cont(ready_to_leave_minutes, 0.5) AS ready_to_leave_median,
        count(ready_to_leave_minutes) AS ready_to_leave_sessions,
        cell_key(sum(rk) FILTER (WHERE ready_to_leave_minutes IS NOT NULL)) AS ready_to_leave_sessions__key
    FROM es
    GROUP BY GROUPING SETS ((site), ())
),
first_dose AS (
    -- each esketamine patient's first esketamine session, in any setting
    SELECT patient_id, min(day) AS first_day
    FROM sessions
    WHERE drug = 'esketamine' AND patient_id IN (SELECT patient_id FROM es)
    GROUP BY patient_id
),
per_patient AS (
    SELECT
        grouping(c.site) = 1 AS is_total,
        c.site,
        count(*) AS patients,
        count(*) FILTER (WHERE p.rems_enrolled_day <= f.first_day) AS enrolled_before_first_dose,
        count(*) AS enrolled_before_first_dose_of,
        cell_key(sum(c.rk)) AS patients__key,
        cell_key(sum(c.rk) FILTER (WHERE p.rems_enrolled_day <= f.first_day)) AS enrolled_before_first_dose__key,
        cell_key(sum(c.rk)) AS enrolled_before_first_dose_of__key
    FROM first_dose f
    JOIN c USING (patient_id)
    JOIN patients p USING (patient_id)
    GROUP BY GROUPING SETS ((c.site), ())
)
SELECT s.*, p.patients, p.enrolled_before_first_dose, p.enrolled_before_first_dose_of, p.patients__key,
       p.enrolled_before_first_dose__key, p.enrolled_before_first_dose_of__key
FROM per_session s
JOIN per_patient p ON s.is_total = p.is_total AND s.site IS NOT DISTINCT FROM p.site
WHERE s.sessions > 0
ORDER BY s.is_total, s.site
