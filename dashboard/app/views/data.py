"""Data and definitions page (`/data`): the import history, data quality for the cohort, and every
definition the dashboard uses, in plain language."""

from __future__ import annotations

import streamlit as st

from dashboard.data import spec
from dashboard.app import ui
from dashboard.reports.definitions import definitions_markdown

ctx = ui.current_context()
s = ctx.settings
instrument = s.instrument_words
ui.render_page_header("Data and definitions", "Where the numbers come from and what each one means.", ctx)

st.subheader("Data set")
ui.render_dataset(ctx)
st.markdown("**Import history** (newest first)")
history = ui.load_import_history(ctx.signature)
history = history.assign(source=[ui.source_words(v) for v in history["source"]]) if not history.empty else history
columns = {"import_id": "Import", "imported_at": "Imported (UTC)", "source": "Source", "source_format": "Format",
           "patients": "Patients", "sessions": "Sessions", "assessments": "Questionnaires",
           "adverse_events": "Side effects", "program_version": "Program version", "seconds": "Seconds"}
if s.scope is not None:  # the whole data set's row counts include sites outside this person's scope
    columns = {k: v for k, v in columns.items() if k not in ("patients", "sessions", "assessments", "adverse_events")}
ui.render_table(history, columns, decimals={"seconds": 1})

tolerated = ui.load_import_notes(ctx.signature)
if not tolerated.empty:
    # the files were not in the plain format but could be read exactly (dialects.py); say how
    st.markdown("**How the files were read** (the latest import accepted these and read the values exactly)")
    ui.render_table(tolerated, {"file": "File", "note": "What was accepted"})

st.subheader("Data quality for this cohort")
MEASURES = {
    "never_dosed": "Patients without any session",
    # the questionnaire's words end the sentence: under matched they are a phrase, not a name to put before "score"
    "missing_baseline": f"Dosed patients without a baseline score on {instrument}",
    "below_min_baseline": "Dosed patients with a baseline below the minimum",
    "eligible_without_followup": "Eligible patients without a follow-up score",
    "eligible_without_endpoint": "Eligible patients without an endpoint score",
    "clinic_sessions_without_vitals": "Clinic sessions without blood pressure recorded",
    "sessions_not_completed": "Sessions not completed",
    "post_dose_questionnaires": ("Questionnaires (each patient's own) taken after a dose" if s.matched
                                 else f"{instrument} questionnaires taken after a dose"),
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
# One text for this page and the PDF report (dashboard/reports/definitions.py).
st.markdown(definitions_markdown(s))

st.markdown(
    f"""
**Esketamine monitoring (SPRAVATO REMS).** Over intranasal esketamine sessions held in the clinic: monitored
for at least {s.rems_minutes} minutes (the setting; the REMS asks for two hours); blood pressure recorded before
dosing, at 40 minutes and at discharge; pulse oximetry used; the Patient Monitoring Form submitted within
{spec.REMS_FORM_DAYS} days (a form never submitted counts as late); sedation, dissociation and breathing problems
resolved at discharge; and, per patient, enrolment in the REMS on or before the first esketamine dose. A measure
whose columns the clinic export does not carry is shown as missing, never as zero.
"""
)

ui.render_downloads(ctx, (), key="data")
