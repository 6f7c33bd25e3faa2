"""Overview page (`/`): the headline figures with their n and interval, the cohort funnel and the data set."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.charts import figures
from dashboard.data import spec

from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
ui.render_page_header(
    "Overview",
    "Headline outcomes for the selected cohort. Each figure shows how many patients it rests on and its 95 % "
    "interval.",
    ctx,
)
funnel = ui.load_summary(ctx.signature, s, "cohort.csv")
response = ui.load_summary(ctx.signature, s, "response_by_route.csv")
relief = ui.load_summary(ctx.signature, s, "time_to_relief.csv")
uptake = ui.load_maintenance_uptake(ctx.signature, s)


def _interval(lo: object, hi: object, pct: bool = True) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "interval hidden"
    if pct:
        return f"95 % interval {float(lo) * 100:.0f}–{float(hi) * 100:.0f} %"
    return f"95 % interval {float(lo):.1f}–{float(hi):.1f} days"


def _headline(col, label: str, value: str, detail: str, help_text: str) -> None:  # noqa: ANN001
    with col:
        st.metric(label, value, help=help_text, border=True)
        st.caption(detail)


cohort_all = ui.all_row(funnel)
resp_all = ui.all_row(response)
relief_all = ui.all_row(relief)
maint_all = ui.all_row(uptake)
any_all = ui.all_row(ui.load_any_side_effect(ctx.signature, s))
hidden: list[str] = []

c = st.columns(3)
d = st.columns(3)
eligible = figures.fmt_count(cohort_all["eligible"]) if cohort_all is not None else "0"
_headline(c[0], "Patients in the cohort", figures.fmt_count(cohort_all["patients"]) if cohort_all is not None else "0",
          f"{eligible} eligible (baseline {spec.INSTRUMENT_LABELS[s.instrument]} ≥ {s.baseline_minimum})",
          "Patients passing every filter; eligible patients have a session and a baseline at or above the minimum.")
if resp_all is not None:
    n_eval = figures.fmt_count(resp_all["evaluable"])
    _headline(c[1], "Response rate", figures.fmt_pct(resp_all["response_rate"], 0),
              f"{_interval(resp_all['response_ci_low'], resp_all['response_ci_high'])} · n = {n_eval}",
              "Improvement of 50 % or more from baseline at the endpoint (Wilson interval).")
    _headline(c[2], "Remission rate", figures.fmt_pct(resp_all["remission_rate"], 0),
              f"{_interval(resp_all['remission_ci_low'], resp_all['remission_ci_high'])} · n = {n_eval}",
              f"Endpoint score of {s.remission_cut} or less on {spec.INSTRUMENT_LABELS[s.instrument]}.")
    if pd.isna(resp_all["response_rate"]):
        hidden.append("response and remission rates")
if relief_all is not None:
    median = relief_all["median_days"]
    value = figures.fmt_days(median) if not pd.isna(median) else ("not reached" if not pd.isna(relief_all["patients"]) else "hidden")
    _headline(d[0], "Median days to relief", value,
              f"{_interval(relief_all['median_ci_low'], relief_all['median_ci_high'], pct=False)} · "
              f"n = {figures.fmt_count(relief_all['patients'])}",
              "Kaplan–Meier median time from the first session to the first score meeting the relief threshold "
              f"({'50 % improvement' if s.relief == 'response' else 'minimal important change'}).")
if any_all is not None:
    _headline(d[1], "Patients with any side effect", figures.fmt_pct(any_all["patient_rate"], 0),
              f"{_interval(any_all['patient_ci_low'], any_all['patient_ci_high'])} · "
              f"n = {figures.fmt_count(any_all['patients'])}",
              "Share of patients with a session who had at least one side effect of any type recorded in any "
              "session (severe blood pressure included).")
if maint_all is not None:
    _headline(d[2], "Maintenance uptake", figures.fmt_pct(maint_all["uptake_rate"], 0),
              f"{_interval(maint_all['uptake_ci_low'], maint_all['uptake_ci_high'])} · "
              f"n = {figures.fmt_count(maint_all['responders'])} responders",
              "Share of responders who had at least one maintenance session.")

network = ui.load_network(ctx.signature, s, ui.viewer_named_sites(ctx))["response"]
if network.sites_with_patients:
    if pd.isna(network.median):
        line = (f"pooled response rate {figures.fmt_pct(network.pooled, 0)} across {network.sites_with_patients} "
                f"sites (too few sites with enough patients for a median yet)")
    else:
        line = (f"median site {figures.fmt_pct(network.median, 0)}, 75th percentile "
                f"{figures.fmt_pct(network.p75, 0)}, pooled {figures.fmt_pct(network.pooled, 0)} "
                f"({network.sites_benchmarked} sites benchmarked)")
    st.markdown(f"**Network benchmark** (response, every filter but site): {line}. "
                "Each site against these is on the *Network benchmark* page.")

st.subheader("Cohort funnel")
st.plotly_chart(figures.create_funnel_figure(funnel), key="chart_funnel")
with st.expander("Funnel by route (table)"):
    ui.render_table(funnel, {"route": "Route", **{col: label for col, label in figures.FUNNEL_STEPS}})
ui.render_disclosure_note(ctx, [f"funnel counts for {', '.join(r for r in figures.hidden_routes(funnel, 'with_endpoint'))}"]
                          if figures.hidden_routes(funnel, "with_endpoint") else hidden)

st.subheader("Data set")
ui.render_dataset(ctx)

ui.render_downloads(ctx, ("cohort.csv", "response_by_route.csv"), key="overview")
