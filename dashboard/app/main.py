"""The dashboard's entry script (`ketamine-outcomes serve` runs `streamlit run dashboard/app/main.py`).

It declares the pages and their URL paths (links to them get shared), opens the database named by
$KETAMINE_OUTCOMES_DB, checks the link's query parameters, draws the shared sidebar (every filter and
setting, bound to the URL), builds the `Settings` the pages compute from, and runs the selected page —
or, instead of the page, a clear message when the database is missing or unreadable, the settings do
not fit together, or the cohort is empty or too small to show.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import streamlit as st

from dashboard.analysis.settings import SettingsError
from dashboard.app import ui
from dashboard.data import spec, store

LOG = logging.getLogger("ketamine_outcomes.dashboard")
HERE = Path(__file__).resolve().parent

st.set_page_config(
    page_title="Ketamine Outcomes",
    page_icon=":material/monitoring:",
    layout="wide",
    initial_sidebar_state="auto",  # open on a laptop, closed on a phone (it would cover the page)
)

PAGES = [
    st.Page(HERE / "views" / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(HERE / "views" / "response.py", title="Response by route", url_path="response",
            icon=":material/trending_up:"),
    st.Page(HERE / "views" / "relief.py", title="Time to relief", url_path="relief", icon=":material/timer:"),
    st.Page(HERE / "views" / "side_effects.py", title="Side effects", url_path="side-effects",
            icon=":material/warning:"),
    st.Page(HERE / "views" / "maintenance.py", title="Maintenance", url_path="maintenance",
            icon=":material/event_repeat:"),
    st.Page(HERE / "views" / "data.py", title="Data and definitions", url_path="data",
            icon=":material/database:"),
]
# The data page explains the data set itself, so it opens even when the cohort is empty or too small.
ALWAYS_OPEN = {"data"}

page = st.navigation(PAGES, position="sidebar")

# Read the link before the bound widgets clean invalid values out of it.
raw_params = ui.raw_query_params()

try:
    db_path, signature = ui.open_current_database()
    options = ui.load_filter_options(signature)
except store.StoreError as exc:
    ui.render_error_screen(
        "The database could not be opened",
        str(exc),
        "**What to do:** check the path given to `ketamine-outcomes serve --db`, or import the clinic export "
        "again with `ketamine-outcomes import EXPORT_DIR --db PATH`. Then reload this page.",
    )
    st.stop()
except Exception:  # noqa: BLE001 - a damaged file must not show a traceback
    LOG.exception("reading the database failed")
    ui.render_error_screen(
        "The database could not be read",
        "The file exists but its contents could not be read as a Ketamine Outcomes database.",
        "**What to do:** import the clinic export again with `ketamine-outcomes import EXPORT_DIR --db PATH`, "
        "then reload this page.",
    )
    st.stop()

ui.note_url_problems(ui.url_problems(raw_params, options), raw_params)

banner = st.sidebar.container()
values = ui.render_sidebar(options, raw_params)

try:
    settings = ui.settings_from_widgets(values)
except SettingsError as exc:
    ui.render_url_notice()
    st.title(page.title)
    st.error(
        "**These settings do not fit together:**\n\n" + "\n".join(f"- {p}" for p in exc.problems)
        + "\n\nChange them in the sidebar, or press *Reset all filters and settings*.",
        icon=":material/error:",
    )
    st.stop()

ctx = ui.PageContext(db_path=db_path, signature=signature, settings=settings)
ui.set_context(ctx)

try:
    ui.render_url_notice()
    size = ui.cohort_size(ctx)
    always_open = page.url_path in ALWAYS_OPEN
    if size == 0 or math.isnan(size):
        if not always_open:
            st.title(page.title)
        if size == 0:
            st.info(
                f"**No patients match these filters** ({settings.describe_filters()}).\n\n"
                "Remove a filter in the sidebar, or press *Reset all filters and settings*.",
                icon=":material/search_off:",
            )
        else:
            st.warning(
                f"**This cohort is too small to show** ({settings.describe_filters()}): it has fewer than "
                f"{settings.min_cell} patients, so every figure would be hidden to protect patients' privacy."
                "\n\nWiden the filters in the sidebar, or — if your data governance allows it — lower the "
                "minimum cell under *Analysis settings*.",
                icon=":material/lock:",
            )
    if always_open or size > 0:
        # A loading state on every rerun: the spinner stays until the page has drawn, and the cohort banner is
        # filled only after the page, so it never names the new cohort over the previous cohort's charts.
        with st.spinner("Updating the figures for this cohort…", show_time=True):
            page.run()
    with banner:
        ui.render_cohort_banner(ctx)
except Exception:  # noqa: BLE001 - never a traceback in the browser; the log has it
    LOG.exception("rendering page %s failed for %s", page.url_path, settings)
    st.error(
        "**This view could not be computed.** The error has been logged. Try other filters, or reload the page; "
        "if it keeps happening, send the link to your administrator.",
        icon=":material/error:",
    )

st.sidebar.caption(f"Data: {db_path.name} · {spec.INSTRUMENT_LABELS[settings.instrument]}")
