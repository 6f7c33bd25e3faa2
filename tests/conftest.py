"""Shared fixtures, and a guard that fails the run when any test is skipped (CI must run everything)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Mapping

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A skipped test hides a missing install step; the suite must run whole.
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped; every test must run: " + ", ".join(_skipped[:10]), red=True
        )


# Each dashboard page (by URL path, "overview" for the home page, as ui.page_loads names them) and its view's
# file in dashboard/app/views/.
PAGE_FILES = {"overview": "overview.py", "response": "response.py", "relief": "relief.py",
              "side-effects": "side_effects.py", "maintenance": "maintenance.py",
              "esketamine-monitoring": "esketamine.py", "benchmark": "benchmark.py", "data": "data.py"}


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    """Write a small CSV table (None becomes an empty cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(list(header))
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    return path


def write_export(folder: Path, tables: Mapping[str, tuple[Iterable[str], Iterable[Iterable[object]]]]) -> Path:
    """Write an export folder from {table: (header, rows)}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in tables.items():
        write_csv(folder / f"{name}.csv", header, rows)
    return folder


def older_version_copy(db: Path, path: Path) -> Path:
    """A copy of database DB at PATH as an older version built it: without a table macro this version derives
    at import (cohort_outcomes)."""
    import shutil

    import duckdb

    shutil.copy(db, path)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP MACRO TABLE cohort_outcomes")
    return path


@pytest.fixture(scope="session")
def sample_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small deterministic sample export (CSV), 400 patients."""
    from dashboard.data.sample import write_sample_export

    out = tmp_path_factory.mktemp("sample") / "export"
    write_sample_export(out, patients=400, seed=7, fmt="csv")
    return out


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of the deterministic 2,000-patient sample, imported once per test run."""
    from dashboard.data.ingest import import_export
    from dashboard.data.sample import write_sample_export

    base = tmp_path_factory.mktemp("sample_db")
    export_dir = base / "export"
    write_sample_export(export_dir, patients=2000, seed=11, fmt="parquet")
    db = base / "sample.duckdb"
    import_export(export_dir, db)
    return db


@pytest.fixture(scope="session")
def hidden_relief_cohort(sample_db: Path) -> tuple[str, str]:
    """(site, diagnosis) of the sample's smallest shown site × diagnosis cohort whose relief curve has every
    step withheld at the default minimum cell (on the dashboard's default questionnaire for it)."""
    from dashboard.analysis import disclosure, metrics
    from dashboard.analysis.settings import Settings
    from dashboard.charts import figures
    from dashboard.data import spec, store
    from dashboard.reports import export

    with store.open_database(sample_db) as con:
        for site, diagnosis in con.sql(
                "SELECT site, primary_diagnosis::VARCHAR FROM patients GROUP BY ALL HAVING count(*) BETWEEN 15 AND 60 "
                "ORDER BY count(*), 1, 2").fetchall():
            s = Settings(site=(site,), diagnosis=(diagnosis,), instrument=spec.default_instrument((diagnosis,)))
            shown = disclosure.protect("cohort", metrics.cohort_funnel(con, s), s.min_cell).iloc[-1]["patients"]
            curve = export.compute_summaries(con, s)["time_to_relief_curve.csv"]
            if not figures.relief_curve_has_steps(curve) and shown > 0:
                return site, diagnosis
    raise AssertionError("the fixed sample has no such cohort: choose another rule")


@pytest.fixture(scope="session")
def browser():
    """One Chromium (Debian's) for every browser test of the run: Playwright's sync API allows one running
    instance per thread, so the test modules share this one rather than each starting their own."""
    from playwright.sync_api import sync_playwright

    from serving import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A new desktop-sized page (1440 × 900) of the run's Chromium, downloads accepted."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    context.close()


@pytest.fixture
def deferred_downloads(monkeypatch) -> dict[str, object]:
    """file id -> the data callable of each download button drawn (what Streamlit runs when it is clicked)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    found: dict[str, object] = {}
    add = MediaFileManager.add_deferred

    def record(self, data_callable, *args, **kwargs):
        file_id = add(self, data_callable, *args, **kwargs)
        found[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return found
