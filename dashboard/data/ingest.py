"""Import a clinic export (docs/clinic-export-format.md) into a new DuckDB store, all or nothing.

The export's four tables are read as text into a staging database, checked with set-based SQL
(queries/check_*.sql), and only when every check passes loaded as typed, sorted rows into a new database
file built beside the target (queries/schema.sql, queries/load_*.sql, then every queries/derive_*.sql).
The new file is synced and renamed over the target in one step, so a refused, failed or interrupted
import leaves the previous database exactly as it was, and a dashboard that has it open keeps working.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb

from dashboard import __version__
from dashboard.data import dialects, spec
from dashboard.data.store import load_sql, query_names

MAX_PER_RULE = 20  # problems kept per rule (ImportRefused.problems); the rest are counted in .more
SUMMARY_AFTER = 3  # a rule with more rows than this is reported on one line naming its first lines
NAMED_LINES = 5  # lines (and values) named in such a summary

# Each table's columns in the format's order: name -> required (may not be empty).
COLUMNS: dict[str, dict[str, bool]] = {
    "patients": {
        "patient_id": True, "site": True, "start_quarter": True, "age_band": True, "sex": False,
        "primary_diagnosis": True, "treatment_resistant": False, "prior_failed_treatments": False,
        "hypertension": False,
        # optional esketamine (SPRAVATO REMS) monitoring columns
        **{c: False for c in spec.REMS_PATIENT_COLUMNS},
    },
    "sessions": {
        "session_id": True, "patient_id": True, "day": True, "route": True, "drug": False, "setting": True,
        "phase": True, "dose_mg": False, "integration_therapy": False, "sbp_pre": False, "sbp_peak": False,
        "dbp_pre": False, "dbp_peak": False, "heart_rate_peak": False, "cadss": False,
        "monitoring_minutes": False, "completed": False,
        # optional esketamine (SPRAVATO REMS) monitoring columns
        **{c: False for c in spec.REMS_SESSION_COLUMNS},
    },
    "assessments": {
        "patient_id": True, "day": True, "hours_post_dose": False, "instrument": True, "score": True,
    },
    "adverse_events": {"session_id": True, "event": True, "severity": False, "intervention": False},
}
# A table's value checks compare against these tables, so they run only when those read cleanly too.
DEPENDS_ON = {
    "patients": (),
    "sessions": ("patients",),
    "assessments": ("patients", "sessions"),
    "adverse_events": ("sessions",),
}
# Values bound into the check queries (each query takes only the names it uses).
_CHECK_PARAMS = {
    "age_bands": list(spec.AGE_BANDS), "sexes": list(spec.SEXES), "diagnoses": list(spec.DIAGNOSES),
    "routes": list(spec.ROUTES), "drugs": list(spec.DRUGS), "settings": list(spec.SETTINGS),
    "phases": list(spec.PHASES), "instruments": list(spec.INSTRUMENTS),
    "score_max": [spec.SCORE_RANGE[i][1] for i in spec.INSTRUMENTS],
    "events": list(spec.EVENTS), "severities": list(spec.SEVERITIES),
    # plausibility limits (clinic-export-format.md): one typo must not exhaust memory or time downstream
    "max_day": 10_000, "min_assessment_day": -365, "max_sessions": 2_000,
}

_ANONYMIZE = "the data must be anonymized first"
# Column-name words that mark a direct identifier (matched on the name's words, any case or separator).
_IDENTIFIER_WORDS = {
    "name": "a name", "names": "a name", "firstname": "a name", "lastname": "a name", "surname": "a name",
    "fullname": "a name", "forename": "a name", "givenname": "a name", "familyname": "a name",
    "middlename": "a name", "initials": "a name",
    "dob": "a birth date", "birth": "a birth date", "birthdate": "a birth date", "birthday": "a birth date",
    "dateofbirth": "a birth date",
    "email": "an e-mail address", "mail": "an e-mail address", "emailaddress": "an e-mail address",
    "phone": "a phone number", "telephone": "a phone number", "tel": "a phone number",
    "mobile": "a phone number", "phonenumber": "a phone number", "fax": "a phone number",
    "address": "an address", "addr": "an address", "street": "an address", "city": "an address",
    "town": "an address", "zip": "an address", "zipcode": "an address", "postcode": "an address",
    "postal": "an address", "postalcode": "an address",
    "mrn": "a medical record number", "ssn": "a social security number",
    "insurance": "an insurance number", "insurer": "an insurance number",
    "date": "calendar dates", "dates": "calendar dates", "datetime": "calendar dates",
    "timestamp": "calendar dates", "dt": "calendar dates",
}
_IDENTIFIER_PHRASES = {
    ("first", "name"): "a name", ("last", "name"): "a name", ("e", "mail"): "an e-mail address",
    ("medical", "record"): "a medical record number", ("record", "number"): "a medical record number",
    ("social", "security"): "a social security number", ("post", "code"): "an address",
    ("zip", "code"): "an address",
}
# Longer words that mark an identifier anywhere in a name written without separators (patientname).
_IDENTIFIER_PARTS = {
    "name": "a name", "birth": "a birth date", "email": "an e-mail address", "phone": "a phone number",
    "address": "an address", "street": "an address", "postcode": "an address", "zipcode": "an address",
    "insurance": "an insurance number", "medicalrecord": "a medical record number", "mrn": "a medical record number",
    "socialsecurity": "a social security number", "ssn": "a social security number",
}
# Parquet types that hold calendar dates or times, and types that are not plain values.
_DATE_TYPES = ("DATE", "TIME", "TIMESTAMP", "INTERVAL")
_PLAIN_TYPES = re.compile(
    r"^(VARCHAR|BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT"
    r"|FLOAT|DOUBLE|DECIMAL.*|ENUM.*)$"
)
_REJECT_MESSAGES = {
    "MISSING COLUMNS": "too few fields: a truncated or ragged line (every line needs one field per header column)",
    "TOO MANY COLUMNS": "too many fields: a ragged line (every line needs one field per header column)",
    "INVALID ENCODING": "not UTF-8 text: save the file as UTF-8",
    "UNQUOTED VALUE": "a quoted field is not closed (a truncated file, or a stray quote)",
}
_NOT_CHECKED = "the values of this table were not checked: fix the problems listed for it and import again"
_TEMP_MARKERS = (".importing-",)


@dataclass(frozen=True)
class Problem:
    """One reason an export is refused: where it is (file, table, line, column), the value and what is wrong."""

    file: str | None
    table: str | None
    line: int | None
    column: str | None
    value: str | None
    message: str

    def describe(self) -> str:
        where: list[str] = []
        if self.file:
            where.append(self.file)
        if self.table:
            where.append(f"table {self.table}")
        if self.line is not None:
            unit = "row" if (self.file or "").lower().endswith((".parquet", ".xlsx")) else "line"
            where.append(f"{unit} {self.line}")
        if self.column:
            where.append(f"column {self.column}")
        if self.value is not None:
            where.append(f"value {_show(self.value)}")
        return (", ".join(where) + ": " if where else "") + self.message

    def rule(self) -> tuple:
        """Problems of the same rule differ only in line, value and the numbers in their message."""
        return (self.file, self.table, self.column, re.sub(r"\d+", "#", self.message))


class ImportRefused(Exception):
    """The export was refused; nothing was written. `.problems` lists the reasons, `.report()` explains."""

    def __init__(self, problems: list[Problem], *, more: dict[tuple, int] | None = None,
                 export_dir: Path | None = None, db_path: Path | None = None):
        self.problems = list(problems)
        self.more = dict(more or {})  # rule -> rows with the same problem beyond those listed
        self.export_dir = export_dir
        self.db_path = db_path
        super().__init__(self.report())

    def report(self) -> str:
        total = len(self.problems) + sum(self.more.values())
        head = f"Import refused: {spec.counted(total, 'problem')}"
        if self.db_path is not None and self.problems and all(p.file == str(self.db_path) for p in self.problems):
            head += f" with {self.db_path}"  # the database given, not the export (a text file as --db)
        elif self.export_dir is not None:
            head += f" in {self.export_dir}"
        tail = "Nothing was imported"
        if self.db_path is not None:
            tail += f"; {self.db_path} was left unchanged" if self.db_path.exists() else f"; {self.db_path} was not created"
        lines = [head + ". " + tail + "."]
        groups: dict[tuple, list[Problem]] = {}
        for p in self.problems:
            groups.setdefault(p.rule(), []).append(p)
        listed = Counter(p.rule() for p in self.problems)
        shown: Counter = Counter()
        for p in self.problems:
            rule = p.rule()
            group = groups[rule]
            total = len(group) + self.more.get(rule, 0)
            numbered = [g for g in group if g.line is not None]
            if total > SUMMARY_AFTER and len(numbered) == len(group):
                # one kind of problem across many rows: said once, with its first lines and values
                if shown[rule] == 0:
                    lines.append("  " + _summary(group, total))
                shown[rule] += 1
                continue
            lines.append("  " + p.describe())
            shown[rule] += 1
            if shown[rule] == listed[rule] and self.more.get(rule):
                # after the last listed row of a rule, the count of its rows left out
                lines.append(f"  … and {spec.counted(self.more[rule], 'more row')} with the same problem")
        return "\n".join(lines)


def _summary(group: list[Problem], total: int) -> str:
    """One line for `total` rows with the same problem: where, what, how many, the first lines and values."""
    first = group[0]
    where = Problem(first.file, first.table, None, first.column, None, first.message).describe()
    unit = "row" if (first.file or "").lower().endswith((".parquet", ".xlsx")) else "line"
    named = group[:NAMED_LINES]
    text = f"{where} ({total:,} {unit}s: {unit}s " + ", ".join(str(p.line) for p in named)
    if total > len(named):
        text += f" and {total - len(named):,} more"
    values = [p.value for p in named if p.value is not None]
    if values and len(set(values)) > 1:
        text += "; values " + ", ".join(_show(v) for v in values)
    elif values:
        text += f"; value {_show(values[0])}"
    return text + ")"


@dataclass
class ImportSummary:
    """What an import loaded: rows per table, how long it took, and where."""

    db_path: Path
    source: str
    source_format: str
    rows: dict[str, int]
    derived: list[str]
    seconds: float
    import_id: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = ", ".join(f"{n:,} {t.replace('_', ' ')}" for t, n in self.rows.items())
        text = (f"Imported {counts} from {self.source} ({self.source_format}) into {self.db_path} "
                f"in {self.seconds:.1f} seconds (import #{self.import_id}).")
        return "\n".join([text, *self.notes])


def cap_problems(problems: list[Problem], more: dict[tuple, int] | None = None) -> tuple[list[Problem], dict[tuple, int]]:
    """Keep the first MAX_PER_RULE problems of each rule (by line) and count the rest.

    `more` holds rows already counted but not fetched (the SQL checks fetch only the first of each rule).
    """
    by_rule: dict[tuple, list[Problem]] = {}
    for p in problems:
        by_rule.setdefault(p.rule(), []).append(p)
    kept: list[Problem] = []
    counts: dict[tuple, int] = dict(more or {})
    for rule, ps in by_rule.items():
        ps.sort(key=lambda p: (p.line is not None, p.line or 0))
        kept.extend(ps[:MAX_PER_RULE])
        if len(ps) > MAX_PER_RULE:
            counts[rule] = counts.get(rule, 0) + len(ps) - MAX_PER_RULE
    order = {t: i for i, t in enumerate(spec.TABLES)}
    # per table: file-level problems, then by line, then the note that the values were not checked
    kept.sort(key=lambda p: (order.get(p.table or "", -1), 2 if p.message == _NOT_CHECKED else p.line is not None,
                             p.line or 0, p.column or ""))
    return kept, {r: n for r, n in counts.items() if n > 0}


def identifier_kind(column: str) -> str | None:
    """What identifier a column name suggests ("a name", "calendar dates", …), or None."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column.strip())
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    joined = "".join(words)
    kinds = [_IDENTIFIER_WORDS[w] for w in [joined, *words] if w in _IDENTIFIER_WORDS]
    kinds += [_IDENTIFIER_PHRASES[pair] for pair in zip(words, words[1:]) if pair in _IDENTIFIER_PHRASES]
    kinds += [kind for part, kind in _IDENTIFIER_PARTS.items() if part in joined]
    # "date of birth" is a birth date more than a calendar date: the specific kind wins
    specific = [k for k in kinds if k != "calendar dates"]
    return (specific or kinds or [None])[0]


