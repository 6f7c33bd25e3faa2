-- Derived per-patient table for the metrics: one row per patient with the filter attributes and the
-- per-patient facts every metric needs (first session's route and setting, L, maintenance timing, session
-- data-quality counts). Built by the importer after the base tables (it runs every derive_*.sql in name
-- order), so metric queries never scan the sessions table for per-patient facts.
-- Route and setting: the first session's (lowest day, then lowest session_id), metrics.md "Per patient".
-- L: the last induction day; a patient whose sessions are all maintenance has L = the first session's day
-- (docs/choices.md "Metrics"). maintenance_gaps: days between consecutive maintenance sessions.
CREATE OR REPLACE TABLE patient_summary AS
WITH ordered AS (
    SELECT
        *,
        day - lag(day) OVER (PARTITION BY patient_id, phase ORDER BY day, session_id) AS phase_gap
    FROM sessions
),
per_patient AS (
    SELECT
        patient_id,
        arg_min(route::VARCHAR, struct_pack(d := day, i := session_id)) AS route,
        arg_min(setting::VARCHAR, struct_pack(d := day, i := session_id)) AS setting,
        bool_or(integration_therapy) AS integration,
        count(*) AS n_sessions,
        min(day) AS first_day,
        max(day) FILTER (WHERE phase = 'induction') AS last_induction_day,
        count(*) FILTER (WHERE phase = 'maintenance') AS n_maintenance,
        min(day) FILTER (WHERE phase = 'maintenance') AS first_maintenance_day,
        max(day) FILTER (WHERE phase = 'maintenance') AS last_maintenance_day,
        list(phase_gap ORDER BY day, session_id)
            FILTER (WHERE phase = 'maintenance' AND phase_gap IS NOT NULL) AS maintenance_gaps,
        count(*) FILTER (WHERE setting = 'clinic') AS n_clinic_sessions,
        count(*) FILTER (WHERE setting = 'clinic' AND sbp_peak IS NULL AND dbp_peak IS NULL)
            AS n_clinic_without_vitals,
        count(*) FILTER (WHERE NOT completed) AS n_not_completed
    FROM ordered
    GROUP BY patient_id
)
SELECT
    (row_number() OVER (ORDER BY p.patient_id))::INTEGER AS pk,
    p.patient_id,
    p.site,
    p.start_quarter,
    p.age_band::VARCHAR AS age_band,
    p.sex::VARCHAR AS sex,
    p.primary_diagnosis::VARCHAR AS primary_diagnosis,
    p.treatment_resistant,
    s.route,
    s.setting,
    coalesce(s.integration, false) AS integration,
    coalesce(s.n_sessions, 0) AS n_sessions,
    coalesce(s.last_induction_day, s.first_day) AS last_induction_day,
    coalesce(s.n_maintenance, 0) AS n_maintenance,
    s.first_maintenance_day,
    s.last_maintenance_day,
    s.maintenance_gaps,
    coalesce(s.n_clinic_sessions, 0) AS n_clinic_sessions,
    coalesce(s.n_clinic_without_vitals, 0) AS n_clinic_without_vitals,
    coalesce(s.n_not_completed, 0) AS n_not_completed
FROM patients p
LEFT JOIN per_patient s USING (patient_id)
ORDER BY p.patient_id;
