-- The number of patients in the cohort (every filter applied): the `ALL` cell of the funnel's first step
-- (outcome_counts.sql's total row), counted without the outcome columns, for the cohort banner every page
-- shows.
SELECT count(*) AS patients, cell_key(sum(record_key(pk))) AS patients__key
FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
            $treatment_resistant, $settings, $integration, $severities, $instrument,
            $mild_floor, $moderate_floor, $severe_floor);
