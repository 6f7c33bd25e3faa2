"""Deterministic, realistic sample data: writes a clinic export (docs/clinic-export-format.md) of N patients.

The sample looks like a multi-site ketamine practice calibrated to docs/clinical-figures.md: six sites with
different route mixes, IV/IM/SC clinic routes, intranasal esketamine (and some racemic IN ketamine),
sublingual and oral dosing at home, questionnaires before and after dosing, side effects, vitals, dropout,
maintenance and relapse. Every tunable number lives in ``PARAMETERS`` below with its source.

Generation is vectorised with numpy over blocks of ``BLOCK_PATIENTS`` patients. Each block draws from its
own random stream, derived from the seed and the block's index only, so the data do not depend on how many
blocks are buffered before a write: blocks are gathered into chunks of about ``chunk_patients`` patients and
each chunk is appended to the CSV files (or written as one Parquet row group). Memory is bounded by the
chunk, whatever the number of patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dashboard.data import spec

BLOCK_PATIENTS = 1000  # the unit of randomness: changing it changes the data
DEFAULT_CHUNK_PATIENTS = 25_000  # the unit of writing: changing it never changes the values
FORMATS = ("csv", "parquet")

# Route indices follow spec.ROUTES: IV, IM, SC, IN, SL, PO.
IV, IM, SC, IN, SL, PO = range(6)
GAD7, PHQ9, PCL5 = range(3)
REM, RESP, NON = range(3)  # outcome classes at the end of induction: remitter, responder (not remitted), neither


def _r(**by_route: object) -> tuple:
    """A per-route tuple in spec.ROUTES order, from keyword arguments named by route."""
    return tuple(by_route[r] for r in spec.ROUTES)


@dataclass(frozen=True)
class Parameters:
    """Every number the generator uses. "figures" = docs/clinical-figures.md; "assumption" = project choice."""

    # --- sites and patients -------------------------------------------------------------------------------
    # assumption: six sites of different sizes, each with its own route mix and opening quarter.
    sites: tuple = ("S1", "S2", "S3", "S4", "S5", "S6")
    site_weights: tuple = (0.22, 0.18, 0.20, 0.14, 0.16, 0.10)
    # assumption: route mix per site, columns IV, IM, SC, IN, SL, PO (S1 infusion clinic, S2 esketamine
    # clinic, S3 home telehealth, S4 injection clinic, S5 mixed practice, S6 subcutaneous and oral).
    site_routes: tuple = (
        (0.70, 0.10, 0.05, 0.15, 0.00, 0.00),
        (0.20, 0.00, 0.00, 0.80, 0.00, 0.00),
        (0.00, 0.00, 0.00, 0.00, 0.75, 0.25),
        (0.25, 0.60, 0.15, 0.00, 0.00, 0.00),
        (0.30, 0.15, 0.10, 0.25, 0.20, 0.00),
        (0.25, 0.00, 0.45, 0.00, 0.00, 0.30),
    )
    # assumption: quarter index (0 = 2023-Q1) in which each site opened; volumes grow 6 % a quarter.
    first_quarter: tuple = (2023, 1)
    quarters: int = 15  # 2023-Q1 … 2026-Q3
    site_opening: tuple = (0, 0, 2, 4, 5, 8)
    quarter_growth: float = 1.06
    # assumption: the extract is taken at the end of the last quarter; later follow-up is not yet recorded.
    days_per_quarter: float = 91.3125
    age_weights: tuple = (0.08, 0.22, 0.24, 0.20, 0.15, 0.08, 0.03)  # assumption; spec.AGE_BANDS order
    sex_weights: tuple = (0.56, 0.39, 0.01, 0.04)  # assumption; F, M, X, U (unknown)
    # assumption: diagnosis mix of a ketamine practice; spec.DIAGNOSES order GAD MDD PTSD SAD PANIC OCD OTHER
    diagnosis_weights: tuple = (0.20, 0.45, 0.15, 0.05, 0.05, 0.04, 0.06)
    treatment_resistant: float = 0.60  # assumption (esketamine requires it: see in_trd)
    in_trd: float = 0.95  # Spravato label: esketamine is indicated for treatment-resistant depression
    hypertension: tuple = (0.04, 0.07, 0.12, 0.20, 0.30, 0.40, 0.45)  # assumption; by age band
    weight_kg: tuple = (80.0, 17.0, 45.0, 150.0)  # assumption: mean, SD, min, max; for mg/kg doses
    never_dosed: float = 0.03  # assumption: screened, baseline taken, never dosed

    # --- schedules and doses (figures: "Schedules and doses") -----------------------------------------------
    # IV 6 infusions over 2-3 weeks (community 4-8 over 7-28 days); IN esketamine 8 sessions (twice weekly
    # for 4 weeks); IM about 4-6; SL 4 weekly; SC and PO are assumptions (SC 4-6 like IM, PO twice weekly).
    induction_sessions: tuple = _r(
        IV=((4, 5, 6, 7, 8), (0.10, 0.10, 0.55, 0.10, 0.15)),
        IM=((4, 5, 6), (0.35, 0.35, 0.30)),
        SC=((4, 5, 6), (0.30, 0.30, 0.40)),
        IN=((8,), (1.0,)),
        SL=((4,), (1.0,)),
        PO=((8,), (1.0,)),
    )
    # days between induction sessions; "twice weekly" is 3 then 4 days; a small share is moved by a day.
    induction_gaps: tuple = _r(
        IV=((2, 3, 4, 5), (0.30, 0.35, 0.25, 0.10)),
        IM=((3, 4, 7), (0.30, 0.30, 0.40)),
        SC=((3, 4, 7), (0.20, 0.30, 0.50)),
        IN="twice-weekly",
        SL=((7,), (1.0,)),
        PO="twice-weekly",
    )
    gap_jitter: float = 0.10  # assumption: share of sessions moved one day earlier or later
    # doses: IV 0.5 mg/kg (0.5-0.75); IM 0.25-1 mg/kg; IN esketamine 56 or 84 mg; SL 300-450 mg (figures);
    # SC 0.5-1 mg/kg (assumption, after Glue 2017); racemic IN 50-100 mg and PO 100-250 mg (assumptions).
    iv_mg_per_kg: tuple = ((0.5, 0.6, 0.75), (0.70, 0.10, 0.20))
    im_mg_per_kg: tuple = ((0.25, 0.5, 0.75, 1.0), (0.15, 0.40, 0.30, 0.15))
    sc_mg_per_kg: tuple = ((0.5, 0.75, 1.0), (0.40, 0.40, 0.20))
    esketamine_share: float = 0.90  # assumption: most IN is esketamine, some racemic ketamine spray
    esketamine_84mg: float = 0.60  # assumption: share titrated from 56 to 84 mg after the first session
    in_racemic_mg: tuple = ((50.0, 75.0, 100.0), (0.3, 0.4, 0.3))
    sl_mg: tuple = ((300.0, 375.0, 450.0), (0.35, 0.35, 0.30))
    po_mg: tuple = ((100.0, 150.0, 200.0, 250.0), (0.25, 0.35, 0.25, 0.15))
    # figures: "Induction dropout: IV 11-15 %, IN 11 %, SL at home higher"; IM, SC, PO assumptions.
    dropout: tuple = _r(IV=0.13, IM=0.13, SC=0.13, IN=0.11, SL=0.20, PO=0.22)
    not_completed: tuple = (0.025, 0.01)  # assumption: sessions stopped early, clinic and home
    integration: tuple = (0.40, 0.25, 0.10, 0.35, 0.50, 0.30)  # assumption: per site, patients in therapy
    integration_sessions: float = 0.70  # assumption: share of their sessions with integration attached

    # --- efficacy at the end of induction (figures: "Efficacy") ---------------------------------------------
    # (response, remission) targets: IV McInnes 2022 PHQ-9 53.6 / 28.9; IN enTRD 57.4 / 27.2; SL Hull 2022
    # 62.8 / 32.6 (GAD-7 62.9 / 31.3); IM BMC Psychiatry 2022 median -50 % (response ~50 %, remission an
    # assumption); SC and PO assumptions (SC like IM; PO lower, as oral bioavailability is low).
    outcome_targets: tuple = _r(
        IV=(0.536, 0.289), IM=(0.50, 0.25), SC=(0.50, 0.24), IN=(0.574, 0.272), SL=(0.628, 0.32), PO=(0.45, 0.20)
    )
    # Calibration (measured on 50,000 patients, seed 1): the targets are observed real-world rates, which
    # include dropouts and patients whose endpoint falls back to an in-induction questionnaire (both fare
    # worse). The class shares of the patient model are the targets times these (response, remission)
    # factors, so that the observed rates land on the targets. Home routes lose more endpoints.
    outcome_calibration: tuple = _r(
        IV=(1.089, 1.144), IM=(1.071, 1.149), SC=(1.092, 1.134), IN=(1.102, 1.149), SL=(1.168, 1.248),
        PO=(1.165, 1.186),
    )
    instrument_redraw: float = 0.15  # assumption: share of instruments whose class is drawn afresh
    late_improvers: float = 0.105  # Hull 2022: 9.3 % improve late of 88.6 % improving
    # assumption: shape of the path to the end score over induction (score share ~ (day / end) ** onset);
    # below 1 most of the gain comes early (IV, IM, SC), about 1 for esketamine, whose response builds over
    # the 4 weeks (Turkoz 2021: 17.3 % by day 2, 58.7 % by day 28); late improvers use late_onset.
    onset: tuple = _r(IV=0.5, IM=0.5, SC=0.5, IN=1.2, SL=0.5, PO=0.5)
    late_onset: float = 2.5
    # baselines: GAD-7 12.8 (SD 5.7), ~15 in anxiety-primary; PHQ-9 16-18.5 (figures "Baselines");
    # PCL-5 around 50 in PTSD (assumption, above the entry cut-off 33).
    baseline_gad7: tuple = ((12.8, 5.7), (15.0, 4.5))  # other, anxiety-primary (GAD SAD PANIC PTSD OCD)
    baseline_phq9: tuple = ((17.5, 4.6), (14.0, 5.5))  # MDD, other
    baseline_pcl5: tuple = ((50.0, 12.0), (30.0, 14.0))  # PTSD, other
    phq9_non_mdd: float = 0.80  # assumption: PHQ-9 for every MDD patient and most others
    pcl5_non_ptsd: float = 0.08  # assumption: PCL-5 for every PTSD patient and a few others
    screening: float = 0.20  # assumption: a screening questionnaire 7-28 days before the baseline
    duplicate_baseline: float = 0.04  # assumption: two questionnaires on the baseline day
    baseline_on_day0: float = 0.40  # assumption: baseline taken before the first dose on day 0
    missing_baseline: float = 0.02  # assumption: an instrument's baseline (and screening) never recorded
    # questionnaires at sessions: before dosing (clinic, home) and after dosing at clinic sessions
    pre_dose: tuple = (0.75, 0.50)
    # post-dose on day 0 (IV ~45 % respond at 24 h, Cochrane 2021; IN 17.3 % by day 2, Turkoz 2021)
    post_dose_day0: tuple = _r(IV=0.85, IM=0.70, SC=0.70, IN=0.55, SL=0.0, PO=0.0)
    post_dose_later: float = 0.25  # assumption: later clinic induction sessions
    post_dose_hours: tuple = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)  # assumption
    # acute relief within hours of a dose, share of patients (SC "anxiolysis within 1 hour", Glue 2017);
    # multiplied by class (remitters more, non-responders less), see acute_by_class.
    acute: tuple = _r(IV=0.55, IM=0.50, SC=0.50, IN=0.30, SL=0.0, PO=0.0)
    acute_by_class: tuple = (1.40, 1.15, 0.60)
    # end-of-induction questionnaire: taken (clinic, home), days after L (within the window, later)
    end_of_induction: tuple = (0.90, 0.75)
    end_of_induction_late: float = 0.12  # assumption: 8-14 days after L, outside the 7-day window
    end_of_induction_dropout: float = 0.20  # assumption: dropouts rarely return a questionnaire

    # --- maintenance and relapse (figures: "Maintenance and relapse") ---------------------------------------
    # IV: 48.5 % of completers go on to maintenance (Juby 2024); more among responders (assumption: split).
    # Esketamine is usually continued (label); others assumptions.
    maintenance: tuple = _r(
        IV=(0.63, 0.34), IM=(0.50, 0.30), SC=(0.50, 0.30), IN=(0.75, 0.45), SL=(0.60, 0.35), PO=(0.55, 0.30)
    )  # (responders, others) among completers
    # intervals: IV every 2-6 weeks (CAN-BIND), esketamine weekly or every 2 weeks (label), others assumption
    maintenance_interval: tuple = _r(
        IV=(14, 21, 28, 35, 42), IM=(14, 21, 28), SC=(14, 21, 28), IN=(7, 14), SL=(7, 14), PO=(7,)
    )
    maintenance_first_gap: tuple = _r(IV=(14, 42), IM=(10, 28), SC=(10, 28), IN=(7, 7), SL=(7, 14), PO=(7, 10))
    maintenance_continue: float = 0.86  # assumption: chance of another maintenance session (mean ~7)
    maintenance_max: int = 40
    route_switch: float = 0.07  # assumption: maintenance patients who change route
    # relapse among responders, days after L, Weibull: ~80 % still responding at 4 weeks, ~60 % at 8 weeks
    # without maintenance (McInnes 2022); maintenance hazard ratio 0.49 (SUSTAIN-1, Daly 2019).
    relapse_weibull: tuple = (1.196, 98.0)  # shape, scale (S(28) = 0.80, S(56) = 0.60)
    maintenance_hazard_ratio: float = 0.49
    # follow-up questionnaires of patients without maintenance: (day after L, jitter, clinic share, home share)
    follow_ups: tuple = ((28, 3, 0.50, 0.35), (56, 5, 0.40, 0.25), (90, 7, 0.25, 0.15))

    # --- side effects (figures: "Side effects"): share of patients over induction ---------------------------
    # IV Rodrigues 2020; IN Spravato label; IM "similar to IV" (Cedar 2022): 0.9 x IV; SC assumption between
    # IM and IN; SL/PO "< 5 % report any" (Hull 2022). Events in spec.EVENTS order.
    incidence: dict = field(default_factory=lambda: {
        "IV": (0.36, 0.45, 0.13, 0.03, 0.56, 0.05, 0.10, 0.06, 0.05, 0.03, 0.02, 0.04, 0.02, 0.02),
        "IM": (0.32, 0.40, 0.12, 0.03, 0.50, 0.05, 0.09, 0.05, 0.04, 0.03, 0.02, 0.04, 0.02, 0.02),
        "SC": (0.25, 0.30, 0.10, 0.02, 0.40, 0.05, 0.08, 0.04, 0.03, 0.02, 0.01, 0.03, 0.01, 0.02),
        "IN": (0.41, 0.29, 0.28, 0.09, 0.23, 0.23, 0.20, 0.05, 0.10, 0.02, 0.02, 0.03, 0.02, 0.02),
        "SL": (0.004, 0.008, 0.012, 0.002, 0.008, 0.002, 0.006, 0.002, 0.0, 0.0, 0.0, 0.0, 0.0, 0.002),
        "PO": (0.004, 0.008, 0.012, 0.002, 0.008, 0.002, 0.006, 0.002, 0.0, 0.0, 0.0, 0.0, 0.0, 0.002),
    })
    # Per-session chance in a susceptible patient: first session, decay per session. Dissociation and
    # sedation fade over repeated sessions (Glue 2018); the others less (assumption).
    event_first: tuple = (0.75, 0.55)  # fading events, others
    event_decay: tuple = (0.80, 0.93)
    severity: tuple = (0.78, 0.19, 0.03)  # assumption: mild, moderate, severe
    intervention: tuple = (0.02, 0.20, 0.70)  # assumption: by severity
    # CADSS about 20 at week 1 falling to 9 by week 14 (Glue 2018): 9 + 11 * exp(-day / 28), SD 6;
    # a session with a dissociation event +8; scale per route (assumption); share of sessions measured.
    cadss_scale: tuple = _r(IV=1.0, IM=0.9, SC=0.7, IN=1.0, SL=0.0, PO=0.0)
    cadss_measured: tuple = _r(IV=0.70, IM=0.60, SC=0.50, IN=0.80, SL=0.0, PO=0.0)
    # vitals: pre-dose SBP/DBP (assumption) + rise to the peak; IV peak +16/+11 mmHg (Yale 2024); IN about
    # +9/+6 (assumption from the label's transient rise); IM near IV, SC between (assumptions).
    sbp_pre: tuple = (127.0, 13.0, 10.0)  # mean, SD, added with a hypertension history
    dbp_pre: tuple = (79.0, 8.0, 6.0)
    sbp_rise: tuple = _r(IV=(16, 8), IM=(14, 8), SC=(10, 7), IN=(9, 7), SL=(4, 4), PO=(4, 4))
    dbp_rise: tuple = _r(IV=(11, 6), IM=(10, 6), SC=(7, 5), IN=(6, 5), SL=(3, 3), PO=(3, 3))
    # severe (>= 180 / >= 110): about 1 % of IV sessions (Yale 2024); IN SBP >= 180 in 3 % and DBP >= 110
    # in 4 % of patients (label) -> about 0.6 % of IN sessions; others assumptions. Doubled with hypertension.
    bp_severe: tuple = _r(IV=0.010, IM=0.008, SC=0.005, IN=0.006, SL=0.001, PO=0.001)
    heart_rate: tuple = _r(IV=(92, 12), IM=(90, 12), SC=(86, 11), IN=(88, 12), SL=(80, 10), PO=(80, 10))
    vitals_measured: tuple = (0.95, 0.15)  # clinic, home (a home cuff now and then)
    monitoring_minutes: tuple = _r(IV=(60, 120), IM=(60, 90), SC=(45, 90), IN=(120, 150), SL=None, PO=None)

    # --- esketamine (SPRAVATO REMS) monitoring columns (clinic esketamine sessions only) ---------------------
    # Drawn from their own random stream (spawn key 18 below the block's), so adding them left every other
    # column of the sample exactly as it was. Per site (S1..S6), so the panel shows sites that fall short.
    # assumption: share of sessions stopped short of the two hours the REMS asks (sites 3 and 5 worst);
    # a short session lasts 90-115 minutes.
    rems_short: tuple = (0.02, 0.01, 0.05, 0.02, 0.08, 0.02)
    rems_short_minutes: tuple = (90, 115)
    # "Ready to leave": blood pressure peaks about 40 minutes after dosing and sedation and dissociation
    # resolve within about 2 hours in most patients (Spravato label, sections 5.1-5.3); assumption: lognormal
    # with median 75 minutes and sigma 0.35 (about 8 % past 120 minutes), at least 30; monitoring then lasts
    # until at least that time plus 5-15 minutes.
    rems_ready: tuple = (75.0, 0.35, 30)
    # Blood pressure at 40 minutes: the peak is near 40 minutes (label), so pre-dose + 90 % of the rise to the
    # peak (assumption); at discharge: pre-dose + 0-6 mmHg (assumption). Missing: each 40-minute and discharge
    # pair per site (assumption; the 40-minute reading is the one most often forgotten).
    rems_missing_40min: tuple = (0.05, 0.03, 0.10, 0.05, 0.15, 0.05)
    rems_missing_discharge: tuple = (0.02, 0.01, 0.04, 0.02, 0.06, 0.02)
    # Pulse oximetry: required by the REMS since 2023 (assumption: 97 % recorded true, 1 % empty);
    # lowest SpO2 95-99 %, 90-94 % in 3 % of sessions (assumption).
    rems_oximetry: tuple = (0.97, 0.01)
    rems_low_spo2: float = 0.03
    # Respiratory depression: rare (label 5.1, post-marketing reports); assumption 0.2 % of sessions.
    # Sedation follows the session's sedation adverse event. Resolved at discharge: 99 % (assumption).
    rems_respiratory_depression: float = 0.002
    rems_resolved: float = 0.99
    # Patient Monitoring Form: submitted 0-3 days after the session, late (8-21 days) in a per-site share and
    # never in 1 % (assumption: the REMS asks for it within 7 days).
    rems_form_late: tuple = (0.05, 0.04, 0.15, 0.05, 0.12, 0.05)
    rems_form_never: float = 0.01
    # Concomitant medication classes the label asks about, per patient (assumption): benzodiazepine,
    # sedative-hypnotic, psychostimulant, MAOI, opioid.
    rems_medication: tuple = (0.25, 0.10, 0.08, 0.005, 0.05)
    # REMS enrolment: 1-21 days before the first esketamine dose; after it (day 1-7) in 2 %, missing in 1 %
    # (assumption).
    rems_enrolled_late: float = 0.02
    rems_enrolled_missing: float = 0.01


PARAMETERS = Parameters()

COLUMNS = {
    "patients": ("patient_id", "site", "start_quarter", "age_band", "sex", "primary_diagnosis",
                 "treatment_resistant", "prior_failed_treatments", "hypertension", *spec.REMS_PATIENT_COLUMNS),
    "sessions": ("session_id", "patient_id", "day", "route", "drug", "setting", "phase", "dose_mg",
                 "integration_therapy", "sbp_pre", "sbp_peak", "dbp_pre", "dbp_peak", "heart_rate_peak",
                 "cadss", "monitoring_minutes", "completed", *spec.REMS_SESSION_COLUMNS),
    "assessments": ("patient_id", "day", "hours_post_dose", "instrument", "score"),
    "adverse_events": ("session_id", "event", "severity", "intervention"),
}
SCHEMAS = {
    "patients": pa.schema([
        ("patient_id", pa.string()), ("site", pa.string()), ("start_quarter", pa.string()),
        ("age_band", pa.string()), ("sex", pa.string()), ("primary_diagnosis", pa.string()),
        ("treatment_resistant", pa.bool_()), ("prior_failed_treatments", pa.int32()), ("hypertension", pa.bool_()),
        ("rems_enrolled_day", pa.int32()),
    ]),
    "sessions": pa.schema([
        ("session_id", pa.string()), ("patient_id", pa.string()), ("day", pa.int32()), ("route", pa.string()),
        ("drug", pa.string()), ("setting", pa.string()), ("phase", pa.string()), ("dose_mg", pa.float64()),
        ("integration_therapy", pa.bool_()), ("sbp_pre", pa.int16()), ("sbp_peak", pa.int16()),
        ("dbp_pre", pa.int16()), ("dbp_peak", pa.int16()), ("heart_rate_peak", pa.int16()),
        ("cadss", pa.int16()), ("monitoring_minutes", pa.int16()), ("completed", pa.bool_()),
        ("sbp_40min", pa.int16()), ("dbp_40min", pa.int16()), ("sbp_discharge", pa.int16()),
        ("dbp_discharge", pa.int16()), ("pulse_oximetry", pa.bool_()), ("spo2_min", pa.int16()),
        ("sedation", pa.bool_()), ("respiratory_depression", pa.bool_()), ("resolved_at_discharge", pa.bool_()),
        ("ready_to_leave_minutes", pa.int16()), ("form_submitted_day", pa.int32()),
        ("benzodiazepine", pa.bool_()), ("sedative_hypnotic", pa.bool_()), ("psychostimulant", pa.bool_()),
        ("maoi", pa.bool_()), ("opioid", pa.bool_()),
    ]),
    "assessments": pa.schema([
        ("patient_id", pa.string()), ("day", pa.int32()), ("hours_post_dose", pa.float64()),
        ("instrument", pa.string()), ("score", pa.int16()),
    ]),
    "adverse_events": pa.schema([
        ("session_id", pa.string()), ("event", pa.string()), ("severity", pa.string()), ("intervention", pa.bool_()),
    ]),
}

_FADING_EVENTS = ("dissociation", "sedation")
_HOME_ROUTES = (SL, PO)
_ANXIETY_PRIMARY = ("GAD", "PTSD", "SAD", "PANIC", "OCD")
# Maintenance by another route (assumption): the clinic's usual alternative.
_SWITCH_TO = _r(IV=(IM, SC), IM=(IV,), SC=(IM,), IN=(IV,), SL=(IM,), PO=(SL,))
_MAX_INDUCTION = 8
_MAX_SESSIONS = _MAX_INDUCTION + PARAMETERS.maintenance_max


def _choice(rng: np.random.Generator, spec_: tuple, size: int) -> np.ndarray:
    values, weights = spec_
    w = np.asarray(weights, dtype=float)
    return np.asarray(values)[rng.choice(len(values), size=size, p=w / w.sum())]


def _strings(values: tuple | list, index: np.ndarray) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(index, pa.int32()))


def _masked(values: np.ndarray, missing: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type_, mask=missing)


class _Block:
    """One block of patients: every table as pyarrow arrays, drawn from the block's own random stream."""

    def __init__(self, seed: int, index: int, first: int, n: int, id_width: int, p: Parameters = PARAMETERS):
        self.rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))
        # the esketamine monitoring columns have a stream of their own (added later: the rest is unchanged)
        self.rems_rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, 18)))
        self.p, self.n = p, n
        self.pid = pa.array([f"P{i:0{id_width}d}" for i in range(first, first + n)], pa.string())
        self._patients()
        self._sessions()
        self._outcomes()
        self._assessments()
        self._adverse_events()
        self._rems()

    # --- patients ------------------------------------------------------------------------------------------
    def _patients(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        self.site = rng.choice(len(p.sites), size=n, p=np.asarray(p.site_weights) / sum(p.site_weights))
        q = np.arange(p.quarters)
        qw = np.where(q[None, :] >= np.asarray(p.site_opening)[:, None], p.quarter_growth ** q[None, :], 0.0)
        qw /= qw.sum(axis=1, keepdims=True)
        cum = qw.cumsum(axis=1)[self.site]
        self.quarter = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), p.quarters - 1)
        # days from the start to the extract (end of the last quarter), never less than a full induction
        start = (self.quarter + rng.random(n)) * p.days_per_quarter
        self.max_day = np.maximum(np.floor(p.quarters * p.days_per_quarter - start), 45).astype(np.int64)
        self.age = rng.choice(7, size=n, p=np.asarray(p.age_weights) / sum(p.age_weights))
        self.sex = rng.choice(4, size=n, p=np.asarray(p.sex_weights) / sum(p.sex_weights))
        self.dx = rng.choice(7, size=n, p=np.asarray(p.diagnosis_weights) / sum(p.diagnosis_weights))
        route_cum = np.cumsum(np.asarray(p.site_routes), axis=1)[self.site]
        self.route = np.minimum((rng.random(n)[:, None] > route_cum).sum(axis=1), 5)
        self.trd = np.where(self.route == IN, rng.random(n) < p.in_trd, rng.random(n) < p.treatment_resistant)
        self.prior = np.where(self.trd, 2 + rng.poisson(1.3, n), rng.binomial(1, 0.4, n))
        self.hyp = rng.random(n) < np.asarray(p.hypertension)[self.age]
        self.weight = np.clip(rng.normal(p.weight_kg[0], p.weight_kg[1], n), p.weight_kg[2], p.weight_kg[3])
        self.dosed = rng.random(n) >= p.never_dosed
        esk = rng.random(n) < p.esketamine_share
        self.esketamine = (self.route == IN) & esk
        self.home = np.isin(self.route, _HOME_ROUTES)
        self.in_therapy = rng.random(n) < np.asarray(p.integration)[self.site]

    def patients_table(self) -> pa.Table:
        p, n = self.p, self.n
        y0, q0 = p.first_quarter
        labels = [f"{y0 + (q0 - 1 + i) // 4}-Q{(q0 - 1 + i) % 4 + 1}" for i in range(p.quarters)]
        return pa.Table.from_arrays([
            self.pid, _strings(p.sites, self.site), _strings(labels, self.quarter),
            _strings(spec.AGE_BANDS, self.age), _strings(spec.SEXES, self.sex),
            _strings(spec.DIAGNOSES, self.dx), pa.array(self.trd, pa.bool_()),
            pa.array(self.prior, pa.int32()), pa.array(self.hyp, pa.bool_()),
            _masked(self.enrolled_day, ~self.enrolled, pa.int32()),
        ], schema=SCHEMAS["patients"])

    # --- outcome classes (needed by maintenance) ------------------------------------------------------------
    def _classes(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        targets = np.asarray(p.outcome_targets)[self.route] * np.asarray(p.outcome_calibration)[self.route]
        u = rng.random((n, 3))
        shared = np.where(u[:, 0] < targets[:, 1], REM, np.where(u[:, 0] < targets[:, 0], RESP, NON))
        redraw = rng.random((n, 3)) < p.instrument_redraw
        own = np.where(u < targets[:, 1:2], REM, np.where(u < targets[:, 0:1], RESP, NON))
        self.klass = shared  # the patient's overall class
        self.iclass = np.where(redraw, own, shared[:, None])  # per instrument
        acute_p = np.asarray(p.acute)[self.route] * np.asarray(p.acute_by_class)[shared]
        self.acute = rng.random(n) < np.minimum(acute_p, 0.95)
        self.late = rng.random(n) < p.late_improvers

    # --- sessions -------------------------------------------------------------------------------------------
    def _sessions(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        self._classes()
        planned = np.zeros(n, np.int64)
        gaps = np.zeros((n, _MAX_INDUCTION - 1), np.int64)
        for r in range(6):
            m = self.route == r
            k = int(m.sum())
            if not k:
                continue
            planned[m] = _choice(rng, p.induction_sessions[r], k)
            g = p.induction_gaps[r]
            if g == "twice-weekly":
                gaps[m] = np.tile([3, 4], _MAX_INDUCTION)[: _MAX_INDUCTION - 1]
            else:
                gaps[m] = _choice(rng, g, k * (_MAX_INDUCTION - 1)).reshape(k, -1)
        jitter = np.where(rng.random(gaps.shape) < p.gap_jitter, rng.choice([-1, 1], gaps.shape), 0)
        gaps = np.maximum(gaps + jitter, 1)
        ind_days = np.concatenate([np.zeros((n, 1), np.int64), gaps.cumsum(axis=1)], axis=1)
        drop = rng.random(n) < np.asarray(p.dropout)[self.route]
        drop_at = 1 + np.floor(rng.random(n) * (planned - 1)).astype(np.int64)
        self.dropout = drop & self.dosed
        self.n_ind = np.where(self.dosed, np.where(drop, drop_at, planned), 0)
        rows = np.arange(n)
        self.L = ind_days[rows, np.maximum(self.n_ind, 1) - 1]
        self.Lp = ind_days[rows, planned - 1]

        # maintenance among completers, more likely for responders
        completer = self.dosed & ~self.dropout
        mp = np.asarray(p.maintenance)[self.route]
        want = completer & (rng.random(n) < np.where(self.klass == NON, mp[:, 1], mp[:, 0]))
        count = np.minimum(rng.geometric(1 - p.maintenance_continue, n), p.maintenance_max)
        first = np.zeros(n, np.int64)
        interval = np.zeros(n, np.int64)
        for r in range(6):
            m = self.route == r
            k = int(m.sum())
            lo, hi = p.maintenance_first_gap[r]
            first[m] = rng.integers(lo, hi + 1, k)
            iv = p.maintenance_interval[r]
            interval[m] = np.asarray(iv)[rng.integers(0, len(iv), k)]
        steps = interval[:, None] + rng.integers(-2, 3, (n, p.maintenance_max - 1)) * (interval[:, None] > 7)
        m_days = self.L[:, None] + np.concatenate([first[:, None], steps], axis=1).cumsum(axis=1)
        j = np.arange(p.maintenance_max)
        m_valid = want[:, None] & (j[None, :] < count[:, None]) & (m_days <= self.max_day[:, None])
        self.in_maintenance = m_valid[:, 0]
        self.first_maint = np.where(self.in_maintenance, m_days[:, 0], np.iinfo(np.int64).max)
        switch = self.in_maintenance & (rng.random(n) < p.route_switch)
        alt_first = np.array([_SWITCH_TO[r][0] for r in range(6)])
        alt_last = np.array([_SWITCH_TO[r][-1] for r in range(6)])
        alt = np.where(rng.random(n) < 0.5, alt_first[self.route], alt_last[self.route])
        m_route = np.where(switch, alt, self.route)

        # the session grid: induction columns then maintenance columns, flattened row by row
        k_ind = np.arange(_MAX_INDUCTION)
        valid = np.concatenate([k_ind[None, :] < self.n_ind[:, None], m_valid], axis=1)
        days = np.concatenate([ind_days, m_days], axis=1)
        route = np.concatenate([np.repeat(self.route[:, None], _MAX_INDUCTION, 1),
                                np.repeat(m_route[:, None], p.maintenance_max, 1)], axis=1)
        phase = np.concatenate([np.zeros((n, _MAX_INDUCTION), np.int8),
                                np.ones((n, p.maintenance_max), np.int8)], axis=1)
        pat = np.repeat(rows[:, None], _MAX_SESSIONS, 1)
        self.s_pat = pat[valid]
        self.s_day = days[valid]
        self.s_route = route[valid]
        self.s_phase = phase[valid]
        counts = valid.sum(axis=1)
        starts = np.concatenate([[0], counts.cumsum()[:-1]])
        self.s_num = np.arange(len(self.s_pat)) - np.repeat(starts, counts)  # 0 for the first session
        self._session_details()

    def _session_details(self) -> None:
        p, rng = self.p, self.rng
        s, pat, r = len(self.s_pat), self.s_pat, self.s_route
        home = np.isin(r, _HOME_ROUTES)
        self.s_home = home
        self.s_drug = (self.esketamine[pat] & (r == IN)).astype(np.int8)
        # doses: mg/kg routes by weight; fixed-dose routes; the first dose is the lowest of the titration
        dose = np.zeros(s)
        per_patient = {
            IV: _choice(rng, p.iv_mg_per_kg, self.n), IM: _choice(rng, p.im_mg_per_kg, self.n),
            SC: _choice(rng, p.sc_mg_per_kg, self.n),
        }
        for route_, mgkg in per_patient.items():
            m = r == route_
            dose[m] = np.round(mgkg[pat[m]] * self.weight[pat[m]], 1)
        titrate = rng.random(self.n) < p.esketamine_84mg
        m = (r == IN) & (self.s_drug == 1)
        dose[m] = np.where((self.s_num[m] > 0) & titrate[pat[m]], 84.0, 56.0)
        m = (r == IN) & (self.s_drug == 0)
        dose[m] = _choice(rng, p.in_racemic_mg, self.n)[pat[m]]
        sl_dose = _choice(rng, p.sl_mg, self.n)
        m = r == SL
        dose[m] = np.where(self.s_num[m] == 0, 300.0, sl_dose[pat[m]])
        m = r == PO
        dose[m] = _choice(rng, p.po_mg, self.n)[pat[m]]
        self.s_dose = dose
        self.s_integration = self.in_therapy[pat] & (rng.random(s) < p.integration_sessions)
        self.s_completed = rng.random(s) >= np.where(home, p.not_completed[1], p.not_completed[0])

        # vitals: measured at most clinic sessions, rarely at home
        measured = rng.random(s) < np.where(home, p.vitals_measured[1], p.vitals_measured[0])
        hyp = self.hyp[pat]
        sbp_pre = np.clip(np.rint(rng.normal(p.sbp_pre[0] + p.sbp_pre[2] * hyp, p.sbp_pre[1])), 95, 170)
        dbp_pre = np.clip(np.rint(rng.normal(p.dbp_pre[0] + p.dbp_pre[2] * hyp, p.dbp_pre[1])), 55, 100)
        sr, dr = np.asarray(p.sbp_rise, float)[r], np.asarray(p.dbp_rise, float)[r]
        sbp_peak = sbp_pre + np.maximum(np.rint(rng.normal(sr[:, 0], sr[:, 1])), 0)
        dbp_peak = dbp_pre + np.maximum(np.rint(rng.normal(dr[:, 0], dr[:, 1])), 0)
        share_hyp = float(np.mean(self.hyp)) if self.n else 0.0
        p_severe = np.asarray(p.bp_severe)[r] * np.where(hyp, 2.0, 1.0) / (1.0 + share_hyp)
        severe = measured & (rng.random(s) < p_severe)
        sbp_way = rng.random(s) < 0.7
        sbp_peak = np.where(severe & sbp_way, rng.integers(180, 201, s), np.minimum(sbp_peak, 179))
        dbp_peak = np.where(severe & ~sbp_way, rng.integers(110, 119, s), np.minimum(dbp_peak, 109))
        hr = np.asarray(p.heart_rate, float)[r]
        heart = np.clip(np.rint(rng.normal(hr[:, 0], hr[:, 1])), 50, 170)
        self.s_missing_vitals = ~measured
        self.s_vitals = (sbp_pre, np.maximum(sbp_peak, sbp_pre), dbp_pre, np.maximum(dbp_peak, dbp_pre), heart)
        mon = np.zeros(s)
        for route_ in (IV, IM, SC, IN):
            m = r == route_
            lo, hi = p.monitoring_minutes[route_]
            mon[m] = rng.integers(lo // 5, hi // 5 + 1, int(m.sum())) * 5
        self.s_monitoring = mon

    # --- per-patient, per-instrument outcome --------------------------------------------------------------
    def _outcomes(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        dx = np.asarray(spec.DIAGNOSES)[self.dx]
        anxiety = np.isin(dx, _ANXIETY_PRIMARY)
        self.has = np.zeros((n, 3), bool)
        self.has[:, GAD7] = True
        self.has[:, PHQ9] = (dx == "MDD") | (rng.random(n) < p.phq9_non_mdd)
        self.has[:, PCL5] = (dx == "PTSD") | (rng.random(n) < p.pcl5_non_ptsd)
        z = rng.normal(size=n)
        e = rng.normal(size=(n, 3))
        latent = 0.6 * z[:, None] + 0.8 * e
        g = np.asarray(p.baseline_gad7)[np.where(anxiety, 1, 0)]
        ph = np.asarray(p.baseline_phq9)[np.where(dx == "MDD", 0, 1)]
        pc = np.asarray(p.baseline_pcl5)[np.where(dx == "PTSD", 0, 1)]
        self.B = np.stack([
            np.clip(np.rint(g[:, 0] + g[:, 1] * latent[:, 0]), 0, 21),
            np.clip(np.rint(ph[:, 0] + ph[:, 1] * latent[:, 1]), 0, 27),
            np.clip(np.rint(pc[:, 0] + pc[:, 1] * latent[:, 2]), 0, 80),
        ], axis=1).astype(np.int64)
        self.B[:, :2] = np.maximum(self.B[:, :2], 1)
        self.B[:, 2] = np.maximum(self.B[:, 2], 4)
        # the end-of-induction score, by class (remission cut 4 for GAD-7 and PHQ-9; PCL-5 by improvement)
        B, c = self.B, self.iclass
        u = rng.random((n, 3))
        half = B // 2
        rem_top = np.minimum(4, half)
        rem = np.floor(u * (rem_top + 1))
        resp_lo = np.where(B >= 10, 5, 0)
        resp = resp_lo + np.floor(u * (np.maximum(half - resp_lo, 0) + 1))
        non = half + 1 + np.floor(u * (B - half + 2))
        end = np.where(c == REM, rem, np.where(c == RESP, resp, non))
        imp = np.where(c == REM, 0.55 + 0.35 * u, np.where(c == RESP, 0.5 + 0.2 * u, -0.1 + 0.55 * u))
        end[:, PCL5] = np.floor(B[:, PCL5] * (1 - imp[:, PCL5]))
        top = np.array([21, 27, 80])
        self.end = np.clip(end, 0, top).astype(np.int64)
        self.top = top
        # relapse time after L, for responders (Weibull; maintenance lowers the hazard)
        k, lam = p.relapse_weibull
        hr = np.where(self.in_maintenance, p.maintenance_hazard_ratio, 1.0)
        self.relapse = lam * (-np.log(rng.random(n)) / hr) ** (1 / k)

    def _improvement(self, pat: np.ndarray, ins: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Score along the induction trajectory at a day in (0, L]: a share of the way to the end score."""
        B, end = self.B[pat, ins], self.end[pat, ins]
        frac = np.clip(day / (self.Lp[pat] + 1.0), 0, 1)
        onset = np.where(self.late[pat], self.p.late_onset, np.asarray(self.p.onset)[self.route[pat]])
        gamma = np.where(self.iclass[pat, ins] == NON, 1.0, onset)
        return B - (B - end) * frac ** gamma

    # --- assessments ----------------------------------------------------------------------------------------
    def _assessments(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        parts: list[tuple[np.ndarray, ...]] = []  # (patient, day, hours, instrument, score)
        nan = np.nan
        pi, ii = np.nonzero(self.has)  # one row per (patient, instrument)
        m = len(pi)
        B = self.B[pi, ii]
        # baseline day -14..0 (or 0, before the first dose); screening earlier; same-day duplicates
        bday = np.where(rng.random(m) < p.baseline_on_day0, 0, -rng.integers(1, 15, m))
        # an instrument's baseline is on the patient's baseline day (most patients fill all on one day)
        pday = bday[np.searchsorted(pi, np.arange(n))] if m else bday
        same = rng.random(m) < 0.9
        bday = np.where(same, pday[pi], bday)
        # a few patients never filled in an instrument before dosing: no baseline, no screening, no duplicate
        recorded = rng.random(m) >= p.missing_baseline
        parts.append((pi[recorded], bday[recorded], np.full(int(recorded.sum()), nan), ii[recorded], B[recorded]))
        scr = (rng.random(m) < p.screening) & recorded
        scr_score = np.clip(np.rint(B + rng.normal(0, 2.0, m)), 0, self.top[ii])
        parts.append((pi[scr], (bday - rng.integers(7, 29, m))[scr], np.full(int(scr.sum()), nan), ii[scr],
                      scr_score[scr]))
        dup = (rng.random(m) < p.duplicate_baseline) & recorded
        parts.append((pi[dup], bday[dup], np.full(int(dup.sum()), nan), ii[dup],
                      np.maximum(B - rng.integers(1, 4, m), 0)[dup]))

        # questionnaires at sessions: pre-dose (day > 0), post-dose at clinic sessions (GAD-7, PHQ-9)
        sp, sd, sk, home = self.s_pat, self.s_day, self.s_num, self.s_home
        s = len(sp)
        induction = self.s_phase == 0
        pre = (sd > 0) & (rng.random(s) < np.where(home, p.pre_dose[1], p.pre_dose[0]))
        pre &= induction | (sd > self.L[sp] + 7)  # maintenance questionnaires start after the endpoint window
        post_p = np.where(sk == 0, np.asarray(p.post_dose_day0)[self.s_route], p.post_dose_later)
        post = ~home & induction & self.s_completed & (rng.random(s) < post_p)
        hours = np.asarray(p.post_dose_hours)[rng.integers(0, len(p.post_dose_hours), s)]
        # the acute effect of a dose; after the first dose it fades in patients who do not respond overall
        acute = self.acute[sp] & ((sk == 0) | (self.klass[sp] != NON))
        acute_level = np.where(acute, 0.5 + 0.45 * rng.random(s), 0.4 * rng.random(s))
        noise = rng.normal(0, 0.8, (s, 3))
        level = rng.random((s, 3))
        for ins in range(3):
            has = self.has[sp, ins]
            insv = np.full(s, ins)
            # pre-dose
            mk = pre & has
            score = self._later_score(sp, insv, sd, noise[:, ins], level[:, ins])
            parts.append((sp[mk], sd[mk], np.full(int(mk.sum()), nan), insv[mk], score[mk]))
            if ins == PCL5:
                continue  # PCL-5 asks about the past month: never right after a dose
            mk = post & has
            Bv = self.B[sp, ins]
            traj = (Bv - self._improvement(sp, insv, sd)) / Bv
            imp = np.maximum(traj, acute_level)
            score = np.clip(np.floor(Bv * (1 - imp)), 0, self.top[ins])
            parts.append((sp[mk], sd[mk], hours[mk], insv[mk], score[mk]))

        # end of induction: within 1-7 days of L (some 8-14), fewer at home and after dropout;
        # before the first maintenance session when there is one
        home_p = self.home[pi]
        took = rng.random(m) < np.where(self.dropout[pi], p.end_of_induction_dropout,
                                        np.where(home_p, p.end_of_induction[1], p.end_of_induction[0]))
        took &= self.dosed[pi]
        late = rng.random(m) < p.end_of_induction_late
        delay = np.where(late, rng.integers(8, 15, m), rng.integers(1, 8, m))
        eday = np.minimum(self.L[pi] + delay, self.first_maint[pi] - 1)
        took &= eday > self.L[pi]
        escore = np.where(self.dropout[pi], np.rint(self._improvement(pi, ii, eday)), self.end[pi, ii])
        parts.append((pi[took], eday[took], np.full(int(took.sum()), nan), ii[took], escore[took]))

        # follow-ups of completers without maintenance
        fu_base = self.dosed[pi] & ~self.dropout[pi] & ~self.in_maintenance[pi]
        for after, jit, p_clinic, p_home in p.follow_ups:
            fday = self.L[pi] + after + rng.integers(-jit, jit + 1, m)
            mk = fu_base & (rng.random(m) < np.where(home_p, p_home, p_clinic)) & (fday <= self.max_day[pi])
            score = self._later_score(pi, ii, fday, rng.normal(0, 0.8, m), rng.random(m))
            parts.append((pi[mk], fday[mk], np.full(int(mk.sum()), nan), ii[mk], score[mk]))

        a_pat, a_day, a_hours, a_ins, a_score = (np.concatenate([part[i] for part in parts]) for i in range(5))
        hour_key = np.where(np.isnan(a_hours), -1.0, a_hours)
        order = np.lexsort((a_ins, hour_key, a_day, a_pat))
        self.a = (a_pat[order], a_day[order].astype(np.int64), a_hours[order], a_ins[order],
                  a_score[order].astype(np.int64))

    def _later_score(self, pat: np.ndarray, ins: np.ndarray, day: np.ndarray, noise: np.ndarray,
                     u: np.ndarray) -> np.ndarray:
        """A questionnaire without hours_post_dose after day 0: the induction trajectory, then stable or relapse."""
        B, end, top = self.B[pat, ins], self.end[pat, ins], self.top[ins]
        during = np.rint(self._improvement(pat, ins, day) + noise)
        L = self.L[pat]
        # after induction: responders hold near their end score (improvement stays above 0.25) until relapse
        responder = self.iclass[pat, ins] != NON
        stable_cap = np.floor(B * 0.7)
        stable = np.where(responder, np.minimum(np.rint(end + noise), np.maximum(stable_cap, end)), np.rint(end + 1.5 * noise))
        relapsed = np.ceil(B * (1 - (0.25 - 0.35 * u)))
        after = np.where(responder & (day - L >= self.relapse[pat]), relapsed, stable)
        return np.clip(np.where(day <= L, during, after), 0, top)

    # --- adverse events -------------------------------------------------------------------------------------
    def _adverse_events(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        sp, r, sk = self.s_pat, self.s_route, self.s_num
        s, e = len(sp), len(spec.EVENTS)
        incidence = np.asarray([p.incidence[route] for route in spec.ROUTES])  # routes x events
        u = rng.random((n, e))
        susceptible = u[sp] < incidence[r]  # sessions x events, by the session's route
        fading = np.isin(np.asarray(spec.EVENTS), _FADING_EVENTS)
        first = np.where(fading, p.event_first[0], p.event_first[1])
        decay = np.where(fading, p.event_decay[0], p.event_decay[1])
        chance = first[None, :] * decay[None, :] ** np.minimum(sk, 60)[:, None]
        events = susceptible & (rng.random((s, e)) < chance)
        # a susceptible patient shows the effect at least once in induction: on the first session if not later
        induction = self.s_phase == 0
        seen = np.zeros((n, e), bool)
        np.logical_or.at(seen, sp[induction], events[induction])
        force = (sk == 0)[:, None] & susceptible & ~seen[sp]
        events |= force
        # dissociation is what drives CADSS: higher on sessions with the event
        day = self.s_day
        cadss_mu = (9 + 11 * np.exp(-day / 28.0)) * np.asarray(p.cadss_scale)[r]
        cadss_mu += 8 * events[:, spec.EVENTS.index("dissociation")]
        self.s_cadss = np.clip(np.rint(rng.normal(cadss_mu, 6.0)), 0, 92)
        self.s_cadss_missing = rng.random(s) >= np.asarray(p.cadss_measured)[r]
        si, ei = np.nonzero(events)
        k = len(si)
        sev = rng.choice(3, size=k, p=np.asarray(p.severity) / sum(p.severity))
        self.ae = (si, ei, sev, rng.random(k) < np.asarray(p.intervention)[sev])

    # --- esketamine (SPRAVATO REMS) monitoring ----------------------------------------------------------------
    def _rems(self) -> None:
        """The optional REMS columns: set on clinic esketamine sessions (and esketamine patients) only."""
        p, rng, n = self.p, self.rems_rng, self.n
        sp, s = self.s_pat, len(self.s_pat)
        esk = (self.s_drug == 1) & ~self.s_home
        site = self.site[sp]
        # patients: enrolment day relative to the first esketamine session
        first_esk = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first_esk, sp[esk], self.s_day[esk])
        has_esk = first_esk < np.iinfo(np.int64).max
        late = rng.random(n) < p.rems_enrolled_late
        offset = np.where(late, rng.integers(1, 8, n), -rng.integers(1, 22, n))
        self.enrolled = has_esk & (rng.random(n) >= p.rems_enrolled_missing)
        self.enrolled_day = np.where(has_esk, first_esk, 0) + offset
        # ready to leave, then monitoring: until ready (plus a margin), at least the drawn time, some short
        ready = np.maximum(np.rint(np.exp(rng.normal(np.log(p.rems_ready[0]), p.rems_ready[1], s))), p.rems_ready[2])
        ready = np.minimum(ready, 1440)
        margin = rng.integers(1, 4, s) * 5
        mon = np.maximum(self.s_monitoring, ready + margin)
        short = rng.random(s) < np.asarray(p.rems_short)[site]
        lo, hi = p.rems_short_minutes
        short_minutes = rng.integers(lo // 5, hi // 5 + 1, s) * 5
        self.s_monitoring = np.where(esk, np.minimum(np.where(short, short_minutes, mon), 1440), self.s_monitoring)
        self.s_ready = ready
        # pressures at 40 minutes and discharge
        sbp_pre, sbp_peak, dbp_pre, dbp_peak, _ = self.s_vitals
        self.s_sbp40 = sbp_pre + np.rint(0.9 * (sbp_peak - sbp_pre))
        self.s_dbp40 = dbp_pre + np.rint(0.9 * (dbp_peak - dbp_pre))
        self.s_sbpd = sbp_pre + rng.integers(0, 7, s)
        self.s_dbpd = dbp_pre + rng.integers(0, 5, s)
        self.s_miss40 = ~esk | self.s_missing_vitals | (rng.random(s) < np.asarray(p.rems_missing_40min)[site])
        self.s_missd = ~esk | self.s_missing_vitals | (rng.random(s) < np.asarray(p.rems_missing_discharge)[site])
        u = rng.random(s)
        self.s_ox = u < p.rems_oximetry[0]
        self.s_ox_missing = ~esk | (u >= 1 - p.rems_oximetry[1])
        low = rng.random(s) < p.rems_low_spo2
        self.s_spo2 = np.where(low, rng.integers(90, 95, s), rng.integers(95, 100, s))
        si, ei, _, _ = self.ae
        sedated = np.zeros(s, bool)
        sedated[si[ei == spec.EVENTS.index("sedation")]] = True
        self.s_sedation = sedated
        self.s_resp = rng.random(s) < p.rems_respiratory_depression
        self.s_resolved = rng.random(s) < p.rems_resolved
        late_form = rng.random(s) < np.asarray(p.rems_form_late)[site]
        delay = np.where(late_form, rng.integers(8, 22, s), rng.integers(0, 4, s))
        self.s_form = self.s_day + delay
        self.s_form_missing = ~esk | (rng.random(s) < p.rems_form_never)
        meds = rng.random((n, len(p.rems_medication))) < np.asarray(p.rems_medication)[None, :]
        self.s_meds = meds[sp]
        self.s_esk = esk

    def tables(self) -> dict[str, pa.Table]:
        sp = self.s_pat
        num = pa.array([f"-V{i:02d}" for i in range(1, _MAX_SESSIONS + 1)], pa.string())
        sid = pc.binary_join_element_wise(self.pid.take(pa.array(sp)), num.take(pa.array(self.s_num)), "")
        no_vitals = self.s_missing_vitals
        sbp_pre, sbp_peak, dbp_pre, dbp_peak, heart = self.s_vitals
        clinic_only = self.s_home
        sessions = pa.Table.from_arrays([
            sid, self.pid.take(pa.array(sp)), pa.array(self.s_day, pa.int32()),
            _strings(spec.ROUTES, self.s_route), _strings(spec.DRUGS, self.s_drug),
            _strings(spec.SETTINGS, self.s_home.astype(np.int8)), _strings(spec.PHASES, self.s_phase),
            pa.array(self.s_dose, pa.float64()), pa.array(self.s_integration, pa.bool_()),
            _masked(sbp_pre, no_vitals, pa.int16()), _masked(sbp_peak, no_vitals, pa.int16()),
            _masked(dbp_pre, no_vitals, pa.int16()), _masked(dbp_peak, no_vitals, pa.int16()),
            _masked(heart, no_vitals, pa.int16()),
            _masked(self.s_cadss, self.s_cadss_missing | clinic_only, pa.int16()),
            _masked(self.s_monitoring, clinic_only, pa.int16()),
            pa.array(self.s_completed, pa.bool_()),
            _masked(self.s_sbp40, self.s_miss40, pa.int16()), _masked(self.s_dbp40, self.s_miss40, pa.int16()),
            _masked(self.s_sbpd, self.s_missd, pa.int16()), _masked(self.s_dbpd, self.s_missd, pa.int16()),
            _masked(self.s_ox, self.s_ox_missing, pa.bool_()),
            _masked(self.s_spo2, self.s_ox_missing | ~self.s_ox, pa.int16()),
            _masked(self.s_sedation, ~self.s_esk, pa.bool_()), _masked(self.s_resp, ~self.s_esk, pa.bool_()),
            _masked(self.s_resolved, ~self.s_esk, pa.bool_()), _masked(self.s_ready, ~self.s_esk, pa.int16()),
            _masked(self.s_form, self.s_form_missing, pa.int32()),
            *[_masked(self.s_meds[:, j], ~self.s_esk, pa.bool_()) for j in range(self.s_meds.shape[1])],
        ], schema=SCHEMAS["sessions"])
        a_pat, a_day, a_hours, a_ins, a_score = self.a
        assessments = pa.Table.from_arrays([
            self.pid.take(pa.array(a_pat)), pa.array(a_day, pa.int32()),
            pa.array(a_hours, pa.float64(), from_pandas=True), _strings(spec.INSTRUMENTS, a_ins),
            pa.array(a_score, pa.int16()),
        ], schema=SCHEMAS["assessments"])
        si, ei, sev, interv = self.ae
        events = pa.Table.from_arrays([
            sid.take(pa.array(si, pa.int64())),
            _strings(spec.EVENTS, ei), _strings(spec.SEVERITIES, sev), pa.array(interv, pa.bool_()),
        ], schema=SCHEMAS["adverse_events"])
        return {"patients": self.patients_table(), "sessions": sessions, "assessments": assessments,
                "adverse_events": events}


class _Writers:
    """Appends chunks to the four files: CSV with one header, or Parquet with one row group per chunk."""

    def __init__(self, out_dir: Path, fmt: str):
        self.fmt = fmt
        self.files: dict[str, object] = {}
        self.writers: dict[str, object] = {}
        for table in spec.TABLES:
            path = out_dir / f"{table}.{fmt}"
            if fmt == "csv":
                f = path.open("wb")
                f.write((",".join(COLUMNS[table]) + "\n").encode("utf-8"))
                self.files[table] = f
                self.writers[table] = pacsv.CSVWriter(
                    f, SCHEMAS[table],
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
            else:
                self.writers[table] = pq.ParquetWriter(path, SCHEMAS[table], compression="zstd")

    def write(self, table: str, data: pa.Table) -> None:
        if self.fmt == "csv":
            self.writers[table].write_table(data)
        else:
            self.writers[table].write_table(data, row_group_size=max(data.num_rows, 1))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        for f in self.files.values():
            f.close()


def write_sample_export(
    out_dir: Path,
    *,
    patients: int,
    seed: int,
    fmt: str = "csv",
    progress: Callable[[str], None] | None = None,
    chunk_patients: int = DEFAULT_CHUNK_PATIENTS,
) -> dict[str, int]:
    """Write a deterministic sample export of ``patients`` patients to ``out_dir``; return rows per table.

    The same (patients, seed, fmt) always gives byte-identical files; ``chunk_patients`` only sets how many
    patients are buffered per write (CSV bytes and all values are the same for any chunk size).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if seed < 0:
        raise ValueError("seed must be 0 or more")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in spec.TABLES:
        for ext in FORMATS:
            (out_dir / f"{table}.{ext}").unlink(missing_ok=True)  # never leave a stale table of the other format
    id_width = max(6, len(str(patients)))
    blocks = math.ceil(patients / BLOCK_PATIENTS)
    per_chunk = max(1, round(max(chunk_patients, 1) / BLOCK_PATIENTS))
    counts = dict.fromkeys(spec.TABLES, 0)
    writers = _Writers(out_dir, fmt)
    try:
        for chunk_start in range(0, blocks, per_chunk):
            buffered: dict[str, list[pa.Table]] = {t: [] for t in spec.TABLES}
            for b in range(chunk_start, min(chunk_start + per_chunk, blocks)):
                first = b * BLOCK_PATIENTS + 1
                n = min(BLOCK_PATIENTS, patients - b * BLOCK_PATIENTS)
                for table, data in _Block(seed, b, first, n, id_width).tables().items():
                    buffered[table].append(data)
            for table in spec.TABLES:
                data = pa.concat_tables(buffered[table])
                writers.write(table, data)
                counts[table] += data.num_rows
            if progress:
                done = min((chunk_start + per_chunk) * BLOCK_PATIENTS, patients)
                progress(f"sample: {done:,} of {patients:,} patients written")
    finally:
        writers.close()
    return counts
