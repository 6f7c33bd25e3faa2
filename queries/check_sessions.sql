-- Value problems in the staged sessions table (all text): line, column, value, message.
-- Includes the references to patients and the rule that a patient's sessions start on day 0.
-- $max_day and $max_sessions are the plausibility limits (clinic-export-format.md "Plausibility limits").
-- $line0 turns a row's position into its line in the file (2 for CSV after the header, 1 for Parquet rows).
WITH s AS (SELECT rowid AS r, *, int_value(day) AS day_n FROM staging.sessions),
first_line AS (SELECT session_id, min(r) AS r FROM s WHERE session_id IS NOT NULL GROUP BY session_id),
first_day AS (
    -- the earliest valid day of each known patient, at the first line holding it
    SELECT patient_id, min(day_n) AS day_n, arg_min(r, (day_n, r)) AS r, arg_min(day, (day_n, r)) AS day
    FROM s WHERE day_n >= 0 AND patient_id IN (SELECT patient_id FROM staging.patients)
    GROUP BY patient_id
)
SELECT r + $line0 AS line, "column", value, message FROM (
    SELECT r, 'session_id' AS "column", session_id AS value, code_problem(session_id, 64) AS message FROM s
    UNION ALL
    SELECT s.r, 'session_id', s.session_id, 'duplicate session_id (first on line ' || (f.r + $line0) || ')'
    FROM s JOIN first_line f USING (session_id) WHERE s.r > f.r
    UNION ALL
    SELECT r, 'patient_id' AS "column", patient_id AS value, CASE
        -- a known id is valid (its own table checks it); only the others need a closer look
        WHEN patient_id IN (SELECT patient_id FROM staging.patients WHERE patient_id IS NOT NULL) THEN NULL
        ELSE coalesce(code_problem(patient_id, 64), 'unknown patient_id: not in patients') END AS message FROM s
    UNION ALL
    -- a whole number beyond what is stored (2147483647) is past the plausibility limit too: said as such
    SELECT r, 'day', day, CASE
        WHEN day_n > $max_day OR (int_problem(day, 0, 2147483647, true) LIKE 'out of range%'
                                  AND NOT starts_with(ltrim(day), '-'))
            THEN 'implausible: more than ' || $max_day || ' days (about 27 years) after the first session, '
                 || 'the plausibility limit; check the value'
        ELSE int_problem(day, 0, 2147483647, true) END FROM s
    UNION ALL
    -- plausibility limit on sessions per patient, reported once at the line of the first session beyond it
    SELECT r, 'patient_id', patient_id, 'implausible: this patient has ' || n || ' sessions, more than the '
        || 'plausibility limit of ' || $max_sessions || ' per patient; check the export'
    FROM (SELECT r, patient_id, count(*) OVER (PARTITION BY patient_id) AS n,
                 row_number() OVER (PARTITION BY patient_id ORDER BY r) AS k
          FROM s WHERE patient_id IS NOT NULL)
    WHERE n > $max_sessions AND k = $max_sessions + 1
    UNION ALL
    SELECT r, 'day', day, 'this patient''s first session is not on day 0 (days count from the first session)'
    FROM first_day WHERE day_n <> 0
    UNION ALL
    SELECT r, 'route', route, enum_problem(route, $routes, true) FROM s
    UNION ALL
    SELECT r, 'drug', drug, coalesce(enum_problem(drug, $drugs, false), CASE
        WHEN drug = 'esketamine' AND route <> 'IN'
            THEN 'esketamine is only given intranasally: the route must be IN' END) FROM s
    UNION ALL
    SELECT r, 'setting', setting, enum_problem(setting, $settings, true) FROM s
    UNION ALL
    SELECT r, 'phase', phase, enum_problem(phase, $phases, true) FROM s
    UNION ALL
    SELECT r, 'dose_mg', dose_mg, coalesce(float_problem(dose_mg), CASE
        WHEN NOT TRY_CAST(dose_mg AS DOUBLE) > 0 OR TRY_CAST(dose_mg AS DOUBLE) > 1000
            THEN 'out of range: must be more than 0 and at most 1000 mg' END) FROM s
    UNION ALL
    SELECT r, 'integration_therapy', integration_therapy, bool_problem(integration_therapy) FROM s
    UNION ALL
    SELECT r, 'sbp_pre', sbp_pre, int_problem(sbp_pre, 60, 260, false) FROM s
    UNION ALL
    SELECT r, 'sbp_peak', sbp_peak, int_problem(sbp_peak, 60, 260, false) FROM s
    UNION ALL
    SELECT r, 'dbp_pre', dbp_pre, int_problem(dbp_pre, 30, 160, false) FROM s
    UNION ALL
    SELECT r, 'dbp_peak', dbp_peak, int_problem(dbp_peak, 30, 160, false) FROM s
    UNION ALL
    SELECT r, 'heart_rate_peak', heart_rate_peak, int_problem(heart_rate_peak, 30, 220, false) FROM s
    UNION ALL
    SELECT r, 'cadss', cadss, int_problem(cadss, 0, 92, false) FROM s
    UNION ALL
    SELECT r, 'monitoring_minutes', monitoring_minutes, int_problem(monitoring_minutes, 0, 1440, false) FROM s
    UNION ALL
    SELECT r, 'completed', completed, bool_problem(completed) FROM s
    -- optional esketamine (SPRAVATO REMS) monitoring columns (NULL when the export lacks them: no problem)
    UNION ALL
    SELECT r, 'sbp_40min', sbp_40min, int_problem(sbp_40min, 60, 260, false) FROM s
    UNION ALL
    SELECT r, 'dbp_40min', dbp_40min, int_problem(dbp_40min, 30, 160, false) FROM s
    UNION ALL
    SELECT r, 'sbp_discharge', sbp_discharge, int_problem(sbp_discharge, 60, 260, false) FROM s
    UNION ALL
    SELECT r, 'dbp_discharge', dbp_discharge, int_problem(dbp_discharge, 30, 160, false) FROM s
    UNION ALL
    SELECT r, 'pulse_oximetry', pulse_oximetry, bool_problem(pulse_oximetry) FROM s
    UNION ALL
    SELECT r, 'spo2_min', spo2_min, int_problem(spo2_min, 50, 100, false) FROM s
    UNION ALL
    SELECT r, 'sedation', sedation, bool_problem(sedation) FROM s
    UNION ALL
    SELECT r, 'respiratory_depression', respiratory_depression, bool_problem(respiratory_depression) FROM s
    UNION ALL
    SELECT r, 'resolved_at_discharge', resolved_at_discharge, bool_problem(resolved_at_discharge) FROM s
    UNION ALL
    SELECT r, 'ready_to_leave_minutes', ready_to_leave_minutes, int_problem(ready_to_leave_minutes, 0, 1440, false) FROM s
    UNION ALL
    SELECT r, 'form_submitted_day', form_submitted_day, coalesce(
        int_problem(form_submitted_day, 0, 2147483647, false),
        CASE WHEN int_value(form_submitted_day) < day_n
            THEN 'before the session''s day ' || day_n || ': the form is submitted on or after the session''s day' END)
    FROM s
    UNION ALL
    SELECT r, 'benzodiazepine', benzodiazepine, bool_problem(benzodiazepine) FROM s
    UNION ALL
    SELECT r, 'sedative_hypnotic', sedative_hypnotic, bool_problem(sedative_hypnotic) FROM s
    UNION ALL
    SELECT r, 'psychostimulant', psychostimulant, bool_problem(psychostimulant) FROM s
    UNION ALL
    SELECT r, 'maoi', maoi, bool_problem(maoi) FROM s
    UNION ALL
    SELECT r, 'opioid', opioid, bool_problem(opioid) FROM s
)
WHERE message IS NOT NULL
