-- Trajectory per patient route (and total rows, route NULL) and week since the first session
-- (week = floor(day / 7); the baseline B counts at week 0): over eligible cohort patients, one score per
-- patient and week (the last questionnaire without hours_post_dose in that week, derived at import as
-- cohort_base.week_numbers / week_scores), its count, sum, sum of squares and how many show an
-- improvement >= 0.5, the two counts with their cell keys (derive_05_cell_keys.sql); and, for patients with
-- B > 0, the improvement from baseline in percent, 100 * (B - score) / B: its count, sum and sum of squares
-- (the trajectory under instrument 'matched', where raw scores of different questionnaires cannot be
-- averaged: metrics.md "Matched instrument").
WITH w AS (
    SELECT pk, record_key(pk) AS rk, route, baseline, unnest(week_numbers) AS week, unnest(week_scores) AS score
    FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                $treatment_resistant, $settings, $integration, $severities, $instrument,
                $mild_floor, $moderate_floor, $severe_floor)
    WHERE n_sessions > 0 AND baseline >= coalesce($min_baseline, scale_min_baseline)
),
-- Per route, week and baseline first, in exact integers; the improvement sums are then
-- sum over baselines B of 100 * (sum of B - score) / B (and 10000 * (sum of (B - score)^2) / B^2): the same
-- numbers, a handful of terms per row instead of one per patient, added by fsum in a fixed order so the same
-- cohort gives the same last digit every time (an ordered fsum over every patient cost ~5x this whole query).
g AS (
    SELECT
        route,
        week,
        baseline,
        count(*) AS patients,
        sum(score) AS score_sum,
        sum(score::BIGINT * score) AS score_sum_squares,
        count(*) FILTER (WHERE baseline > 0 AND 2 * (baseline - score) >= baseline) AS responders,
        sum(baseline - score) AS drop_sum,
        sum((baseline - score)::BIGINT * (baseline - score)) AS drop_sum_squares,
        sum(rk) AS rk_sum,
        sum(rk) FILTER (WHERE baseline > 0 AND 2 * (baseline - score) >= baseline) AS responders_rk_sum
    FROM w
    GROUP BY route, week, baseline
)
SELECT
    route,
    grouping(route) = 1 AS is_total,
    week,
    sum(patients)::BIGINT AS patients,
    sum(score_sum)::BIGINT AS score_sum,
    sum(score_sum_squares)::BIGINT AS score_sum_squares,
    sum(responders)::BIGINT AS responders,
    coalesce(sum(patients) FILTER (WHERE baseline > 0), 0)::BIGINT AS improved_patients,
    fsum(100.0 * drop_sum / baseline ORDER BY baseline, route) FILTER (WHERE baseline > 0) AS improvement_sum,
    fsum(10000.0 * drop_sum_squares / (baseline::BIGINT * baseline) ORDER BY baseline, route)
        FILTER (WHERE baseline > 0) AS improvement_sum_squares,
    cell_key(sum(rk_sum)) AS patients__key,
    cell_key(sum(responders_rk_sum)) AS responders__key
FROM g
GROUP BY GROUPING SETS ((route, week), (week))
ORDER BY is_total, route, week;
