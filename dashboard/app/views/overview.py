"""Overview page (`/`): which route works best, at a glance and honestly.

First the headline by route (headline.csv: ranked by response rate, with n and intervals, routes that
differ from the best flagged), then the cohort's tiles, the trend by start quarter and the funnel. Every
figure names the page that explains it. Hidden values read "fewer than 11" (or a bound), never as a
finding such as "not reached".
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.charts import colors, figures
from dashboard.data import spec

from dashboard.app import ui

ctx = ui.current_context()
s = ctx.settings
k = s.min_cell
ui.render_page_header(
    "Overview",
    "Which route works best for this cohort: each route's outcomes side by side, ranked by response rate, "
    "with how many patients each figure rests on and its 95 % interval.",
    ctx,
)
headline = ui.load_summary(ctx.signature, s, "headline.csv")
funnel = ui.load_summary(ctx.signature, s, "cohort.csv")
response = ui.load_summary(ctx.signature, s, "response_by_route.csv")
relief = ui.load_summary(ctx.signature, s, "time_to_relief.csv")
uptake = ui.load_maintenance_uptake(ctx.signature, s)
any_effect = ui.load_any_side_effect(ctx.signature, s)
instrument = s.instrument_words


def _rate_with_interval(df: pd.DataFrame, i: object, rate: str, low: str, high: str) -> str:
    text = figures.cell_text(df, i, rate, "pct0", undefined="no patients", k=k)
    if pd.isna(df.at[i, rate]) or pd.isna(df.at[i, low]) or pd.isna(df.at[i, high]):
        return text
    return f"{text} ({float(df.at[i, low]) * 100:.0f}–{float(df.at[i, high]) * 100:.0f})"


def _median_with_interval(df: pd.DataFrame, i: object) -> str:
    # days as the Time to relief page writes them: a bound of 0.17 days is "0.2", not "0"
    text = figures.cell_text(df, i, "median_days", "decimal0", undefined="not reached in follow-up", k=k)
    if pd.isna(df.at[i, "median_days"]):
        return text
    text = figures.fmt_day_number(df.at[i, "median_days"])
    lo, hi = df.at[i, "median_ci_low"], df.at[i, "median_ci_high"]
    if pd.isna(lo):
        return text
    low = figures.fmt_day_number(lo)
    return f"{text} ({low}–{figures.fmt_day_number(hi)})" if not pd.isna(hi) else f"{text} ({low}–open)"


# --- 1. the answer: headline by route ------------------------------------------------------------------------

st.subheader("Which route works best?")
routes_only = headline[headline["route"].astype(str) != spec.ALL] if not headline.empty else headline
if routes_only.empty:
    st.info("No route has eligible patients in this cohort.", icon=":material/info:")
else:
    top = routes_only.iloc[0]
    top_i = routes_only.index[0]
    if pd.isna(top["response_rate"]):
        st.markdown("Every route's response rate is hidden in this cohort (too few patients): widen the filters.")
    else:
        differ = [colors.route_label(str(r)) for r, d in zip(routes_only["route"], routes_only["differs_from_best"])
                  if d is True or (not pd.isna(d) and bool(d))]
        same = [colors.route_label(str(r)) for r, d in zip(routes_only["route"], routes_only["differs_from_best"])
                if r != top["route"] and not pd.isna(d) and not bool(d)]
        sentence = (
            f"**{colors.route_label(str(top['route']))}** has the highest response rate: "
            f"**{_rate_with_interval(routes_only, top_i, 'response_rate', 'response_ci_low', 'response_ci_high')}** "
            f"of {figures.cell_text(routes_only, top_i, 'patients', k=k)} eligible patients."
        )
        if len(routes_only) > 1:
            if differ:
                sentence += f" Lower, beyond chance: {', '.join(differ)}."
            if same:
                sentence += f" Not clearly different from it: {', '.join(same)}."
        st.markdown(sentence)
    table = pd.DataFrame({
        "Route": [colors.route_label(str(r)) for r in headline["route"]],
        "Patients": [figures.cell_text(headline, i, "patients", k=k) for i in headline.index],
        "Response % (95 % CI)": [_rate_with_interval(headline, i, "response_rate", "response_ci_low",
                                                     "response_ci_high") for i in headline.index],
        "Remission": [figures.cell_text(headline, i, "remission_rate", "pct0", undefined="no patients", k=k)
                      for i in headline.index],
        "Days to relief (median, CI)": [_median_with_interval(headline, i) for i in headline.index],
        "Any side effect": [figures.cell_text(headline, i, "any_side_effect_rate", "pct0",
                                              undefined="no sessions", k=k) for i in headline.index],
        "Maintenance sessions per patient-month": [
            figures.cell_text(headline, i, "sessions_per_patient_month", "decimal1", undefined="no maintenance",
                              k=k) for i in headline.index],
        "Still responding at 8 weeks": [
            figures.cell_text(headline, i, "sustained_response_8w", "pct0", undefined="not followed", k=k)
            for i in headline.index],
        "Compared with the best": [
            "—" if str(r) == spec.ALL else
            ("best" if i == top_i and not pd.isna(headline.at[i, "response_rate"]) else
             ("lower" if d is True or (not pd.isna(d) and bool(d)) else
              ("not clearly different" if not pd.isna(d) else "not compared (hidden)")))
            for i, r, d in zip(headline.index, headline["route"], headline["differs_from_best"])
        ],
    })
    # a static table: its headers wrap, so every column fits a laptop screen without a sideways scroll
    st.table(table.set_index("Route"))
    st.caption(
        f"Ranked by response rate ({instrument}: improvement of 50 % or more at the endpoint). "
        "Lower means the Benjamini–Hochberg-adjusted Fisher test against the best route gives p < 0.05, as on "
        "the Response page. Side effects count the sessions of each route; maintenance and 8-week figures "
        "come from the Maintenance page; days to relief from the Time to relief page."
    )

# --- 2. the cohort as a whole ---------------------------------------------------------------------------------

st.subheader("All routes together")


def _interval(df: pd.DataFrame | None, i: object, lo: str, hi: str, days: bool = False) -> str:
    if df is None or pd.isna(df.at[i, lo]) or (pd.isna(df.at[i, hi]) and not days):
        return ""
    if days:
        high = "open" if pd.isna(df.at[i, hi]) else f"{float(df.at[i, hi]):.1f}"
        return f"95 % interval {float(df.at[i, lo]):.1f}–{high} days · "
    return f"95 % interval {float(df.at[i, lo]) * 100:.0f}–{float(df.at[i, hi]) * 100:.0f} % · "


def _tile(col, label: str, value: str, detail: str, help_text: str, page: str) -> None:  # noqa: ANN001
    with col:
        st.metric(label, value, help=help_text, border=True)
        st.caption(detail)
        st.page_link(page, label="Explained on " + ui.PAGE_TITLES[page], icon=":material/arrow_forward:")


def _all_index(df: pd.DataFrame) -> object | None:
    if df is None or df.empty:
        return None
    rows = df.index[df["route"].astype(str) == spec.ALL]
    return rows[0] if len(rows) else None


fi, ri, li, ai, mi = (_all_index(d) for d in (funnel, response, relief, any_effect, uptake))
c = st.columns(3)
d = st.columns(3)
if fi is not None:
    _tile(c[0], "Patients in the cohort", figures.cell_text(funnel, fi, "patients", k=k),
          f"{figures.cell_text(funnel, fi, 'eligible', k=k)} eligible "
          + (f"(baseline at or above each questionnaire's default: {s.baseline_words})" if s.matched
             else f"(baseline {instrument} ≥ {ui.baseline_label(s)})"),
          "Patients passing every filter; eligible patients have a session and a baseline at or above the minimum.",
          "views/data.py")
if ri is not None:
    n_eval = figures.cell_text(response, ri, "evaluable", k=k)
    _tile(c[1], "Response rate", figures.cell_text(response, ri, "response_rate", "pct0", undefined="no patients", k=k),
          f"{_interval(response, ri, 'response_ci_low', 'response_ci_high')}n = {n_eval}",
          "Improvement of 50 % or more from baseline at the endpoint (Wilson interval).", "views/response.py")
    _tile(c[2], "Remission rate", figures.cell_text(response, ri, "remission_rate", "pct0", undefined="no patients", k=k),
          f"{_interval(response, ri, 'remission_ci_low', 'remission_ci_high')}n = {n_eval}",
          f"Endpoint score at or below the remission cut-off on {instrument}.", "views/response.py")
if li is not None:
    _tile(d[0], "Median days to relief",
          figures.cell_text(relief, li, "median_days", "days", undefined="not reached in follow-up", k=k),
          f"{_interval(relief, li, 'median_ci_low', 'median_ci_high', days=True)}"
          f"n = {figures.cell_text(relief, li, 'patients', k=k)}",
          "Kaplan–Meier median time from the first session to the first score meeting the relief threshold "
          f"({'50 % improvement' if s.relief == 'response' else 'minimal important change'}).", "views/relief.py")
if ai is not None:
    _tile(d[1], "Patients with any side effect",
          figures.cell_text(any_effect, ai, "patient_rate", "pct0", undefined="no sessions", k=k),
          f"{_interval(any_effect, ai, 'patient_ci_low', 'patient_ci_high')}"
          f"n = {figures.cell_text(any_effect, ai, 'patients', k=k)}",
          "Share of patients with a session who had at least one side effect of any type recorded in any "
          "session (severe blood pressure included).", "views/side_effects.py")
if mi is not None:
    _tile(d[2], "Maintenance uptake",
          figures.cell_text(uptake, mi, "uptake_rate", "pct0", undefined="no responders", k=k),
          f"{_interval(uptake, mi, 'uptake_ci_low', 'uptake_ci_high')}"
          f"n = {figures.cell_text(uptake, mi, 'responders', k=k)} responders",
          "Share of responders who had at least one maintenance session.", "views/maintenance.py")

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


# --- 3. over time, and who is counted ---------------------------------------------------------------------

st.subheader("Has it changed over time?")
trend = ui.load_summary(ctx.signature, s, "trend.csv")
ui.render_chart(figures.create_trend_figure, trend, key="chart_trend")
trend_hidden = int(trend["response_rate"].isna().sum()) if not trend.empty and k > 0 else 0
ui.render_disclosure_note(ctx, [f"{trend_hidden} quarter × route points (grey rings on the axis; hover for why)"]
                          if trend_hidden else [])

st.subheader("Who is counted")
ui.render_chart(figures.create_funnel_figure, funnel, key="chart_funnel")
ui.render_lazy_section(
    "Funnel by route (table)", "_ko_section_funnel",
    lambda: ui.render_table(funnel, {"route": "Route", **{col: label for col, label in figures.FUNNEL_STEPS}}))
hidden_funnel = figures.hidden_routes(funnel, "with_endpoint")
ui.render_disclosure_note(
    ctx, [f"funnel counts for {', '.join(colors.route_label(r) for r in hidden_funnel)}"] if hidden_funnel else [])

st.subheader("Data set")
ui.render_dataset(ctx)

ui.render_downloads(ctx, ("headline.csv", "trend.csv", "cohort.csv", "response_by_route.csv"), key="overview")
