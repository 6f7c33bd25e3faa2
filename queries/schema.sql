-- The store's types and base tables: the four tables of a clinic export, typed, plus the import history.
-- Run once on a new, empty database file by the importer (dashboard/ingest.py) before loading.
-- Enum values must match dashboard/spec.py (tests/test_schema.py checks that they do).

CREATE TYPE route_t AS ENUM ('IV', 'IM', 'SC', 'IN', 'SL', 'PO');
CREATE TYPE drug_t AS ENUM ('ketamine', 'esketamine');
CREATE TYPE setting_t AS ENUM ('clinic', 'home');
CREATE TYPE phase_t AS ENUM ('induction', 'maintenance');
CREATE TYPE age_band_t AS ENUM ('18-24', '25-34', '35-44', '45-54', '55-64', '65-74', '75+');
CREATE TYPE sex_t AS ENUM ('F', 'M', 'X', 'U');
CREATE TYPE diagnosis_t AS ENUM ('GAD', 'MDD', 'PTSD', 'SAD', 'PANIC', 'OCD', 'OTHER');
CREATE TYPE instrument_t AS ENUM ('GAD7', 'PHQ9', 'PCL5');
CREATE TYPE event_t AS ENUM (
    'dissociation', 'dizziness', 'nausea', 'vomiting', 'sedation', 'vertigo', 'headache',
    'anxiety', 'hypertension', 'tachycardia', 'hallucination', 'disorientation', 'cognitive', 'other'
);
CREATE TYPE severity_t AS ENUM ('mild', 'moderate', 'severe');

CREATE TABLE patients (
    patient_id VARCHAR NOT NULL PRIMARY KEY,
    site VARCHAR NOT NULL,
    start_quarter VARCHAR NOT NULL,          -- 'YYYY-Qn'; sorts as text in time order
    age_band age_band_t NOT NULL,
    sex sex_t NOT NULL,                      -- 'U' when the export left it empty
    primary_diagnosis diagnosis_t NOT NULL,
    treatment_resistant BOOLEAN NOT NULL,    -- false when empty
    prior_failed_treatments INTEGER,
    hypertension BOOLEAN NOT NULL,           -- false when empty
    rems_enrolled_day INTEGER                -- optional (esketamine REMS): the day of REMS enrolment, may be < 0
);

CREATE TABLE sessions (
    session_id VARCHAR NOT NULL,
    patient_id VARCHAR NOT NULL,
    day INTEGER NOT NULL,
    route route_t NOT NULL,
    drug drug_t NOT NULL,                    -- 'ketamine' when empty
    setting setting_t NOT NULL,
    phase phase_t NOT NULL,
    dose_mg DOUBLE,
    integration_therapy BOOLEAN NOT NULL,    -- false when empty
    sbp_pre SMALLINT,
    sbp_peak SMALLINT,
    dbp_pre SMALLINT,
    dbp_peak SMALLINT,
    heart_rate_peak SMALLINT,
    cadss SMALLINT,
    monitoring_minutes SMALLINT,
    completed BOOLEAN NOT NULL,              -- true when empty
    -- optional esketamine (SPRAVATO REMS) monitoring columns; NULL when empty or absent (export_columns says which)
    sbp_40min SMALLINT,
    dbp_40min SMALLINT,
    sbp_discharge SMALLINT,
    dbp_discharge SMALLINT,
    pulse_oximetry BOOLEAN,
    spo2_min SMALLINT,
    sedation BOOLEAN,
    respiratory_depression BOOLEAN,
    resolved_at_discharge BOOLEAN,
    ready_to_leave_minutes SMALLINT,
    form_submitted_day INTEGER,
    benzodiazepine BOOLEAN,
    sedative_hypnotic BOOLEAN,
    psychostimulant BOOLEAN,
    maoi BOOLEAN,
    opioid BOOLEAN,
    session_number INTEGER NOT NULL          -- 1 for the patient's first session (lowest day, then session_id)
);

CREATE TABLE assessments (
    patient_id VARCHAR NOT NULL,
    day INTEGER NOT NULL,
    hours_post_dose DOUBLE,                  -- NULL: taken before dosing (or on a day without a session)
    instrument instrument_t NOT NULL,
    score SMALLINT NOT NULL,
    t DOUBLE NOT NULL                        -- analysis time: day + coalesce(hours_post_dose, 0) / 24
);

CREATE TABLE adverse_events (
    session_id VARCHAR NOT NULL,
    event event_t NOT NULL,
    severity severity_t NOT NULL,            -- 'mild' when empty
    intervention BOOLEAN NOT NULL            -- false when empty
);

-- The format columns the export's files had (table, column): an absent optional column is NULL in every
-- row, which must read as "not in the export", not as "never recorded" (the esketamine monitoring panel).
CREATE TABLE export_columns (
    table_name VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL
);

CREATE TABLE import_history (
    import_id INTEGER NOT NULL,              -- 1, 2, ... carried over from the database this import replaced
    imported_at TIMESTAMP NOT NULL,          -- UTC
    source VARCHAR NOT NULL,                 -- the export folder as given
    source_format VARCHAR NOT NULL,          -- 'csv', 'parquet', 'xlsx' or 'mixed'
    source_sha256 VARCHAR NOT NULL,          -- over the table files' bytes, in table order
    patients BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    assessments BIGINT NOT NULL,
    adverse_events BIGINT NOT NULL,
    program_version VARCHAR NOT NULL,
    seconds DOUBLE NOT NULL                  -- how long the import took
);

-- What the latest import tolerated in reading the files (dashboard/data/dialects.py): a delimiter other than
-- the comma, a byte-order mark, CR line endings, ignored empty lines and columns, an ignored index column.
CREATE TABLE import_notes (
    import_id INTEGER NOT NULL,              -- the import (import_history) that read the file
    table_name VARCHAR NOT NULL,             -- patients, sessions, assessments or adverse_events
    file VARCHAR NOT NULL,                   -- the file's name as found in the export folder
    note VARCHAR NOT NULL                    -- in plain words
);