# --- the import ------------------------------------------------------------------------------------------


@dataclass
class _Table:
    name: str
    path: Path | None = None
    fmt: str | None = None  # "csv", "parquet" or "xlsx"
    rows: int = 0
    blocked: bool = False  # structural problems: its value checks cannot run
    unreadable: bool = False  # nothing could be read from it at all
    columns: list[str] = field(default_factory=list)  # the format columns its file has (export_columns)
    sheet: str | None = None  # the workbook's sheet holding the table (fmt "xlsx")
    notes: list[str] = field(default_factory=list)  # what was tolerated (dialects.py), for the import report
    reported: set[tuple[int, str]] = field(default_factory=set)  # (row, column) already refused when read

    @property
    def file(self) -> str:
        return self.path.name if self.path else f"{self.name}.csv"

    @property
    def line0(self) -> int:
        # CSV lines and Excel rows count the header as 1; Parquet rows count from the first data row
        return 1 if self.fmt == "parquet" else 2


def import_export(
    export_dir: Path,
    db_path: Path,
    *,
    progress: Callable[[str], None] | None = None,
    source_label: str | None = None,
) -> ImportSummary:
    """Check a clinic export and, only if it is entirely valid, replace the database at db_path with it.

    Raises ImportRefused (listing every problem) when the export is refused or the database cannot be
    written; the database at db_path is then left exactly as it was.
    """
    started = time.monotonic()
    export_dir = Path(export_dir)
    db_path = Path(db_path)
    say = progress or (lambda _msg: None)
    found = _Found()

    def refused() -> ImportRefused:
        kept, more = cap_problems(found.problems, found.more)
        return ImportRefused(kept, more=more, export_dir=export_dir, db_path=db_path)

    if not export_dir.exists():
        found.add(Problem(str(export_dir), None, None, None, None, "the export folder does not exist"))
    elif not export_dir.is_dir():
        found.add(Problem(str(export_dir), None, None, None, None,
                          "not a folder: give the export folder that holds the table files"))
    unreadable = _unreadable(db_path)
    if unreadable:
        found.add(Problem(str(db_path), None, None, None, None, unreadable))
    elif db_path.is_dir():
        found.add(Problem(str(db_path), None, None, None, None,
                          "the database path is a folder; give a file name such as outcomes.duckdb"))
    elif not _replaceable(db_path):
        found.add(Problem(str(db_path), None, None, None, None,
                          "this file is not a DuckDB database, so the import will not overwrite it; "
                          "give a new file name or the database to replace"))
    if found.problems:
        raise refused()

    lock = _lock_target(db_path)
    if lock is None:
        found.add(Problem(str(db_path), None, None, None, None,
                          "another import is running into this database; wait for it to finish, then import again"))
        raise refused()
    new_path = db_path.with_name(f".{db_path.name}.importing-{os.getpid()}")
    con: duckdb.DuckDBPyConnection | None = None
    phase = "write"
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(db_path, say)
        _remove_db_files(new_path)
        phase = "read"
        tables = _find_tables(export_dir, found)
        # each file once (an Excel workbook holds several tables), in table order
        digest = _Digest(list(dict.fromkeys(t.path for t in tables.values() if t.path)))
        digest.start()
        con = duckdb.connect(str(new_path))
        con.execute("SET preserve_insertion_order = true")  # staging rowid = position in the file
        con.execute(load_sql("check_macros"))
        # the export as text, compressed in memory (DuckDB spills to the new file's .tmp folder if needed)
        con.execute("ATTACH ':memory:' AS staging (COMPRESS)")
        scratch = new_path.with_name(new_path.name + ".tmp")  # removed with the new file's other leftovers
        for table in tables.values():
            _stage(con, table, found, say, scratch)
        phase = "check"
        _check(con, tables, found, say)
        if found.problems:
            raise refused()

        phase = "write"
        summary = _build(con, tables, db_path, export_dir, source_label, digest, started, say)
        con.close()
        con = None
        _fsync(new_path)
        os.replace(new_path, db_path)
        _fsync_dir(db_path.parent)
        summary.seconds = time.monotonic() - started
        say(f"Done: {db_path} written ({summary.seconds:.1f} s)")
        return summary
    except (duckdb.Error, OSError) as exc:
        what = {"read": "the export could not be read", "check": "the export could not be checked",
                "write": "the new database could not be written"}[phase]
        raise ImportRefused([Problem(None, None, None, None, None, f"{what}: {_first_line(exc)}")],
                            export_dir=export_dir, db_path=db_path) from None
    finally:
        if con is not None:
            try:
                con.close()
            except duckdb.Error:
                pass
        _remove_db_files(new_path)
        _unlock_target(lock)


