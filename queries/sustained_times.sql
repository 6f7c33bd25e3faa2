-- Sustained response: one row per responder (observed) with at least one questionnaire without
-- hours_post_dose after L: days from L to the first whose improvement is <= 0.25 (relapse, exact in
-- integers; ep_days holds each day's highest score, so a day with any relapsing questionnaire relapses),
-- or to the last of them (censored).
WITH r AS (
    SELECT
        patient_id,
        route,
        baseline,
        last_induction_day,
        unnest(ep_days) AS day,
        unnest(ep_scores) AS score
    FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                         $treatment_resistant, $settings, $integration, $severities, $instrument,
                         $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut)
    WHERE responder
)
SELECT
    route,
    coalesce(min(day - last_induction_day) FILTER (WHERE 4 * (baseline - score) <= baseline),
             max(day - last_induction_day)) AS time,
    bool_or(4 * (baseline - score) <= baseline) AS event
FROM r
WHERE day > last_induction_day
GROUP BY patient_id, route;
