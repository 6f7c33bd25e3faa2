-- Esketamine (SPRAVATO REMS) monitoring per site and overall (metrics.md "Esketamine monitoring"):
-- over esketamine sessions held in the clinic by cohort patients, each measure as (sessions meeting it,
-- sessions where its columns were recorded); the ready-to-leave median; and over esketamine patients
-- (cohort patients with at least one such session) enrolment in the REMS before their first esketamine
-- session in any setting (a missing enrolment counts against it). Rows: one per site, then the total
-- (is_total). Columns an export lacked are NULL in every row; the caller empties those measures.
WITH c AS (
    SELECT patient_id, site
    FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                $treatment_resistant, $settings, $integration, $severities, $instrument,
                $mild_floor, $moderate_floor, $severe_floor)
),
es AS (
    SELECT c.site, s.*, d.session_id IS NOT NULL AS dissociated
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
        count(*) FILTER (WHERE monitoring_minutes >= $rems_minutes) AS monitored_min,
        count(monitoring_minutes) AS monitored_min_of,
        count(*) FILTER (WHERE sbp_pre IS NOT NULL AND dbp_pre IS NOT NULL AND sbp_40min IS NOT NULL
                         AND dbp_40min IS NOT NULL AND sbp_discharge IS NOT NULL AND dbp_discharge IS NOT NULL)
            AS bp_three_points,
        count(*) AS bp_three_points_of,
        count(*) FILTER (WHERE pulse_oximetry) AS pulse_oximetry,
        count(pulse_oximetry) AS pulse_oximetry_of,
        -- over every session: a form never submitted (NULL) counts against it
        count(*) FILTER (WHERE form_submitted_day - day <= $form_days) AS form_within_7d,
        count(*) AS form_within_7d_of,
        count(*) FILTER (WHERE sedation) AS sedation,
        count(sedation) AS sedation_of,
        count(*) FILTER (WHERE respiratory_depression) AS respiratory_depression,
        count(respiratory_depression) AS respiratory_depression_of,
        count(*) FILTER (WHERE dissociated) AS dissociation,
        count(*) AS dissociation_of,
        count(*) FILTER (WHERE resolved_at_discharge) AS resolved_at_discharge,
        count(resolved_at_discharge) AS resolved_at_discharge_of,
        count(*) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL
                         AND (sbp_40min >= $sbp_high OR dbp_40min >= $dbp_high)) AS bp_high_40min,
        count(*) FILTER (WHERE sbp_40min IS NOT NULL AND dbp_40min IS NOT NULL) AS bp_high_40min_of,
        quantile_cont(ready_to_leave_minutes, 0.5) AS ready_to_leave_median,
        count(ready_to_leave_minutes) AS ready_to_leave_sessions
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
        count(*) AS enrolled_before_first_dose_of
    FROM first_dose f
    JOIN c USING (patient_id)
    JOIN patients p USING (patient_id)
    GROUP BY GROUPING SETS ((c.site), ())
)
SELECT s.*, p.patients, p.enrolled_before_first_dose, p.enrolled_before_first_dose_of
FROM per_session s
JOIN per_patient p ON s.is_total = p.is_total AND s.site IS NOT DISTINCT FROM p.site
WHERE s.sessions > 0
ORDER BY s.is_total, s.site