class _Found:
    """The problems found so far, and counts of rows with the same problem that were not fetched."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.more: dict[tuple, int] = {}

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def count_more(self, rule: tuple, n: int) -> None:
        self.more[rule] = self.more.get(rule, 0) + n


def _find_tables(export_dir: Path, found: _Found) -> dict[str, _Table]:
    tables: dict[str, _Table] = {}
    sources, problems = dialects.find_table_files(export_dir)
    for file, message in problems:
        found.add(Problem(file, None, None, None, None, message))
    for name in spec.TABLES:
        table = _Table(name)
        files = sources[name]
        if len(files) >= 2:
            names = " and ".join(f.label + (f" (sheet {f.sheet})" if f.sheet else "") for f in files)
            found.add(Problem(names, name, None, None, None, "two files for one table; keep only one of them"))
            table.blocked = table.unreadable = True
        elif not files:
            if name not in spec.OPTIONAL_TABLES:
                message = (f"required table missing: expected {name}.csv or {name}.parquet "
                           "(or a sheet of that name in an Excel workbook export.xlsx)")
                near = dialects.similar_files(export_dir, name)
                if near:
                    message += f"; found {', '.join(near)}: rename it {name}.csv (or .parquet) if it holds the table"
                found.add(Problem(f"{name}.csv", name, None, None, None, message))
                table.blocked = table.unreadable = True
        else:
            table.path, table.fmt, table.sheet = files[0].path, files[0].fmt, files[0].sheet
            if table.fmt != "xlsx":
                note = dialects.file_name_note(files[0].path, name)
                if note:
                    table.notes.append(note)
            if files[0].path.stat().st_size == 0:
                found.add(Problem(table.file, name, None, None, None,
                                  "empty file (0 bytes): a table needs at least its header row"))
                table.blocked = table.unreadable = True
        tables[name] = table
    return tables


def _stage(con: duckdb.DuckDBPyConnection, table: _Table, found: _Found, say: Callable[[str], None],
           scratch: Path) -> None:
    """Copy a table into staging as text (trimmed, empty → NULL) with every format column; note its problems
    and what was tolerated (dialects.py): delimiter, encoding, empty lines and columns, an index column."""
    t0 = time.monotonic()
    expected = COLUMNS[table.name]
    columns: list[str] = []
    layout: dialects.CsvLayout | None = None
    sheet: dialects.XlsxSheet | None = None
    if table.path is not None and not table.blocked:
        if table.fmt == "csv":
            layout = dialects.sniff_csv(table.path, expected)
            if layout.problem:
                found.add(Problem(table.file, table.name,
                                  layout.problem_line or (1 if layout.problem_value else None), None,
                                  layout.problem_value, layout.problem))
                table.blocked = table.unreadable = True
            columns = layout.header
            table.notes.extend(layout.notes())
        elif table.fmt == "xlsx":
            try:
                sheet = dialects.read_xlsx_sheet(table.path, table.sheet or table.name)
                columns = sheet.header
            except dialects.XlsxError as exc:
                found.add(Problem(table.file, table.name, None, None, None, str(exc)))
                table.blocked = table.unreadable = True
            else:
                table.notes.append(f"read from sheet {table.sheet} of the Excel workbook")
                if not columns:
                    found.add(Problem(table.file, table.name, None, None, None,
                                      f"sheet {table.sheet} is empty: a table needs at least its header row"))
                    table.blocked = table.unreadable = True
        else:
            columns = _parquet_columns(con, table, found)
        if not table.blocked:
            _column_problems(table, columns, found)

    empty = ", ".join(f"NULL::VARCHAR AS {c}" for c in expected)
    if table.path is None or table.blocked:
        con.execute(f"CREATE OR REPLACE TABLE staging.{table.name} AS SELECT {empty} WHERE false")
        if table.path is None and not table.blocked:
            say(f"No {table.name} table in the export: none recorded")
        return

    roles = {i: dialects.column_role(c, i, table.fmt or "") for i, c in enumerate(columns)}
    # each format column from the file's column at its position (c0, c1, …), or NULL when absent
    position = {_normal(c): i for i, c in enumerate(columns) if _normal(c) in expected}
    written = layout.raw_header if layout is not None else columns  # a CSV's names before trimming
    note = dialects.header_names_note([w for w, c in zip(written, columns) if _normal(c) in expected])
    if note:
        table.notes.append(note)
    table.columns = [c for c in expected if c in position]
    # values with surrounding spaces are read as the value; an empty cell (quoted too) or only spaces is NULL
    select = ", ".join(
        f"c{position[c]} AS {c}" if c in position else f"NULL::VARCHAR AS {c}" for c in expected
    )
    # columns not in the format are staged too (as extra_<position>), to look for identifying values
    # (an unnamed column is staged whatever its name suggests: "Unnamed: 0" holds "name")
    extra = [i for i, c in enumerate(columns) if _normal(c) not in expected and roles[i] != "index"
             and (roles[i] == "unnamed" or not identifier_kind(c))]
    select += "".join(f", c{i} AS extra_{i}" for i in extra)
    trim = "'" + dialects.TRIM_CHARACTERS + "'"
    if table.fmt == "csv":
        assert layout is not None
        path = table.path
        if layout.rewrite:  # CR alone, mixed line endings or blank lines: rewritten as plain LF lines
            scratch.mkdir(parents=True, exist_ok=True)
            path = scratch / f"{table.name}.csv"
            dialects.normalise_csv(table.path, layout, path)
        struct = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(columns))) + "}"
        delim = {",": ",", ";": ";", "\t": "\\t", "|": "|"}[layout.delimiter]
        trimmed = ", ".join(f"nullif(trim(c{i}, {trim}), '') AS c{i}" for i in range(len(columns)))
        source = (f"(SELECT {trimmed} FROM read_csv($path, columns = {struct}, header = true, auto_detect = false, "
                  f"delim = '{delim}', quote = '\"', escape = '\"', store_rejects = true, "
                  f"rejects_table = 'rejects_{table.name}', rejects_scan = 'rejects_scan_{table.name}'))")
        params = {"path": str(path)}
    elif table.fmt == "xlsx":
        assert sheet is not None
        import pyarrow as pa

        arrow = pa.table({f"c{i}": pa.array(values, type=pa.string()) for i, values in enumerate(sheet.columns)})
        # register() refuses to run while an earlier execute()'s result is unread (DuckDB 2.0): finish it first
        con.execute("SELECT 1").fetchall()
        con.register(f"xlsx_{table.name}", arrow)
        trimmed = ", ".join(f"nullif(trim(c{i}, {trim}), '') AS c{i}" for i in range(len(columns)))
        source = f"(SELECT {trimmed} FROM xlsx_{table.name})"
        params = {}
        for row, i, iso in sheet.dates:
            column = columns[i] if _normal(columns[i]) not in expected else _normal(columns[i])
            found.add(Problem(table.file, table.name, row, column, iso, dialects.excel_date_message(column, iso)))
            table.reported.add((row, column))  # the value checks would only repeat it in other words
    else:
        aliases = ", ".join(f"c{i}" for i in range(len(columns)))
        casts = ", ".join(f"nullif(trim(CAST(c{i} AS VARCHAR), {trim}), '') AS c{i}" for i in range(len(columns)))
        source = f"(SELECT {casts} FROM read_parquet($path) AS p({aliases}))"
        params = {"path": str(table.path)}
    try:
        con.execute(f"CREATE OR REPLACE TABLE staging.{table.name} AS SELECT {select} FROM {source}", params)
    except duckdb.Error as exc:
        kind = {"csv": "CSV", "xlsx": "an Excel sheet"}.get(table.fmt or "", "Parquet")
        found.add(Problem(table.file, table.name, None, None, None, f"could not be read as {kind}: {_first_line(exc)}"))
        table.blocked = table.unreadable = True
        con.execute(f"CREATE OR REPLACE TABLE staging.{table.name} AS SELECT {empty} WHERE false")
        return
    finally:
        if table.fmt == "xlsx":
            con.unregister(f"xlsx_{table.name}")
    if table.fmt == "csv":
        _csv_rejects(con, table, found, layout)
    if not table.blocked:
        ignored = _ignored_columns(con, table, columns, roles, extra, found)
        _drop_empty_rows(con, table, [c for c in expected if c in position] +
                         [f"extra_{i}" for i in extra if i not in ignored])
        for i in extra:
            if i not in ignored:
                _identifying_values(con, table, i, columns[i], found)
    table.rows = con.execute(f"SELECT count(*) FROM staging.{table.name}").fetchone()[0]
    for note in table.notes:
        say(f"{table.file}: {note}")
    say(f"Read {table.file}: {table.rows:,} rows ({time.monotonic() - t0:.1f} s)")


def _ignored_columns(con: duckdb.DuckDBPyConnection, table: _Table, columns: list[str], roles: dict[int, str | None],
                     extra: list[int], found: _Found) -> set[int]:
    """Columns without a name (or pandas' `Unnamed: 0`): ignored when every value is empty, or when the first
    column holds 0, 1, 2, … (or 1, 2, 3, …) in row order (an index pandas wrote); otherwise refused.
    Pandas' Parquet index `__index_level_0__` is ignored without a look. Returns the ignored positions."""
    ignored: set[int] = set()
    for i, role in roles.items():
        if role == "index":
            table.notes.append(f"ignored the index column {columns[i]} that pandas writes")
    n_empty = 0
    for i in extra:
        if roles[i] != "unnamed":
            continue
        # an index: plain whole numbers on every row, increasing (0, 1, 2, … or a filtered frame's 0, 3, 7, …)
        filled, index0, index1, increasing, first_row, first_value = con.execute(
            f"SELECT count(x), count(*) FILTER (WHERE x IS DISTINCT FROM r::VARCHAR), "
            f"count(*) FILTER (WHERE x IS DISTINCT FROM (r + 1)::VARCHAR), "
            f"coalesce(bool_and(regexp_full_match(x, '[0-9]{{1,18}}') AND (prev IS NULL OR TRY_CAST(x AS BIGINT) > prev)), false), "
            f"min(r) FILTER (WHERE x IS NOT NULL), arg_min(x, r) FILTER (WHERE x IS NOT NULL) "
            f"FROM (SELECT rowid AS r, extra_{i} AS x, lag(TRY_CAST(extra_{i} AS BIGINT)) OVER (ORDER BY rowid) AS prev "
            f"FROM staging.{table.name})").fetchone()
        shown = f"column {i + 1}" + (f" ({columns[i]})" if columns[i] else " (no name)")
        if filled == 0:
            n_empty += 1
            ignored.add(i)
        elif i == 0 and (index0 == 0 or index1 == 0):
            table.notes.append(f"ignored the first column, {'unnamed' if not columns[i] else columns[i]}, "
                               "holding the row numbers 0, 1, 2, … (an index column written by pandas)")
            ignored.add(i)
        elif i == 0 and increasing:
            table.notes.append(f"ignored the first column, {'unnamed' if not columns[i] else columns[i]}, "
                               "holding increasing row numbers (an index column written by pandas)")
            ignored.add(i)
        else:
            found.add(Problem(table.file, table.name, first_row + table.line0, columns[i] or None, first_value,
                              f"{shown} has no name but holds values: give it the name of a format column "
                              "(" + ", ".join(COLUMNS[table.name]) + ") or delete it"))
            ignored.add(i)  # reported once here, not again as unknown
    if n_empty:
        table.notes.append(f"ignored {n_empty} empty column{'s' if n_empty > 1 else ''} (no name and no values)")
    return ignored


def _drop_empty_rows(con: duckdb.DuckDBPyConnection, table: _Table, staged: list[str]) -> None:
    """Rows with every value empty (lines of only delimiters, blank lines, empty spreadsheet rows) are
    dropped and counted. DuckDB keeps the other rows' rowid, so line numbers still point into the file."""
    if not staged:
        return
    where = " AND ".join(f"{c} IS NULL" for c in staged)
    deleted = con.execute(f"DELETE FROM staging.{table.name} WHERE {where}").fetchone()[0]
    if deleted:
        unit = "row" if table.fmt == "xlsx" else "line"
        table.notes.append(f"ignored {deleted:,} empty {unit}{'s' if deleted > 1 else ''} "
                           "(nothing but delimiters or spaces: rows deleted in a spreadsheet)")


def _identifying_values(con: duckdb.DuckDBPyConnection, table: _Table, i: int, column: str, found: _Found) -> None:
    """Report the first identifying value (a calendar date, an e-mail, …) in a column not in the format."""
    row = con.execute(
        f"SELECT rowid, extra_{i}, identifier_problem(extra_{i}) FROM staging.{table.name} "
        f"WHERE identifier_problem(extra_{i}) IS NOT NULL ORDER BY rowid LIMIT 1"
    ).fetchone()
    if row is not None:
        found.add(Problem(table.file, table.name, row[0] + table.line0, column, row[1], row[2]))


def _normal(column: str) -> str:
    """Column names match the format's names in any case, ignoring surrounding spaces."""
    return column.strip().lower()


def _parquet_columns(con: duckdb.DuckDBPyConnection, table: _Table, found: _Found) -> list[str]:
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(table.path)}).fetchall()
    except duckdb.Error as exc:
        found.add(Problem(table.file, table.name, None, None, None, f"not a readable Parquet file: {_first_line(exc)}"))
        table.blocked = table.unreadable = True
        return []
    for name, type_, *_ in described:
        if type_.startswith(_DATE_TYPES):
            found.add(Problem(table.file, table.name, None, name, type_,
                              f"the column holds calendar dates or times (type {type_}); {_ANONYMIZE} "
                              "(count days since the patient's first session)"))
            table.blocked = True
        elif not _PLAIN_TYPES.match(type_):
            found.add(Problem(table.file, table.name, None, name, type_,
                              f"the column's type {type_} is not plain text, a number or a boolean"))
            table.blocked = True
    return [name for name, *_ in described]


