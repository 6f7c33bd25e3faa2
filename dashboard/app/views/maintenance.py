"""Maintenance page (`/maintenance`), one part at a time under tabs (`view=` in the link, ui.PAGE_VIEWS):
uptake among responders and sustained response with the page's table (sessions per patient-month, uptake,
sustained response, timing medians), the timing of maintenance sessions, and the projected monthly
maintenance load of the current responders."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import colors, figures
from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
ui.render_page_header(
    "Maintenance",
    "After induction, responders may continue with maintenance sessions. Timing is counted from each patient's "
    "last induction session.",
    ctx,
)


def render_uptake() -> None:
    """Uptake and sustained response by route, then the page's table: its answer."""
    maintenance = ui.load_summary(ctx.signature, s, "maintenance.csv")
    ui.render_chart(figures.create_maintenance_rates_figure, maintenance, key="chart_maintenance_rates")
    st.caption("Uptake: responders with at least one maintenance session (95 % Wilson interval). Sustained "
               "response: Kaplan–Meier probability that a responder has not relapsed (improvement fallen to 25 % "
               "or less) 8 weeks after the last induction session.")
    hidden = figures.hidden_routes(maintenance, "uptake_rate")
    ui.render_disclosure_note(ctx, [f"uptake for {', '.join(colors.route_label(r) for r in hidden)}"]
                              if hidden else [])
    st.subheader("Maintenance by route")
    # The page's answer first (sessions per patient-month, sustained response, uptake), the details after, so
    # at 1440 px nothing that matters sits behind a sideways scroll.
    ui.render_table(
        maintenance,
        {"route": "Route", "sessions_per_patient_month": "Sessions per patient-month",
         "sustained_response_8w": "Still responding at 8 weeks", "uptake_rate": "Uptake",
         "responders": "Responders", "responders_in_maintenance": "In maintenance",
         "maintenance_patients": "Maintenance patients", "maintenance_sessions": "Sessions",
         "median_days_to_first_maintenance": "Days to first (median)",
         "median_interval_days": "Days between (median)"},
        percent=("uptake_rate", "sustained_response_8w"),
        decimals={"median_days_to_first_maintenance": 0, "median_interval_days": 0,
                  "sessions_per_patient_month": 2},
        undefined={"sessions_per_patient_month": "no maintenance", "sustained_response_8w": "not followed",
                   "uptake_rate": "no responders"},
    )
    st.caption("Maintenance patients are every cohort patient with at least one maintenance session, responder "
               "or not.")


def render_timing() -> None:
    """Days to the first maintenance session and between sessions, by route (medians)."""
    maintenance = ui.load_summary(ctx.signature, s, "maintenance.csv")
    ui.render_chart(figures.create_maintenance_timing_figure, maintenance, key="chart_maintenance_timing")
    st.caption("Medians over maintenance patients, counted from each patient's last induction session; the "
               "table under the first tab has every number.")


def render_projection() -> None:
    """How many maintenance sessions a month the current responders will need, by route."""
    projection = ui.load_projection(ctx.signature, s)
    ui.render_chart(figures.create_projection_figure, projection, key="chart_projection")
    ui.render_table(
        projection,
        {"route": "Route", "current_responders": "Current responders",
         "expected_in_maintenance": "Expected in maintenance", "sessions_per_month": "Sessions per month"},
        decimals={"expected_in_maintenance": 0, "sessions_per_month": 0},
    )
    st.caption("How many maintenance sessions a month the cohort's current responders will need if they take up "
               "maintenance, and attend, at the rates observed so far for their route.")
    proj_hidden = figures.hidden_routes(projection, "sessions_per_month")
    ui.render_disclosure_note(ctx, [f"projection for {', '.join(colors.route_label(r) for r in proj_hidden)}"]
                              if proj_hidden else [])


PARTS = {"uptake": render_uptake, "timing": render_timing, "projection": render_projection}
with ui.render_view_tabs(ctx):
    PARTS[ctx.view]()

ui.render_downloads(ctx, ("maintenance.csv",), key="maintenance")
