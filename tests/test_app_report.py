"""Issue 11 in AppTest: the Overview answers which route works best, and no page presents a hidden value
as a finding, shows a code where people read words, or hides a key figure behind a scroll. Each test is one
of the issue's findings, checked against the core's own numbers (exact values from the export functions
and `dashboard.analysis.disclosure`, not hard-coded cells)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.analysis import disclosure, metrics
from dashboard.analysis.settings import Settings
from dashboard.app import ui
from dashboard.charts import colors, figures
from dashboard.data import spec, store
from dashboard.reports import export
from test_app import open_page as open_app_page
from test_app import open_sections

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app" / "main.py"
BAD_TEXT = re.compile(r"\bNone\b|\bnan\b|<NA>|\bNaN\b")


@pytest.fixture
def make_app(sample_db: Path, monkeypatch: pytest.MonkeyPatch):
    def make(**params: str | list[str]) -> AppTest:
        monkeypatch.setenv(ui.DB_ENV, str(sample_db))
        at = AppTest.from_file(str(APP), default_timeout=180)
        for key, value in params.items():
            at.query_params[key] = value
        return at

    return make


def open_page(at: AppTest, page: str, view: str | None = None) -> AppTest:
    """test_app.open_page, and the page drawn without an exception or error box."""
    open_app_page(at, page, view)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture(scope="module")
def small(sample_db: Path) -> dict[str, str]:
    """A small cohort (site × diagnosis with 15 to 40 patients) in which some headline figures are hidden."""
    with duckdb.connect(str(sample_db), read_only=True) as con:
        df = con.sql("SELECT site, primary_diagnosis::VARCHAR AS d, count(*) AS n FROM patients GROUP BY ALL "
                     "HAVING n BETWEEN 15 AND 40 ORDER BY n, site, d").df()
    with store.open_database(sample_db) as con:
        for site, d in zip(df["site"], df["d"]):
            s = Settings(site=(site,), diagnosis=(d,))
            relief = export.compute_summary(con, s, "time_to_relief.csv")
            if pd.isna(relief.iloc[-1]["median_days"]):
                return {"site": site, "diagnosis": d}
    raise AssertionError("the sample has no small cohort with a hidden median")


def texts(at: AppTest) -> list[str]:
    """Every piece of text the page shows: markdown, captions, tiles, notes, table cells, chart text and hover."""
    out = [m.value for m in at.markdown] + [c.value for c in at.caption] + [m.value for m in at.metric]
    out += [i.value for i in at.info] + [w.value for w in at.warning]
    for df in [*at.dataframe, *at.table]:
        out += [str(v) for v in df.value.to_numpy().ravel()]
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec)["data"]:
            for key in ("text", "hovertemplate", "hovertext", "name"):
                value = trace.get(key)
                if isinstance(value, list):
                    out += [str(x) for row in value for x in (row if isinstance(row, list) else [row])]
                elif value:
                    out.append(str(value))
    return out


# --- finding 1: a hidden value is never presented as a finding, nor as None --------------------------------------


def test_a_hidden_median_is_not_not_reached_and_no_table_shows_none(make_app, sample_db, small):
    at = open_page(make_app(**small), "views/overview.py")
    tiles = {m.label: m.value for m in at.metric}
    with store.open_database(sample_db) as con:
        s = Settings(site=(small["site"],), diagnosis=(small["diagnosis"],))
        relief = export.compute_summary(con, s, "time_to_relief.csv")
        raw = metrics.time_to_relief(con, s.replace(min_cell=0), logrank=False).summary
    i = relief.index[-1]
    assert tiles["Median days to relief"] == figures.hidden_text(relief, i, "median_days")
    assert tiles["Median days to relief"] in ("fewer than 11 patients", "too few to show", "hidden")
    assert not any("hidden responders" in c.value for c in at.caption)
    # the same cohort without suppression shows the number itself
    at0 = open_page(make_app(**small, min_cell="0"), "views/overview.py")
    median = raw.iloc[-1]["median_days"]
    assert {m.label: m.value for m in at0.metric}["Median days to relief"] == (
        figures.fmt_days(median) if not pd.isna(median) else "not reached in follow-up")
    pages = [("views/overview.py", None), ("views/relief.py", None), ("views/data.py", None),
             ("views/side_effects.py", "blood-pressure"), ("views/benchmark.py", None)]
    pages += [("views/response.py", view) for view in ui.PAGE_VIEWS["response"]]
    for page, view in pages:
        # with every section drawn on demand open: their tables are checked too
        shown = texts(open_sections(open_page(make_app(**small), page, view)))
        assert not [t for t in shown if BAD_TEXT.search(t)], (page, view)
        assert not [t for t in shown if "not reached" in t], (page, view)


def test_hidden_cells_say_fewer_than_k_or_a_bound():
    # the wording follows disclosure's record: a count 1..k-1, a rate with its bound, a cell protecting another
    df = pd.DataFrame({"route": ["IV", "IN", "ALL"], "patients": [500, 300, 800], "evaluable": [400, 300, 700],
                       "responders": [5, 200, 205], "remitters": [100, 100, 200],
                       "response_rate": [5 / 400, 2 / 3, 205 / 700], "response_ci_low": [0.0, 0.6, 0.26],
                       "response_ci_high": [0.03, 0.7, 0.33], "remission_rate": [0.25, 1 / 3, 2 / 7]})
    out = disclosure.protect("response_by_route", df, 11)
    assert figures.cell_text(out, 0, "responders") == "fewer than 11"
    assert figures.cell_text(out, 0, "response_rate", "pct") == "< 2.8 %"  # 11 / 400 = 2.75 %, rounded up
    assert figures.cell_text(out, 1, "responders") == "hidden"  # protects IV's: may be 11 or more
    assert figures.cell_text(out, 2, "responders") == "205"
    assert figures.cell_text(out, 2, "response_rate", "pct") == "29.3 %"
    assert figures.cell_text(disclosure.protect("response_by_route", df, 0), 0, "responders") == "5"
    # fewer than 11 of 11 evaluable: "< 100 %" would say nothing and read like a result
    few = df.assign(evaluable=[11, 300, 311], patients=[11, 300, 311], response_rate=[5 / 11, 2 / 3, 205 / 311])
    out = disclosure.protect("response_by_route", few, 11)
    assert disclosure.hidden_reason(out, 0, "response_rate")[0] == "rate_below"
    assert figures.cell_text(out, 0, "response_rate", "pct") == "too few to show"


# --- the Overview answers the question ----------------------------------------------------------------------------


def test_the_overview_opens_with_the_headline_by_route(make_app, sample_db):
    at = open_page(make_app(min_cell="0"), "views/overview.py")
    with store.open_database(sample_db) as con:
        # the page's settings: a link naming no instrument or diagnosis gets the dashboard's default, matched
        head = export.compute_headline(con, Settings(min_cell=0, instrument="matched"))
    assert at.subheader[0].value == "Which route works best?"
    table = at.table[0].value
    assert list(table.index) == [colors.route_label(r) for r in head["route"]]
    assert list(table["Patients"]) == [f"{int(n):,}" for n in head["patients"]]
    top = head.iloc[0]
    assert table["Response % (95 % CI)"].iloc[0] == (
        f"{top['response_rate'] * 100:.0f} % ({top['response_ci_low'] * 100:.0f}–{top['response_ci_high'] * 100:.0f})")
    flags = table["Compared with the best"].tolist()
    assert flags[0] == "best" and flags[-1] == "—"
    for flag, differs in zip(flags[1:-1], head["differs_from_best"].tolist()[1:-1]):
        assert flag == ("lower" if differs else "not clearly different")
    assert f"**{colors.route_label(top['route'])}** has the highest response rate" in at.markdown[0].value
    # every tile links to the page that explains it
    links = [link.proto.label for link in at.get("page_link")]
    assert {"Explained on Time to relief", "Explained on Maintenance", "Explained on Side effects"} <= set(links)


# --- finding 2: side effects of a big route are bounded, not blank ---------------------------------------------------


def test_hidden_side_effects_show_a_bound_and_a_marker(make_app, sample_db):
    heat = json.loads(open_page(make_app(), "views/side_effects.py").get("plotly_chart")[0].proto.spec)
    at = open_page(make_app(), "views/side_effects.py", "patients")
    incidence = json.loads(at.get("plotly_chart")[0].proto.spec)
    with store.open_database(sample_db) as con:
        table = export.compute_summary(con, Settings(), "side_effects.csv")
    cells = [t for row in heat["data"][0]["text"] for t in row]
    said = [t for row in heat["data"][0]["customdata"] for t in row]
    bounded = [(c, s) for c, s in zip(cells, said) if s.startswith("fewer than 11 sessions (< ")]
    assert bounded, "a count under 11 over a shown number of sessions reads with its bound"
    assert all(s.endswith(f"({c})") for c, s in bounded)  # the cell shows the bound, the hover says it in full
    assert not [t for t in cells if BAD_TEXT.search(t) or t == ""]
    # the incidence chart: the axis starts at 0, and every hidden rate of a shown event has a ring
    assert incidence["layout"]["xaxis"]["range"][0] == 0
    rings = [t for t in incidence["data"] if t.get("name", "").endswith(": hidden")]
    chosen = [e for e in spec.SUMMARY_EVENTS if e != "any"][:8]
    hidden = table[table["patient_rate"].isna() & table["event"].isin(chosen)]
    assert sum(len(t["x"]) for t in rings) == len(hidden)
    hover = " ".join(h for t in rings for h in t["hovertemplate"])
    assert "patients (<" in hover or "patients (hidden)" in hover


# --- finding 3: the answer columns in view, every pair listed, one number format ---------------------------------


def test_maintenance_and_comparison_tables_show_their_answer(make_app):
    at = open_page(make_app(), "views/maintenance.py")
    cols = list(at.table[0].value.columns)
    assert cols[:3] == ["Route", "Sessions per patient-month", "Still responding at 8 weeks"]
    assert len(at.table) == 1  # the projection is a part of its own
    projection = open_page(make_app(), "views/maintenance.py", "projection").table[0].value
    for column in ("Current responders", "Expected in maintenance", "Sessions per month"):
        values = [v for v in projection[column] if v[0].isdigit()]
        assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", v) for v in values), values
    at = open_page(make_app(), "views/response.py", "comparison")
    pairs = next(t.value for t in at.table if "Routes" in t.value.columns)
    n_routes = len([r for r in spec.ROUTES])
    assert len(pairs) == n_routes * (n_routes - 1) // 2
    assert pairs["Routes"].iloc[0] == "IV infusion vs IM injection"


# --- finding 6: the relief chart opens on the first 8 weeks -----------------------------------------------------------


def test_the_relief_chart_opens_on_eight_weeks(make_app):
    at = open_page(make_app(), "views/relief.py")
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert layout["xaxis"]["range"][1] <= 56 + 28 + 0.5
    # the curves' axis matches the at-risk row's: both carry the range, or the browser autoranges them
    assert layout["xaxis"]["matches"] == "x2" and layout["xaxis2"]["range"] == layout["xaxis"]["range"]
    at.segmented_control(key="_ko_relief_span").set_value("all").run()
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert layout["xaxis"]["range"][1] > 100


def shown_text(markdown: str) -> str:
    """What a reader sees of Markdown whose outside text ui.plain escaped (as tests/test_app.py's `shown`)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


# --- finding 7: words on screen, codes only in URLs and files -------------------------------------------------------


def test_plain_words_on_screen(make_app):
    at = open_page(make_app(route=["IV", "IN"], sex="F"), "views/relief.py")
    at.session_state[ui.LOGRANK_SECTION_KEY] = True  # the reader opens the log-rank section
    at.run()
    banner = shown_text(" ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.caption))
    assert "IV infusion, Intranasal" in banner and "female" in banner
    assert "IV, IN" not in banner
    shown = " ".join(texts(at))
    assert "Statistic (Z)" not in shown and "IV − IN" not in shown
    assert "IV infusion vs Intranasal" in " ".join(str(v) for v in at.table[-1].value["Routes"])
    # the link keeps its codes (the widgets' values), the screen says them in words
    assert at.session_state["route"] == ["IV", "IN"]
    data = open_page(make_app(), "views/data.py")
    assert not any("seed" in m.value or "build " in m.value for m in data.markdown)
    cells = " ".join(str(v) for t in data.table for v in t.value.to_numpy().ravel())
    assert "sample_db0/export" in shown_text(cells) and "seed" not in cells and "build " not in cells
    # the built-in sample's import label (seed and code hash, kept for rebuilding it) reads as words
    from dashboard.data import builtin

    assert ui.source_words(builtin.sample_label(5000, 20261121)) == ui.BUILTIN_SAMPLE_WORDS
    assert ui.source_words("/exports/north_2025") == "/exports/north_2025"


# --- finding 8: a hand-typed age_band=75+ ---------------------------------------------------------------------------


def test_age_band_75_plus_survives_the_plus_arriving_as_a_space(make_app):
    at = open_page(make_app(age_band="75 "), "views/overview.py")
    assert at.session_state["age_band"] == ["75+"]
    assert at.session_state[ui.CONTEXT_KEY].settings.age_band == ("75+",)
    assert not at.warning or not any("age_band" in w.value for w in at.warning)
    at = open_page(make_app(age_band="99"), "views/overview.py")
    notice = shown_text(" ".join(w.value for w in at.warning))
    assert "'99' is not an age band" in notice and "a age band" not in notice
