"""Network benchmark page (`/benchmark`): each site's response and remission rate against the network.

Someone who may see every site gets the funnel plot of all sites (rate against number of patients, with the
95 % and 99.8 % control limits around the pooled rate) and the table; someone restricted to their own sites
(docs/access.md, `ui.viewer_named_sites`) gets their own sites on the same distribution, and no other site's
name or numbers. Every filter but `site` applies (docs/metrics.md "Network benchmark"). Downloads go through
`ui.render_downloads`, as on every page (role check and audit log).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.analysis import benchmark
from dashboard.app import ui
from dashboard.charts import figures

ctx = ui.current_context()
s = ctx.settings
named_sites = ui.viewer_named_sites(ctx)
ui.render_page_header(
    "Network benchmark",
    "Each site's response and remission rates against the whole network, with every filter applied except "
    "the site filter. A site is benchmarked once it has at least "
    f"{benchmark.MIN_SITE_PATIENTS} evaluable patients; the network median and 75th percentile are shown once "
    f"at least {benchmark.MIN_SITES} sites are benchmarked.",
    ctx,
)
if s.site:
    st.caption("The site filter in the sidebar does not apply here: the benchmark always compares sites.")

# its value comes from the link or the reader (ui.display_choices, `measure=` in the link)
measure = st.segmented_control("Measure", benchmark.MEASURES, key="_ko_benchmark_measure",
                               format_func=str.capitalize, required=True) or "response"
table = ui.load_benchmark(ctx.signature, s, named_sites)
network = ui.load_network(ctx.signature, s, named_sites)[measure]
rows = table[table["measure"] == measure]
what = "response" if measure == "response" else "remission"


def _pct(v: object) -> str:
    return figures.fmt_pct(v, 0) if not pd.isna(v) else "not available"


if network.sites_with_patients == 0:
    st.info("No site has evaluable patients with these filters.", icon=":material/search_off:")
    st.stop()

summary = (f"{network.sites_benchmarked} of {network.sites_with_patients} sites are benchmarked. "
           f"Network {what} rate (all patients pooled): {_pct(network.pooled)}")
if pd.isna(network.median):
    summary += (f". Fewer than {benchmark.MIN_SITES} sites have {benchmark.MIN_SITE_PATIENTS} or more evaluable "
                "patients, so there is no network median or 75th percentile yet.")
else:
    summary += f"; median site {_pct(network.median)}; 75th percentile {_pct(network.p75)}."
st.markdown(summary)

max_n = None
if len(rows):
    shown = figures.floats(rows["evaluable"])
    max_n = float(pd.Series(shown).max()) if pd.Series(shown).notna().any() else None
ui.render_chart(
    figures.create_benchmark_funnel_figure, table, measure,
    pooled=None if pd.isna(network.pooled) else network.pooled,
    median=None if pd.isna(network.median) else network.median,
    p75=None if pd.isna(network.p75) else network.p75, max_patients=max_n,
    key="chart_benchmark_funnel",
)
st.caption(
    "How to read it: each dot is a site, placed by its number of evaluable patients and its rate. The funnels "
    "are the range the network's pooled rate would give a site of that size by chance alone: 95 % (dashed) "
    "and 99.8 % (dotted). A site outside the 95 % funnel differs from the network more than chance usually "
    "explains (expect about 1 site in 20 there by chance); outside the 99.8 % funnel, chance is an unlikely "
    "explanation. Sites differ in their patients too: see *Adjusted for case mix* on the Response page."
)
if named_sites is not None:
    st.caption("You see your own sites by name; the rest of the network only as its pooled rate, median and "
               "75th percentile.")
    for _, row in rows.iterrows():
        if pd.isna(row["rate"]):
            st.markdown(f"**Site {row['site']}**: too few patients to show.")
            continue
        place = {"top quartile": "in the network's top quarter", "above median": "above the network median",
                 "below median": "below the network median"}.get(row["position"], "not ranked (too few patients "
                                                                                 "or sites)")
        st.markdown(f"**Site {row['site']}**: {what} rate {_pct(row['rate'])} "
                    f"(95 % interval {_pct(row['ci_low'])}–{_pct(row['ci_high'])}, {figures.fmt_count(row['evaluable'])} "
                    f"patients), {place}.")


def render_sites_table() -> None:
    labels = {"site": "Site", "evaluable": "Evaluable", "events": "Responders" if measure == "response" else "Remitters",
              "rate": "Rate", "ci_low": "95 % low", "ci_high": "95 % high", "benchmarked": "Benchmarked",
              "position": "Position", "outside_95": "Outside 95 % limits", "outside_998": "Outside 99.8 % limits"}
    ui.render_table(rows, labels, percent=("rate", "ci_low", "ci_high"))


ui.render_lazy_section("Sites against the network (table)", "_ko_section_benchmark_sites", render_sites_table)
hidden = [str(site) for site, v in zip(rows["site"], rows["rate"]) if pd.isna(v)]
ui.render_disclosure_note(ctx, [f"rates for sites {', '.join(hidden)}"] if hidden else [])

# the same download helper as every page: no buttons for viewers, every download written to the audit log.
# For someone limited to some sites, benchmark.csv (alone and in the zip) names only those sites: the core
# restricts it to the scope of the settings (benchmark.network_benchmark).
ui.render_downloads(ctx, ("benchmark.csv",), key="benchmark")
