-- Value problems in the staged assessments table (all text): line, column, value, message.
-- Includes the reference to patients and the rule that a post-dose questionnaire falls on a session day.
-- $max_day and $min_assessment_day are the plausibility limits (clinic-export-format.md).
-- $line0 turns a row's position into its line in the file (2 for CSV after the header, 1 for Parquet rows).
-- $instruments and $score_max are parallel lists (each instrument's top score; every range starts at 0).
WITH a AS (SELECT rowid AS r, * FROM staging.assessments),
session_days AS (
    SELECT DISTINCT patient_id, int_value(day) AS day_n FROM staging.sessions WHERE int_value(day) IS NOT NULL
)
SELECT r + $line0 AS line, "column", value, message FROM (
    SELECT r, 'patient_id' AS "column", patient_id AS value, CASE
        -- a known id is valid (its own table checks it); only the others need a closer look
        WHEN patient_id IN (SELECT patient_id FROM staging.patients WHERE patient_id IS NOT NULL) THEN NULL
        ELSE coalesce(code_problem(patient_id, 64), 'unknown patient_id: not in patients') END AS message FROM a
    UNION ALL
    -- a whole number beyond what is stored (±2147483647) is past a plausibility limit too: said as such
    SELECT r, 'day', day, CASE
        WHEN int_value(day) > $max_day OR (int_problem(day, -2147483648, 2147483647, true) LIKE 'out of range%'
                                           AND NOT starts_with(ltrim(day), '-'))
            THEN 'implausible: more than ' || $max_day || ' days (about 27 years) after the first session, '
                 || 'the plausibility limit; check the value'
        WHEN int_value(day) < $min_assessment_day OR (int_problem(day, -2147483648, 2147483647, true)
                                                      LIKE 'out of range%' AND starts_with(ltrim(day), '-'))
            THEN 'implausible: more than ' || (-$min_assessment_day) || ' days before the first session, '
                 || 'the plausibility limit for a screening or baseline questionnaire; check the value'
        ELSE int_problem(day, -2147483648, 2147483647, true) END FROM a
    UNION ALL
    SELECT r, 'hours_post_dose', hours_post_dose, coalesce(float_problem(hours_post_dose), CASE
        WHEN NOT TRY_CAST(hours_post_dose AS DOUBLE) > 0 OR TRY_CAST(hours_post_dose AS DOUBLE) >= 24
            THEN 'out of range: hours after dosing must be more than 0 and less than 24' END) FROM a
    UNION ALL
    SELECT a.r, 'hours_post_dose', a.hours_post_dose,
        'a post-dose questionnaire on day ' || a.day || ', but this patient has no session on that day'
    FROM a ANTI JOIN session_days d ON d.patient_id = a.patient_id AND d.day_n = int_value(a.day)
    WHERE a.hours_post_dose IS NOT NULL AND int_value(a.day) IS NOT NULL
      AND a.patient_id IN (SELECT patient_id FROM staging.patients)
    UNION ALL
    SELECT r, 'instrument', instrument, enum_problem(instrument, $instruments, true) FROM a
    UNION ALL
    SELECT r, 'score', score, CASE WHEN list_contains($instruments, instrument) THEN
        int_problem(score, 0, $score_max[list_position($instruments, instrument)], true)
        ELSE int_problem(score, 0, 2147483647, true) END FROM a
)
WHERE message IS NOT NULL
