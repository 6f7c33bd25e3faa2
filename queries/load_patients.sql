-- Typed patients from the checked staging table, sorted by patient_id; empty values take their defaults.
INSERT INTO patients
SELECT
    patient_id,
    site,
    start_quarter,
    age_band::age_band_t,
    coalesce(sex, 'U')::sex_t,
    primary_diagnosis::diagnosis_t,
    bool_value(treatment_resistant, false),
    int_value(prior_failed_treatments)::INTEGER,
    bool_value(hypertension, false),
    int_value(rems_enrolled_day)::INTEGER
FROM staging.patients
ORDER BY patient_id
