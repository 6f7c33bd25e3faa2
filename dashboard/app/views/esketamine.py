"""Esketamine monitoring page (`/esketamine-monitoring`): the SPRAVATO REMS panel of rems.csv.

One part at a time under tabs (`view=` in the link, ui.PAGE_VIEWS), per site and overall: the share of
esketamine sessions held in the clinic that meet each REMS rule (with 95 % intervals and the number of
sessions) and how many sessions or patients break each rule (counts only, never identifiers); the events
observed; the distributions of monitoring time and of "ready to leave" minutes against the monitoring
minimum; and the rise in blood pressure at 40 minutes. Measures whose columns the clinic export lacks are
named as missing, never shown as zero.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.app import ui
from dashboard.charts import figures
from dashboard.data import spec

ctx = ui.current_context()
s = ctx.settings
ui.render_page_header(
    "Esketamine monitoring",
    "The SPRAVATO REMS asks for monitoring of at least two hours after intranasal esketamine and until "
    "sedation, dissociation and breathing problems have resolved; blood pressure before dosing, at about 40 "
    "minutes and before discharge; pulse oximetry; and a Patient Monitoring Form within 7 days of every "
    f"session. Esketamine sessions held in the clinic by the cohort's patients; minimum monitoring time "
    f"{s.rems_minutes} minutes (change it under *Analysis settings*).",
    ctx,
)

rems = ui.load_summary(ctx.signature, s, "rems.csv")
lacking = ui.load_rems_lacking(ctx.signature)
total = rems[rems["site"].astype(str) == spec.ALL].iloc[0]

if lacking:
    lines = [f"- **{spec.REMS_LABELS[m]}**: needs {', '.join(f'`{c}`' for c in cols)}" for m, cols in lacking.items()]
    st.warning(
        "**The clinic export does not include everything this panel needs.** These measures are left empty "
        "(not zero) until the export carries their columns:\n\n" + "\n".join(lines),
        icon=":material/playlist_remove:",
    )

unshown = figures.rems_unshown(total["sessions"], s.min_cell)
if unshown is not None:  # too few to show, or none
    hidden, lead, rest = unshown
    if hidden:
        st.warning(f"**{lead}** {rest} Widen the filters in the sidebar.", icon=":material/lock:")
    else:
        st.info(f"**{lead}** {rest}", icon=":material/search_off:")
    ui.render_downloads(ctx, ("rems.csv",), key="rems")
    st.stop()

sites = [str(x) for x in rems["site"]]


def missed_cell(row: pd.Series, measure: str) -> str:
    """How many sessions (or patients) break the rule: recorded − met, shown only where both are shown."""
    if measure in lacking:
        return "not in export"
    met, of = row[measure], row[measure + "_of"]
    if pd.isna(met) or pd.isna(of) or of == 0:  # hidden, or checked in no session (not a count of 0 breaks)
        return figures.rems_rate_word(of)
    return f"{int(of) - int(met):,}"


st.markdown(
    f"**{ui.describe_size(total['patients'], s.min_cell).replace('patient', 'esketamine patient')}**, "
    f"{figures.fmt_count(total['sessions'])} monitored sessions in the clinic."
)


def _note_hidden_measures(measures: tuple[str, ...]) -> None:
    hidden = [spec.REMS_LABELS[m] for m in measures
              if m not in lacking and rems[m + "_rate"].isna().any() and not rems[m + "_of"].eq(0).all()]
    # lower case for the sentence, but not "REMS"
    ui.render_disclosure_note(ctx, [f"some sites' {', '.join(h[:1].lower() + h[1:] for h in hidden)}"] if hidden else [])


def _note_hidden_bins(distribution: pd.DataFrame, measures: tuple[str, ...]) -> None:
    shown = distribution[distribution["measure"].astype(str).isin(measures)] if not distribution.empty else distribution
    hidden_bins = int(shown["sessions"].isna().sum()) if not shown.empty else 0
    ui.render_disclosure_note(ctx, [f"{hidden_bins} bars of the distributions"] if hidden_bins else [])


def render_rules() -> None:
    """Each REMS rule by site with Wilson intervals, the rule breaks counted by rule, every measure by site."""
    st.caption("Each rule as the share of sessions (enrolment: of patients) meeting it, with 95 % Wilson intervals; "
               "n is the number of sessions where the rule could be checked.")
    rules = list(spec.REMS_RULES)
    # one figure of a panel per rule, one column on a phone: six charts made a switch to the page 489 ms instead
    # of 341 (bench/RESULTS.md)
    ui.render_chart(figures.create_rems_rules_figure, rems, tuple(rules), columns=1 if ui.is_phone() else 2,
                    key="chart_rems_rules")
    st.markdown("**Sessions and patients that break a rule**, counted by rule (no session or patient is listed).")
    breaks = pd.DataFrame({
        "Rule": [spec.REMS_LABELS[m] + (" (patients)" if m in spec.REMS_PATIENT_MEASURES else " (sessions)")
                 for m in rules],
        **{ui.plain(figures.rems_site_name(site)): [missed_cell(row, m) for m in rules]
           for site, (_, row) in zip(sites, rems.iterrows())},
    })
    # A static table (a few rules by the sites): no grid to load and lay out, which cost about a second on the
    # first visit in a session (bench/RESULTS.md); site names from the data are escaped, as in ui.render_table.
    st.table(breaks, hide_index=True)
    st.caption(
        f"Monitored for less than {s.rems_minutes} minutes; a blood pressure (systolic or diastolic, before, at 40 "
        "minutes or at discharge) missing; pulse oximetry not used; the monitoring form submitted more than 7 days "
        "after the session or never; not resolved at discharge; enrolled in the REMS after the first esketamine "
        "dose or enrolment not recorded."
    )

    def render_every_measure() -> None:
        labels = {"site": "Site", "sessions": "Sessions", "patients": "Patients"}
        for m in spec.REMS_MEASURES:
            labels.update({m: spec.REMS_LABELS[m], m + "_of": "of", m + "_rate": "share"})
        labels["ready_to_leave_median"] = "Median minutes to ready"
        ui.render_table(rems, labels, percent=[m + "_rate" for m in spec.REMS_MEASURES],
                        decimals={"ready_to_leave_median": 0})

    ui.render_lazy_section("Every measure by site (table)", "_ko_section_rems_measures", render_every_measure)
    _note_hidden_measures(tuple(spec.REMS_RULES))


def render_observed() -> None:
    """Sedation, dissociation, respiratory depression and high blood pressure at 40 minutes by site."""
    events = ("sedation", "dissociation", "respiratory_depression", "bp_high_40min")
    rows = []
    for site, (_, row) in zip(sites, rems.iterrows()):
        for m in events:
            rows.append({"site": figures.rems_site_name(site), "measure": spec.REMS_LABELS[m],
                         "sessions": row[m], "of": row[m + "_of"], "rate": row[m + "_rate"],
                         "low": row[m + "_ci_low"], "high": row[m + "_ci_high"]})
    observed = pd.DataFrame(rows)
    # hidden cells arrive as <NA> in object columns: typed columns show them blank, never as a value
    for c in ("sessions", "of"):
        observed[c] = pd.to_numeric(observed[c], errors="coerce").astype("Float64").round().astype("Int64")
    for c in ("rate", "low", "high"):
        observed[c] = pd.to_numeric(observed[c], errors="coerce").astype("float64")
    ui.render_table(
        observed,
        {"site": "Site", "measure": "Observed", "sessions": "Sessions", "of": "Of sessions recorded",
         "rate": "Share", "low": "95 % interval from", "high": "to"},
        percent=("rate", "low", "high"),
    )
    event = st.selectbox("Chart", events, format_func=figures.rems_label, key="_ko_rems_event")
    ui.render_chart(figures.create_rems_rate_figure, rems, event, key="chart_rems_event")
    _note_hidden_measures(events)


def render_monitoring_time() -> None:
    """The distributions of monitoring and ready-to-leave minutes against the minimum."""
    distribution = ui.load_rems_distribution(ctx.signature, s)
    left, right = st.columns(2)
    with left:
        ui.render_chart(figures.create_rems_distribution_figure, distribution, "monitoring_minutes", s.rems_minutes,
                        key="chart_rems_monitoring")
    with right:
        ui.render_chart(figures.create_rems_distribution_figure, distribution, "ready_to_leave_minutes",
                        s.rems_minutes, key="chart_rems_ready")
    if "ready_to_leave" in lacking:
        st.caption("Ready-to-leave minutes are not in the clinic export.")
    else:
        medians = ", ".join(
            f"{figures.rems_site_name(site)} "
            f"{figures.rems_rate_word(n) if pd.isna(v) else f'{float(v):.0f} min'}"
            for site, v, n in zip(sites, rems["ready_to_leave_median"], rems["ready_to_leave_sessions"]))
        st.caption(f"Median minutes until the clinician judged the patient ready to leave: {medians}. Sessions to "
                   f"the right of the dashed line at {s.rems_minutes} minutes needed longer than the minimum.")
    _note_hidden_bins(distribution, ("monitoring_minutes", "ready_to_leave_minutes"))


def render_blood_pressure() -> None:
    """The distributions of the rise in blood pressure at 40 minutes."""
    distribution = ui.load_rems_distribution(ctx.signature, s)
    left, right = st.columns(2)
    with left:
        ui.render_chart(figures.create_rems_distribution_figure, distribution, "sbp_rise_40min",
                        key="chart_rems_sbp")
    with right:
        ui.render_chart(figures.create_rems_distribution_figure, distribution, "dbp_rise_40min",
                        key="chart_rems_dbp")
    high = total["bp_high_40min_rate"]
    high_words = ("not in the clinic export" if "bp_high_40min" in lacking else figures.fmt_pct(high)
                  if pd.notna(high) else figures.rems_rate_word(total["bp_high_40min_of"]))
    st.caption("The 40-minute reading minus the reading before dosing, over sessions with both recorded. "
               f"Sessions at 180 systolic or 110 diastolic or more at 40 minutes: {high_words} overall.")
    _note_hidden_bins(distribution, ("sbp_rise_40min", "dbp_rise_40min"))


PARTS = {"rules": render_rules, "observed": render_observed, "monitoring-time": render_monitoring_time,
         "blood-pressure": render_blood_pressure}
with ui.render_view_tabs(ctx):
    PARTS[ctx.view]()

ui.render_downloads(ctx, ("rems.csv",), key="rems")
