"""Maintenance page (`/maintenance`): uptake among responders, timing of maintenance sessions, sessions per
patient-month, sustained response, and the projected monthly maintenance load of the current responders."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import figures
from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
ui.render_page_header(
    "Maintenance",
    "After induction, responders may continue with maintenance sessions. Timing is counted from each patient's "
    "last induction session.",
    ctx,
)
maintenance = ui.load_summary(ctx.signature, s, "maintenance.csv")

st.plotly_chart(figures.create_maintenance_rates_figure(maintenance), key="chart_maintenance_rates")
st.caption("Uptake: responders with at least one maintenance session (95 % Wilson interval). Sustained response: "
           "Kaplan–Meier probability that a responder has not relapsed (improvement fallen to 25 % or less) 8 weeks "
           "after the last induction session.")
hidden = figures.hidden_routes(maintenance, "uptake_rate")
ui.render_disclosure_note(ctx, [f"uptake for {', '.join(hidden)}"] if hidden else [])

st.subheader("Maintenance sessions")
st.plotly_chart(figures.create_maintenance_timing_figure(maintenance), key="chart_maintenance_timing")
ui.render_table(
    maintenance,
    {"route": "Route", "responders": "Responders", "responders_in_maintenance": "Responders in maintenance",
     "uptake_rate": "Uptake", "maintenance_patients": "Maintenance patients",
     "maintenance_sessions": "Maintenance sessions",
     "median_days_to_first_maintenance": "Median days to first maintenance",
     "median_interval_days": "Median days between sessions",
     "sessions_per_patient_month": "Sessions per patient-month",
     "sustained_patients": "Responders followed after induction",
     "sustained_response_8w": "Sustained response at 8 weeks"},
    percent=("uptake_rate", "sustained_response_8w"),
    decimals={"median_days_to_first_maintenance": 0, "median_interval_days": 0, "sessions_per_patient_month": 2},
)
st.caption("Maintenance patients are every cohort patient with at least one maintenance session, responder or not.")

st.subheader("Projected maintenance load")
projection = ui.load_projection(ctx.signature, s)
st.plotly_chart(figures.create_projection_figure(projection), key="chart_projection")
ui.render_table(
    projection,
    {"route": "Route", "current_responders": "Current responders",
     "expected_in_maintenance": "Expected in maintenance", "sessions_per_month": "Sessions per month"},
    decimals={"expected_in_maintenance": 0, "sessions_per_month": 0},
)
st.caption("How many maintenance sessions a month the cohort's current responders will need if they take up "
           "maintenance, and attend, at the rates observed so far for their route.")
proj_hidden = figures.hidden_routes(projection, "sessions_per_month")
ui.render_disclosure_note(ctx, [f"projection for {', '.join(proj_hidden)}"] if proj_hidden else [])

ui.render_downloads(ctx, ("maintenance.csv",), key="maintenance")
