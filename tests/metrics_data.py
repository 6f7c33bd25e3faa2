"""Small hand-made databases for the metrics, disclosure and export tests.

`build_db` creates a DuckDB file exactly as the importer leaves it (queries/schema.sql, the four base tables
sorted as the importer sorts them, `session_number` and `t` precomputed, an import_history row, then every
queries/derive_*.sql in name order), from short Python rows, so each test can show a definition's edge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import duckdb
import pandas as pd

from dashboard.data import spec, store
from dashboard.data.ingest import COLUMNS

PATIENT_DEFAULTS: dict[str, Any] = {
    "site": "S1", "start_quarter": "2025-Q1", "age_band": "35-44", "sex": "F", "primary_diagnosis": "GAD",
    "treatment_resistant": False, "prior_failed_treatments": None, "hypertension": False,
    "rems_enrolled_day": None,
}
SESSION_DEFAULTS: dict[str, Any] = {
    "route": "IV", "drug": "ketamine", "setting": "clinic", "phase": "induction", "dose_mg": 35.0,
    "integration_therapy": False, "sbp_pre": 120, "sbp_peak": 135, "dbp_pre": 80, "dbp_peak": 88,
    "heart_rate_peak": 90, "cadss": 10, "monitoring_minutes": 60, "completed": True,
    # the optional esketamine monitoring columns: not recorded unless a test sets them
    **{c: None for c in spec.REMS_SESSION_COLUMNS},
}
SESSION_COLUMNS = ("session_id", "patient_id", "day") + tuple(SESSION_DEFAULTS)
PATIENT_COLUMNS = ("patient_id",) + tuple(PATIENT_DEFAULTS)


def patient(pid: str, **kw: Any) -> dict[str, Any]:
    return {"patient_id": pid, **PATIENT_DEFAULTS, **kw}


def session(sid: str, pid: str, day: int, **kw: Any) -> dict[str, Any]:
    return {"session_id": sid, "patient_id": pid, "day": day, **SESSION_DEFAULTS, **kw}


def assessment(pid: str, day: int, score: int, *, instrument: str = "GAD7", hours: float | None = None) -> dict[str, Any]:
    return {"patient_id": pid, "day": day, "hours_post_dose": hours, "instrument": instrument, "score": score}


def event(sid: str, name: str, severity: str = "mild", intervention: bool = False) -> dict[str, Any]:
    return {"session_id": sid, "event": name, "severity": severity, "intervention": intervention}


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    columns = tuple(columns)
    rows = [tuple(r[c] for c in columns) for r in rows]
    if not rows:
        return
    placeholders = ", ".join("?" for _ in columns)
    con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)


def relief_summary(rows: Iterable[tuple[str, int, int, int]], derived: float = 1.0) -> pd.DataFrame:
    """A time_to_relief.csv table before protection, by hand: (route, patients, events, censored) rows, every
    value derived from them (the median, its interval, relief by each day) set to `derived`."""
    df = pd.DataFrame([{"route": r, "patients": n, "events": e, "censored": c} for r, n, e, c in rows])
    for col in ("median_days", "median_ci_low", "median_ci_high", *(f"relieved_by_day_{d}" for d in spec.RELIEF_DAYS)):
        df[col] = derived
    return df


def build_db(
    path: Path,
    patients: Iterable[Mapping[str, Any]],
    sessions: Iterable[Mapping[str, Any]] = (),
    assessments: Iterable[Mapping[str, Any]] = (),
    adverse_events: Iterable[Mapping[str, Any]] = (),
    *,
    export_lacks: Iterable[str] = (),
) -> Path:
    """Write a database file at `path` holding these rows, derived tables included.

    The export is recorded as having every format column (export_columns) but those named "table.column"
    in `export_lacks`."""
    path = Path(path)
    patients, sessions, assessments, adverse_events = map(list, (patients, sessions, assessments, adverse_events))
    con = duckdb.connect(str(path))
    try:
        con.execute(store.load_sql("schema"))
        con.execute("CREATE TEMP TABLE s_in AS SELECT * FROM sessions WITH NO DATA")
        con.execute("ALTER TABLE s_in DROP COLUMN session_number")
        con.execute("CREATE TEMP TABLE a_in AS SELECT * FROM assessments WITH NO DATA")
        con.execute("ALTER TABLE a_in DROP COLUMN t")
        _insert(con, "patients", PATIENT_COLUMNS, sorted(patients, key=lambda r: r["patient_id"]))
        _insert(con, "s_in", SESSION_COLUMNS, sessions)
        _insert(con, "a_in", ("patient_id", "day", "hours_post_dose", "instrument", "score"), assessments)
        _insert(con, "adverse_events", ("session_id", "event", "severity", "intervention"), adverse_events)
        con.execute(
            "INSERT INTO sessions SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY day, session_id) "
            "FROM s_in ORDER BY patient_id, day, session_id"
        )
        con.execute(
            "INSERT INTO assessments SELECT *, day + coalesce(hours_post_dose, 0) / 24 FROM a_in "
            "ORDER BY patient_id, instrument, day, hours_post_dose NULLS FIRST"
        )
        con.execute(
            "INSERT INTO import_history VALUES (1, TIMESTAMP '2026-11-01 12:00:00', 'test-export', 'csv', "
            "'0000', ?, ?, ?, ?, 'test', 0.5)",
            [len(patients), len(sessions), len(assessments), len(adverse_events)],
        )
        lacks = set(export_lacks)
        con.executemany("INSERT INTO export_columns VALUES (?, ?)",
                        [(t, c) for t, cols in COLUMNS.items() for c in cols if f"{t}.{c}" not in lacks])
        for name in store.query_names("derive_"):
            con.execute(store.load_sql(name))
    finally:
        con.close()
    return path


def hand_dataset():
    """The data set of tests/test_metrics.py (its docstring describes each patient)."""
    patients = [patient(p) for p in "ABCDEFG"] + [patient("H", site="S2")]
    sessions = [
        session("a1", "A", 0, sbp_peak=150), session("a2", "A", 3, sbp_peak=185), session("a3", "A", 7),
        session("b1", "B", 0, route="IN"), session("b2", "B", 0, route="IV", dbp_peak=112),
        session("b3", "B", 2, route="IM", integration_therapy=True),
        session("d1", "D", 0), session("d2", "D", 5, sbp_peak=None, dbp_peak=None),
        session("e1", "E", 0),
        session("f1", "F", 0), session("f2", "F", 4),
        session("g1", "G", 0), session("g2", "G", 3),
        session("g3", "G", 30, phase="maintenance"), session("g4", "G", 44, phase="maintenance"),
        session("g5", "G", 72, phase="maintenance"),
        session("h1", "H", 0, route="IN", setting="home", sbp_pre=None, sbp_peak=None, dbp_pre=None, dbp_peak=None),
        session("h2", "H", 20, route="IN", phase="maintenance"),
        session("h3", "H", 50, route="IN", phase="maintenance"),
    ]
    assessments = [
        assessment("A", -3, 12), assessment("A", 0, 16), assessment("A", 0, 14), assessment("A", 0, 7, hours=4),
        assessment("A", 14, 8), assessment("A", 15, 2),
        assessment("B", 0, 20), assessment("B", 9, 4), assessment("B", 10, 20),
        assessment("B", 0, 12, instrument="PHQ9"), assessment("B", 9, 5, instrument="PHQ9"),
        assessment("C", 0, 15),
        assessment("D", 10, 5),
        assessment("E", 0, 9),
        assessment("F", 0, 12), assessment("F", 4, 12, hours=2),
        assessment("G", 0, 10), assessment("G", 11, 6),
        assessment("H", 0, 18), assessment("H", 7, 9), assessment("H", 40, 12), assessment("H", 70, 14),
    ]
    events = [
        event("a1", "nausea", "mild"), event("a1", "nausea", "severe"), event("a1", "dizziness"),
        event("b2", "nausea", "moderate"), event("h2", "nausea"),
    ]
    return patients, sessions, assessments, events
