-- Data-quality counts for the cohort, one row: patients and their gaps (no session, no baseline, below the
-- minimum baseline, eligible without a follow-up or an endpoint), sessions and their gaps (clinic sessions
-- without vitals, stopped early) and questionnaires of the instrument (post-dose ones).
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
    coalesce(sum(n_post_dose), 0) AS post_dose_questionnaires
FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut);
