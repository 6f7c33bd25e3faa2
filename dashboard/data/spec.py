"""The vocabulary of the clinic export and the metrics: every enum, range and clinical cut-off in one place.

The importer, the sample generator, the metrics, the command line and the dashboard all read these names,
so a value is spelled once. Sources: docs/clinic-export-format.md, docs/metrics.md and docs/choices.md in this repository.
"""

from __future__ import annotations

import re

# --- the export's tables and enums -------------------------------------------------------------------

TABLES = ("patients", "sessions", "assessments", "adverse_events")
OPTIONAL_TABLES = frozenset({"adverse_events"})

ROUTES = ("IV", "IM", "SC", "IN", "SL", "PO")
ROUTE_LABELS = {
    "IV": "IV infusion",
    "IM": "IM injection",
    "SC": "Subcutaneous",
    "IN": "Intranasal",
    "SL": "Sublingual",
    "PO": "Oral",
}
ALL = "ALL"  # the row over every route in each summary; always last

DRUGS = ("ketamine", "esketamine")
SETTINGS = ("clinic", "home")
PHASES = ("induction", "maintenance")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
SEXES = ("F", "M", "X", "U")
DIAGNOSES = ("GAD", "MDD", "PTSD", "SAD", "PANIC", "OCD", "OTHER")
# Words for the screen (codes stay in URLs and files)
SEX_LABELS = {"F": "female", "M": "male", "X": "another sex", "U": "sex not recorded"}
DIAGNOSIS_LABELS = {
    "GAD": "generalised anxiety", "MDD": "major depression", "PTSD": "PTSD", "SAD": "social anxiety",
    "PANIC": "panic disorder", "OCD": "OCD", "OTHER": "other diagnoses",
}
EVENTS = (
    "dissociation", "dizziness", "nausea", "vomiting", "sedation", "vertigo", "headache",
    "anxiety", "hypertension", "tachycardia", "hallucination", "disorientation", "cognitive", "other",
)
BP_SEVERE = "bp_severe"  # derived from vitals: sbp_peak >= 180 or dbp_peak >= 110
SUMMARY_EVENTS = EVENTS + (BP_SEVERE,)
SEVERITIES = ("mild", "moderate", "severe")

INSTRUMENTS = ("GAD7", "PHQ9", "PCL5")
INSTRUMENT_LABELS = {"GAD7": "GAD-7", "PHQ9": "PHQ-9", "PCL5": "PCL-5"}
SCORE_RANGE = {"GAD7": (0, 21), "PHQ9": (0, 27), "PCL5": (0, 80)}
# The instrument setting's fourth value (metrics.md "Matched instrument"): each patient on the questionnaire of
# their primary diagnosis, with that questionnaire's cut-offs. Not a questionnaire of the export (INSTRUMENTS
# stays the export's vocabulary); queries/derive_25_cohort_base.sql spells the same mapping.
MATCHED = "matched"
INSTRUMENT_SETTINGS = INSTRUMENTS + (MATCHED,)
DIAGNOSIS_INSTRUMENT = {
    "GAD": "GAD7", "MDD": "PHQ9", "PTSD": "PCL5", "SAD": "GAD7", "PANIC": "GAD7", "OCD": "GAD7", "OTHER": "PHQ9",
}
# Words for the screen and the PDF (the code `matched` stays in URLs and files)
MATCHED_LABEL = "Matched to diagnosis"
INSTRUMENT_SETTING_LABELS = {**INSTRUMENT_LABELS, MATCHED: MATCHED_LABEL}

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SITE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
QUARTER_PATTERN = re.compile(r"^(20[0-9]{2})-Q([1-4])$")

# --- clinical cut-offs (metrics.md) --------------------------------------------------------------------

DEFAULT_MIN_BASELINE = {"GAD7": 10, "PHQ9": 10, "PCL5": 33}
REMISSION_CUT = {"GAD7": 4, "PHQ9": 4, "PCL5": 32}  # remission: endpoint score <= cut
MCID = {"GAD7": 4, "PHQ9": 5, "PCL5": 10}  # minimal clinically important drop, in points
RESPONSE_IMPROVEMENT = 0.5
RELAPSE_IMPROVEMENT = 0.25  # sustained response: relapse when improvement falls to <= 0.25
SUSTAINED_DAYS = 56
RELIEF_DAYS = (1, 7, 14, 28)
# Side effects by session number: sessions after the 12th are pooled into the bucket 13 ("13th or later"),
# so the table stays small and its cells still add up to side_effects' totals.
LAST_SESSION_NUMBER = 13
DAYS_PER_MONTH = 30.4375
BP_SEVERE_SBP = 180
BP_SEVERE_DBP = 110

SEVERITY_BANDS = ("minimal", "mild", "moderate", "severe")
# Lower bound of each band on the baseline score. GAD7 and PHQ9 are metrics.md's bands. PCL-5 has no
# band in metrics.md; our choice anchors "moderate" at the usual probable-PTSD cut-off of 33 and
# "severe" at 50, with "mild" from 20 (documented in docs/choices.md).
SEVERITY_BAND_FLOORS = {
    "GAD7": {"minimal": 0, "mild": 5, "moderate": 10, "severe": 15},
    "PHQ9": {"minimal": 0, "mild": 5, "moderate": 10, "severe": 15},
    "PCL5": {"minimal": 0, "mild": 20, "moderate": 33, "severe": 50},
}

