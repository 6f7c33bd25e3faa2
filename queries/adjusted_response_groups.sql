-- The evaluable patients of the cohort (metrics.md "Case-mix-adjusted response"), grouped by everything the
-- adjusted model uses: route, baseline score, primary diagnosis, treatment resistance and age band, with the
-- number of patients and responders in each group. A logistic regression on these binomial groups has the
-- same estimates and covariance as one on the patients (dashboard/analysis/adjusted.py), so no patient-level
-- rows leave the database. Evaluable: eligible with an endpoint ('observed') or every eligible patient
-- ('itt', where a missing endpoint counts as no response). treatment_resistant and age_band are not among
-- the cohort macro's columns, so they come from patient_summary by the patient key. scale_max: the maximum
-- score of the row's questionnaire (under instrument 'matched' baseline enters as a fraction of it).
SELECT
    o.route,
    o.baseline,
    o.scale_max,
    o.primary_diagnosis::VARCHAR AS diagnosis,
    ps.treatment_resistant,
    ps.age_band::VARCHAR AS age_band,
    count(*) AS patients,
    count(*) FILTER (WHERE o.responder) AS responders
FROM cohort_outcomes($routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter,
                     $treatment_resistant, $settings, $integration, $severities, $instrument,
                     $mild_floor, $moderate_floor, $severe_floor, $min_baseline, $window, $remission_cut) o
JOIN patient_summary ps ON ps.pk = o.pk
WHERE o.eligible AND ($itt OR o.has_endpoint)
GROUP BY ALL
ORDER BY ALL;