def _column_problems(table: _Table, columns: list[str], found: _Found) -> None:
    expected = COLUMNS[table.name]
    line = 1 if table.fmt in ("csv", "xlsx") else None
    seen: set[str] = set()
    for i, c in enumerate(columns):
        name = _normal(c)
        if name not in expected and dialects.column_role(c, i, table.fmt or ""):
            continue  # an unnamed or index column: looked at once its values are staged (_ignored_columns)
        kind = identifier_kind(c)
        if name in seen:
            found.add(Problem(table.file, table.name, line, c, None, "the column appears more than once"))
            table.blocked = True
        elif name not in expected and kind:
            found.add(Problem(table.file, table.name, line, c, None,
                              f"the column name suggests {kind}; {_ANONYMIZE} "
                              "(no names, birth dates, calendar dates, contact details or record numbers)"))
        elif name not in expected:
            found.add(Problem(table.file, table.name, line, c, None,
                              "unknown column; the expected columns are " + ", ".join(expected)))
        seen.add(name)
    for c, required in expected.items():
        if required and c not in seen:
            found.add(Problem(table.file, table.name, line, c, None, "required column missing"))
            table.blocked = True


def _csv_rejects(con: duckdb.DuckDBPyConnection, table: _Table, found: _Found, layout: dialects.CsvLayout) -> None:
    """Lines DuckDB could not split into the header's fields (ragged, truncated, not UTF-8), each named with
    what to change: the line's and the header's field counts, the encoding the file looks like."""
    rows = con.execute(
        # one row per line and kind of error (DuckDB lists a short line once per missing field)
        f"SELECT line, error_type, csv_line, error_message, count(*) OVER (PARTITION BY error_type) FROM ("
        f"  SELECT line, error_type::VARCHAR AS error_type, any_value(csv_line) AS csv_line,"
        f"  any_value(error_message) AS error_message FROM rejects_{table.name} GROUP BY ALL)"
        f" QUALIFY row_number() OVER (PARTITION BY error_type ORDER BY line) <= $cap ORDER BY line",
        {"cap": MAX_PER_RULE},
    ).fetchall()
    if not rows:
        return
    table.blocked = True
    for line, error_type, csv_line, error_message, n in rows:
        message = _REJECT_MESSAGES.get(error_type, error_message)
        if error_type in ("MISSING COLUMNS", "TOO MANY COLUMNS") and csv_line is not None:
            fields = dialects.field_count(csv_line, layout.delimiter)
            message = f"the line has {fields} fields but the header has {len(layout.header)}: " + message
        elif error_type == "INVALID ENCODING":
            message = dialects.encoding_message(b"")
        p = Problem(table.file, table.name, int(line), None, _clip(csv_line), message)
        found.add(p)
        if n > MAX_PER_RULE and p.rule() not in found.more:
            found.count_more(p.rule(), n - MAX_PER_RULE)


