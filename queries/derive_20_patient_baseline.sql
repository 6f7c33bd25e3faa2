-- Derived per patient x instrument table, so metric queries never scan the assessments table:
-- baseline B (metrics.md: the last questionnaire with day <= 0 and no hours_post_dose; on a tie of days the
-- highest score); every follow-up (day > 0 or hours_post_dose set) in time order as two parallel lists
-- fu_t / fu_scores (time to relief); and the follow-ups without hours_post_dose, one per day (the highest
-- score that day), as ep_days / ep_scores (endpoints, sustained response, trajectory). The endpoint depends
-- on the window setting, so it is picked from ep_days at query time.
CREATE OR REPLACE TABLE patient_baseline AS
WITH per AS (
    SELECT
        patient_id,
        instrument,
        arg_max(score, struct_pack(d := day, s := score))
            FILTER (WHERE day <= 0 AND hours_post_dose IS NULL) AS baseline,
        count(*) FILTER (WHERE day > 0 OR hours_post_dose IS NOT NULL) AS n_followups,
        count(*) FILTER (WHERE hours_post_dose IS NOT NULL) AS n_post_dose,
        count(*) AS n_questionnaires,
        list(t ORDER BY t, score) FILTER (WHERE day > 0 OR hours_post_dose IS NOT NULL) AS fu_t,
        list(score ORDER BY t, score) FILTER (WHERE day > 0 OR hours_post_dose IS NOT NULL) AS fu_scores
    FROM assessments
    GROUP BY patient_id, instrument
),
daily AS (
    SELECT patient_id, instrument, day, max(score) AS score
    FROM assessments
    WHERE day > 0 AND hours_post_dose IS NULL
    GROUP BY patient_id, instrument, day
),
ep AS (
    SELECT patient_id, instrument, list(day ORDER BY day) AS ep_days, list(score ORDER BY day) AS ep_scores
    FROM daily
    GROUP BY patient_id, instrument
)
SELECT
    ps.pk,
    per.patient_id,
    per.instrument::VARCHAR AS instrument,
    per.baseline,
    per.n_followups,
    per.n_post_dose,
    per.n_questionnaires,
    per.fu_t,
    per.fu_scores,
    ep.ep_days,
    ep.ep_scores
FROM per
LEFT JOIN ep ON ep.patient_id = per.patient_id AND ep.instrument = per.instrument
JOIN patient_summary ps ON ps.patient_id = per.patient_id
ORDER BY per.instrument, ps.pk;