POPULATIONS = ("observed", "itt")
RELIEF_THRESHOLDS = ("response", "mcid")

DEFAULT_INSTRUMENT = "GAD7"
DEFAULT_POPULATION = "observed"
DEFAULT_RELIEF = "response"
DEFAULT_WINDOW = 7
DEFAULT_MIN_CELL = 11
MAX_WINDOW = 365
MAX_MIN_CELL = 1000


# --- esketamine (SPRAVATO REMS) monitoring: clinic-export-format.md's optional columns, metrics.md's rems.csv ---

# Optional columns: all may be absent from an export; a measure whose columns are absent is empty, not zero.
REMS_SESSION_COLUMNS = (
    "sbp_40min", "dbp_40min", "sbp_discharge", "dbp_discharge", "pulse_oximetry", "spo2_min", "sedation",
    "respiratory_depression", "resolved_at_discharge", "ready_to_leave_minutes", "form_submitted_day",
    "benzodiazepine", "sedative_hypnotic", "psychostimulant", "maoi", "opioid",
)
REMS_PATIENT_COLUMNS = ("rems_enrolled_day",)
DEFAULT_REMS_MINUTES = 120  # the REMS's monitoring minimum (two hours); a setting, since the rules change
MAX_REMS_MINUTES = 1440
REMS_FORM_DAYS = 7  # the Patient Monitoring Form is due within 7 days of the session
REMS_BP_HIGH_SBP = 180  # a 40-minute pressure of sbp >= 180 or dbp >= 110 (the label's threshold)
REMS_BP_HIGH_DBP = 110
# Session measures in rems.csv's order, then the patient measure. Each -> the (table, column) pairs it
# needs: when the export lacks any of them the measure is empty (rems.lacking_columns).
REMS_SESSION_MEASURES = (
    "monitored_min", "bp_three_points", "pulse_oximetry", "form_within_7d", "sedation",
    "respiratory_depression", "dissociation", "resolved_at_discharge", "bp_high_40min",
)
REMS_PATIENT_MEASURES = ("enrolled_before_first_dose",)
REMS_MEASURES = REMS_SESSION_MEASURES + REMS_PATIENT_MEASURES
REMS_MEASURE_COLUMNS = {
    "monitored_min": (("sessions", "monitoring_minutes"),),
    "bp_three_points": tuple(("sessions", c) for c in (
        "sbp_pre", "dbp_pre", "sbp_40min", "dbp_40min", "sbp_discharge", "dbp_discharge")),
    "pulse_oximetry": (("sessions", "pulse_oximetry"),),
    "form_within_7d": (("sessions", "form_submitted_day"),),
    "sedation": (("sessions", "sedation"),),
    "respiratory_depression": (("sessions", "respiratory_depression"),),
    "dissociation": (("adverse_events", "event"),),  # an export without adverse_events lacks it
    "resolved_at_discharge": (("sessions", "resolved_at_discharge"),),
    "bp_high_40min": (("sessions", "sbp_40min"), ("sessions", "dbp_40min")),
    "enrolled_before_first_dose": (("patients", "rems_enrolled_day"),),
    "ready_to_leave": (("sessions", "ready_to_leave_minutes"),),
}
# Rules a session or patient should meet (a miss is a finding), as opposed to events that happened.
REMS_RULES = ("monitored_min", "bp_three_points", "pulse_oximetry", "form_within_7d", "resolved_at_discharge",
              "enrolled_before_first_dose")
REMS_LABELS = {
    "monitored_min": "Monitored for at least the minimum",
    "bp_three_points": "Blood pressure before, at 40 minutes and at discharge",
    "pulse_oximetry": "Pulse oximetry",
    "form_within_7d": "Monitoring form within 7 days",
    "sedation": "Sedation",
    "respiratory_depression": "Respiratory depression",
    "dissociation": "Dissociation",
    "resolved_at_discharge": "Resolved at discharge",
    "bp_high_40min": "Blood pressure 180/110 or higher at 40 minutes",
    "enrolled_before_first_dose": "Enrolled in the REMS before the first dose",
    "ready_to_leave": "Ready to leave",
}


def instrument_for(diagnosis: str) -> str:
    """The questionnaire a patient with this primary diagnosis is evaluated on under `matched`."""
    return DIAGNOSIS_INSTRUMENT[diagnosis]


def default_instrument(diagnoses: tuple[str, ...] | list[str]) -> str:
    """The dashboard's instrument when the link names none (docs/choices.md "Matched instrument"): the one
    questionnaire of the selected diagnoses when they all share it, else `matched` (no diagnosis filter, or
    a mix). The command line keeps DEFAULT_INSTRUMENT."""
    used = {DIAGNOSIS_INSTRUMENT[d] for d in diagnoses if d in DIAGNOSIS_INSTRUMENT}
    return used.pop() if len(used) == 1 else MATCHED


def severity_band(instrument: str, score: float) -> str:
    """The baseline severity band of a score on an instrument."""
    floors = SEVERITY_BAND_FLOORS[instrument]
    band = "minimal"
    for name in SEVERITY_BANDS:
        if score >= floors[name]:
            band = name
    return band


def counted(n: int, noun: str) -> str:
    """A whole count with its noun, in the plural unless it is 1: `1 problem`, `2 problems`,
    `1,234 more rows` (counted(1234, "more row"))."""
    return f"{int(n):,} {noun}{'' if int(n) == 1 else 's'}"
