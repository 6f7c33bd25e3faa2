-- Typed assessments from the checked staging table, sorted by patient, instrument and time;
-- t is the analysis time in days (a post-dose questionnaire counts its hours after dosing).
INSERT INTO assessments
SELECT
    patient_id,
    day_n::INTEGER,
    hours,
    instrument::instrument_t,
    int_value(score)::SMALLINT,
    day_n + coalesce(hours, 0) / 24
FROM (
    SELECT *, int_value(day) AS day_n, CAST(hours_post_dose AS DOUBLE) AS hours FROM staging.assessments
)
ORDER BY patient_id, instrument::instrument_t, day_n, hours NULLS FIRST, int_value(score)