def _check(con: duckdb.DuckDBPyConnection, tables: dict[str, _Table], found: _Found, say: Callable[[str], None]) -> None:
    """Run queries/check_<table>.sql on each table that was read cleanly, fetching the first rows of each rule."""
    t0 = time.monotonic()
    before = len(found.problems) + sum(found.more.values())
    for name, table in tables.items():
        broken = [d for d in DEPENDS_ON[name] if tables[d].blocked]
        if table.path is None or table.unreadable:
            continue
        if table.blocked:
            found.add(Problem(table.file, name, None, None, None, _NOT_CHECKED))
            continue
        if broken:
            found.add(Problem(table.file, name, None, None, None,
                              f"the values of this table were not checked: they refer to {' and '.join(broken)}, "
                              "which could not be read; fix the problems listed for it and import again"))
            continue
        sql = load_sql(f"check_{name}").strip().rstrip(";")
        # the rule of a problem: its column and message with the numbers left out (as Problem.rule)
        wrapped = (
            f'SELECT line, "column", value, message, count(*) OVER (PARTITION BY rule) AS n FROM ('
            f"SELECT *, \"column\" || ':' || regexp_replace(message, '[0-9]+', '#', 'g') AS rule FROM ({sql}))"
            f" QUALIFY row_number() OVER (PARTITION BY rule ORDER BY line) <= $cap ORDER BY line"
        )
        params = dict(_CHECK_PARAMS, line0=table.line0, cap=MAX_PER_RULE)
        used = set(re.findall(r"\$([a-z_0-9]+)", wrapped))
        rows = con.execute(wrapped, {k: v for k, v in params.items() if k in used}).fetchall()
        for line, column, value, message, n in rows:
            if (int(line), column) in table.reported:
                continue
            p = Problem(table.file, name, int(line), column, value, _better_message(column, value, message))
            found.add(p)
            if n > MAX_PER_RULE and p.rule() not in found.more:
                found.count_more(p.rule(), n - MAX_PER_RULE)
    n = len(found.problems) + sum(found.more.values()) - before
    say(f"Checked every value ({time.monotonic() - t0:.1f} s): " + ("no problems" if not n else spec.counted(n, "problem")))


