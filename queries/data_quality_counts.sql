-- Data-quality counts for the cohort, one row: patients and their gaps (no session, no baseline, below the
-- minimum baseline, eligible without a follow-up or an endpoint), sessions and their gaps (clinic sessions
-- without vitals, stopped early) and questionnaires of the instrument (post-dose ones); each count with its
-- cell key (derive_05_cell_keys.sql: session and questionnaire counts weigh a patient's key by their number).
WITH c AS (
    SELECT *, record_key(pk) AS rk
    FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
)
SELECT
    count(*) AS patients,
    count(*) FILTER (WHERE n_sessions = 0) AS never_dosed,
    count(*) FILTER (WHERE n_sessions > 0) AS dosed,
    count(*) FILTER (WHERE n_sessions > 0 AND baseline IS NULL) AS missing_baseline,
    count(*) FILTER (WHERE n_sessions > 0 AND baseline < coalesce($min_baseline, scale_min_baseline)) AS below_min_baseline,
    count(*) FILTER (WHERE eligible) AS eligible,
    count(*) FILTER (WHERE eligible AND n_followups = 0) AS eligible_without_followup,
    count(*) FILTER (WHERE eligible AND NOT has_endpoint) AS eligible_without_endpoint,
    coalesce(sum(n_sessions), 0) AS sessions,
    coalesce(sum(n_clinic_sessions), 0) AS clinic_sessions,
    coalesce(sum(n_clinic_without_vitals), 0) AS clinic_sessions_without_vitals,
    coalesce(sum(n_not_completed), 0) AS sessions_not_completed,
    coalesce(sum(n_questionnaires), 0) AS questionnaires,
    coalesce(sum(n_post_dose), 0) AS post_dose_questionnaires,
    cell_key(sum(rk)) AS patients__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions = 0)) AS never_dosed__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0)) AS dosed__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0 AND baseline IS NULL)) AS missing_baseline__key,
    cell_key(sum(rk) FILTER (WHERE n_sessions > 0 AND baseline < coalesce($min_baseline, scale_min_baseline))) AS below_min_baseline__key,
    cell_key(sum(rk) FILTER (WHERE eligible)) AS eligible__key,
    cell_key(sum(rk) FILTER (WHERE eligible AND n_followups = 0)) AS eligible_without_followup__key,
    cell_key(sum(rk) FILTER (WHERE eligible AND NOT has_endpoint)) AS eligible_without_endpoint__key,
    cell_key(sum(rk * n_sessions)) AS sessions__key,
    cell_key(sum(rk * n_clinic_sessions)) AS clinic_sessions__key,
    cell_key(sum(rk * n_clinic_without_vitals)) AS clinic_sessions_without_vitals__key,
    cell_key(sum(rk * n_not_completed)) AS sessions_not_completed__key,
    cell_key(sum(rk * n_questionnaires)) AS questionnaires__key,
    cell_key(sum(rk * n_post_dose)) AS post_dose_questionnaires__key
FROM c;
