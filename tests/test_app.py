"""The dashboard in Streamlit's AppTest: every page renders on the sample data, reacts to filters, reads its
settings from the URL, and shows a clear message (never a traceback) for an empty or too-small cohort, a
malformed link, and a missing, corrupt or foreign database."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import PAGE_FILES
from dashboard.reports import export
from dashboard.analysis import metrics

from dashboard.data import spec, store
from dashboard.app import ui
from dashboard.charts import colors, figures
from dashboard.analysis.settings import Settings

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app" / "main.py"
ROOT = APP.parent.parent.parent
# page file (relative to app/main.py) -> (title, charts it draws on the sample, summary files it offers)
PAGES = {
    "views/overview.py": ("Overview", 2, ("headline.csv", "trend.csv", "cohort.csv", "response_by_route.csv")),
    "views/response.py": ("Response by route", 1, ("response_by_route.csv", "adjusted_response.csv")),
    "views/relief.py": ("Time to relief", 1, ("time_to_relief.csv", "time_to_relief_curve.csv")),
    "views/side_effects.py": ("Side effects", 1, ("side_effects.csv",)),
    "views/maintenance.py": ("Maintenance", 1, ("maintenance.csv",)),
    "views/esketamine.py": ("Esketamine monitoring", 1, ("rems.csv",)),
    "views/benchmark.py": ("Network benchmark", 1, ("benchmark.csv",)),
    "views/data.py": ("Data and definitions", 0, ()),
}


# every part of every page: a page with tabs (ui.PAGE_VIEWS) once per part, the others whole (None)
PAGE_FILE_PATHS = {"views/response.py": "response", "views/side_effects.py": "side-effects",
                   "views/maintenance.py": "maintenance", "views/esketamine.py": "esketamine-monitoring"}
PARTS = [(page, view) for page in PAGES
         for view in (ui.PAGE_VIEWS[PAGE_FILE_PATHS[page]] if page in PAGE_FILE_PATHS else (None,))]
# the charts each part of a tabbed page draws on the sample (titles), and nothing of the other parts
PART_CHARTS = {
    ("views/response.py", "rates"): ["Response and remission by route (Matched to diagnosis)"],
    ("views/response.py", "adjusted"): ["Response by route: crude and adjusted for case mix"],
    ("views/response.py", "comparison"): ["Difference in response rate between routes"],
    ("views/response.py", "trajectory"): ["Weekly improvement from baseline by route"],
    ("views/response.py", "breakdown"): ["Response rate by site and route"],
    ("views/side_effects.py", "by-route"): ["Side effects: share of sessions with each event, by route"],
    ("views/side_effects.py", "patients"): ["Patients with each side effect at least once, by route"],
    ("views/side_effects.py", "severity"): ["Severity: All routes", "Dissociation by session number"],
    ("views/side_effects.py", "blood-pressure"): ["Blood pressure during sessions"],
    ("views/maintenance.py", "uptake"): ["Maintenance uptake and sustained response by route"],
    ("views/maintenance.py", "timing"): ["Timing of maintenance sessions (medians over maintenance patients)"],
    ("views/maintenance.py", "projection"): ["Projected maintenance sessions per month for the current responders"],
    ("views/esketamine.py", "rules"): ["Where sites meet each monitoring rule"],
    ("views/esketamine.py", "observed"): ["Sedation"],
    ("views/esketamine.py", "monitoring-time"): ["Minutes of monitoring after dosing", "Minutes until ready to leave"],
    ("views/esketamine.py", "blood-pressure"): [
        "Rise in systolic pressure at 40 minutes", "Rise in diastolic pressure at 40 minutes"],
}
assert set(PART_CHARTS) == {(page, view) for page, view in PARTS if view is not None}

APP_DB: list[Path] = []  # the database the last make_app opened

# What the dashboard computes from a link naming no instrument and no diagnosis: the matched instrument
# (docs/choices.md "Matched instrument"); the command line's default stays GAD-7 (Settings()).
DASHBOARD_DEFAULT = Settings(instrument="matched")


def dashboard_reads(params: dict) -> dict:
    """A link's parameters as the dashboard reads them: without an instrument or a diagnosis filter, matched."""
    return params if "instrument" in params or "diagnosis" in params else {**params, "instrument": "matched"}


@pytest.fixture
def make_app(sample_db: Path, monkeypatch: pytest.MonkeyPatch):
    """AppTest factory on the sample database; query parameters as keyword arguments."""

    def make(db: Path | None = None, **params: str | list[str]) -> AppTest:
        APP_DB[:] = [db or sample_db]
        monkeypatch.setenv(ui.DB_ENV, str(db or sample_db))
        at = AppTest.from_file(str(APP), default_timeout=120)
        for key, value in params.items():
            at.query_params[key] = value
        return at

    return make


def open_page(at: AppTest, page: str, view: str | None = None) -> AppTest:
    """Run the app and open `page` (the first run is the home page, as in a browser), at part `view` of a
    page with tabs (`view=` in the link)."""
    at.run()
    if page != "views/overview.py":
        at.switch_page(page)
    if view is not None:
        at.query_params[ui.VIEW_PARAM] = view
    if page != "views/overview.py" or view is not None:
        at.run()
    return at


def published_size(db: Path, s: Settings) -> int:
    """The cohort size the banner publishes: the funnel's ALL patients, disclosure applied (perturbed by its
    cell key when the minimum cell is above 0, exact at 0)."""
    from dashboard.analysis import disclosure

    with store.open_database(db) as con:
        return int(disclosure.protect("cohort", metrics.cohort_funnel(con, s), s.min_cell).iloc[-1]["patients"])


def shown(markdown: str) -> str:
    """The text a reader sees of a Markdown body whose outside text ui.plain escaped (backslashes removed)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")  # and ui.plain's invisible word joiners


def warnings_shown(at: AppTest) -> str:
    """Every warning box of the page (the link notice among them) as the reader sees it."""
    return shown(" ".join(w.value for w in at.warning))


def assert_clean(at: AppTest) -> None:
    """No exception element and no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def context(at: AppTest) -> ui.PageContext:
    return at.session_state[ui.CONTEXT_KEY]


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def trace_names(spec_: dict) -> set[str]:
    return {t.get("name") for t in spec_["data"] if t.get("name")}


