"""What keeps page switches quick: warming the other pages (dashboard.app.ui.page_loads, warm_pages) lists
exactly the loads each page makes and leaves every one cached; the default view is ready before the first
visitor (ui.warm_default_view); figures are built once per content (ui.build_figure); the record of hidden
cells is shared, not deep-copied, by pandas."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import streamlit as st

from conftest import PAGE_FILES, older_version_copy
from dashboard.analysis import metrics
from dashboard.analysis.settings import Settings
from dashboard.app import ui
from dashboard.data import store

VIEWS = Path(ui.__file__).resolve().parent / "views"
# loads a page makes that warming leaves alone: the Data page's import notes are one tiny query per import
# and the monitoring page's list of missing columns is read once per database
NOT_WARMED = {"load_import_notes", "load_rems_lacking"}


@pytest.fixture(autouse=True)
def _fresh_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _refuse(module, *names: str, monkeypatch) -> None:  # noqa: ANN001
    """Make each of `module`'s functions `names` (every function of the module when none is named) raise when
    called, under its own name and qualname, so that a cached value keyed by them is still found."""
    import functools

    def refusing(fn):  # noqa: ANN001, ANN202
        @functools.wraps(fn)
        def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError(f"{fn.__name__} computed again")
        return refused

    for name, fn in vars(module).copy().items():
        if inspect.isfunction(fn) and fn.__module__ == module.__name__ and (not names or name in names):
            monkeypatch.setattr(module, name, refusing(fn))


def test_the_plan_lists_every_load_of_every_page():
    plan = ui.page_loads()
    assert set(plan) == set(PAGE_FILES)
    for page, file in PAGE_FILES.items():
        source = (VIEWS / file).read_text()
        made = set(re.findall(r"ui\.(load_\w+)\(", source)) - NOT_WARMED
        summaries = {f"load_summary[{f}]" for f in re.findall(r'ui\.load_summary\([^)]*"([\w.]+\.csv)"\)', source)}
        planned = {name for name, _ in plan[page]}
        assert {n for n in planned if not n.startswith("load_summary")} == made - {"load_summary"}, page
        assert {n for n in planned if n.startswith("load_summary")} == summaries, page


def test_after_warming_a_page_switch_computes_nothing(sample_db: Path, monkeypatch):
    signature = store.database_signature(sample_db)
    s = Settings(route=("IV", "IN"))
    plan = ui.page_loads()
    ran = ui.warm_pages(signature, s, plan, first="response")
    assert ran == len({name for loads in plan.values() for name, _ in loads})

    _refuse(metrics, monkeypatch=monkeypatch)
    for page, loads in plan.items():
        for _, load in loads:
            load(signature, s)  # every one a cache hit


def test_warming_starts_with_the_parts_of_the_page_on_screen():
    ran: list[str] = []
    plan = {page: [(name, lambda sig, s, name=name: ran.append(name)), ("shared", lambda sig, s: ran.append("shared"))]
            for page, name in (("overview", "a"), ("response", "b"), ("relief", "c"))}
    assert ui.warm_pages(("sig",), Settings(), plan, first="response") == 4
    assert ran == ["b", "shared", "a", "c"]  # the page's own first, then the plan's order; each load once


def test_warming_opens_every_other_page_before_their_other_parts():
    """After the page on screen, what a page switch waits for (each page's opening loads), and only then the
    tabs and closed sections of the other pages (ui.LATER_LOADS), whose models take longest."""
    ran: list[str] = []

    def load(name: str):  # noqa: ANN202
        return (name, lambda sig, s: ran.append(name))

    plan = ui.page_loads()
    plan = {page: [load(name) for name, _ in loads] for page, loads in plan.items()}
    ui.warm_pages(("sig",), Settings(), plan, first="relief")
    relief = [name for name, _ in plan["relief"]]
    assert ran[:len(relief)] == relief
    openings = {name for page, loads in ui.opening_loads(plan).items() if page != "relief" for name, _ in loads}
    later = {name for page in plan if page != "relief" for name in ui.LATER_LOADS.get(page, ())} - openings
    assert later and openings
    last_opening = max(ran.index(name) for name in openings - set(relief))
    assert all(ran.index(name) > last_opening for name in later - set(relief))
    assert sorted(ran) == sorted({name for loads in plan.values() for name, _ in loads})  # each load once


def test_warming_stops_as_soon_as_the_session_moves_on(sample_db: Path):
    signature = store.database_signature(sample_db)
    calls = iter([True, True, False])
    assert ui.warm_pages(signature, Settings(), ui.page_loads(), go_on=lambda: next(calls)) == 2


def test_a_figure_is_built_once_for_the_same_table_and_again_for_another(sample_db: Path):
    signature = store.database_signature(sample_db)
    built = []

    def builder(table, label, *, horizon=None):  # noqa: ANN001, ANN202
        built.append(label)
        return object()

    first = ui.load_summary(signature, Settings(route=("IV",)), "response_by_route.csv")
    again = ui.load_summary(signature, Settings(route=("IV",)), "response_by_route.csv")  # an equal copy
    other = ui.load_summary(signature, Settings(route=("IN",)), "response_by_route.csv")
    a = ui.build_figure(builder, first, "x", horizon=56)
    assert ui.build_figure(builder, again, "x", horizon=56) is a
    assert ui.build_figure(builder, other, "x", horizon=56) is not a  # other numbers
    assert ui.build_figure(builder, first, "y", horizon=56) is not a  # another argument
    assert ui.build_figure(builder, first, "x", horizon=None) is not a  # another keyword
    assert built == ["x", "x", "y", "x"]


def test_the_hidden_cell_record_is_shared_not_copied_by_pandas(sample_db: Path):
    from dashboard.analysis import disclosure

    signature = store.database_signature(sample_db)
    table = ui.load_summary(signature, Settings(site=("S6",)), "side_effects.csv")
    record = table.attrs[disclosure.WHY_HIDDEN]
    assert isinstance(record, disclosure.HiddenCells) and record  # this small cohort hides cells
    assert table[["route"]].attrs[disclosure.WHY_HIDDEN] is record
    assert table.copy().attrs[disclosure.WHY_HIDDEN] is record


def _served_session(monkeypatch, session_id: str) -> None:
    """Make prefetch_other_pages believe it runs in a served session (it does nothing in AppTest or bare
    mode): a runtime exists and the script context names `session_id`."""
    import types

    import streamlit.runtime
    import streamlit.runtime.scriptrunner as scriptrunner

    fake = types.SimpleNamespace(session_id=session_id)
    monkeypatch.setattr(streamlit.runtime, "exists", lambda: True)
    monkeypatch.setattr(scriptrunner, "get_script_run_ctx", lambda suppress_warning=False: fake)
    monkeypatch.setattr(scriptrunner, "add_script_run_ctx", lambda thread=None, ctx=None: thread)


def _context() -> ui.PageContext:
    return ui.PageContext(db_path=Path("unused.duckdb"), signature=("unused.duckdb", 1, 2, 3), settings=Settings(),
                          page="overview")


def test_warming_waits_until_the_browser_has_drawn_the_page(monkeypatch):
    """The other pages are warmed PREFETCH_DELAY_S after the page's script, not at once: meanwhile the
    browser draws the page, and warming would compete with it for the two cores."""
    import threading
    import time

    started = threading.Event()
    when: list[float] = []
    monkeypatch.setattr(ui, "PREFETCH_DELAY_S", 0.3)
    monkeypatch.setattr(ui, "page_loads", lambda named=frozenset(): {})
    monkeypatch.setattr(ui, "warm_pages", lambda *a, **k: (when.append(time.monotonic()), started.set()))
    _served_session(monkeypatch, "reader")
    t0 = time.monotonic()
    ui.prefetch_other_pages(_context())
    assert started.wait(5)
    assert when[0] - t0 >= 0.3


def test_warming_is_abandoned_when_the_reader_moves_on_during_the_delay(monkeypatch):
    import threading

    called = threading.Event()
    monkeypatch.setattr(ui, "PREFETCH_DELAY_S", 0.5)
    monkeypatch.setattr(ui, "page_loads", lambda named=frozenset(): {})
    monkeypatch.setattr(ui, "warm_pages", lambda *a, **k: called.set())
    _served_session(monkeypatch, "quick reader")
    ui.prefetch_other_pages(_context())
    ui.cancel_prefetch()  # the next click's rerun
    ui.stop_every_prefetch(5)  # waits for the thread to end
    assert not called.is_set()


def test_warming_stops_when_the_browser_disconnects(monkeypatch):
    """A closed tab's warming would only take the cores from the people still looking."""
    import types

    from streamlit.runtime import Runtime

    connected = {"reader": True}
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: types.SimpleNamespace(
        is_active_session=lambda session: connected[session])))
    loads_run: list[str] = []

    def first(sig, s):  # noqa: ANN001, ANN202
        loads_run.append("first")
        connected["reader"] = False  # the tab is closed while the first load computes

    plan = {"overview": [("first", first), ("second", lambda sig, s: loads_run.append("second"))]}
    monkeypatch.setattr(ui, "PREFETCH_DELAY_S", 0.0)
    monkeypatch.setattr(ui, "page_loads", lambda named=frozenset(): plan)
    _served_session(monkeypatch, "reader")
    ui.prefetch_other_pages(_context())
    for thread in list(ui._PREFETCH_THREADS):  # left to end by itself (stop_every_prefetch would stop it)
        thread.join(5)
    assert loads_run == ["first"]