def _better_message(column: str | None, value: str | None, message: str) -> str:
    """A check's message, or one that says what a spreadsheet did to the value and how to fix it."""
    return dialects.spreadsheet_hint(column, value, message)


def _build(con, tables, db_path, export_dir, source_label, digest, started, say) -> ImportSummary:
    t0 = time.monotonic()
    con.execute(load_sql("schema"))
    for name in spec.TABLES:
        con.execute(load_sql(f"load_{name}"))
    rows = {name: tables[name].rows for name in spec.TABLES}
    # which optional columns the export had, so a measure needing an absent one is named, not shown as zero
    con.executemany("INSERT INTO export_columns VALUES (?, ?)",
                    [(t.name, c) for t in tables.values() for c in t.columns])
    say(f"Loaded {sum(rows.values()):,} rows into the new database ({time.monotonic() - t0:.1f} s)")
    con.execute("DETACH staging")
    derived: list[str] = []
    for name in query_names("derive_"):
        t1 = time.monotonic()
        con.execute(load_sql(name))
        derived.append(name)
        say(f"Derived {name.removeprefix('derive_')} ({time.monotonic() - t1:.1f} s)")

    notes: list[str] = []
    history = _previous_history(db_path, notes, say)
    # what was tolerated in reading the files (dialects.py), kept with the data for the Data page
    tolerated = [(name, t.file, note) for name, t in tables.items() for note in t.notes]
    notes.extend(f"Tolerated in {file}: {note}." for _name, file, note in tolerated)
    import_id = max((r[0] for r in history), default=0) + 1
    formats = {t.fmt for t in tables.values() if t.fmt}
    source_format = formats.pop() if len(formats) == 1 else "mixed"
    source = source_label or str(export_dir)
    if history:
        con.executemany("INSERT INTO import_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
    con.execute(
        "INSERT INTO import_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [import_id, datetime.now(timezone.utc).replace(tzinfo=None), source, source_format, digest.result(),
         rows["patients"], rows["sessions"], rows["assessments"], rows["adverse_events"], __version__,
         time.monotonic() - started],
    )
    if tolerated:
        con.executemany("INSERT INTO import_notes VALUES (?, ?, ?, ?)", [(import_id, *t) for t in tolerated])
    con.execute("CHECKPOINT")
    return ImportSummary(db_path, source, source_format, rows, derived, time.monotonic() - started, import_id, notes)


