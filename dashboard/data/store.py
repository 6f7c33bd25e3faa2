"""Access to the DuckDB store: named SQL from queries/, read-only connections and their cursors.

The SQL files are package resources (`dashboard.queries`, mapped from the top-level `queries/` folder in
pyproject.toml), so an installed wheel finds them exactly as a checkout does.

Every query the project runs lives in `queries/NAME.sql` with named parameters (`$routes`, `$window`);
`run_query(con, "NAME", params)` binds values and never formats them into the SQL text. DuckDB 2.0
connections are not shared across threads, so each call takes its own `cursor()`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping

import duckdb
import pandas as pd

CACHE_ENV = "KETAMINE_OUTCOMES_CACHE"
SAMPLE_PATIENTS = 5000
SAMPLE_SEED = 20261121
REINSTALL = "Reinstall it (pip install --force-reinstall ketamine-outcomes, or pip install . in a checkout)."


class StoreError(RuntimeError):
    """The database is missing, unreadable or not a Ketamine Outcomes database."""


class InstallationError(RuntimeError):
    """Ketamine Outcomes itself is installed incompletely (a query file or a dependency is missing): a
    problem of the installation, never of the user's export or database."""


@functools.cache
def package_folder(name: str) -> Path:
    """The folder of a resource package shipped with Ketamine Outcomes (`dashboard.queries`,
    `dashboard.example_export`, `dashboard.streamlit_config`; pyproject.toml maps them from the top-level
    folders), in a wheel and in an editable checkout alike. Raises InstallationError when it is missing."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InstallationError(f"Ketamine Outcomes is installed incompletely: {name} is missing. {REINSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def queries_dir() -> Path:
    """The folder of the packaged SQL files (queries/ in a checkout)."""
    return package_folder("dashboard.queries")


def example_export_dir() -> Path:
    """The small example export shipped with the package (sample_data/example_export/ in a checkout)."""
    return package_folder("dashboard.example_export")


def cache_dir() -> Path:
    """Where the built-in sample database lives: $KETAMINE_OUTCOMES_CACHE, else the user's cache folder
    ($XDG_CACHE_HOME or ~/.cache), never inside the installed package, which may be read-only."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ketamine-outcomes"


def default_database() -> Path:
    """The built-in sample database's path."""
    return cache_dir() / "sample.duckdb"


@functools.cache
def load_sql(name: str) -> str:
    """The text of queries/NAME.sql. Names come from code, never from users."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a query name: {name!r}")
    folder = queries_dir()
    try:
        return (folder / f"{name}.sql").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InstallationError(
            f"Ketamine Outcomes is installed incompletely: the query file {name}.sql is missing from {folder}. "
            + REINSTALL
        ) from None


def query_names(prefix: str) -> list[str]:
    """The names of the packaged queries starting with PREFIX, sorted (the import's derive_* steps)."""
    folder = queries_dir()
    names = sorted(p.stem for p in folder.glob(f"{prefix}*.sql"))
    if not names:
        raise InstallationError(
            f"Ketamine Outcomes is installed incompletely: no {prefix}*.sql query files in {folder}. " + REINSTALL
        )
    return names


def check_database_file(path: str | os.PathLike[str]) -> Path:
    """The path if a database file is there and readable; else StoreError naming the real cause (missing,
    a folder, permission denied on the file or a folder above it). A file cut short is named by
    open_database: shorter than the blocks its header describes, or DuckDB unable to read them (`damage_message`)."""
    path = Path(path)
    try:
        if not path.exists():
            raise StoreError(
                f"No database at {path}. Import a clinic export first: ketamine-outcomes import EXPORT_DIR --db {path}")
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a database file: give the database file's path.")
        with path.open("rb"):
            pass
    except PermissionError:
        raise StoreError(
            f"{path} cannot be read: permission denied (this user may not read the file or a folder above it). "
            "Fix the permissions, or run the command as a user who may read it."
        ) from None
    except OSError as exc:
        raise StoreError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    return path


DAMAGED = ("{path} is damaged: the file is shorter than the database it describes (it was probably cut short by "
           "a full disk or an interrupted copy). Import the clinic export again, or restore the file from a backup.")


def damage_message(exc: BaseException, path: str | os.PathLike[str]) -> str | None:
    """The reader's message when a DuckDB error means the file is cut short, else None."""
    if isinstance(exc, duckdb.IOException) and "read enough bytes" in str(exc):
        return DAMAGED.format(path=path)
    return None


# A DuckDB database file: three 4 KiB headers (the file header and two alternating database headers), then
# `total_blocks` blocks of `block_size` bytes (DuckDB's storage format; pragma_database_size reports both).
_FILE_HEADERS_BYTES = 3 * 4096


def _shorter_than_described(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Whether the file holds fewer bytes than the blocks its header describes. DuckDB reads a block only when
    a query needs it, so a file cut near its end opened and exported without a word (the summaries never read
    the lost blocks); checked once when the database is opened (one catalog query)."""
    with con.cursor() as cur:
        row = cur.execute("SELECT total_blocks, block_size FROM pragma_database_size() "
                          "WHERE database_name = current_database()").fetchone()
    if row is None:
        return False
    total_blocks, block_size = (int(v) for v in row)
    return path.stat().st_size < _FILE_HEADERS_BYTES + total_blocks * block_size


def read_error(exc: duckdb.Error, path: str | os.PathLike[str]) -> StoreError:
    """The StoreError for a DuckDB error met while reading the database at `path`: the damage message for a
    file cut short (a file damaged past its first blocks opens and fails only when those blocks are read),
    else the reader's own words."""
    return StoreError(damage_message(exc, path) or f"{path} could not be read: {exc}")


def open_database(path: str | os.PathLike[str], *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open a Ketamine Outcomes database, raising StoreError with a helpful message if that fails."""
    path = check_database_file(path)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(damage_message(exc, path) or f"{path} could not be opened as a DuckDB database: {exc}") from exc
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        cut_short = _shorter_than_described(con, path)
    except duckdb.Error as exc:
        con.close()
        raise read_error(exc, path) from exc
    if cut_short:
        con.close()
        raise StoreError(DAMAGED.format(path=path))
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
