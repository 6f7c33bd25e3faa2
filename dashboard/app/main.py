"""The dashboard's entry script (`ketamine-outcomes serve` runs `streamlit run dashboard/app/main.py`).

It declares the pages and their URL paths (links to them get shared), opens the database named by
$KETAMINE_OUTCOMES_DB, checks the link's query parameters, draws the shared sidebar (every filter and
setting, kept in the URL), builds the `Settings` the pages compute from, and runs the selected page —
or, instead of the page, a clear message when the database is missing or unreadable, the settings do
not fit together, or the cohort is empty or too small to show.

With sign-in configured (`[auth]` in .streamlit/secrets.toml) nothing is shown before sign-in; the
person's sites become `Settings.scope`, every page view is recorded in the audit log before anything is
drawn (a log that cannot be written stops the page), and network admins get the Audit page.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import streamlit as st

from dashboard.analysis import access
from dashboard.analysis.settings import SettingsError
from dashboard.app import ui
from dashboard.data import spec, store
from dashboard.reports import audit

LOG = logging.getLogger("ketamine_outcomes.dashboard")
HERE = Path(__file__).resolve().parent

st.set_page_config(
    page_title="Ketamine Outcomes",
    page_icon=":material/monitoring:",
    layout="wide",
    initial_sidebar_state="auto",  # open on a laptop, closed on a phone (it would cover the page)
)

# A rerun means the person asked for something new: stop warming the pages of what they saw before.
ui.cancel_prefetch()

# Who is looking decides everything below: nothing of the data before sign-in, nothing without access.
try:
    person = ui.current_person()
except access.AccessFileError as exc:
    ui.render_error_screen(
        "The access file could not be used",
        "\n".join(f"- {p}" for p in exc.problems),
        "**What to do:** correct the access file named above (columns email,role,sites), then reload this page.",
    )
    st.stop()
if person is None:
    ui.render_sign_in()
    st.stop()
if not person.has_access:
    ui.render_no_access(person)
    st.stop()

PAGES = [
    st.Page(HERE / "views" / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(HERE / "views" / "response.py", title="Response by route", url_path="response",
            icon=":material/trending_up:"),
    st.Page(HERE / "views" / "relief.py", title="Time to relief", url_path="relief", icon=":material/timer:"),
    st.Page(HERE / "views" / "side_effects.py", title="Side effects", url_path="side-effects",
            icon=":material/warning:"),
    st.Page(HERE / "views" / "maintenance.py", title="Maintenance", url_path="maintenance",
            icon=":material/event_repeat:"),
    st.Page(HERE / "views" / "esketamine.py", title="Esketamine monitoring", url_path="esketamine-monitoring",
            icon=":material/monitor_heart:"),
    st.Page(HERE / "views" / "benchmark.py", title="Network benchmark", url_path="benchmark",
            icon=":material/leaderboard:"),
    st.Page(HERE / "views" / "data.py", title="Data and definitions", url_path="data",
            icon=":material/database:"),
]
if person.may_import:  # local mode: the one person on this machine is a network admin
    PAGES.append(st.Page(HERE / "views" / "import_data.py", title="Import", url_path="import",
                         icon=":material/upload_file:"))
if person.may_read_audit:
    PAGES.append(st.Page(HERE / "views" / "audit.py", title="Audit log", url_path="audit",
                         icon=":material/policy:"))
# The data page explains the data set itself and the import page replaces it, so both open even when the
# cohort is empty or too small; the audit log is not about the cohort at all.
ALWAYS_OPEN = {"data", "import", "audit"}

page = st.navigation(PAGES, position="sidebar")
if ui.is_unknown_page(ui.requested_page_name(), PAGES):  # /RESPONSE, /views/overview.py, /response/extra
    ui.render_page_not_found(ui.requested_page_name() or "", PAGES)
    st.stop()

# The link, as typed or shared (the sidebar writes it back after drawing), and the part of the page to show.
raw_params = ui.raw_query_params()
page_path = page.url_path or "overview"
view = ui.current_view(page_path, raw_params)

try:
    db_path, signature = ui.open_current_database()
    options = ui.load_filter_options(signature, person.scope)
except store.StoreError as exc:
    if page_path == "import" and person.may_import and ui.database_path() is not None:
        # The Import page replaces the data set, so it opens even when the current file cannot be shown
        # (missing, built by an older version, damaged): a network admin with only a browser can then do what
        # the message asks. It reads nothing of the old data.
        ui.render_import_without_data(page, person, view, exc)
        st.stop()
    ui.render_error_screen(
        "The database could not be opened",
        str(exc),
        "**What to do:** check the path given to `ketamine-outcomes serve --db`, or import the clinic export "
        "again with `ketamine-outcomes import EXPORT_DIR --db PATH`"
        + (" or on the *Import* page" if person.may_import else "") + ". Then reload this page.",
    )
    st.stop()
except (ImportError, store.InstallationError) as exc:  # the installation, not the database, is at fault
    LOG.exception("the dashboard is installed incompletely")
    ui.render_installation_error(exc)
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

link_problems = ui.url_problems(raw_params, options, scoped=person.scope is not None,
                                min_cell_floor=person.min_cell_floor)
ui.note_url_problems(link_problems)
ui.seed_widgets_from_link(raw_params, options, link_problems, person.min_cell_floor)

ui.render_person(person)
banner = st.sidebar.container()
values = ui.render_sidebar(options, raw_params, person.min_cell_floor)
# the URL says what the sidebar holds, in codes, and what the page shows (its part, its display choices)
ui.sync_link(values, ui.link_view(page_path, view), ui.display_choices(page_path, raw_params))

try:
    # the scope is set here, from the person, never from the link: every load below is within it
    settings = access.apply_scope(ui.settings_from_widgets(values), person)
except SettingsError as exc:
    ui.render_url_notice()
    st.title(page.title)
    st.error(
        "**These settings do not fit together:**\n\n" + "\n".join(f"- {ui.plain(p)}" for p in exc.problems)
        + "\n\nChange them in the sidebar, or press *Reset all filters and settings*.",
        icon=":material/error:",
    )
    st.stop()

ctx = ui.PageContext(db_path=db_path, signature=signature, settings=settings, person=person,
                     audit_log=audit.audit_path(db_path), page=page_path, view=view)
ui.set_context(ctx)

try:
    ui.record_view(ctx)  # before anything of the cohort is drawn
except audit.AuditError as exc:
    st.title(page.title)
    st.error(f"**This view was not shown because it could not be recorded.**\n\n{exc}", icon=":material/error:")
    st.stop()

try:
    # The banner is filled before the page, so a page that stops early (st.stop: nothing of this cohort to
    # show on it) still names the cohort; the spinner below says the figures are being updated meanwhile.
    with banner:
        ui.render_cohort_banner(ctx)
        ui.render_report_download(ctx)
    ui.render_url_notice()
    size = ui.cohort_size(ctx)
    always_open = page.url_path in ALWAYS_OPEN
    if (size == 0 or math.isnan(size)) and not always_open:
        st.title(page.title)
        ui.render_cohort_notice(ctx)  # the data page says it under its own title (ui.render_page_header)
    if always_open or size > 0:
        # A loading state on every rerun: the spinner stays until the page has drawn.
        with st.spinner("Updating the figures for this cohort…", show_time=True):
            page.run()
        if size > 0:
            ui.prefetch_other_pages(ctx)  # so switching to another page shows cached results
        ui.settle_startup_heap()  # once, unless the warming did: later full collections skip the startup objects
except (ImportError, store.InstallationError) as exc:
    LOG.exception("the dashboard is installed incompletely")
    ui.render_installation_error(exc)
except Exception as exc:  # noqa: BLE001 - never a traceback in the browser; the log has it
    LOG.exception("rendering page %s failed for %s", page.url_path, settings)
    damaged = store.damage_message(exc, db_path)
    if damaged:  # the real cause, not "try other filters"
        st.error(f"**The database could not be read.** {ui.plain(damaged)}", icon=":material/error:")
        st.stop()
    st.error(
        "**This view could not be computed.** The error has been logged. Try other filters, or reload the page; "
        "if it keeps happening, send the link to your administrator.",
        icon=":material/error:",
    )

st.sidebar.caption(f"Data: {db_path.name} · {spec.INSTRUMENT_SETTING_LABELS[settings.instrument]}")
