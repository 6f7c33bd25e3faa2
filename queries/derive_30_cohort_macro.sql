-- The cohort filter as a table macro, so each metric query (queries/<what>.sql) filters patients the same
-- way with bound parameters: FROM cohort($routes, $sites, ..., $severe_floor). Every argument may be NULL
-- (no filter); list arguments hold the allowed values. Returns one row per cohort patient with the filter
-- attributes, the per-patient facts of patient_summary and, on the chosen instrument, the baseline B
-- (NULL when there is none) and the follow-up lists of patient_baseline.
-- Integration: the patient had at least one session with integration therapy (docs/choices.md).
-- Severity: the band of B on the chosen instrument; patients without B drop out when the filter is on.
CREATE OR REPLACE MACRO cohort(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor
) AS TABLE
SELECT * FROM (
    SELECT
        ps.patient_id,
        ps.route,
        ps.setting,
        ps.site,
        ps.primary_diagnosis,
        ps.n_sessions,
        ps.last_induction_day,
        ps.n_maintenance,
        ps.first_maintenance_day,
        ps.last_maintenance_day,
        ps.maintenance_gaps,
        ps.n_clinic_sessions,
        ps.n_clinic_without_vitals,
        ps.n_not_completed,
        pb.baseline,
        coalesce(pb.n_followups, 0) AS n_followups,
        coalesce(pb.n_post_dose, 0) AS n_post_dose,
        coalesce(pb.n_questionnaires, 0) AS n_questionnaires,
        pb.fu_t,
        pb.fu_scores,
        pb.ep_days,
        pb.ep_scores,
        CASE
            WHEN pb.baseline IS NULL THEN NULL
            WHEN pb.baseline >= f_severe_floor THEN 'severe'
            WHEN pb.baseline >= f_moderate_floor THEN 'moderate'
            WHEN pb.baseline >= f_mild_floor THEN 'mild'
            ELSE 'minimal'
        END AS severity
    FROM patient_summary ps
    LEFT JOIN patient_baseline pb ON pb.patient_id = ps.patient_id AND pb.instrument = f_instrument
    WHERE (f_routes IS NULL OR list_contains(f_routes, ps.route))
      AND (f_sites IS NULL OR list_contains(f_sites, ps.site))
      AND (f_diagnoses IS NULL OR list_contains(f_diagnoses, ps.primary_diagnosis))
      AND (f_sexes IS NULL OR list_contains(f_sexes, ps.sex))
      AND (f_age_bands IS NULL OR list_contains(f_age_bands, ps.age_band))
      AND (f_from_quarter IS NULL OR ps.start_quarter >= f_from_quarter)
      AND (f_to_quarter IS NULL OR ps.start_quarter <= f_to_quarter)
      AND (f_treatment_resistant IS NULL OR ps.treatment_resistant = f_treatment_resistant)
      AND (f_settings IS NULL OR list_contains(f_settings, ps.setting))
      AND (f_integration IS NULL OR ps.integration = f_integration)
)
WHERE f_severities IS NULL OR list_contains(f_severities, severity);

-- Per cohort patient, the outcome facts that depend on the analysis settings (metrics.md "Per patient"):
-- eligible (a session and B >= the minimum baseline), the endpoint (the last follow-up without
-- hours_post_dose with 0 < day <= L + window; on a tie of days the highest score: ep_days holds one entry
-- per day), responder (improvement (B - score) / B >= 0.5, computed exactly in integers; B = 0 cannot
-- improve) and remitter (endpoint score <= the remission cut). Only eligible patients have an endpoint here.
CREATE OR REPLACE MACRO cohort_outcomes(
    f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
    f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
    f_mild_floor, f_moderate_floor, f_severe_floor, f_min_baseline, f_window, f_remission_cut
) AS TABLE
WITH c AS (
    SELECT *, n_sessions > 0 AND baseline IS NOT NULL AND baseline >= f_min_baseline AS eligible
    FROM cohort(f_routes, f_sites, f_diagnoses, f_sexes, f_age_bands, f_from_quarter, f_to_quarter,
                f_treatment_resistant, f_settings, f_integration, f_severities, f_instrument,
                f_mild_floor, f_moderate_floor, f_severe_floor)
),
e AS (
    SELECT
        *,
        CASE
            WHEN eligible THEN coalesce(len(list_filter(ep_days, lambda d: d <= last_induction_day + f_window)), 0)
            ELSE 0
        END AS endpoint_index
    FROM c
)
SELECT
    * EXCLUDE (endpoint_index),
    CASE WHEN endpoint_index > 0 THEN ep_scores[endpoint_index] END AS endpoint_score,
    CASE WHEN endpoint_index > 0 THEN ep_days[endpoint_index] END AS endpoint_day,
    endpoint_index > 0 AS has_endpoint,
    endpoint_index > 0 AND baseline > 0 AND 2 * (baseline - ep_scores[endpoint_index]) >= baseline AS responder,
    endpoint_index > 0 AND ep_scores[endpoint_index] <= f_remission_cut AS remitter
FROM e;