def test_the_interpreter_exit_waits_for_warming(tmp_path):
    """A warming thread is a daemon: stopped at the interpreter's exit inside DuckDB's C++ code it aborted the
    process (exit status 134, seen at the end of a test run). The exit now waits for its current load."""
    import subprocess
    import sys

    done = tmp_path / "done"
    code = f"""
import threading, time
from pathlib import Path
from dashboard.app import ui

def work():
    time.sleep(1.0)  # a load still running when the script ends
    Path({str(done)!r}).write_text("finished")
    with ui._PREFETCH_LOCK:
        ui._PREFETCH_THREADS.discard(threading.current_thread())

thread = threading.Thread(target=work, daemon=True)
with ui._PREFETCH_LOCK:
    ui._PREFETCH_THREADS.add(thread)
thread.start()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert done.read_text() == "finished"


SETTLE_SCRIPT = """
import asyncio, gc, weakref
from dashboard.app import server, ui

class Node:
    pass

def garbage_cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

ui.settle_startup_heap()  # imported, not serving (as in a test, AppTest, bare mode): nothing happens
print("imported", gc.get_freeze_count(), ui.SERVED)

async def serve():
    async with server.serving(server.app):  # what uvicorn runs when the server starts
        gc.disable()  # so only the settling collects the cycle below
        cycle = garbage_cycle()
        ui.settle_startup_heap()
        frozen = gc.get_freeze_count()
        print("served", frozen, "cycle collected", cycle() is None)
        kept = [Node() for _ in range(100)]
        ui.settle_startup_heap()  # once per process
        print("again", gc.get_freeze_count() == frozen)
    print("stopped", ui.SERVED)

