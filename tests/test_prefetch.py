"""What keeps page switches quick: warming the other pages (dashboard.app.ui.page_loads, warm_pages) lists
exactly the loads each page makes and leaves every one cached; figures are built once per content
(ui.build_figure); the record of hidden cells is shared, not deep-copied, by pandas."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import streamlit as st

from dashboard.analysis import metrics
from dashboard.analysis.settings import Settings
from dashboard.app import ui
from dashboard.data import store

VIEWS = Path(ui.__file__).resolve().parent / "views"
PAGE_FILES = {"overview": "overview.py", "response": "response.py", "relief": "relief.py",
              "side-effects": "side_effects.py", "maintenance": "maintenance.py",
              "esketamine-monitoring": "esketamine.py", "benchmark": "benchmark.py", "data": "data.py"}
# loads a page makes that warming leaves alone: the Data page's import notes are one tiny query per import
# and the monitoring page's list of missing columns is read once per database
NOT_WARMED = {"load_import_notes", "load_rems_lacking"}


@pytest.fixture(autouse=True)
def _fresh_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


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
    ran = ui.warm_pages(signature, s, plan, skip="overview")
    assert ran == len({name for page, loads in plan.items() if page != "overview" for name, _ in loads})

    def no_computing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("computed again")

    for name, fn in vars(metrics).copy().items():
        if inspect.isfunction(fn) and fn.__module__ == metrics.__name__:
            monkeypatch.setattr(metrics, name, no_computing)
    for page, loads in plan.items():
        if page == "overview":
            continue
        for _, load in loads:
            load(signature, s)  # every one a cache hit


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
