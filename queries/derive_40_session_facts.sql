-- Derived per-session table for the side-effect metrics: the session's route, number, setting, phase and
-- vitals with its adverse events folded into bit masks (bit i = the i-th event type in event_t's order, as
-- spec.EVENTS), overall and per severity, so the metrics never join adverse_events at query time; and the
-- patient's filter attributes and baselines (b_gad7, b_phq9, b_pcl5; b_matched on the questionnaire of the
-- patient's diagnosis, with that questionnaire's severity-band floors matched_*_floor, from cohort_base's
-- 'matched' rows), so the cohort filter
-- (cohort_sessions in derive_30_cohort_macro.sql) is a scan rather than a join.
CREATE OR REPLACE TABLE session_facts AS
WITH ev AS (
    SELECT
        session_id,
        bit_or(1::BIGINT << enum_code(event)::BIGINT) AS event_mask,
        coalesce(bit_or(1::BIGINT << enum_code(event)::BIGINT) FILTER (WHERE severity = 'mild'), 0) AS mild_mask,
        coalesce(bit_or(1::BIGINT << enum_code(event)::BIGINT) FILTER (WHERE severity = 'moderate'), 0) AS moderate_mask,
        coalesce(bit_or(1::BIGINT << enum_code(event)::BIGINT) FILTER (WHERE severity = 'severe'), 0) AS severe_mask
    FROM adverse_events
    GROUP BY session_id
),
baselines AS (
    SELECT
        pk,
        max(baseline) FILTER (WHERE instrument = 'GAD7') AS b_gad7,
        max(baseline) FILTER (WHERE instrument = 'PHQ9') AS b_phq9,
        max(baseline) FILTER (WHERE instrument = 'PCL5') AS b_pcl5
    FROM patient_baseline
    GROUP BY pk
),
matched AS (
    SELECT
        pk,
        baseline AS b_matched,
        scale_mild_floor AS matched_mild_floor,
        scale_moderate_floor AS matched_moderate_floor,
        scale_severe_floor AS matched_severe_floor
    FROM cohort_base
    WHERE instrument = 'matched'
)
SELECT
    ps.pk,
    s.patient_id,
    s.session_id,
    s.day,
    s.route::VARCHAR AS route,
    s.setting::VARCHAR AS setting,
    s.phase::VARCHAR AS phase,
    s.session_number,
    s.sbp_pre,
    s.sbp_peak,
    s.dbp_pre,
    s.dbp_peak,
    coalesce(ev.event_mask, 0) AS event_mask,
    coalesce(ev.mild_mask, 0) AS mild_mask,
    coalesce(ev.moderate_mask, 0) AS moderate_mask,
    coalesce(ev.severe_mask, 0) AS severe_mask,
    ps.route AS patient_route,
    ps.setting AS patient_setting,
    ps.site,
    ps.primary_diagnosis,
    ps.sex,
    ps.age_band,
    ps.start_quarter,
    ps.treatment_resistant,
    ps.integration,
    b.b_gad7,
    b.b_phq9,
    b.b_pcl5,
    m.b_matched,
    m.matched_mild_floor,
    m.matched_moderate_floor,
    m.matched_severe_floor
FROM sessions s
LEFT JOIN ev ON ev.session_id = s.session_id
JOIN patient_summary ps ON ps.patient_id = s.patient_id
LEFT JOIN baselines b ON b.pk = ps.pk
LEFT JOIN matched m ON m.pk = ps.pk
ORDER BY ps.pk, s.day, s.session_id;
