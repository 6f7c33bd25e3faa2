-- Derived table for Esketamine monitoring (queries/rems_sessions.sql, queries/rems_distribution.sql): the
-- esketamine sessions held in the clinic, with the session's REMS columns, whether it had a dissociation
-- event (dissociated), its patient's record key (rk, derive_05_cell_keys.sql), whether the patient enrolled in
-- the REMS before their first esketamine session in any setting (enrolled_before_first_dose: NULL when no
-- enrolment day was recorded) and whether it is the patient's first such clinic session (first_of_patient:
-- one row per esketamine patient, for the patient measure); and the patient's filter attributes as
-- session_facts carries them (read through cohort_esketamine_sessions in derive_60). Joined once here, so
-- a new filter state is a scan: at 1,000,000 patients the joins of every session to the cohort and to the
-- adverse events took about 80 % of rems_sessions.sql's time (865 -> 144 ms unfiltered).
CREATE OR REPLACE TABLE esketamine_clinic_sessions AS
WITH first_dose AS (
    SELECT patient_id, min(day) AS first_day
    FROM sessions
    WHERE drug = 'esketamine'
    GROUP BY patient_id
),
dissociation AS (
    SELECT DISTINCT session_id FROM adverse_events WHERE event = 'dissociation'
)
SELECT
    f.pk,
    record_key(f.pk) AS rk,
    s.session_id,
    s.day,
    s.monitoring_minutes,
    s.ready_to_leave_minutes,
    s.form_submitted_day,
    s.sbp_pre, s.dbp_pre, s.sbp_40min, s.dbp_40min, s.sbp_discharge, s.dbp_discharge,
    s.pulse_oximetry,
    s.sedation,
    s.respiratory_depression,
    s.resolved_at_discharge,
    d.session_id IS NOT NULL AS dissociated,
    p.rems_enrolled_day <= fd.first_day AS enrolled_before_first_dose,
    row_number() OVER (PARTITION BY f.pk ORDER BY s.day, s.session_id) = 1 AS first_of_patient,
    f.patient_route, f.patient_setting, f.site, f.primary_diagnosis, f.sex, f.age_band, f.start_quarter,
    f.treatment_resistant, f.integration, f.b_gad7, f.b_phq9, f.b_pcl5,
    f.b_matched, f.matched_mild_floor, f.matched_moderate_floor, f.matched_severe_floor
FROM sessions s
JOIN session_facts f ON f.session_id = s.session_id
JOIN patients p ON p.patient_id = s.patient_id
JOIN first_dose fd ON fd.patient_id = s.patient_id
LEFT JOIN dissociation d ON d.session_id = s.session_id
WHERE s.drug = 'esketamine' AND s.setting = 'clinic'
ORDER BY f.pk, s.day, s.session_id;
