-- Time to symptom relief over eligible cohort patients with at least one follow-up questionnaire (post-dose
-- ones included), as counts per route, time and event: the time is the analysis time t of the first
-- follow-up meeting the relief threshold ($relief 'response' or 'mcid'), or of the last follow-up for a
-- patient who never meets it (censored). The per-patient times are derived at import (cohort_base).
-- patients__key: the group's cell key (derive_05_cell_keys.sql); keys add up, so the key of any set of groups
-- (a route's patients, those at risk on a day, the events of a day) is the sum of theirs modulo 2^32.
SELECT
    route,
    CASE $relief WHEN 'response' THEN relief_response_time ELSE relief_mcid_time END AS time,
    CASE $relief WHEN 'response' THEN relief_response_event ELSE relief_mcid_event END AS event,
    count(*) AS patients,
    cell_key(sum(record_key(pk))) AS patients__key
FROM cohort($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
            $treatment_resistant, $settings, $integration, $severities, $instrument,
            $mild_floor, $moderate_floor, $severe_floor)
WHERE n_sessions > 0 AND baseline >= coalesce($min_baseline, scale_min_baseline) AND n_followups > 0
GROUP BY ALL
ORDER BY route, time, event;
