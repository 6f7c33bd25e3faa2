-- The cohort filter, written once as the scalar macro in_cohort over a patient's filter attributes, and
-- used by the table macros that metric queries read with bound parameters: cohort($routes, ..., $severe_floor)
-- (one row per cohort patient) and, in derive_60_cohort_session_macros.sql, cohort_sessions(...) (their
-- sessions) and cohort_route_effects(...) (their per route side-effect counts). Every argument may be NULL (no filter); list
-- arguments hold the allowed values.
-- Integration: the patient had at least one session with integration therapy (docs/choices.md).
-- Severity: the band of B on the chosen instrument; patients without B drop out when the filter is on.
-- Instrument 'matched' (metrics.md "Matched instrument") binds NULL for the floors, the minimum baseline and
-- the remission cut: each row then takes its own questionnaire's (cohort_base.scale_*), by coalesce.
CREATE OR REPLACE MACRO severity_band(b, f_mild_floor, f_moderate_floor, f_severe_floor) AS
    CASE
        WHEN b IS NULL THEN NULL
        WHEN b >= f_severe_floor THEN 'severe'
        WHEN b >= f_moderate_floor THEN 'moderate'
        WHEN b >= f_mild_floor THEN 'mild'
        ELSE 'minimal'
    END;

CREATE OR REPLACE MACRO in_cohort(
    route, site, primary_diagnosis, sex, age_band, start_quarter, treatment_resistant, setting, integration,
    severity,
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities
) AS
    (f_routes IS NULL OR list_contains(f_routes, route))
    AND (f_sites IS NULL OR list_contains(f_sites, site))
    AND (f_diagnoses IS NULL OR list_contains(f_diagnoses, primary_diagnosis))
    AND (f_sexes IS NULL OR list_contains(f_sexes, sex))
    AND (f_age_bands IS NULL OR list_contains(f_age_bands, age_band))
    AND (f_from_quarter IS NULL OR start_quarter >= f_from_quarter)
    AND (f_to_quarter IS NULL OR start_quarter <= f_to_quarter)
    AND (f_treatment_resistant IS NULL OR treatment_resistant = f_treatment_resistant)
    AND (f_settings IS NULL OR list_contains(f_settings, setting))
    AND (f_integration IS NULL OR integration = f_integration)
    AND (f_severities IS NULL OR list_contains(f_severities, severity));

-- A session-level row's baseline on the chosen instrument (b_matched: on the questionnaire of the patient's
-- diagnosis; NULL for an instrument that does not exist).
CREATE OR REPLACE MACRO baseline_on(f_instrument, b_gad7, b_phq9, b_pcl5, b_matched) AS
    CASE f_instrument WHEN 'GAD7' THEN b_gad7 WHEN 'PHQ9' THEN b_phq9 WHEN 'PCL5' THEN b_pcl5
                      WHEN 'matched' THEN b_matched END;

CREATE OR REPLACE MACRO cohort(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor
) AS TABLE
SELECT
    cb.pk,
    cb.patient_id,
    cb.route,
    cb.setting,
    cb.site,
    cb.primary_diagnosis,
    cb.start_quarter,
    cb.n_sessions,
    cb.last_induction_day,
    cb.n_maintenance,
    cb.first_maintenance_day,
    cb.last_maintenance_day,
    cb.maintenance_gaps,
    cb.n_clinic_sessions,
    cb.n_clinic_without_vitals,
    cb.n_not_completed,
    cb.baseline,
    coalesce(cb.n_followups, 0) AS n_followups,
    coalesce(cb.n_post_dose, 0) AS n_post_dose,
    coalesce(cb.n_questionnaires, 0) AS n_questionnaires,
    cb.fu_t,
    cb.fu_scores,
    cb.ep_days,
    cb.ep_scores,
    cb.relief_response_time,
    cb.relief_response_event,
    cb.relief_mcid_time,
    cb.relief_mcid_event,
    cb.sustained_time,
    cb.sustained_event,
    cb.week_numbers,
    cb.week_scores,
    cb.scale,
    cb.scale_min_baseline,
    cb.scale_remission_cut,
    cb.scale_max,
    severity_band(cb.baseline, coalesce(f_mild_floor, cb.scale_mild_floor),
                  coalesce(f_moderate_floor, cb.scale_moderate_floor),
                  coalesce(f_severe_floor, cb.scale_severe_floor)) AS severity
FROM cohort_base cb
WHERE cb.instrument = f_instrument
  AND in_cohort(cb.route, cb.site, cb.primary_diagnosis, cb.sex, cb.age_band, cb.start_quarter,
                cb.treatment_resistant, cb.setting, cb.integration,
                severity_band(cb.baseline, coalesce(f_mild_floor, cb.scale_mild_floor),
                              coalesce(f_moderate_floor, cb.scale_moderate_floor),
                              coalesce(f_severe_floor, cb.scale_severe_floor)),
                f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities);

-- Per cohort patient, the outcome facts that depend on the analysis settings (metrics.md "Per patient"):
-- eligible (a session and B >= the minimum baseline), the endpoint (the last follow-up without
-- hours_post_dose with 0 < day <= L + window; on a tie of days the highest score: ep_days holds one entry
-- per day), responder (improvement (B - score) / B >= 0.5, computed exactly in integers; B = 0 cannot
-- improve) and remitter (endpoint score <= the remission cut). Only eligible patients have an endpoint here.
-- f_min_baseline and f_remission_cut NULL (instrument 'matched'): each row's own questionnaire's.
CREATE OR REPLACE MACRO cohort_outcomes(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor, f_min_baseline, f_window, f_remission_cut
) AS TABLE
WITH c AS (
    SELECT *, n_sessions > 0 AND baseline IS NOT NULL AND baseline >= coalesce(f_min_baseline, scale_min_baseline) AS eligible
    FROM cohort(f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
                f_mild_floor, f_moderate_floor, f_severe_floor)
),
e AS (
    SELECT
        *,
        CASE
            WHEN NOT eligible OR ep_days IS NULL THEN 0
            -- the usual cases need no lambda: every entry inside the window, or none
            WHEN ep_days[-1] <= last_induction_day + f_window THEN len(ep_days)
            WHEN ep_days[1] > last_induction_day + f_window THEN 0
            ELSE len(list_filter(ep_days, lambda d: d <= last_induction_day + f_window))
        END AS endpoint_index
    FROM c
)
SELECT
    * EXCLUDE (endpoint_index),
    CASE WHEN endpoint_index > 0 THEN ep_scores[endpoint_index] END AS endpoint_score,
    CASE WHEN endpoint_index > 0 THEN ep_days[endpoint_index] END AS endpoint_day,
    endpoint_index > 0 AS has_endpoint,
    endpoint_index > 0 AND baseline > 0 AND 2 * (baseline - ep_scores[endpoint_index]) >= baseline AS responder,
    endpoint_index > 0 AND ep_scores[endpoint_index] <= coalesce(f_remission_cut, scale_remission_cut) AS remitter
FROM e;