def _previous_history(db_path: Path, notes: list[str], say: Callable[[str], None]) -> list[tuple]:
    """The import history of the database being replaced (empty if there is none or it cannot be read)."""
    if not db_path.exists():
        return []
    try:
        with duckdb.connect(str(db_path), read_only=True) as old:
            return old.execute("SELECT * FROM import_history ORDER BY import_id").fetchall()
    except duckdb.Error as exc:
        note = f"The import history of {db_path} could not be read ({_first_line(exc)}); it starts afresh."
        notes.append(note)
        say(note)
        return []


class _Digest(threading.Thread):
    """SHA-256 over the table files' bytes in table order, computed alongside the import."""

    def __init__(self, paths: list[Path]):
        super().__init__(daemon=True)
        self.paths = paths
        self._hex = ""
        self._error: OSError | None = None

    def run(self) -> None:
        h = hashlib.sha256()
        try:
            for p in self.paths:
                with p.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
        except OSError as exc:
            self._error = exc
        self._hex = h.hexdigest()

    def result(self) -> str:
        self.join()
        if self._error:
            raise self._error
        return self._hex


# --- files -----------------------------------------------------------------------------------------------


def _unreadable(db_path: Path) -> str | None:
    """Why the target (or its folder) cannot be read or replaced by this user, or None."""
    try:
        if db_path.is_file():
            with db_path.open("rb"):
                pass
    except PermissionError:
        return ("permission denied: this user cannot read the database file or its folder; fix the permissions "
                "or give another path")
    except OSError:
        return None
    return None


