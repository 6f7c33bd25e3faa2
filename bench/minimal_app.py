"""The floor this stack allows: a minimal Streamlit app served beside the dashboard by bench/browser.py.

The dashboard's eight analysis pages' addresses, each with one sidebar filter bound to the URL (route) and
one Plotly chart of one DuckDB query on the same database (patients per site for the chosen routes). Same
Streamlit, same browser, same machine: the dashboard's browser timings are reported as ratios to this app's.
"""

from __future__ import annotations

import os

import duckdb
import plotly.graph_objects as go
import streamlit as st

ROUTES = ["IV", "IM", "SC", "IN", "SL", "PO"]
PAGES = ["overview", "response", "relief", "side-effects", "maintenance", "esketamine-monitoring", "benchmark",
         "data"]


@st.cache_resource
def connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(os.environ["KETAMINE_OUTCOMES_DB"], read_only=True)


@st.cache_data
def patients_per_site(routes: tuple[str, ...]) -> tuple[list[str], list[int]]:
    with connection().cursor() as cur:
        rows = cur.execute(
            "SELECT p.site, count(DISTINCT s.patient_id) FROM sessions s JOIN patients p USING (patient_id) "
            "WHERE list_contains($r, s.route::VARCHAR) GROUP BY ALL ORDER BY 1", {"r": list(routes)}).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def page() -> None:
    routes = st.sidebar.multiselect("Route", ROUTES, default=None, key="route", bind="query-params")
    st.title(st.session_state.get("_page_title", "Page"))
    sites, counts = patients_per_site(tuple(routes or ROUTES))
    st.plotly_chart(go.Figure(go.Bar(x=sites, y=counts)), width="stretch")


def make(title: str):
    def run() -> None:
        st.session_state["_page_title"] = title
        page()
    run.__name__ = title.replace("-", "_")
    return run


nav = st.navigation([st.Page(make(p), title=p, default=True) if p == "overview" else
                     st.Page(make(p), title=p, url_path=p) for p in PAGES])
nav.run()
