-- Derived per patient x instrument table that the cohort filter reads (queries/derive_30_cohort_macro.sql):
-- every column of patient_summary with, on that instrument, the baseline and follow-up facts of
-- patient_baseline (NULL when the patient has none), and the per-patient times that do not depend on any
-- setting, so metric queries only pick them:
-- - relief_*: time to relief (metrics.md) for each relief threshold: the analysis time t of the first
--   follow-up meeting it ('response': improvement >= 0.5, exact in integers; 'mcid': a drop of at least
--   spec.MCID points: GAD7 4, PHQ9 5, PCL5 10), or of the last follow-up when none does (event false);
-- - sustained_*: days from L to the first questionnaire without hours_post_dose after L whose improvement is
--   <= 0.25 (relapse, exact in integers), or to the last of them (event false); NULL when there is none;
-- - week_numbers / week_scores: the trajectory's one score per week since the first session (the last
--   questionnaire without hours_post_dose that week, the baseline counting at day 0);
-- - scale and scale_*: the row's own questionnaire and its cut-offs (default minimum baseline, remission cut,
--   MCID, severity-band floors, maximum score), so the cohort macros can take each row's own cut-off when the
--   setting binds NULL (instrument 'matched').
-- One row per patient for each instrument, plus one row per patient with instrument 'matched' (metrics.md
-- "Matched instrument"): a copy of the patient's row on the questionnaire of their primary diagnosis (MDD and
-- OTHER: PHQ9; GAD, SAD, PANIC, OCD: GAD7; PTSD: PCL5; spec.DIAGNOSIS_INSTRUMENT), its scale naming that
-- questionnaire. The copy keeps the patient's pk, so its cell keys (derive_05_cell_keys.sql) are the same.
-- Sorted by instrument then patient, so a metric query scans one instrument's rows (zone maps skip the
-- others) and never joins at query time.
CREATE OR REPLACE TABLE cohort_base AS
WITH rules AS (
    -- each questionnaire's cut-offs, as spec.DEFAULT_MIN_BASELINE, REMISSION_CUT, MCID, SEVERITY_BAND_FLOORS
    -- and SCORE_RANGE say (tests/test_matched.py checks they agree; derive queries bind no parameters)
    SELECT * FROM (VALUES
        ('GAD7', 10, 4, 4, 5, 10, 15, 21),
        ('PHQ9', 10, 4, 5, 5, 10, 15, 27),
        ('PCL5', 33, 32, 10, 20, 33, 50, 80)
    ) AS t(scale, scale_min_baseline, scale_remission_cut, scale_mcid, scale_mild_floor, scale_moderate_floor,
           scale_severe_floor, scale_max)
),
pi AS (
    SELECT
        i.instrument,
        ps.*,
        pb.* EXCLUDE (pk, patient_id, instrument),
        r.*
    FROM patient_summary ps
    CROSS JOIN (SELECT unnest(enum_range(NULL::instrument_t))::VARCHAR AS instrument) i
    LEFT JOIN patient_baseline pb ON pb.pk = ps.pk AND pb.instrument = i.instrument
    JOIN rules r ON r.scale = i.instrument
),
followups AS (
    SELECT
        pk,
        instrument,
        baseline,
        scale_mcid AS mcid,
        unnest(fu_t) AS t,
        unnest(fu_scores) AS score
    FROM pi
    WHERE baseline IS NOT NULL AND fu_t IS NOT NULL
),
relief AS (
    SELECT
        pk,
        instrument,
        coalesce(min(t) FILTER (WHERE baseline > 0 AND 2 * (baseline - score) >= baseline), max(t)) AS relief_response_time,
        bool_or(baseline > 0 AND 2 * (baseline - score) >= baseline) AS relief_response_event,
        coalesce(min(t) FILTER (WHERE baseline - score >= mcid), max(t)) AS relief_mcid_time,
        bool_or(baseline - score >= mcid) AS relief_mcid_event
    FROM followups
    GROUP BY pk, instrument
),
later AS (
    SELECT
        pk,
        instrument,
        baseline,
        last_induction_day,
        unnest(ep_days) AS day,
        unnest(ep_scores) AS score
    FROM pi
    WHERE baseline IS NOT NULL AND ep_days IS NOT NULL
),
weekly AS (
    -- one score per week since the first session (week = floor(day / 7)): the last questionnaire without
    -- hours_post_dose that week (ep_days holds each day's highest score); the baseline B counts at day 0
    SELECT pk, instrument, floor(day / 7)::INTEGER AS week, arg_max(score, day) AS score
    FROM (
        SELECT pk, instrument, 0 AS day, baseline AS score FROM pi WHERE baseline IS NOT NULL
        UNION ALL
        SELECT pk, instrument, day, score FROM later
    )
    GROUP BY pk, instrument, week
),
weeks AS (
    SELECT pk, instrument, list(week ORDER BY week) AS week_numbers, list(score ORDER BY week) AS week_scores
    FROM weekly
    GROUP BY pk, instrument
),
sustained AS (
    SELECT
        pk,
        instrument,
        coalesce(min(day - last_induction_day) FILTER (WHERE 4 * (baseline - score) <= baseline),
                 max(day - last_induction_day)) AS sustained_time,
        bool_or(4 * (baseline - score) <= baseline) AS sustained_event
    FROM later
    WHERE day > last_induction_day
    GROUP BY pk, instrument
),
per_instrument AS (
    SELECT
        pi.*,
        r.relief_response_time,
        r.relief_response_event,
        r.relief_mcid_time,
        r.relief_mcid_event,
        su.sustained_time,
        su.sustained_event,
        w.week_numbers,
        w.week_scores
    FROM pi
    LEFT JOIN relief r ON r.pk = pi.pk AND r.instrument = pi.instrument
    LEFT JOIN sustained su ON su.pk = pi.pk AND su.instrument = pi.instrument
    LEFT JOIN weeks w ON w.pk = pi.pk AND w.instrument = pi.instrument

)
SELECT * FROM per_instrument
UNION ALL
SELECT * REPLACE ('matched' AS instrument)
FROM per_instrument
WHERE scale = CASE
    WHEN primary_diagnosis IN ('MDD', 'OTHER') THEN 'PHQ9'
    WHEN primary_diagnosis IN ('GAD', 'SAD', 'PANIC', 'OCD') THEN 'GAD7'
    WHEN primary_diagnosis = 'PTSD' THEN 'PCL5'
END
ORDER BY instrument, pk;