def _lock_target(db_path: Path) -> tuple[int, Path] | None:
    """Take the target's import lock (`.NAME.lock` beside it, flock'd), or None if another import holds it.

    Two imports into one target would both read the old history and both write "import #n", losing one
    record; the second is refused instead. The lock file is removed when the import ends; a process that
    opened a lock file just removed sees another inode at the path and tries again."""
    import fcntl

    path = db_path.with_name(f".{db_path.name}.lock")
    for _ in range(20):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return (-1, path)  # the folder is not writable: writing the new file will say so
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return (fd, path)
        os.close(fd)
    return None


def _unlock_target(lock: tuple[int, Path]) -> None:
    fd, path = lock
    if fd < 0:
        return
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _replaceable(db_path: Path) -> bool:
    """A target that is absent, empty or a DuckDB file (its header holds DUCK at byte 8) may be replaced."""
    try:
        with db_path.open("rb") as f:
            head = f.read(12)
    except (FileNotFoundError, NotADirectoryError):
        return True  # nothing there (writing the new file will say why if it cannot)
    except OSError:
        return False
    return len(head) == 0 or head[8:12] == b"DUCK"


def _remove_db_files(path: Path) -> None:
    """Remove a DuckDB file with its write-ahead log and spill folder."""
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            p.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass
    shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)


def _remove_stale_temp_files(db_path: Path, say: Callable[[str], None]) -> None:
    """Remove the temporary files of earlier imports into db_path whose process is gone."""
    prefix = f".{db_path.name}"
    for p in db_path.parent.glob(f"{prefix}.*-*"):
        rest = p.name[len(prefix):]
        marker = next((m for m in _TEMP_MARKERS if rest.startswith(m)), None)
        if marker is None:
            continue
        pid_text = rest[len(marker):].split(".", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        say(f"Removed {p.name}, left by an interrupted import")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this very process id (reused): not a running import
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _clip(value: str | None, width: int = 80) -> str | None:
    if value is None:
        return None
    value = value.rstrip("\r\n")
    return value if len(value) <= width else value[: width - 1] + "…"


def _show(value: str) -> str:
    return repr(_clip(value))
