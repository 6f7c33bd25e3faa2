"""queries/schema.sql spells every ENUM exactly as dashboard/data/spec.py does."""

from __future__ import annotations

import re

import duckdb

from dashboard.data import spec
from dashboard.data.store import load_sql

EXPECTED = {
    "route_t": spec.ROUTES,
    "drug_t": spec.DRUGS,
    "setting_t": spec.SETTINGS,
    "phase_t": spec.PHASES,
    "age_band_t": spec.AGE_BANDS,
    "sex_t": spec.SEXES,
    "diagnosis_t": spec.DIAGNOSES,
    "instrument_t": spec.INSTRUMENTS,
    "event_t": spec.EVENTS,
    "severity_t": spec.SEVERITIES,
}


def test_schema_enums_equal_the_spec():
    con = duckdb.connect()
    con.execute(load_sql("schema"))
    declared = {name: tuple(con.execute(f"SELECT enum_range(NULL::{name})").fetchone()[0]) for name in EXPECTED}
    assert declared == {k: tuple(v) for k, v in EXPECTED.items()}
    # and no other ENUM type is declared that the spec does not know
    text = load_sql("schema")
    assert set(re.findall(r"CREATE TYPE (\w+) AS ENUM", text)) == set(EXPECTED)


def test_schema_tables_hold_every_export_column():
    from dashboard.data.ingest import COLUMNS

    con = duckdb.connect()
    con.execute(load_sql("schema"))
    for table, columns in COLUMNS.items():
        stored = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = $t ORDER BY column_index", {"t": table}).fetchall()]
        assert stored[: len(columns)] == list(columns)
