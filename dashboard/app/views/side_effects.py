"""Side effects page (`/side-effects`), one part at a time under tabs (`view=` in the link, ui.PAGE_VIEWS):
the route × event heatmap of per-session rates, per-patient incidence with intervals, the severity mix
beside how each effect fades over session number, and blood-pressure peaks."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import colors, figures
from dashboard.data import spec

from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
ui.render_page_header(
    "Side effects",
    "Every session of the cohort's patients, grouped by the route of the session. Side effects need no "
    "baseline score, so every patient with a session counts. Severe blood pressure: a peak of 180 systolic "
    "or 110 diastolic or more.",
    ctx,
)


def render_by_route() -> None:
    """Per-session rates by route and side effect, as a heatmap."""
    side_effects = ui.load_summary(ctx.signature, s, "side_effects.csv")
    ui.render_chart(figures.create_side_effect_heatmap, side_effects, key="chart_heatmap")
    n_hidden = int(side_effects["session_rate"].isna().sum()) if not side_effects.empty else 0
    ui.render_disclosure_note(ctx, [f"{n_hidden} route × event cells (grey: each says 'fewer than {s.min_cell}' with "
                                    f"the highest rate it could be, or 'hidden' where it protects another cell)"]
                              if n_hidden else [])


def render_patients() -> None:
    """Share of patients with each side effect at least once, with Wilson intervals."""
    side_effects = ui.load_summary(ctx.signature, s, "side_effects.csv")
    events_present = [e for e in spec.SUMMARY_EVENTS if e in set(side_effects["event"].astype(str))]
    chosen = st.multiselect(
        "Side effects to show", events_present, default=[e for e in events_present if e != "any"][:8],
        format_func=figures.event_label, key="_ko_incidence_events",
    )
    ui.render_chart(figures.create_incidence_figure, side_effects, chosen, key="chart_incidence")
    st.caption("Share of patients with at least one session of that route in which the effect was recorded, with "
               "95 % Wilson intervals.")


def render_severity() -> None:
    """The severity mix of each side effect, and how each fades with repeat sessions."""
    left, right = st.columns(2)
    with left:
        st.subheader("Severity mix")
        severity = ui.load_severity(ctx.signature, s)
        routes = list(dict.fromkeys(str(r) for r in severity["route"])) if not severity.empty else [spec.ALL]
        route = st.selectbox("Route", routes, index=len(routes) - 1, format_func=colors.route_label,
                             key="_ko_severity_route")
        _, left_out = ui.render_chart(figures.create_severity_figure, severity, route, key="chart_severity")
        left_words = ", ".join(figures.event_label(e) for e in left_out)
        ui.render_disclosure_note(ctx, [f"the severity mix of {left_words} (left out)"] if left_out else [])
    with right:
        st.subheader("Does it fade with repeat sessions?")
        by_session = ui.load_side_effects_by_session(ctx.signature, s)
        fade_events = [e for e in spec.SUMMARY_EVENTS
                       if not by_session.empty and e in set(by_session["event"].astype(str))]
        event = st.selectbox("Side effect", fade_events or list(spec.EVENTS), format_func=figures.event_label,
                             key="_ko_fade_event")
        ui.render_chart(figures.create_fade_figure, by_session, event, key="chart_fade")
        hidden_points = int(by_session.loc[by_session["event"].astype(str) == event, "session_rate"].isna().sum()) \
            if not by_session.empty else 0
        ui.render_disclosure_note(ctx, [f"{hidden_points} points resting on few sessions"] if hidden_points else [])


def render_blood_pressure() -> None:
    """Blood-pressure peaks and rises by route."""
    bp = ui.load_blood_pressure(ctx.signature, s)
    ui.render_chart(figures.create_blood_pressure_figure, bp, key="chart_blood_pressure")

    def render_bp_table() -> None:
        ui.render_table(
            bp,
            {"route": "Route", "sessions_with_vitals": "Sessions with vitals",
             "sbp_peak_median": "Median peak systolic",
             "dbp_peak_median": "Median peak diastolic", "sbp_rise_median": "Median systolic rise",
             "dbp_rise_median": "Median diastolic rise", "sessions_sbp_180": "Sessions ≥ 180 systolic",
             "sessions_dbp_110": "Sessions ≥ 110 diastolic", "share_bp_severe": "Share ≥ 180/110"},
            percent=("share_bp_severe",),
            decimals={"sbp_peak_median": 0, "dbp_peak_median": 0, "sbp_rise_median": 0, "dbp_rise_median": 0},
        )
        st.caption("Pressures in mmHg; the rise is the peak minus the pre-dose reading.")

    ui.render_lazy_section("Blood pressure by route (table)", "_ko_section_bp_table", render_bp_table)
    bp_hidden = list(dict.fromkeys(figures.hidden_routes(bp, "sbp_peak_median")
                                   + figures.hidden_routes(bp, "share_bp_severe")))
    ui.render_disclosure_note(ctx, [f"blood pressure for {', '.join(colors.route_label(r) for r in bp_hidden)}"]
                              if bp_hidden else [])


PARTS = {"by-route": render_by_route, "patients": render_patients, "severity": render_severity,
         "blood-pressure": render_blood_pressure}
with ui.render_view_tabs(ctx):
    PARTS[ctx.view]()

ui.render_downloads(ctx, ("side_effects.csv",), key="side_effects")
