-- Sustained response over responders (observed) with at least one questionnaire without hours_post_dose
-- after L, as counts per route, time and event: days from L to the first of them whose improvement is
-- <= 0.25 (relapse), or to the last of them (censored). The per-patient times are derived at import
-- (cohort_base); responders depend on the settings.
SELECT
    route,
    sustained_time AS time,
    sustained_event AS event,
    count(*) AS patients
FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
WHERE responder AND sustained_time IS NOT NULL
GROUP BY ALL
ORDER BY route, time, event;