def cohort_counts(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql("SELECT site, sex::VARCHAR AS sex, count(*) AS n FROM patients GROUP BY ALL").df()


# --- every page ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_on_the_sample_data(make_app, page):
    title, charts, files = PAGES[page]
    at = open_page(make_app(), page)
    n = published_size(APP_DB[0], Settings())
    assert_clean(at)
    assert at.title[0].value == title
    specs = chart_specs(at)
    assert len(specs) == charts
    for s in specs:
        assert s["layout"]["title"]["text"], "every chart has a title"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("Download report (PDF)") == 1  # in the sidebar of every page
    labels.remove("Download report (PDF)")
    assert labels == [*files, "All summaries (zip)"]
    # the cohort and its size are always visible in the sidebar
    assert abs(n - 2000) <= 24  # the 2,000 patients, perturbed
    assert any(m.value.startswith(f"**Cohort:** {n:,} patients") for m in at.sidebar.markdown)


@pytest.mark.parametrize("page", list(PAGE_FILES))
def test_opening_a_page_makes_exactly_its_opening_loads(make_app, monkeypatch, page):
    """ui.opening_loads (what bench/run.py times as a page's opening) lists exactly the loads the page makes
    when opened at its first part with its sections closed; its other parts' and sections' loads follow when
    they are chosen, which together give page_loads."""
    import streamlit as st

    plan = ui.page_loads()[page]
    names = {name for name, _ in plan}
    made: list[str] = []
    real_summary = ui.load_summary
    monkeypatch.setattr(ui, "load_summary", lambda sig, s, file, *a, **k: made.append(f"load_summary[{file}]")
                        or real_summary(sig, s, file, *a, **k))
    for name in {n for n in names if not n.startswith("load_summary")}:
        real = getattr(ui, name)
        monkeypatch.setattr(ui, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    at = make_app()
    at.run()
    st.cache_data.clear()
    made.clear()
    if page != "overview":
        at.switch_page(f"views/{PAGE_FILES[page]}")
    at.run()
    assert_clean(at)
    assert {n for n in made if n in names} == {name for name, _ in ui.opening_loads(ui.page_loads())[page]}
    for label in ui.PAGE_VIEWS.get(page, {}).values():  # each part chosen, as a reader's click does
        at.session_state[ui._view_key(page)] = label
        at.run()
    open_sections(at)
    assert_clean(at)
    assert {n for n in made if n in names} == names


def sidebar_keys(at: AppTest) -> set[str]:
    return {w.key for w in at.sidebar.multiselect} | {w.key for w in at.sidebar.selectbox} | \
           {w.key for w in at.sidebar.number_input} | {w.key for w in at.sidebar.radio}


def open_sidebar_sections(at: AppTest) -> AppTest:
    """Open "More filters" and "Analysis settings", as a reader does by clicking them (a closed section's
    widgets are not drawn), and rerun."""
    at.session_state[ui.MORE_FILTERS_KEY] = True
    at.session_state[ui.ANALYSIS_SETTINGS_KEY] = True
    return at.run()


def open_sections(at: AppTest) -> AppTest:
    """Open every section of the page drawn on demand (ui.SECTION_KEYS), as a reader's clicks do, and rerun."""
    for key in ui.SECTION_KEYS:
        at.session_state[key] = True
    return at.run()


def test_sidebar_holds_every_setting_under_its_url_name(make_app):
    at = make_app()
    at.run()
    # closed sections are not drawn (each widget costs the browser time on every rerun), yet their settings apply
    assert sidebar_keys(at) == {"route", "site", "diagnosis"}
    assert context(at).settings == DASHBOARD_DEFAULT
    open_sidebar_sections(at)
    assert sidebar_keys(at) == set(ui.WIDGET_DEFAULTS)
    assert context(at).settings == DASHBOARD_DEFAULT


# --- filters and the URL -------------------------------------------------------------------------------------


def fingerprint(at: AppTest) -> str:
    """Everything a page draws from data: chart specs, tables and headline metrics."""
    parts = [c.proto.spec for c in at.get("plotly_chart")]
    parts += [df.value.to_csv() for df in [*at.dataframe, *at.table]]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_reacts_to_a_filter(make_app, sample_db, page):
    at = open_page(make_app(), page)
    before = fingerprint(at)
    at.sidebar.multiselect(key="route").set_value(["IV"]).run()
    assert_clean(at)
    s = context(at).settings
    assert s.route == ("IV",)
    assert fingerprint(at) != before
    n_iv = published_size(sample_db, s)
    assert any(m.value == f"**Cohort:** {n_iv:,} patients" for m in at.sidebar.markdown)
    assert any(f"IV infusion — {n_iv:,} patients" in c.value for c in at.caption)


def test_a_route_filter_leaves_only_that_route_in_the_charts(make_app):
    at = open_page(make_app(), "views/response.py")
    assert {"IV infusion", "Intranasal", "All routes"} <= trace_names(chart_specs(at)[0])
    at.sidebar.multiselect(key="route").set_value(["IV"]).run()
    assert trace_names(chart_specs(at)[0]) == {"IV infusion", "All routes"}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_opens_the_view_its_url_describes(make_app, page):
    params = {"route": ["IV", "IN"], "site": "S2", "instrument": "PHQ9", "min_cell": "5", "relief": "mcid",
              "treatment_resistant": "yes", "window": "14"}
    at = open_page(make_app(**params), page)
    assert_clean(at)
    expected = Settings.from_query_params(params)
    assert context(at).settings == expected
    assert at.sidebar.multiselect(key="route").value == ["IV", "IN"]
    assert at.sidebar.multiselect(key="site").value == ["S2"]
    assert at.sidebar.selectbox(key="instrument").value == "PHQ9"
    assert at.sidebar.selectbox(key="treatment_resistant").value == "yes"
    assert at.sidebar.number_input(key="window").value == 14
    assert at.sidebar.radio(key="relief").value == "mcid"
    # nothing was dropped from the link, and the settings spell the same query string back
    assert dict(at.query_params) == params
    assert sorted(expected.to_query_params()) == sorted(
        (k, v) for k, vs in params.items() for v in ([vs] if isinstance(vs, str) else vs)
    )
    assert at.title[0].value == PAGES[page][0]


def test_the_sidebar_shows_words_and_the_link_keeps_codes(make_app):
    """Issue 11: chips and boxes read words (IV infusion, Major depression); the URL keeps the codes."""
    params = {"route": ["IV", "IN"], "diagnosis": "MDD", "sex": "F", "setting": "home", "severity": "severe",
              "treatment_resistant": "yes", "instrument": "PHQ9", "population": "itt", "relief": "mcid"}
    at = make_app(**params)
    at.run()
    assert_clean(at)
    sb = at.sidebar
    assert sb.multiselect(key="route").value == ["IV", "IN"]
    assert sb.multiselect(key="route").options == ["IV infusion", "IM injection", "Subcutaneous", "Intranasal",
                                                   "Sublingual", "Oral"]
    assert sb.multiselect(key="diagnosis").options == ["Generalised anxiety", "Major depression", "PTSD",
                                                       "Social anxiety", "Panic disorder", "OCD", "Other diagnoses"]
    assert sb.multiselect(key="sex").options == ["Female", "Male", "Another sex", "Not recorded"]
    assert sb.multiselect(key="setting").options == ["Clinic", "Home"]
    assert sb.multiselect(key="severity").options == ["Minimal", "Mild", "Moderate", "Severe"]
    assert sb.selectbox(key="treatment_resistant").options == ["Yes", "No"]
    assert sb.selectbox(key="instrument").options == ["GAD-7 (anxiety)", "PHQ-9 (depression)", "PCL-5 (PTSD)",
                                                      "Matched to each patient's diagnosis"]
    assert sb.radio(key="population").options == ["Patients with an endpoint", "Intention to treat"]
    assert sb.radio(key="relief").options == ["50 % improvement", "Minimal important change"]
    assert dict(at.query_params) == params
    # a change in the sidebar writes codes into the link, and a page switch keeps them
    sb.multiselect(key="diagnosis").set_value(["MDD", "PTSD"]).run()
    sb.selectbox(key="instrument").set_value("matched").run()
    assert_clean(at)
    assert at.query_params["diagnosis"] == ["MDD", "PTSD"]
    assert at.query_params["instrument"] == "matched"
    at.switch_page("views/relief.py").run()
    assert_clean(at)
    assert dict(at.query_params) == {**params, "diagnosis": ["MDD", "PTSD"], "instrument": "matched"}
    assert context(at).settings == Settings.from_query_params(dict(at.query_params))


def test_a_link_sets_the_minimum_baseline_on_its_own_questionnaire(make_app):
    at = make_app(instrument="PCL5", min_baseline="40")  # above GAD-7's range, inside PCL-5's
    at.run()
    assert_clean(at)
    assert context(at).settings == Settings(instrument="PCL5", min_baseline=40)
    assert dict(at.query_params) == {"instrument": "PCL5", "min_baseline": "40"}


def test_settings_survive_a_run_that_did_not_draw_the_sidebar(make_app, sample_db, tmp_path, monkeypatch):
    """Streamlit forgets the values of widgets a run did not draw; the minimum cell must not fall to 0."""
    db = tmp_path / "live.duckdb"
    shutil.copy(sample_db, db)
    at = make_app(db=db, min_cell="5", route="IV")
    at.run()
    assert context(at).settings == Settings(instrument="matched", min_cell=5, route=("IV",))
    monkeypatch.setenv(ui.DB_ENV, str(tmp_path / "gone.duckdb"))  # an error screen, before the sidebar
    at.run()
    assert "The database could not be opened" in at.error[0].value
    monkeypatch.setenv(ui.DB_ENV, str(db))
    at.run()
    assert_clean(at)
    assert context(at).settings == Settings(instrument="matched", min_cell=5, route=("IV",))
    assert dict(at.query_params) == {"route": "IV", "min_cell": "5"}


def test_a_site_the_new_import_lacks_leaves_the_filter(make_app, sample_db, tmp_path):
    """Also the swap itself: the first run's background warming was still querying the old file when the
    import swapped the new one in, and the new connection read the old data (about one run in three)."""
    from dashboard.data.ingest import import_export

    db = tmp_path / "live.duckdb"
    shutil.copy(sample_db, db)
    at = make_app(db=db, site="S2", from_quarter="2024-Q1")
    at.run()
    assert context(at).settings.site == ("S2",)
    import_export(ROOT / "sample_data" / "example_export", db)  # sites north and south, quarters of 2025
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert context(at).settings.site == () and context(at).settings.from_quarter is None
    assert "site" not in at.query_params and "from_quarter" not in at.query_params


def test_the_relief_page_switches_the_shared_threshold(make_app):
    at = open_page(make_app(instrument="GAD7"), "views/relief.py")  # GAD-7's MCID in the title
    assert context(at).settings.relief == "response"
    at.button_group(key="_ko_relief_page").set_value("mcid").run()
    assert_clean(at)
    assert context(at).settings.relief == "mcid"
    assert at.sidebar.radio(key="relief").value == "mcid"
    spec_ = chart_specs(at)[0]
    assert "a drop of 4+ points on GAD-7" in spec_["layout"]["title"]["text"]


def test_reset_returns_every_setting_to_its_default(make_app):
    at = make_app(route=["IV"], min_cell="5", population="itt")
    at.run()
    assert context(at).settings != DASHBOARD_DEFAULT
    at.sidebar.button(key="_ko_reset").click().run()
    assert_clean(at)
    assert context(at).settings == DASHBOARD_DEFAULT
    assert at.sidebar.multiselect(key="route").value == []


def test_a_malformed_link_is_named_in_a_notice_and_the_rest_applies(make_app):
    at = make_app(route=["IV", "XX"], window="abc", site="NOPE", colour="red", instrument="phq9")
    at.run()
    assert_clean(at)
    notice = warnings_shown(at)
    assert "Part of this link could not be used" in notice
    assert "route: 'XX' is not a route" in notice
    assert "window: 'abc' is not a whole number" in notice
    assert "site: 'NOPE' is not a site in this database" in notice
    assert "colour: not a setting of this dashboard" in notice
    assert "instrument: 'phq9' should be written as one of GAD7, PHQ9, PCL5, matched" in notice
    assert context(at).settings.route == ("IV",)  # the valid part of the link applies
    # the notice survives the widgets cleaning the URL on the next rerun, until dismissed
    at.run()
    assert "Part of this link could not be used" in " ".join(w.value for w in at.warning)
    at.button(key="_ko_dismiss_notice").click().run()
    assert not at.warning


def test_a_very_long_link_value_is_shortened_in_the_notice(make_app):
    """A value (or name) from the link longer than 60 characters is quoted cut at 60 with an ellipsis and its
    length; a 5,000-character value was once repeated in full in the notice."""
    x, y = "X" * 5000, "Y" * 300
    at = make_app(route=["IV", x], window="9" * 5000, site="S" * 5000, **{y: "1"})
    at.run()
    assert_clean(at)
    notice = warnings_shown(at)
    assert f"route: '{'X' * 60}…' (5,000 characters) is not a route; expected one of IV, IM, SC, IN, SL, PO" in notice
    assert f"window: '{'9' * 60}…' (5,000 characters) is not a whole number (digits 0-9 only)" in notice
    assert f"site: '{'S' * 60}…' (5,000 characters) is not a site code" in notice
    assert f"{'Y' * 60}… (300 characters): not a setting of this dashboard (value '1'); ignored" in notice
    assert "X" * 61 not in notice and "9" * 61 not in notice and "S" * 61 not in notice and "Y" * 61 not in notice
    assert context(at).settings.route == ("IV",)  # the rest of the link applies
    # a value of another part of the link, and of a page's own parts and display choices
    at = make_app(view="Z" * 400, measure="W" * 400)
    at.switch_page("views/benchmark.py").run()
    notice = warnings_shown(at)
    assert f"view: '{'Z' * 60}…' (400 characters) is not a part of any page" in notice
    assert f"measure: '{'W' * 60}…' (400 characters) is not one of response, remission" in notice
    # a value of 60 characters or fewer is quoted whole
    at = make_app(route="X" * 60)
    at.run()
    assert f"route: '{'X' * 60}' is not a route" in warnings_shown(at)


def test_a_very_long_unknown_path_is_shortened_on_the_page_not_found_screen():
    def screen():
        from dashboard.app import ui

        ui.render_page_not_found("p" * 500, [])

    at = AppTest.from_function(screen)
    at.run()
    assert shown(at.error[0].value).startswith(f"**There is no page at “/{'p' * 60}… (500 characters)”.**")


def test_a_link_with_the_start_quarter_after_the_end_is_named_in_the_notice_and_the_rest_applies(make_app):
    """As any value of a link that cannot be used: one notice in the sidebar's words, both quarters ignored,
    the rest of the link applied and the page shown (no error in place of the page)."""
    at = make_app(from_quarter="2026-Q1", to_quarter="2024-Q1", route="IV")
    at.run()
    assert_clean(at)
    notice = warnings_shown(at)
    assert ("These settings were ignored and the rest of the link was applied:\n\n- The start quarter 2026-Q1 is "
            "after the end quarter 2024-Q1: both quarters were ignored, so patients of every start quarter are "
            "shown") in notice
    assert "from_quarter" not in notice and "to_quarter" not in notice
    assert context(at).settings == Settings(instrument="matched", route=("IV",))
    assert dict(at.query_params) == {"route": "IV"}
    assert at.sidebar.selectbox(key="from_quarter").value is None
    assert at.title[0].value == PAGES["views/overview.py"][0] and at.table  # the page's content is there


def test_quarters_in_the_wrong_order_in_the_sidebar_get_a_message_in_its_words(make_app):
    at = make_app()
    at.session_state[ui.MORE_FILTERS_KEY] = True  # the section of the quarters, open
    at.run()
    at.sidebar.selectbox(key="from_quarter").set_value("2026-Q1")
    at.sidebar.selectbox(key="to_quarter").set_value("2024-Q1").run()
    assert not at.exception
    message = shown(at.error[0].value)
    assert "These settings do not fit together" in message
    assert "The start quarter 2026-Q1 is after the end quarter 2024-Q1: choose a start on or before the end." in message
    assert "from_quarter" not in message


OTHER_SETTINGS = [
    {"instrument": "PCL5"},
    {"instrument": "PHQ9", "population": "itt", "relief": "mcid", "window": "0"},
    {"min_cell": "0"},
    {"route": "PO"},  # one route: nothing to compare
    {"min_cell": "100", "severity": "severe"},
]


@pytest.mark.parametrize("params", OTHER_SETTINGS, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize(("page", "view"), PARTS)
def test_every_page_renders_under_other_settings(make_app, page, view, params):
    at = open_page(make_app(**params), page, view)
    assert_clean(at)
    assert context(at).settings == Settings.from_query_params(dashboard_reads(params))
    assert context(at).view == view
    assert at.title[0].value == PAGES[page][0]


def test_one_route_has_nothing_to_compare(make_app):
    at = open_page(make_app(route="PO"), "views/response.py", "comparison")
    assert any("only one route" in i.value for i in at.info)



def test_the_route_comparison_reads_the_verdict_from_the_adjusted_p_not_the_interval(make_app):
    """The intervals are for each pair alone and the p-values Benjamini–Hochberg adjusted, so an interval can
    clear zero while the adjusted p is above 0.05 (the sample has such pairs): the words say which one decides."""
    at = open_page(make_app(), "views/response.py", "comparison")
    assert_clean(at)
    text = " ".join(shown(m.value) for m in at.markdown)
    assert ("Differences between routes come first, each with its 95 % interval for that pair alone (not adjusted "
            "for making several comparisons). Whether two routes differ beyond chance is read from the p-value "
            "adjusted for several comparisons (Benjamini–Hochberg): below 0.05 they differ; otherwise they are not "
            "clearly different, even when the interval just clears zero.") in text
    assert "crosses zero" not in text
    captions = " ".join(shown(c.value) for c in at.caption)
    assert ("the limits are for each pair alone, the p-value is adjusted for several comparisons "
            "(Benjamini–Hochberg).") in captions


# --- a page's parts (tabs) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "view"), list(PART_CHARTS))
def test_every_part_of_a_tabbed_page_opens_from_its_link(make_app, page, view):
    at = open_page(make_app(route=["IV", "IN", "IM"]), page, view)
    assert_clean(at)
    views = ui.PAGE_VIEWS[PAGE_FILE_PATHS[page]]
    assert [tab.label for tab in at.tabs] == list(views.values())
    # only the open part is computed and drawn; the tabs of the others are empty
    assert [s["layout"]["title"]["text"] for s in chart_specs(at)] == PART_CHARTS[(page, view)]
    assert [len(tab.children) > 0 for tab in at.tabs] == [code == view for code in views]
    # the link keeps the part (the first needs no parameter) beside the filters
    first = next(iter(views))
    assert dict(at.query_params) == {"route": ["IV", "IN", "IM"], **({} if view == first else {"view": view})}
    # the downloads of the whole page stay below the tabs, whichever part is open
    labels = [b.proto.label for b in at.get("download_button") if b.proto.label != "Download report (PDF)"]
    assert labels == [*PAGES[page][2], "All summaries (zip)"]


def test_choosing_a_tab_puts_it_in_the_link_and_moving_on_forgets_it(make_app):
    at = open_page(make_app(), "views/response.py")
    assert [s["layout"]["title"]["text"] for s in chart_specs(at)] == PART_CHARTS[("views/response.py", "rates")]
    log = context(at).audit_log
    views_recorded = log.read_text().count('"action":"view"')
    assert views_recorded > 0
    at.session_state["_ko_view_response"] = "Weekly trajectory"  # what a click on the tab sets
    at.run()
    assert context(at).view == "trajectory"
    assert log.read_text().count('"action":"view"') == views_recorded  # the same cohort: no new audit entry
    assert dict(at.query_params) == {"view": "trajectory"}
    assert [s["layout"]["title"]["text"] for s in chart_specs(at)] == PART_CHARTS[("views/response.py", "trajectory")]
    # a filter change keeps the part open, and the link says both
    at.sidebar.multiselect(key="route").set_value(["IV"]).run()
    assert context(at).view == "trajectory" and dict(at.query_params) == {"route": "IV", "view": "trajectory"}
    # another page has no such part: the link drops it, and coming back opens the page's first part
    at.switch_page("views/relief.py").run()
    assert_clean(at)
    assert dict(at.query_params) == {"route": "IV"} and context(at).view is None
    at.switch_page("views/response.py").run()
    assert context(at).view == "rates" and dict(at.query_params) == {"route": "IV"}


def test_an_unknown_part_is_named_and_the_page_opens_at_its_first(make_app):
    at = open_page(make_app(), "views/response.py", "survival")
    assert_clean(at)
    assert "view: 'survival' is not a part of any page" in warnings_shown(at)
    assert context(at).view == "rates" and dict(at.query_params) == {}
    # a part of another page (a link kept while moving on) is no problem: this page shows whole
    at = open_page(make_app(), "views/relief.py", "trajectory")
    assert_clean(at)
    assert not at.warning and context(at).view is None and dict(at.query_params) == {}


def test_view_problems_name_the_value_and_what_applies():
    assert ui.view_problems(["trajectory"]) == [] and ui.view_problems(["blood-pressure"]) == []
    assert ui.view_problems([""]) == []
    assert ui.view_problems(["rates", "adjusted"]) == [
        "view: given 2 times ('rates', 'adjusted'); the page opens at its first part"]
    assert ui.view_problems(["Trajectory"]) == [
        "view: 'Trajectory' is not a part of any page (response: rates, adjusted, comparison, trajectory, "
        "breakdown; side-effects: by-route, patients, severity, blood-pressure; maintenance: uptake, timing, "
        "projection; esketamine-monitoring: rules, observed, monitoring-time, blood-pressure); the page opens at "
        "its first part"]


def open_with(at: AppTest, page: str, view: str | None = None, **params: str) -> AppTest:
    """`open_page`, the link's `params` given as the page opens (after the home page's first run, which
    rewrites the link to its own)."""
    at.run()
    at.switch_page(page)
    for key, value in params.items():
        at.query_params[key] = value
    if view is not None:
        at.query_params[ui.VIEW_PARAM] = view
    return at.run()


def test_a_display_choice_is_in_the_link_and_a_link_sets_it(make_app):
    # the relief curves' span: a shared link shows the whole follow-up its sender chose
    at = open_with(make_app(), "views/relief.py", days="all")
    assert_clean(at)
    assert at.segmented_control(key="_ko_relief_span").value == "all"
    assert dict(at.query_params) == {"days": "all"}
    at.segmented_control(key="_ko_relief_span").set_value("8w").run()
    assert dict(at.query_params) == {}  # the default needs no parameter
    # the trajectory's weeks: chosen, they join the part in the link
    at = open_page(make_app(route="IV"), "views/response.py", "trajectory")
    at.select_slider(key="_ko_trajectory_weeks").set_value(26).run()
    assert_clean(at)
    assert dict(at.query_params) == {"route": "IV", "view": "trajectory", "weeks": "26"}
    # the comparison's outcome from a link, and the breakdown's grouping kept while another part is open
    at = open_with(make_app(), "views/response.py", "comparison", compare="remission", by="diagnosis")
    assert_clean(at)
    assert at.segmented_control(key="_ko_compare_outcome").value == "remission"
    assert dict(at.query_params) == {"view": "comparison", "compare": "remission", "by": "diagnosis"}
    at = open_with(make_app(), "views/benchmark.py", measure="remission")
    assert at.segmented_control(key="_ko_benchmark_measure").value == "remission"
    assert dict(at.query_params) == {"measure": "remission"}


def test_a_display_choice_the_page_does_not_have_is_named_and_the_default_shown(make_app):
    at = open_with(make_app(), "views/relief.py", days="year")
    assert_clean(at)
    assert "days: 'year' is not one of 8w, all; the page shows its default (8w)" in warnings_shown(at)
    assert at.segmented_control(key="_ko_relief_span").value == "8w" and dict(at.query_params) == {}
    assert ui.display_problems("weeks", ["26", "52"]) == [
        "weeks: given 2 times ('26', '52'); the page shows its default (12)"]
    # numbers are listed in their order, not the widget's (a newcomer read "12, 8, 26, 52")
    assert ui.display_problems("weeks", ["9"]) == [
        "weeks: '9' is not one of 8, 12, 26, 52; the page shows its default (12)"]
    # another page's choice (a link kept while moving on) is no problem: this page has none
    at = open_with(make_app(), "views/maintenance.py", days="all")
    assert not at.warning and dict(at.query_params) == {}


def test_display_choices_offer_what_the_pages_offer():
    from dashboard.analysis import benchmark

    assert ui.DISPLAY_CHOICES["measure"].codes == benchmark.MEASURES
    assert ui.DISPLAY_CHOICES["by"].codes == ("site", "diagnosis", "severity")
    assert sorted(int(c) for c in ui.DISPLAY_CHOICES["weeks"].codes) == [8, 12, 26, 52]
    assert set(ui.DISPLAY_CHOICES).isdisjoint({*ui.FILTER_NAMES, *ui.SETTING_NAMES, ui.VIEW_PARAM})


# --- empty and too-small cohorts ------------------------------------------------------------------------------


def walk(block):  # noqa: ANN001, ANN201
    """Every element below an AppTest block, in the order drawn."""
    for child in block.children.values():
        yield child
        if hasattr(child, "children"):
            yield from walk(child)


@pytest.mark.parametrize("page", list(PAGES))
def test_an_empty_cohort_gets_a_friendly_message(make_app, sample_db, page):
    counts = cohort_counts(sample_db)
    present = {(r.site, r.sex) for r in counts.itertuples()}
    site, sex = next((s, x) for s in sorted(counts["site"].unique()) for x in spec.SEXES
                     if (s, x) not in present and x in set(counts["sex"]))
    at = open_page(make_app(site=site, sex=sex), page)
    assert_clean(at)
    assert "No patients match these filters" in at.info[0].value
    assert not at.get("plotly_chart")
    assert any(m.value == "**Cohort:** 0 patients" for m in at.sidebar.markdown)
    # only the data page (import history, definitions) still opens, the message under its title as on the
    # other pages
    assert bool(at.title and at.title[0].value == "Data and definitions") == (page == "views/data.py")
    order = [e.type for e in walk(at.main)]
    assert order.index("title") < order.index(at.info[0].type), order


def test_a_too_small_cohort_is_not_shown(make_app, sample_db):
    counts = cohort_counts(sample_db)
    small = counts[(counts["n"] > 0) & (counts["n"] < spec.DEFAULT_MIN_CELL)].iloc[0]
    at = open_page(make_app(site=small["site"], sex=small["sex"]), "views/maintenance.py")
    assert_clean(at)
    assert "This cohort is too small to show" in at.warning[0].value
    assert not at.get("plotly_chart")
    assert any(m.value == "**Cohort:** fewer than 11 patients" for m in at.sidebar.markdown)
    # with suppression turned off the same cohort is shown
    at = open_page(make_app(site=small["site"], sex=small["sex"], min_cell="0"), "views/maintenance.py")
    assert_clean(at)
    assert not at.warning
    assert at.get("plotly_chart")


def test_a_relief_curve_hidden_entirely_is_said_not_drawn_as_empty_axes(make_app, hidden_relief_cohort):
    """Issue 11: a small cohort whose every relief step is withheld showed empty axes (read: nobody relieved)."""
    site, diagnosis = hidden_relief_cohort
    at = open_page(make_app(site=site, diagnosis=diagnosis), "views/relief.py")
    assert_clean(at)
    assert not [c for c in at.get("plotly_chart") if c.proto.id and "relief_curve" in c.proto.id]
    assert any("No curve can be shown for this cohort" in i.value and "fewer than 11" in i.value for i in at.info)
    assert [w.key for w in at.segmented_control] == ["_ko_relief_page"]  # no span to choose
    at = open_page(make_app(site=site, diagnosis=diagnosis, min_cell="0"), "views/relief.py")
    assert_clean(at)
    assert not any("No curve" in i.value for i in at.info)
    assert chart_specs(at)


# --- disclosure in the charts ------------------------------------------------------------------------------------


def test_small_cells_are_hidden_in_charts_with_an_explanation(make_app):
    at = open_page(make_app(), "views/side_effects.py")
    heat = chart_specs(at)[0]["data"][0]
    withheld = [t for row in heat["text"] for t in row if not t.endswith(" %") or t.startswith("<")]
    assert withheld and all(t.startswith(("< ", "hidden")) for t in withheld)
    assert any("Hidden to protect privacy" in i.value for i in at.info)
    at = open_page(make_app(min_cell="0"), "views/side_effects.py")
    heat = chart_specs(at)[0]["data"][0]
    assert all(t.endswith(" %") and t[0].isdigit() for row in heat["text"] for t in row)
    assert not any("Hidden to protect privacy" in i.value for i in at.info)


def test_charts_draw_the_disclosure_applied_numbers(make_app, sample_db):
    at = open_page(make_app(route=["IV"]), "views/response.py")
    with store.open_database(sample_db) as con:
        expected = export.compute_summaries(con, context(at).settings)["response_by_route.csv"]
    dots = [t for t in chart_specs(at)[0]["data"] if t.get("legendgroup") == "IV"]
    assert dots[0]["x"][0] == pytest.approx(float(expected.iloc[0]["response_rate"]))
    assert dots[1]["x"][0] == pytest.approx(float(expected.iloc[0]["remission_rate"]))


# --- the database -------------------------------------------------------------------------------------------------


def test_a_missing_database_gets_a_message(make_app, tmp_path):
    at = make_app(db=tmp_path / "nowhere.duckdb")
    at.run()
    assert not at.exception
    assert "The database could not be opened" in at.error[0].value
    assert "nowhere.duckdb" in shown(at.error[0].value)
    assert "ketamine-outcomes import" in at.markdown[-1].value


def test_a_database_cut_near_its_end_is_called_damaged_before_any_page(make_app, sample_db, tmp_path):
    # the lost blocks are ones most pages never read: the file is named as damaged when it is opened, not
    # shown as if whole (or refused by only the one tab that reads them)
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(sample_db.read_bytes()[:-1])
    at = make_app(db=cut)
    at.run()
    assert not at.exception
    assert "The database could not be opened" in at.error[0].value
    assert "is damaged: the file is shorter than the database it describes" in shown(at.error[0].value)


def test_a_corrupt_database_gets_a_message(make_app, tmp_path):
    bad = tmp_path / "corrupt.duckdb"
    bad.write_bytes(b"this is not a database\x00" * 200)
    at = make_app(db=bad)
    at.run()
    assert not at.exception
    assert "could not be" in at.error[0].value


def test_a_missing_dependency_is_called_an_installation_fault_not_a_damaged_database(make_app, monkeypatch):
    # A venv without statsmodels once showed "could not be read as a Ketamine Outcomes database".
    import sys

    import dashboard.analysis
    import dashboard.reports

    for package, name in ((dashboard.reports, "export"), (dashboard.analysis, "adjusted")):
        monkeypatch.delitem(sys.modules, f"{package.__name__}.{name}", raising=False)
        monkeypatch.delattr(package, name, raising=False)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)  # None in sys.modules: the import fails
    at = make_app()
    at.run()
    assert not at.exception
    message = shown(at.error[0].value)
    assert "installed incompletely" in message
    assert "statsmodels" in message
    assert "Ketamine Outcomes database" not in message
    assert "pip install" in at.markdown[-1].value


def test_a_foreign_database_gets_a_message(make_app, tmp_path):
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    at = make_app(db=other)
    at.run()
    assert not at.exception
    assert "is not a Ketamine Outcomes database" in shown(at.error[0].value)


def test_a_new_import_is_picked_up_without_restarting(make_app, sample_db, sample_export, tmp_path):
    from dashboard.data.ingest import import_export

    db = tmp_path / "live.duckdb"
    shutil.copy(sample_db, db)
    at = make_app(db=db)
    at.run()
    assert any(m.value == f"**Cohort:** {published_size(db, Settings()):,} patients" for m in at.sidebar.markdown)
    import_export(sample_export, db)  # swaps a new file in (400 patients)
    at.run()
    assert_clean(at)
    n = published_size(db, Settings())
    assert abs(n - 400) <= 24
    assert any(m.value == f"**Cohort:** {n:,} patients" for m in at.sidebar.markdown), [m.value for m in at.sidebar.markdown]
    # the new file's tables were checked, and the server remembers one checked file per path, not every import
    assert ui._CHECKED_SIGNATURE[str(db.resolve())] == store.database_signature(db)


# --- data access ------------------------------------------------------------------------------------------------


def test_one_cached_connection_serves_concurrent_sessions(sample_db):
    """DuckDB 2.0: the shared connection is only used through a cursor per query, so threads may share it."""
    signature = store.database_signature(sample_db)
    con = ui.load_connection(signature)
    settings = [Settings(route=(r,)) for r in ("IV", "IM", "IN", "SL")] + [Settings(instrument="PHQ9")] * 2
    expected = [export.compute_summaries(con, s) for s in settings]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = export.compute_summaries(con, settings[i])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(settings))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, exp in enumerate(expected):
        for name, df in exp.items():
            pd.testing.assert_frame_equal(results[i][name], df)


def test_the_download_builders_give_the_command_line_bytes(sample_db, tmp_path):
    s = Settings(route=("IV", "IN"), min_cell=11)
    written = export.write_summaries(sample_db, tmp_path / "out", s)
    summaries = export.compute_summaries(ui.load_connection(store.database_signature(sample_db)), s)
    for path in written:
        if path.name in export.SUMMARY_FILES:
            assert ui._csv_builder(export.summary_csv_bytes, lambda: summaries[path.name])() == path.read_bytes()


def test_a_page_computes_only_the_part_it_shows(make_app, monkeypatch):
    """The download buttons of a page's other parts load their files when clicked: opening the Response
    page on its rates does not fit the adjusted model (≈ 80 ms of every new filter state at 10,000 patients)."""
    computed = []
    compute = export.compute_summary

    def spy(con, settings, file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        computed.append(file)
        return compute(con, settings, file, *args, **kwargs)

    monkeypatch.setattr(export, "compute_summary", spy)
    at = open_page(make_app(route=["IV", "SC"], min_cell="7"), "views/response.py")
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "adjusted_response.csv" in labels  # offered
    assert "response_by_route.csv" in computed and "adjusted_response.csv" not in computed  # not computed


def test_the_log_rank_tests_are_computed_only_when_their_section_is_opened(make_app, monkeypatch):
    """The Time to relief page's pairwise log-rank tests (up to 140 ms of a new filter state at 100,000
    patients, and a 21-row table) wait in a closed section; opened, every pair of routes is listed, and a
    filter change keeps the section open."""
    calls = []
    load = ui.load_logrank

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return load(*args, **kwargs)

    monkeypatch.setattr(ui, "load_logrank", spy)
    at = open_page(make_app(), "views/relief.py")
    assert_clean(at)
    section = next(e for e in at.expander if "log-rank" in e.label)
    assert not calls and not at.table[1:]  # the median table alone
    assert not any("Routes" in t.value.columns for t in at.table)
    at.session_state[ui.LOGRANK_SECTION_KEY] = True  # the reader opens it
    at.run()
    assert_clean(at)
    assert calls
    pairs = next(t.value for t in at.table if "Routes" in t.value.columns)
    n = len(spec.ROUTES)
    assert len(pairs) == n * (n - 1) // 2 and pairs["Routes"].iloc[0] == "IV infusion vs IM injection"
    at.sidebar.multiselect(key="route").set_value(["PO"]).run()  # one route left: nothing to compare
    assert at.session_state[ui.LOGRANK_SECTION_KEY] is True
    assert any("only one route" in i.value for i in at.info)
    assert section.label == next(e for e in at.expander if "log-rank" in e.label).label


# each section drawn on demand: its page and part, its key, and a column of the table it holds
SECTION_TABLES = [
    ("views/overview.py", None, "_ko_section_funnel", figures.FUNNEL_STEPS[0][1]),
    ("views/response.py", None, "_ko_section_response_table", "Eligible patients"),
    ("views/response.py", "adjusted", "_ko_section_adjusted_table", "Crude rate"),
    ("views/relief.py", None, ui.LOGRANK_SECTION_KEY, "p-value, adjusted"),
    ("views/side_effects.py", "blood-pressure", "_ko_section_bp_table", "Sessions with vitals"),
    ("views/esketamine.py", None, "_ko_section_rems_measures", "Median minutes to ready"),
    ("views/benchmark.py", None, "_ko_section_benchmark_sites", "Outside 95 % limits"),
]
assert {key for _, _, key, _ in SECTION_TABLES} == ui.SECTION_KEYS


@pytest.mark.parametrize(("page", "view", "key", "column"), SECTION_TABLES, ids=[k for _, _, k, _ in SECTION_TABLES])
def test_a_section_draws_its_table_only_while_open(make_app, page, view, key, column):
    """A closed expander still draws its content in the browser; these sections draw theirs only while open."""
    at = open_page(make_app(), page, view)
    assert_clean(at)
    assert at.session_state[key] is False
    assert not any(column in t.value.columns for t in at.table)
    at.session_state[key] = True
    at.run()
    assert_clean(at)
    tables = [t.value for t in at.table if column in t.value.columns]
    assert len(tables) == 1 and len(tables[0]) > 0
    assert not tables[0].isna().any().any()


def test_a_section_key_must_be_known():
    with pytest.raises(ValueError, match="SECTION_KEYS"):
        ui.render_lazy_section("A table", "_ko_section_unknown", lambda: None)


def test_url_problems_checks_against_the_database_options():
    options = {"site": ["S1", "S2"], "quarter": ["2025-Q1", "2025-Q2"]}
    assert ui.url_problems({"route": ["IV"], "site": ["S1"], "from_quarter": ["2025-Q2"]}, options) == []
    problems = ui.url_problems({"from_quarter": ["2024-Q4"], "integration": ["true"], "embed": ["true"]}, options)
    assert problems == [
        "from_quarter: no patient in this database started in '2024-Q4'",
        "integration: 'true' should be written as one of yes, no",
    ]


def test_format_p():
    assert ui.format_p(0.00001) == "< 0.0001"
    assert ui.format_p(0.0042) == "0.0042"
    assert ui.format_p(0.456) == "0.46"
    assert ui.format_p(float("nan")) == ""


def test_any_side_effect_matches_an_independent_count(sample_db):
    """metrics.any_side_effect (added for the Overview headline) against pandas over the raw tables."""
    with duckdb.connect(str(sample_db), read_only=True) as con:
        sessions = con.sql("SELECT session_id, patient_id, route::VARCHAR AS route, sbp_peak, dbp_peak FROM sessions").df()
        with_event = set(con.sql("SELECT DISTINCT session_id FROM adverse_events").df()["session_id"])
    sessions["hit"] = sessions["session_id"].isin(with_event) | (sessions["sbp_peak"] >= 180).fillna(False) | \
        (sessions["dbp_peak"] >= 110).fillna(False)
    with store.open_database(sample_db) as con:
        got = metrics.any_side_effect(con, Settings()).set_index("route")
    assert list(got.index) == [r for r in spec.ROUTES if r in set(sessions["route"])] + [spec.ALL]
    for route, d in [*sessions.groupby("route"), (spec.ALL, sessions)]:
        row = got.loc[route]
        assert row["event"] == "any"
        assert row["sessions"] == len(d)
        assert row["sessions_with_event"] == int(d["hit"].sum())
        assert row["patients"] == d["patient_id"].nunique()
        assert row["patients_with_event"] == d.loc[d["hit"], "patient_id"].nunique()
        assert row["patient_rate"] == pytest.approx(d.loc[d["hit"], "patient_id"].nunique() / d["patient_id"].nunique())


def test_the_overview_headlines_show_their_n_and_interval(make_app, sample_db):
    at = open_page(make_app(), "views/overview.py")
    metrics_shown = {m.label: m.value for m in at.metric}
    with store.open_database(sample_db) as con:
        s = DASHBOARD_DEFAULT  # what the page computes from a link without settings
        summaries = export.compute_summaries(con, s)
        from dashboard.analysis import disclosure

        anyse = disclosure.protect("side_effects", metrics.any_side_effect(con, s), s.min_cell).iloc[-1]
    resp = summaries["response_by_route.csv"].iloc[-1]
    # the published (perturbed) size of the 2,000 patients, as cohort.csv shows it
    assert metrics_shown["Patients in the cohort"] == f"{int(summaries['cohort.csv'].iloc[-1]['patients']):,}"
    assert metrics_shown["Response rate"] == f"{resp['response_rate'] * 100:.0f} %"
    assert metrics_shown["Patients with any side effect"] == f"{anyse['patient_rate'] * 100:.0f} %"
    assert set(metrics_shown) == {"Patients in the cohort", "Response rate", "Remission rate", "Median days to relief",
                                  "Patients with any side effect", "Maintenance uptake"}
    captions = " ".join(c.value for c in at.caption)
    assert f"n = {int(resp['evaluable']):,}" in captions
    assert "95 % interval" in captions
    # why a funnel step may read more than the one before (15 evaluable of 14 eligible): said beside the counts
    assert "Shown counts are moved by one or two to protect privacy, so a count may read slightly above" in captions
    # days to relief as the Time to relief page writes days: whole from 10 on, else to a tenth (0.17 is "0.2")
    headline = summaries["headline.csv"]
    table = next(t.value for t in at.table if "Days to relief (median, CI)" in t.value.columns)
    for _, row in headline.iterrows():
        if pd.isna(row["median_days"]) or pd.isna(row["median_ci_low"]) or pd.isna(row["median_ci_high"]):
            continue
        day = figures.fmt_day_number
        assert table.loc[colors.route_label(str(row["route"])), "Days to relief (median, CI)"] == (
            f"{day(row['median_days'])} ({day(row['median_ci_low'])}–{day(row['median_ci_high'])})")
    assert figures.fmt_day_number(0.1667) == "0.2" and figures.fmt_day_number(21.4) == "21"
    # the data set's exact totals beside the protected cohort: why they may differ is said where they meet
    dataset = next(m.value for m in at.markdown if "The whole data set holds 2,000 patients" in m.value)
    assert dataset.endswith("These totals are exact; the counts on the pages are protected for privacy and may "
                            "differ from them by a patient or two (*Privacy* under Data and definitions).")


def test_production_settings_keep_tracebacks_and_raw_tables_in():
    import tomllib

    from dashboard.cli import streamlit_config_flags

    config = tomllib.loads((store.package_folder("dashboard.streamlit_config") / "config.toml").read_text("utf-8"))
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["disableDataExport"] is True
    # `serve` passes them as flags, so they hold from any working folder and in an installed wheel
    flags = streamlit_config_flags()
    assert flags[flags.index("--client.showErrorDetails") + 1] == "none"
    assert flags[flags.index("--client.disableDataExport") + 1] == "true"


def test_sections_holding_a_linked_setting_open_by_themselves(make_app):
    at = make_app()
    at.run()
    assert [at.session_state[k] for k in (ui.MORE_FILTERS_KEY, ui.ANALYSIS_SETTINGS_KEY)] == [False, False]
    assert sidebar_keys(at) == {"route", "site", "diagnosis"}
    at = make_app(sex="F", min_cell="5")
    at.run()
    assert [e.label for e in at.sidebar.expander] == ["More filters", "Analysis settings"]
    assert [at.session_state[k] for k in (ui.MORE_FILTERS_KEY, ui.ANALYSIS_SETTINGS_KEY)] == [True, True]
    assert sidebar_keys(at) == set(ui.WIDGET_DEFAULTS)
    assert at.sidebar.multiselect(key="sex").value == ["F"] and at.sidebar.number_input(key="min_cell").value == 5


def test_a_closed_section_keeps_its_settings_across_runs_and_pages(make_app):
    """A section is drawn only while open; what was chosen in it holds after it is closed, on every later
    run and page, is shown again when it reopens, and the reset clears it while closed too."""
    at = make_app()
    at.run()
    open_sidebar_sections(at)  # as the reader's clicks do, after the page has opened
    at.sidebar.multiselect(key="sex").set_value(["F"]).run()
    at.session_state[ui.MORE_FILTERS_KEY] = False
    at.run().run()
    assert "sex" not in sidebar_keys(at)
    assert context(at).settings.sex == ("F",) and dict(at.query_params)["sex"] == "F"
    at.switch_page("views/relief.py").run()
    assert context(at).settings.sex == ("F",) and dict(at.query_params)["sex"] == "F"
    assert at.session_state[ui.MORE_FILTERS_KEY] is False  # as the reader left it
    at.session_state[ui.MORE_FILTERS_KEY] = True
    at.run()
    assert at.sidebar.multiselect(key="sex").value == ["F"]
    at.session_state[ui.MORE_FILTERS_KEY] = False
    at.run()
    at.sidebar.button(key="_ko_reset").click().run()
    at.run()
    assert context(at).settings.sex == () and "sex" not in dict(at.query_params)
    assert_clean(at)


def test_data_page_lists_what_the_import_tolerated(make_app, tmp_path):
    # issue 10: a ;-separated file with rows deleted in a spreadsheet imports, and the Data page says so
    import shutil

    from dashboard.data.ingest import import_export

    export = tmp_path / "export"
    example = Path(__file__).resolve().parent.parent / "sample_data" / "example_export"
    shutil.copytree(example, export, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    path = export / "patients.csv"
    path.write_bytes(path.read_bytes().replace(b",", b";") + b";;;;;;;;\n" * 3)
    import_export(export, tmp_path / "db.duckdb")
    at = open_page(make_app(tmp_path / "db.duckdb"), "views/data.py")
    assert_clean(at)
    tables = [df.value for df in at.table]  # static tables; their text from the data is escaped for Markdown
    notes = next(t for t in tables if list(t.columns) == ["File", "What was accepted"])
    assert [[shown(c) for c in row] for row in notes.values.tolist()] == [
        ["patients.csv", "separated by semicolons (;), not commas"],
        ["patients.csv", "ignored 3 empty lines (nothing but delimiters or spaces: rows deleted in a spreadsheet)"],
    ]


@pytest.mark.parametrize("instrument, expected", [
    (None, "Dosed patients without a baseline score on each patient's own questionnaire (matched to diagnosis)"),
    ("PHQ9", "Dosed patients without a baseline score on PHQ-9"),
])
def test_the_data_quality_rows_read_as_sentences_for_each_questionnaire(make_app, instrument, expected):
    """The questionnaire's words end the sentence, so the matched choice's long words are not spliced into it."""
    at = open_page(make_app(**({"instrument": instrument} if instrument else {})), "views/data.py")
    assert_clean(at)
    quality = next(t.value for t in at.table if "Measure" in t.value.columns)
    measures = [shown(m) for m in quality["Measure"]]
    assert expected in measures
    assert ("Questionnaires (each patient's own) taken after a dose" if instrument is None
            else "PHQ-9 questionnaires taken after a dose") in measures

# --- fair comparisons (issue 15) ------------------------------------------------------------------------------


def test_the_response_page_shows_crude_and_adjusted_rates_and_names_the_adjustment(make_app, sample_db):
    at = open_page(make_app(), "views/response.py", "adjusted")
    assert_clean(at)
    adjusted_chart = next(s for s in chart_specs(at) if "adjusted" in s["layout"]["title"]["text"])
    assert {"Crude rate", "Adjusted rate (95 % interval)"} <= trace_names(adjusted_chart)
    text = " ".join(m.value for m in at.markdown)
    assert "baseline score" in text and "treatment resistance" in text and "age band" in text
    # the dots are adjusted_response.csv's numbers
    s = context(at).settings
    table = export.compute_summary(ui.load_connection(store.database_signature(sample_db)), s, "adjusted_response.csv")
    drawn = sorted(x for t in adjusted_chart["data"] if t.get("name") == "Adjusted rate (95 % interval)" for x in t["x"])
    assert drawn == pytest.approx(sorted(table["adjusted_rate"].dropna()))


def _strings(value: object) -> list[str]:
    """Every text in a chart's JSON (numeric arrays travel base64-encoded under "bdata": not text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != "bdata" for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_the_benchmark_page_for_a_site_director_names_no_other_site(make_app, sample_db, monkeypatch,
                                                                    deferred_downloads):
    with duckdb.connect(str(sample_db), read_only=True) as con:
        sites = [r[0] for r in con.sql("SELECT DISTINCT site FROM patients ORDER BY 1").fetchall()]
    assert len(sites) >= 3
    own = sites[1]
    monkeypatch.setattr(ui, "viewer_named_sites", lambda ctx: frozenset({own}))
    at = open_page(make_app(), "views/benchmark.py")
    assert_clean(at)
    rendered = " ".join(_strings(chart_specs(at)) + [m.value for m in at.markdown] + [c.value for c in at.caption]
                        + [json.dumps(df.value.astype(str).to_dict()) for df in at.dataframe])
    assert f"Site {own}" in rendered
    for other in set(sites) - {own}:
        assert not re.search(rf"\b{re.escape(other)}\b", rendered), other
    # every page's downloads (ui.render_downloads), each naming only the reader's sites
    buttons = {b.proto.label: b.proto.deferred_file_id for b in at.get("download_button")
               if b.proto.label != ui.REPORT_LABEL}
    assert list(buttons) == ["benchmark.csv", "All summaries (zip)"]
    got = deferred_downloads[buttons["benchmark.csv"]]()
    assert {line.split(b",")[0].decode() for line in got.splitlines()[1:]} == {own}
    with zipfile.ZipFile(io.BytesIO(deferred_downloads[buttons["All summaries (zip)"]]())) as zf:
        assert zf.read("benchmark.csv") == got
    # the unrestricted page draws every site
    monkeypatch.setattr(ui, "viewer_named_sites", lambda ctx: None)
    at = open_page(make_app(), "views/benchmark.py")
    assert_clean(at)
    texts = {t.get("text", [None])[0] for t in chart_specs(at)[0]["data"] if t.get("mode") == "markers+text"}
    assert texts == set(sites)

# --- issue 12: links that inject content, break or lie ----------------------------------------------------

UNESCAPED_MARKUP = re.compile(r"(?<!\\)[\[\]()<>!*_`$]")


def test_a_link_cannot_inject_a_link_or_an_image(make_app):
    phishing = "[Your session expired - log in again](https://evil.example/login)"
    at = make_app(**{phishing: "x", "site": "![px](http://127.0.0.1:8529/t.png)"})
    at.run()
    assert_clean(at)
    notice = " ".join(w.value for w in at.warning)
    # The reader sees the text as written (a name over 60 characters shortened) ...
    assert f"{phishing[:60]}… ({len(phishing)} characters): not a setting of this dashboard" in shown(notice)
    assert "site: '![px](http://127.0.0.1:8529/t.png)' is not a site code" in shown(notice)
    # ... and no Markdown of it survives: every bracket, parenthesis, "!" and ":" of the link is escaped.
    problems = notice.split("was applied:", 1)[1]
    assert not UNESCAPED_MARKUP.search(problems), problems
    assert "https://" not in problems and "http://" not in problems


@pytest.mark.parametrize("name", ["window", "min_cell", "min_baseline"])
@pytest.mark.parametrize("raw", ["inf", "-inf", "1e999", "Infinity", "٧", "1_4"])
def test_numbers_that_are_not_digits_are_refused_and_the_default_applies(make_app, name, raw):
    at = make_app(**{name: raw})
    at.run()
    assert_clean(at)
    assert f"{name}: {raw!r} is not a whole number (digits 0-9 only)" in warnings_shown(at)
    assert context(at).settings == DASHBOARD_DEFAULT
    assert name not in at.query_params


def test_a_repeated_min_cell_is_refused_and_hiding_stays_on(make_app):
    at = make_app(min_cell=["11", "0"])
    at.run()
    assert_clean(at)
    assert "min_cell: given 2 times, expected once; the default was used" in warnings_shown(at)
    assert context(at).settings.min_cell == spec.DEFAULT_MIN_CELL
    at.run()  # and stays refused on the next run
    assert context(at).settings.min_cell == spec.DEFAULT_MIN_CELL


# --- issue 11: the matched instrument ----------------------------------------------------------------------


@pytest.mark.parametrize(("params", "instrument"), [
    ({}, "matched"),
    ({"diagnosis": "PTSD"}, "PCL5"),
    ({"diagnosis": ["MDD", "OTHER"]}, "PHQ9"),
    ({"diagnosis": ["GAD", "PANIC"]}, "GAD7"),
    ({"diagnosis": ["MDD", "PTSD"]}, "matched"),
    ({"diagnosis": "PTSD", "instrument": "GAD7"}, "GAD7"),  # a link that names one keeps it
])
def test_the_dashboard_default_instrument_follows_the_diagnoses(make_app, params, instrument):
    at = make_app(**params)
    at.run()
    assert_clean(at)
    assert context(at).settings.instrument == instrument
    open_sidebar_sections(at)
    assert context(at).settings.instrument == instrument
    box = at.sidebar.selectbox(key="instrument")
    assert box.value == params.get("instrument")  # the default is not written into the link
    assert "instrument" not in at.query_params or "instrument" in params
    banner = " ".join(c.value for c in at.sidebar.caption)
    if instrument == "matched":
        assert box.placeholder == "Matched to each patient's diagnosis"
        assert "Matched to diagnosis" in shown(banner)
        assert "matched" not in shown(banner)  # the code stays in the link
    elif "instrument" not in params:
        assert box.placeholder.startswith(ui.INSTRUMENT_WORDS[instrument])
        assert f"{spec.INSTRUMENT_LABELS[instrument]}, baseline ≥ {spec.DEFAULT_MIN_BASELINE[instrument]}" in shown(banner)


def test_a_minimum_baseline_with_matched_is_dropped_with_a_notice(make_app):
    at = make_app(instrument="matched", min_baseline="12", route="IV")
    at.run()
    assert_clean(at)
    notice = warnings_shown(at)
    assert "Part of this link could not be used" in notice
    assert "min_baseline: 12 cannot be used with instrument=matched" in notice
    assert "leave min_baseline out" in notice
    s = context(at).settings
    assert s == Settings(instrument="matched", route=("IV",))  # the rest of the link applies
    assert "min_baseline" not in at.query_params
    # the same for a link naming no instrument, whose default is matched
    at = make_app(min_baseline="12")
    at.run()
    assert_clean(at)
    assert "min_baseline: 12 cannot be used with instrument=matched" in warnings_shown(at)
    assert context(at).settings == DASHBOARD_DEFAULT
    # and on one questionnaire a minimum baseline is fine
    at = make_app(diagnosis="PTSD", min_baseline="40")
    at.run()
    assert_clean(at)
    assert context(at).settings == Settings(diagnosis=("PTSD",), instrument="PCL5", min_baseline=40)


def test_the_trajectory_under_matched_is_in_percent(make_app):
    at = open_page(make_app(), "views/response.py", "trajectory")
    assert_clean(at)
    trajectory = next(c for c in chart_specs(at) if "Weekly" in c["layout"]["title"]["text"])
    assert trajectory["layout"]["title"]["text"] == "Weekly improvement from baseline by route"
    assert trajectory["layout"]["yaxis"]["title"]["text"] == "Mean improvement from baseline (%)"
    captions = shown(" ".join(c.value for c in at.caption))
    assert "Mean improvement from baseline in percent" in captions
    # week 0 is the baseline itself for most patients: small improvement; later weeks well above zero
    import base64

    import numpy as np

    line = next(d for d in trajectory["data"] if d.get("name") == "All routes")
    y = line["y"]  # Plotly 6 ships arrays as base64 of their dtype
    y = list(np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])) if isinstance(y, dict) else y
    assert y[0] < 30 and max(v for v in y if v == v) > 30
    at = open_page(make_app(instrument="GAD7"), "views/response.py", "trajectory")
    trajectory = next(c for c in chart_specs(at) if "Weekly" in c["layout"]["title"]["text"])
    assert trajectory["layout"]["title"]["text"] == "Weekly GAD-7 score by route"


def test_matched_downloads_are_the_command_lines_bytes(sample_db, tmp_path):
    s = Settings(instrument="matched", route=("IV", "IN"), min_cell=11)
    written = export.write_summaries(sample_db, tmp_path / "out", s)
    summaries = export.compute_summaries(ui.load_connection(store.database_signature(sample_db)), s)
    assert {p.name for p in written} >= set(export.SUMMARY_FILES)
    for path in written:
        if path.name in export.SUMMARY_FILES:
            assert ui._csv_builder(export.summary_csv_bytes, lambda: summaries[path.name])() == path.read_bytes()
    # the file name carries the instrument (the dashboard's default is not the command line's)
    assert export.download_name("response_by_route.csv", s) == "response_by_route__route-IV-IN__instrument-matched.csv"


# --- the downloads' command line ----------------------------------------------------------------------------


def test_the_downloads_name_the_export_command_that_writes_the_same_files(make_app, sample_db, tmp_path):
    # diagnosis=OTHER is computed on PHQ-9 in the dashboard (its one questionnaire) but the command line's default
    # is GAD-7: "the same as export writes for these filters" gave other numbers (23 responders against 20)
    at = open_page(make_app(diagnosis="OTHER"), "views/maintenance.py")
    assert_clean(at)
    command = "ketamine-outcomes export --db DATABASE --out FOLDER --diagnosis OTHER --instrument PHQ9"
    captions = [c.value for c in at.caption]
    assert f"The files are what `{command}` writes, with the same privacy protection." in captions
    from dashboard import cli

    out = tmp_path / "out"
    flags = command.split("FOLDER ", 1)[1].split()
    assert cli.main(["export", "--db", str(sample_db), "--out", str(out), "--quiet", *flags]) == 0
    s = Settings(diagnosis=("OTHER",), instrument="PHQ9")
    con = store.open_database(sample_db)
    try:
        expected = export.summary_csv_bytes(export.compute_summary(con, s, "maintenance.csv"))
    finally:
        con.close()
    assert (out / "maintenance.csv").read_bytes() == expected
