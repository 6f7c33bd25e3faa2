-- The cohort filter over the session-level derived tables (derive_40_session_facts, derive_50_patient_route_effects,
-- derive_55_esketamine_clinic_sessions),
-- with the same arguments as cohort() in derive_30_cohort_macro.sql and the same test (the scalar macro
-- in_cohort over the patient's filter attributes, which every row of these tables carries): a scan, not a join.
-- Under instrument 'matched' the floors bind NULL and each patient's own questionnaire's apply (matched_*).
-- Created after the tables, since DuckDB binds a table macro's tables when it is created.
-- The sessions of cohort patients (session_facts, with the session's own route), filtered by a scan.
CREATE OR REPLACE MACRO cohort_sessions(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor
) AS TABLE
SELECT *
FROM session_facts f
WHERE f_instrument IN ('GAD7', 'PHQ9', 'PCL5', 'matched')
  AND in_cohort(f.patient_route, f.site, f.primary_diagnosis, f.sex, f.age_band, f.start_quarter,
                f.treatment_resistant, f.patient_setting, f.integration,
                severity_band(baseline_on(f_instrument, f.b_gad7, f.b_phq9, f.b_pcl5, f.b_matched),
                              coalesce(f_mild_floor, f.matched_mild_floor),
                              coalesce(f_moderate_floor, f.matched_moderate_floor),
                              coalesce(f_severe_floor, f.matched_severe_floor)),
                f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities);

-- The per patient x session route side-effect rows (patient_route_effects) of cohort patients.
CREATE OR REPLACE MACRO cohort_route_effects(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor
) AS TABLE
SELECT *
FROM patient_route_effects f
WHERE f_instrument IN ('GAD7', 'PHQ9', 'PCL5', 'matched')
  AND in_cohort(f.patient_route, f.site, f.primary_diagnosis, f.sex, f.age_band, f.start_quarter,
                f.treatment_resistant, f.patient_setting, f.integration,
                severity_band(baseline_on(f_instrument, f.b_gad7, f.b_phq9, f.b_pcl5, f.b_matched),
                              coalesce(f_mild_floor, f.matched_mild_floor),
                              coalesce(f_moderate_floor, f.matched_moderate_floor),
                              coalesce(f_severe_floor, f.matched_severe_floor)),
                f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities);

-- The esketamine clinic sessions (esketamine_clinic_sessions, derive_55) of cohort patients.
CREATE OR REPLACE MACRO cohort_esketamine_sessions(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor
) AS TABLE
SELECT *
FROM esketamine_clinic_sessions f
WHERE f_instrument IN ('GAD7', 'PHQ9', 'PCL5', 'matched')
  AND in_cohort(f.patient_route, f.site, f.primary_diagnosis, f.sex, f.age_band, f.start_quarter,
                f.treatment_resistant, f.patient_setting, f.integration,
                severity_band(baseline_on(f_instrument, f.b_gad7, f.b_phq9, f.b_pcl5, f.b_matched),
                              coalesce(f_mild_floor, f.matched_mild_floor),
                              coalesce(f_moderate_floor, f.matched_moderate_floor),
                              coalesce(f_severe_floor, f.matched_severe_floor)),
                f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities);
