"""Access to the DuckDB store: named SQL from queries/, read-only connections and their cursors.

Every query the project runs lives in `queries/NAME.sql` with named parameters (`$routes`, `$window`);
`run_query(con, "NAME", params)` binds values and never formats them into the SQL text. DuckDB 2.0
connections are not shared across threads, so each call takes its own `cursor()`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

import duckdb
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUERIES_DIR = PROJECT_ROOT / "queries"
SAMPLE_DIR = PROJECT_ROOT / "sample_data"
DEFAULT_DB = SAMPLE_DIR / "sample.duckdb"
SAMPLE_PATIENTS = 5000
SAMPLE_SEED = 20261121


class StoreError(RuntimeError):
    """The database is missing, unreadable or not a Ketamine Outcomes database."""


@functools.cache
def load_sql(name: str) -> str:
    """The text of queries/NAME.sql. Names come from code, never from users."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a query name: {name!r}")
    path = QUERIES_DIR / f"{name}.sql"
    return path.read_text(encoding="utf-8")


def open_database(path: str | os.PathLike[str], *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open a Ketamine Outcomes database, raising StoreError with a helpful message if that fails."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"No database at {path}. Import a clinic export first: ketamine-outcomes import EXPORT_DIR --db {path}")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"{path} could not be opened as a DuckDB database: {exc}") from exc
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"{path} could not be read: {exc}") from exc
    missing = {"patients", "sessions", "assessments", "adverse_events", "import_history"} - tables
    if missing:
        con.close()
        raise StoreError(
            f"{path} is not a Ketamine Outcomes database (missing tables: {', '.join(sorted(missing))})."
        )
    return con


def run_query(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run queries/NAME.sql on a fresh cursor with bound parameters and return a DataFrame."""
    sql = load_sql(name)
    with con.cursor() as cur:
        return cur.execute(sql, dict(params or {})).df()


def database_signature(path: str | os.PathLike[str]) -> tuple[str, int, int, int]:
    """Identity of a database file's current contents, for caches: an import swaps in a new file."""
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
