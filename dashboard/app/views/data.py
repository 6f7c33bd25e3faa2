"""Data and definitions page (`/data`): the import history, data quality for the cohort, and every
definition the dashboard uses, in plain language."""

from __future__ import annotations

import streamlit as st

from dashboard.data import spec
from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
instrument = spec.INSTRUMENT_LABELS[s.instrument]
ui.render_page_header("Data and definitions", "Where the numbers come from and what each one means.", ctx)

st.subheader("Data set")
ui.render_dataset(ctx)
st.markdown("**Import history** (newest first)")
history = ui.load_import_history(ctx.signature)
ui.render_table(
    history,
    {"import_id": "Import", "imported_at": "Imported (UTC)", "source": "Source", "source_format": "Format",
     "patients": "Patients", "sessions": "Sessions", "assessments": "Questionnaires",
     "adverse_events": "Side effects", "program_version": "Program version", "seconds": "Seconds"},
    decimals={"seconds": 1},
)

tolerated = ui.load_import_notes(ctx.signature)
if not tolerated.empty:
    # the files were not in the plain format but could be read exactly (dialects.py); say how
    st.markdown("**How the files were read** (the latest import accepted these and read the values exactly)")
    ui.render_table(tolerated, {"file": "File", "note": "What was accepted"})

st.subheader("Data quality for this cohort")
MEASURES = {
    "never_dosed": "Patients without any session",
    "missing_baseline": f"Dosed patients without a baseline {instrument} score",
    "below_min_baseline": "Dosed patients with a baseline below the minimum",
    "eligible_without_followup": "Eligible patients without a follow-up score",
    "eligible_without_endpoint": "Eligible patients without an endpoint score",
    "clinic_sessions_without_vitals": "Clinic sessions without blood pressure recorded",
    "sessions_not_completed": "Sessions not completed",
    "post_dose_questionnaires": f"{instrument} questionnaires taken after a dose",
}
quality = ui.load_data_quality(ctx.signature, s)
quality = quality.assign(measure=[MEASURES.get(str(m), str(m).replace("_", " ").capitalize())
                                  for m in quality["measure"]])
ui.render_table(
    quality,
    {"measure": "Measure", "count": "Count", "denominator": "Out of", "patients_or_sessions": "Counted in",
     "share": "Share"},
    percent=("share",),
)
hidden_quality = int(quality["count"].isna().sum()) if not quality.empty else 0
ui.render_disclosure_note(ctx, [f"{hidden_quality} counts"] if hidden_quality else [])

st.subheader("Definitions")
floors = spec.SEVERITY_BAND_FLOORS[s.instrument]
st.markdown(
    f"""
**Cohort.** The patients who pass every filter in the sidebar. A patient's **route** and **setting** are those of
their first session.

**Baseline.** The last {instrument} score taken on or before the first session day and before dosing (if there
are several that day, the highest).

**Eligible.** In the cohort, with at least one session and a baseline of at least the minimum
({s.baseline_minimum} on {instrument} now; the default is {spec.DEFAULT_MIN_BASELINE[s.instrument]}).

**Follow-up score.** Any score after day 0, or taken after a dose. **Improvement** is the drop from baseline as a
share of the baseline.

**Endpoint.** The last follow-up score that was not taken straight after a dose, within {s.window} days after
the patient's last induction session. A score taken a few hours after a dose measures the acute effect of that
dose and is never an endpoint.

**Response.** Improvement of 50 % or more at the endpoint. **Remission.** An endpoint score of
{spec.REMISSION_CUT[s.instrument]} or less on {instrument}.

**Population.** *Observed*: rates are among eligible patients with an endpoint. *Intention to treat*: among all
eligible patients, and a missing endpoint counts as no response.

**Interval.** Every rate has a 95 % Wilson interval: the range of true rates consistent with the data. Wide
intervals mean few patients.

**Route comparison.** Differences in rate between each pair of routes with their 95 % intervals, a chi-square
test across all routes, and p-values adjusted for making several comparisons (Benjamini–Hochberg).

**Time to relief.** Days from the first session to the first follow-up score meeting the relief threshold —
*response* (50 % improvement) or *minimal important change* (a drop of at least {spec.MCID['GAD7']} points on
GAD-7, {spec.MCID['PHQ9']} on PHQ-9, {spec.MCID['PCL5']} on PCL-5). Post-dose scores count, at their hour
(4 hours after a dose on day 0 is day 0.17). Patients never relieved count until their last score
(Kaplan–Meier). The median is the first day by which half the patients were relieved.

**Side effects.** Per session: the share of sessions with the effect recorded (any severity). Per patient: the
share of patients with the effect in at least one session of that route. *Severe blood pressure*: a peak of
{spec.BP_SEVERE_SBP} systolic or {spec.BP_SEVERE_DBP} diastolic or more (mmHg).

**Maintenance.** *Uptake*: responders with at least one maintenance session. *Days to first maintenance*: from
the last induction session. *Sessions per patient-month*: maintenance sessions divided by the months each
maintenance patient has been in maintenance. *Sustained response*: the probability (Kaplan–Meier) that a responder
has not relapsed — improvement fallen to 25 % or less — 8 weeks after the last induction session. The
*projection* applies each route's uptake and session rate to its current responders.

**Baseline severity** on {instrument}: minimal below {floors['mild']}, mild {floors['mild']}–{floors['moderate'] - 1},
moderate {floors['moderate']}–{floors['severe'] - 1}, severe {floors['severe']} or more.

**Privacy.** With a minimum cell of k (now {s.min_cell}), no count from 1 to k − 1 is shown, nor any rate,
interval or median resting on fewer than k patients, nor anything that would let such a count be worked out from
the totals. The downloads follow the same rule.
"""
)

ui.render_downloads(ctx, (), key="data")
