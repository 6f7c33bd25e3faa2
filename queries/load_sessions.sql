-- Typed sessions from the checked staging table, sorted by patient, day and session_id (zone maps);
-- session_number counts each patient's sessions from 1 in that order.
INSERT INTO sessions
SELECT
    session_id,
    patient_id,
    day_n::INTEGER AS day,
    route::route_t,
    coalesce(drug, 'ketamine')::drug_t,
    setting::setting_t,
    phase::phase_t,
    CAST(dose_mg AS DOUBLE),
    bool_value(integration_therapy, false),
    int_value(sbp_pre)::SMALLINT,
    int_value(sbp_peak)::SMALLINT,
    int_value(dbp_pre)::SMALLINT,
    int_value(dbp_peak)::SMALLINT,
    int_value(heart_rate_peak)::SMALLINT,
    int_value(cadss)::SMALLINT,
    int_value(monitoring_minutes)::SMALLINT,
    bool_value(completed, true),
    -- optional esketamine monitoring columns: empty stays NULL (unknown), booleans have no default
    int_value(sbp_40min)::SMALLINT,
    int_value(dbp_40min)::SMALLINT,
    int_value(sbp_discharge)::SMALLINT,
    int_value(dbp_discharge)::SMALLINT,
    bool_or_null(pulse_oximetry),
    int_value(spo2_min)::SMALLINT,
    bool_or_null(sedation),
    bool_or_null(respiratory_depression),
    bool_or_null(resolved_at_discharge),
    int_value(ready_to_leave_minutes)::SMALLINT,
    int_value(form_submitted_day)::INTEGER,
    bool_or_null(benzodiazepine),
    bool_or_null(sedative_hypnotic),
    bool_or_null(psychostimulant),
    bool_or_null(maoi),
    bool_or_null(opioid),
    row_number() OVER (PARTITION BY patient_id ORDER BY day_n, session_id)::INTEGER
FROM (SELECT *, int_value(day) AS day_n FROM staging.sessions)
ORDER BY patient_id, day_n, session_id
