"""Time to relief page (`/relief`): Kaplan–Meier curves of cumulative relief per route with interval bands
and numbers at risk, the median with its interval, relief by day 1/7/14/28, and the log-rank comparison in a
section drawn only while open."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import colors, figures

from dashboard.app import ui

RELIEF_HORIZON_DAYS = 56  # nearly all relief happens in the first 8 weeks; the whole follow-up is one click away
THRESHOLDS = {
    "response": "50 % improvement (response)",
    "mcid": "minimal important change",
}

ctx = ui.current_context()
s = ctx.settings
instrument = s.instrument_words
ui.render_page_header(
    "Time to relief",
    "Days from the first session to the first score that meets the relief threshold (post-dose scores count). "
    "Patients who never meet it count until their last follow-up score (Kaplan–Meier).",
    ctx,
)


def _switch_threshold() -> None:
    # The page's switch drives the shared setting in the sidebar (and so the link).
    chosen = st.session_state.get("_ko_relief_page")
    if chosen:
        st.session_state["relief"] = chosen


st.session_state["_ko_relief_page"] = s.relief
st.segmented_control(
    "Relief threshold", tuple(THRESHOLDS), key="_ko_relief_page", on_change=_switch_threshold,
    format_func=lambda t: THRESHOLDS[t],
    help=f"Minimal important change on {instrument}: a drop of at least {s.mcid_words} points.",
)

summary = ui.load_summary(ctx.signature, s, "time_to_relief.csv")
curve = ui.load_summary(ctx.signature, s, "time_to_relief_curve.csv")
threshold_label = THRESHOLDS[s.relief] if s.relief == "response" else f"a drop of {s.mcid_words}+ points on {instrument}"

at_risk = ui.load_relief_at_risk(ctx.signature, s)
SPANS = {"8w": "First 8 weeks", "all": "Whole follow-up"}
if not figures.relief_curve_has_steps(curve):
    st.info(figures.relief_curve_missing_words(s.min_cell)
            + (" Widen the filters in the sidebar to see the curves." if s.min_cell > 0 else ""),
            icon=":material/lock:" if s.min_cell > 0 else ":material/info:")
else:
    # its value comes from the link or the reader (ui.display_choices, `days=` in the link)
    span = st.segmented_control("Days shown", tuple(SPANS), format_func=SPANS.get, key="_ko_relief_span",
                                required=True) or "8w"
    ui.render_chart(figures.create_relief_figure, curve, at_risk, threshold_label,
                    horizon=RELIEF_HORIZON_DAYS if span == "8w" else None, key="chart_relief_curve")
    curve_hidden = s.min_cell > 0  # protect() leaves the withheld points out of the curve
    ui.render_disclosure_note(ctx, [
        "steps of the curves resting on few events or few patients at risk (the curves step only where enough "
        "patients were relieved since the last step); numbers at risk marked – are withheld for the same reason"
    ] if curve_hidden else [])

st.subheader("Median time to relief and relief by day")
table = summary.copy()
ui.render_table(
    table,
    {"route": "Route", "patients": "Patients", "events": "Relieved", "censored": "Not (yet) relieved",
     "median_days": "Median days", "median_ci_low": "95 % low", "median_ci_high": "95 % high",
     "relieved_by_day_1": "By day 1", "relieved_by_day_7": "By day 7", "relieved_by_day_14": "By day 14",
     "relieved_by_day_28": "By day 28"},
    percent=("relieved_by_day_1", "relieved_by_day_7", "relieved_by_day_14", "relieved_by_day_28"),
    decimals={"median_days": 1, "median_ci_low": 1, "median_ci_high": 1},
    undefined={"median_days": "not reached", "median_ci_low": "not reached", "median_ci_high": "open"},
)
st.caption("Not reached: fewer than half the patients were relieved during follow-up. Open: the interval has no "
           "upper limit. Hidden cells say why (fewer than the minimum cell).")


def render_logrank() -> None:
    """Pairwise log-rank tests between the routes' curves, Benjamini–Hochberg adjusted."""
    logrank = ui.load_logrank(ctx.signature, s)
    if logrank is None or logrank.empty:
        st.info("There is only one route in this cohort, so there is nothing to compare.", icon=":material/info:")
        return
    lr = logrank.assign(pair=[colors.route_pair_label(a, b) for a, b in zip(logrank["route_a"], logrank["route_b"])])
    ui.render_table(lr, {"pair": "Routes", "statistic": "Test statistic", "p_value": "p-value",
                         "p_adjusted": "p-value, adjusted"},
                    decimals={"statistic": 2}, pvalues=("p_value", "p_adjusted"))
    st.caption("Pairwise log-rank tests of the whole curves; p-values adjusted for several comparisons "
               "(Benjamini–Hochberg).")


# The pairwise tests are a detail under the answer, computed only when asked for: at 100,000 patients up to
# 140 ms of a new filter state, and a 21-row table on every rerun (issue 16).
ui.render_lazy_section("Comparing routes: do the curves differ beyond chance? (log-rank tests)",
                       ui.LOGRANK_SECTION_KEY, render_logrank)

ui.render_downloads(ctx, ("time_to_relief.csv", "time_to_relief_curve.csv"), key="relief")