asyncio.run(serve())
"""


def test_the_startup_heap_is_collected_then_frozen_once_in_a_served_dashboard():
    """settle_startup_heap: nothing unless the app serves (dashboard/app/server.py only imported, as tests do;
    AppTest; bare mode), and while it serves once: garbage collected first (a reference cycle made before is
    freed, not frozen), then every object left frozen. Run in a child process: freezing this test process's
    objects would outlive the test."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SETTLE_SCRIPT], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["imported"] == "0 False"
    served, _, collected = lines["served"].partition(" cycle collected ")
    assert int(served) > 10_000 and collected == "True"  # the imported modules' objects, at the least
    assert lines["again"] == "True"
    assert lines["stopped"] == "False"


# --- the default view, warmed before the first visitor ---------------------------------------------------------


def test_the_default_view_is_what_a_link_naming_nothing_computes(sample_db: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(ui.DB_ENV, str(sample_db))
    at = AppTest.from_file(str(VIEWS.parent / "main.py"), default_timeout=120).run()
    assert not at.exception
    assert at.session_state[ui.CONTEXT_KEY].settings == ui.default_settings()
    assert ui.default_settings() == Settings(instrument="matched")  # docs/choices.md "Matched instrument"


def test_after_warming_the_default_view_the_home_page_computes_and_builds_nothing(sample_db: Path, monkeypatch):
    """What the first visitor after the server starts would wait for is done before they come: the home page,
    opened at the dashboard's address, finds every load cached and both charts built; every other page's
    opening is cached too."""
    from streamlit.testing.v1 import AppTest

    from dashboard.charts import figures

    monkeypatch.setenv(ui.DB_ENV, str(sample_db))
    ui._FIGURES.clear()
    plan = ui.opening_loads(ui.page_loads())
    assert ui.warm_default_view() == len({name for loads in plan.values() for name, _ in loads})

    _refuse(metrics, monkeypatch=monkeypatch)
    _refuse(figures, "create_trend_figure", "create_funnel_figure", monkeypatch=monkeypatch)
    at = AppTest.from_file(str(VIEWS.parent / "main.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2
    signature = store.database_signature(sample_db)
    for page, loads in plan.items():
        for _, load in loads:
            load(signature, ui.default_settings())  # every one a cache hit


def test_warming_the_default_view_names_a_database_it_cannot_open(sample_db: Path, tmp_path: Path, monkeypatch,
                                                                    caplog):
    """No exception (each page says what is wrong when it is opened), and a warning in the server's terminal:
    `serve` checks only that the file is there and readable, and started without a word on a database built
    by an older version."""
    import logging

    caplog.set_level(logging.WARNING, logger="ketamine_outcomes")
    monkeypatch.setenv(ui.DB_ENV, str(tmp_path / "missing.duckdb"))
    assert ui.warm_default_view() == 0
    assert "missing.duckdb" in caplog.text
    monkeypatch.delenv(ui.DB_ENV)
    assert ui.warm_default_view() == 0
    assert "No database is configured" in caplog.text
    old = older_version_copy(sample_db, tmp_path / "old.duckdb")
    monkeypatch.setenv(ui.DB_ENV, str(old))
    caplog.clear()
    assert ui.warm_default_view() == 0
    assert "built by an older version of Ketamine Outcomes" in caplog.text
    assert f"ketamine-outcomes import EXPORT_DIR --db {old}" in caplog.text
    assert "cohort_outcomes" not in caplog.text  # plain words: the missing parts are named in a debug log only


def test_warming_the_default_view_stops_when_asked(sample_db: Path, monkeypatch):
    monkeypatch.setenv(ui.DB_ENV, str(sample_db))
    asked = iter([True] * (len(ui.STARTUP_MODULES) + 1) + [False] * 100)  # the modules and the report's check
    assert ui.warm_default_view(go_on=lambda: next(asked)) == 0
    signature = store.database_signature(sample_db)
    calls = []
    monkeypatch.setattr(metrics, "headline_from", lambda *a, **k: calls.append(1))
    ui.load_summary(signature, ui.default_settings(), "headline.csv")
    assert calls  # not computed by the stopped warming


def test_serving_starts_warming_the_default_view(sample_db: Path, monkeypatch):
    """dashboard/app/server.py's lifespan starts it, in the background: the server answers meanwhile."""
    import asyncio
    import threading

    from dashboard.app import server

    monkeypatch.setenv(ui.DB_ENV, str(sample_db))
    started = []
    monkeypatch.setattr(ui, "start_warming_default_view", lambda: started.append(ui.SERVED))

    async def serve_briefly() -> None:
        async with server.serving(None):
            pass

    # in a thread of its own: an earlier test's browser may have left an event loop running in this one
    thread = threading.Thread(target=lambda: asyncio.run(serve_briefly()))
    thread.start()
    thread.join(60)
    assert started == [True]
    assert ui.SERVED is False


def test_a_database_replaced_by_an_import_is_warmed_for_the_next_visitor(sample_db: Path, tmp_path: Path,
                                                                         monkeypatch):
    """A page that finds the file replaced (an import swaps in a new file) starts warming the new data's
    default view; the same file seen again does not."""
    import shutil

    db = tmp_path / "served.duckdb"
    shutil.copy(sample_db, db)
    monkeypatch.setenv(ui.DB_ENV, str(db))
    monkeypatch.setattr(ui, "SERVED", True)
    started = []
    monkeypatch.setattr(ui, "start_warming_default_view", lambda: started.append(1))
    ui.open_current_database()
    ui.open_current_database()
    assert started == []
    replacement = tmp_path / "new.duckdb"
    shutil.copy(sample_db, replacement)
    replacement.replace(db)  # as an import swaps its new file in
    ui.open_current_database()
    assert started == [1]
    ui.load_connection.clear()
