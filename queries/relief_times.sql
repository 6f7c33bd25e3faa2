-- Time to symptom relief, one row per eligible cohort patient with at least one follow-up questionnaire
-- (post-dose ones included): the analysis time t of the first follow-up meeting the relief threshold
-- ($relief 'response': improvement >= 0.5, exact in integers; 'mcid': a drop of at least $mcid points),
-- or, for a patient who never meets it, the time of the last follow-up (censored).
WITH c AS (
    SELECT
        patient_id,
        route,
        fu_t,
        list_position(
            list_transform(fu_scores, lambda x: CASE $relief
                WHEN 'response' THEN baseline > 0 AND 2 * (baseline - x) >= baseline
                ELSE baseline - x >= $mcid
            END),
            true
        ) AS first_relief
    FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                $treatment_resistant, $settings, $integration, $severities, $instrument,
                $mild_floor, $moderate_floor, $severe_floor)
    WHERE n_sessions > 0 AND baseline >= $min_baseline AND n_followups > 0
)
SELECT
    route,
    coalesce(fu_t[first_relief], fu_t[-1]) AS time,
    first_relief IS NOT NULL AS event
FROM c;
