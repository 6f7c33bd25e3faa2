-- Value problems in the staged patients table (all text): line, column, value, message.
-- $line0 turns a row's position into its line in the file (2 for CSV after the header, 1 for Parquet rows).
WITH p AS (SELECT rowid AS r, * FROM staging.patients),
first_line AS (SELECT patient_id, min(r) AS r FROM p WHERE patient_id IS NOT NULL GROUP BY patient_id)
SELECT r + $line0 AS line, "column", value, message FROM (
    SELECT r, 'patient_id' AS "column", patient_id AS value, code_problem(patient_id, 64) AS message FROM p
    UNION ALL
    SELECT p.r, 'patient_id', p.patient_id, 'duplicate patient_id (first on line ' || (f.r + $line0) || ')'
    FROM p JOIN first_line f USING (patient_id) WHERE p.r > f.r
    UNION ALL
    SELECT r, 'site', site, code_problem(site, 32) FROM p
    UNION ALL
    SELECT r, 'start_quarter', start_quarter, CASE
        WHEN start_quarter IS NULL THEN 'required value is empty'
        WHEN identifier_problem(start_quarter) IS NOT NULL THEN identifier_problem(start_quarter)
        WHEN NOT regexp_matches(start_quarter, '^20[0-9]{2}-Q[1-4]$')
            THEN 'not a quarter YYYY-Qn from 2000-Q1 to 2099-Q4 (e.g. 2025-Q3)'
    END FROM p
    UNION ALL
    SELECT r, 'age_band', age_band, enum_problem(age_band, $age_bands, true) FROM p
    UNION ALL
    SELECT r, 'sex', sex, enum_problem(sex, $sexes, false) FROM p
    UNION ALL
    SELECT r, 'primary_diagnosis', primary_diagnosis, enum_problem(primary_diagnosis, $diagnoses, true) FROM p
    UNION ALL
    SELECT r, 'treatment_resistant', treatment_resistant, bool_problem(treatment_resistant) FROM p
    UNION ALL
    SELECT r, 'prior_failed_treatments', prior_failed_treatments, int_problem(prior_failed_treatments, 0, 2147483647, false) FROM p
    UNION ALL
    SELECT r, 'hypertension', hypertension, bool_problem(hypertension) FROM p
    UNION ALL
    -- optional (esketamine REMS): may be negative, enrolment comes before the first session
    SELECT r, 'rems_enrolled_day', rems_enrolled_day, int_problem(rems_enrolled_day, -100000, 100000, false) FROM p
)
WHERE message IS NOT NULL
