"""Response by route page (`/response`): rates with intervals, then, one part at a time under tabs
(`view=` in the link, ui.PAGE_VIEWS), the case-mix adjusted rates, the route comparison, the weekly
trajectory and a breakdown by site, diagnosis or baseline severity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.charts import colors, figures
from dashboard.data import spec

from dashboard.analysis import adjusted
from dashboard.app import ui


BREAKDOWN_BY = {"site": "site", "diagnosis": "primary diagnosis", "severity": "baseline severity"}


def _and(words: list[str]) -> str:
    """'a, b and c'; 'no patient characteristic' when there is none (every one was the same for all)."""
    if not words:
        return "no patient characteristic (each was the same for everyone)"
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _by_target(merge: dict[str, str]) -> dict[str, list[str]]:
    """{level: merged into} as {merged into: [levels]} (for one sentence per target)."""
    out: dict[str, list[str]] = {}
    for level, target in merge.items():
        out.setdefault(target, []).append(level)
    return out


ctx = ui.current_context()
s = ctx.settings
instrument = s.instrument_words
ui.render_page_header(
    "Response by route",
    f"Response is an improvement of 50 % or more on {instrument} from baseline to the endpoint (the last score "
    f"within {s.window} days after the last induction session); remission is an endpoint score of "
    f"{s.remission_words} or less. Population: "
    + ("patients with an endpoint score." if s.population == "observed"
       else "every eligible patient (a missing endpoint counts as no response)."),
    ctx,
)


def render_rates() -> None:
    """Response and remission rates by route, with 95 % Wilson intervals."""
    response = ui.load_summary(ctx.signature, s, "response_by_route.csv")
    ui.render_chart(figures.create_response_figure, response, s.instrument_label, key="chart_response_rates")
    hidden = figures.hidden_routes(response, "response_rate")
    ui.render_disclosure_note(ctx, [f"rates for {', '.join(colors.route_label(r) for r in hidden)}"] if hidden else [])

    def render_rates_table() -> None:
        ui.render_table(
            response,
            {"route": "Route", "patients": "Eligible patients", "evaluable": "Evaluable", "responders": "Responders",
             "response_rate": "Response rate", "response_ci_low": "Response 95 % low",
             "response_ci_high": "Response 95 % high", "remitters": "Remitters", "remission_rate": "Remission rate",
             "remission_ci_low": "Remission 95 % low", "remission_ci_high": "Remission 95 % high"},
            percent=("response_rate", "response_ci_low", "response_ci_high", "remission_rate", "remission_ci_low",
                     "remission_ci_high"),
        )

    ui.render_lazy_section("Response and remission by route (table)", "_ko_section_response_table",
                           render_rates_table)


def render_adjusted() -> None:
    """Crude and case-mix adjusted response by route (marginal standardisation)."""
    adjusted_table = ui.load_summary(ctx.signature, s, "adjusted_response.csv")
    details = ui.load_adjusted_details(ctx.signature, s)
    if not details["fitted"]:
        st.info(f"**No adjusted rates for this cohort:** {details['reason']}. The crude rates (under *Response "
                "and remission*) stand alone.", icon=":material/info:")
    else:
        reference = spec.ROUTE_LABELS.get(details["reference_route"], details["reference_route"])
        st.markdown(
            "Routes are often given to different patients: one kept for severe or treatment-resistant cases looks "
            "worse than it is. The **adjusted rate** is the response rate every route would have if it had treated "
            "all of these patients, allowing for " + _and(details["variables"])
            + " (a logistic regression, standardised over the whole cohort). "
            f"Differences are against {reference}, the route with most patients. Where the adjusted dots sit "
            "where the hollow crude ones do, case mix does not explain the differences between routes; where "
            "they move, it explains part of them. An adjusted difference whose interval crosses zero means the "
            "data cannot tell that route from the reference once case mix is allowed for. Adjustment covers "
            "only these measured differences between patients, not unmeasured ones."
        )
        ui.render_chart(figures.create_adjusted_figure, adjusted_table, key="chart_adjusted")
        if details["merges"] or details["dropped"]:
            notes = [f"{what} {', '.join(levels)} counted as {into}"
                     for what, merge in (("diagnoses", details["merges"].get("diagnosis", {})),
                                         ("age bands", details["merges"].get("age_band", {})))
                     for into, levels in _by_target(merge).items()]
            notes += [f"{v} not used (the same for every patient)" for v in details["dropped"]]
            st.caption("Groups with fewer than 10 patients are merged into the largest: " + "; ".join(notes) + ".")

    def render_adjusted_table() -> None:
        shown = adjusted_table.assign(route=[spec.ROUTE_LABELS.get(r, r) for r in adjusted_table["route"]])
        ui.render_table(
            shown,
            {"route": "Route", "evaluable": "Evaluable", "crude_rate": "Crude rate", "adjusted_rate": "Adjusted rate",
             "adjusted_ci_low": "Adjusted 95 % low", "adjusted_ci_high": "Adjusted 95 % high",
             "difference": "Difference from reference", "difference_ci_low": "Difference 95 % low",
             "difference_ci_high": "Difference 95 % high", "note": "Note"},
            percent=("crude_rate", "adjusted_rate", "adjusted_ci_low", "adjusted_ci_high", "difference",
                     "difference_ci_low", "difference_ci_high"),
        )

    ui.render_lazy_section("Crude and adjusted response by route (table)", "_ko_section_adjusted_table",
                           render_adjusted_table)
    hidden_adjusted = [colors.route_label(str(r)) for r, n in zip(adjusted_table["route"], adjusted_table["note"])
                       if n == adjusted.NOTE_HIDDEN]
    ui.render_disclosure_note(ctx, [f"adjusted rates for {', '.join(hidden_adjusted)}"] if hidden_adjusted else [])


def render_comparison() -> None:
    """Pairwise differences between routes and the chi-square test across them."""
    # the widgets' values come from the link or the reader (ui.display_choices: compare=, weeks=, by=)
    outcome = st.segmented_control("Compare on", ("response", "remission"), key="_ko_compare_outcome",
                                   format_func=str.capitalize, required=True) or "response"
    comparison, pairwise = ui.load_route_comparison(ctx.signature, s, outcome)
    if pairwise is None or pairwise.empty:
        st.info("There is only one route in this cohort, so there is nothing to compare.", icon=":material/info:")
    else:
        # The intervals are Newcombe's for each pair alone while the verdict (here, and the Overview's "lower" or
        # "not clearly different") is the Benjamini–Hochberg adjusted Fisher p: an interval just clear of zero can
        # come with an adjusted p above 0.05, so the words must not read the verdict off the interval.
        st.markdown(
            "Differences between routes come first, each with its 95 % interval for that pair alone (not adjusted "
            "for making several comparisons). Whether two routes differ beyond chance is read from the p-value "
            "adjusted for several comparisons (Benjamini–Hochberg): below 0.05 they differ; otherwise they are not "
            "clearly different, even when the interval just clears zero."
        )
        ui.render_chart(figures.create_comparison_figure, pairwise, outcome, key="chart_comparison")
        # below the chart at full width: every pair visible, no inner scroll, no sideways scroll
        with st.container():
            points = {c: figures.floats(pairwise[c]) * 100 for c in ("difference", "ci_low", "ci_high")}
            table = pairwise.assign(pair=[colors.route_pair_label(a, b)
                                          for a, b in zip(pairwise["route_a"], pairwise["route_b"])], **points)
            ui.render_table(
                table,
                {"pair": "Routes", "difference": "Difference (points)", "ci_low": "95 % low", "ci_high": "95 % high",
                 "p_adjusted": "p-value, adjusted"},
                decimals={"difference": 1, "ci_low": 1, "ci_high": 1}, pvalues=("p_adjusted",),
            )
            st.caption("Differences and their 95 % limits in percentage points (first route minus second); the "
                       "limits are for each pair alone, the p-value is adjusted for several comparisons "
                       "(Benjamini–Hochberg).")
            _p = ui.format_p(comparison.p_value)
            if _p:
                st.caption(
                    f"All routes together: χ² = {comparison.chi2:.2f} with {comparison.dof} degrees of freedom, "
                    f"p {_p if _p.startswith('<') else '= ' + _p} (chi-square test of {outcome} across routes)."
                )
        hidden_pairs = [colors.route_pair_label(a, b)
                        for a, b, d in zip(pairwise["route_a"], pairwise["route_b"], pairwise["difference"])
                        if pd.isna(d)]
        ui.render_disclosure_note(ctx, [f"comparisons {', '.join(hidden_pairs)}"] if hidden_pairs else [])


def render_trajectory() -> None:
    """Mean weekly score (or improvement in percent, matched) by route."""
    trajectory = ui.load_trajectory(ctx.signature, s)
    weeks = st.select_slider("Weeks shown", options=(8, 12, 26, 52), key="_ko_trajectory_weeks")
    ui.render_chart(figures.create_trajectory_figure, trajectory, instrument, max_week=weeks, percent=s.matched,
                    key="chart_trajectory")
    # Under matched the questionnaires' points differ (GAD-7 0-21, PCL-5 0-80): the chart shows improvement
    # in percent
    st.caption((f"Mean improvement from baseline in percent, each patient on {instrument}" if s.matched
                else f"Mean {instrument} score")
               + " of eligible patients in each week since their first session; weeks with too "
               "few patients are left out. Shaded: 95 % intervals — drawn for every line when two routes or fewer "
               "are selected in the sidebar, otherwise for all routes together.")


def render_breakdown() -> None:
    """Response by route within each site, diagnosis or baseline severity."""
    by = st.segmented_control("Break down by", tuple(BREAKDOWN_BY), key="_ko_breakdown_by", required=True,
                              format_func=lambda b: BREAKDOWN_BY[b].capitalize()) or "site"
    breakdown = ui.load_breakdown(ctx.signature, s, by)
    ui.render_chart(figures.create_breakdown_figure, breakdown, BREAKDOWN_BY[by], key="chart_breakdown")
    hidden_groups = sorted({f"{g} ({r})" for g, r, v in zip(breakdown.get("group", []), breakdown.get("route", []),
                                                             breakdown.get("response_rate", [])) if pd.isna(v)})
    ui.render_disclosure_note(ctx, [f"{len(hidden_groups)} group × route cells"] if hidden_groups else [])


PARTS = {"rates": render_rates, "adjusted": render_adjusted, "comparison": render_comparison,
         "trajectory": render_trajectory, "breakdown": render_breakdown}
with ui.render_view_tabs(ctx):
    PARTS[ctx.view]()

ui.render_downloads(ctx, ("response_by_route.csv", "adjusted_response.csv"), key="response")
