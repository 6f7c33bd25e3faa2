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


def severity_band(instrument: str, score: float) -> str:
    """The baseline severity band of a score on an instrument."""
    floors = SEVERITY_BAND_FLOORS[instrument]
    band = "minimal"
    for name in SEVERITY_BANDS:
        if score >= floors[name]:
            band = name
    return band
