"""Turn a clinic's identified records into an anonymized export (the contract: identified-records.md).

`anonymize(records_dir, mapping, key, out_dir)` reads a folder of CSV files (or one .xlsx workbook) with the clinic's own column
names, record numbers, birth dates and calendar dates, and writes the four tables of a clinic export:

- record and encounter numbers become keyed pseudonyms (HMAC-SHA256 from the standard library with the
  clinic's secret key, shortened to 16 hex digits, `p…`/`s…`), the same on every run with the same key;
- calendar dates become days since the patient's first session (day 0) and, for a questionnaire taken
  after a dose on a session's date, hours after that dose;
- the first session's date becomes the start quarter (or only its year), the birth date the age band on
  day 0; code lists (sites, routes, diagnoses, events, …) go through the mapping's `[codes.*]` tables;
- every column the mapping does not name is dropped, and a free-text column is never carried over.

Nothing is written unless every row converts and the result passes the importer's own checks
(`ingest.import_export` into a throw-away database). Both run in one go, so one refusal names every
problem: a row that could not be converted still goes into the temporary folder checked, its computed
values left empty, so that the importer checks the values it carries (`_transform`, `_to_source`).
Problems name the source file, line and column, and quote a value only when it cannot identify anyone
(`_ValueGuard`): never an identifier, name, date or free text. The mapping is TOML (read with the
standard library's `tomllib`); dates are read with `datetime` as ISO 8601, or with the strptime format
the mapping names, and a date such as
`03/04/2025` is refused as ambiguous unless the mapping names its format.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import hmac
import io
import os
import re
import secrets
import shutil
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Iterator

from dashboard.data import dialects, folders, spec
from dashboard.data.ingest import COLUMNS, MAX_PER_RULE, ImportRefused, Problem, identifier_kind, import_export

REPORT_FILE = "anonymize-report.txt"
KEY_BYTES = 32
PSEUDONYM_HEX = 16  # 64 bits: collisions are checked anyway
SHIPPED_MAPPINGS = ("generic",)
# Export tables and the source tables of the generic layout that give them.
EXPORT_TABLES = spec.TABLES
# Source columns with a role of their own (not carried over as they are), per export table.
ROLES: dict[str, dict[str, bool]] = {
    "patients": {"record_number": True, "birth_date": True},
    "sessions": {"encounter_number": True, "record_number": True, "started_at": True},
    "assessments": {"record_number": True, "taken_at": True},
    "adverse_events": {"encounter_number": True},
}
# Export columns computed here rather than carried over.
DERIVED = {"patient_id", "session_id", "day", "hours_post_dose", "start_quarter", "age_band"}
CARRIED = {t: [c for c in COLUMNS[t] if c not in DERIVED] for t in EXPORT_TABLES}
# Carried columns the importer accepts any short token in (spec.SITE_PATTERN; the others are codes, numbers
# and yes/no): a value there that is also an identifying value of the records (a last name as the site) is
# refused.
FREE_TEXT_CARRIED = {"site"}
# Words in a column name that mark free text: never carried over, even when mapped.
FREE_TEXT_WORDS = {"note", "notes", "comment", "comments", "remark", "remarks", "text", "description",
                   "narrative", "memo", "freetext", "summary", "observation", "observations"}
AGE_BAND_FLOORS = ((75, "75+"), (65, "65-74"), (55, "55-64"), (45, "45-54"), (35, "35-44"), (25, "25-34"),
                   (18, "18-24"))
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_SLASHED = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})(\s|$|T)")


class AnonymizeRefused(Exception):
    """Nothing was written. `.problems` (ingest.Problem, file and line of the source) say why, at most
    ingest.MAX_PER_RULE rows of each kind of problem (`Problem.rule`), as the importer lists them; `.more`
    counts the further rows with the same problem as a listed one (those the importer did not list, and the
    conversion's own beyond the first MAX_PER_RULE), keyed by the last listed problem of that kind."""

    def __init__(self, problems: list[Problem], report: "AnonymizeReport | None" = None, *,
                 more: dict[Problem, int] | None = None):
        self.problems, self.more = _capped(list(problems), dict(more or {}))
        self.anonymize_report = report
        super().__init__(self.report())

    def report(self) -> str:
        n = len(self.problems) + sum(self.more.values())
        lines = [f"Anonymization refused: {spec.counted(n, 'problem')}. Nothing was written."]
        lines += ["  " + p.describe() for p in self.listed()]
        return "\n".join(lines)

    def listed(self) -> list[Problem]:
        """The problems, each followed by "… and N more rows with the same problem" where `.more` has it."""
        out = []
        for p in self.problems:
            out.append(p)
            if self.more.get(p):
                out.append(Problem(p.file, p.table, None, p.column, None,
                                   f"… and {spec.counted(self.more[p], 'more row')} with the same problem"))
        return out


def _capped(problems: list[Problem], more: dict[Problem, int]) -> tuple[list[Problem], dict[Problem, int]]:
    """The first MAX_PER_RULE problems of each kind (`Problem.rule`), in the given order, and `more` with the
    rest of each kind counted under its last kept problem (where `more`'s counts move too): a column wrong on
    every row reads in a screenful, not in thousands of lines, as the importer's own report does.
    (`ingest.cap_problems` keys its counts by rule and re-sorts; a refusal keeps its own order.)"""
    kept: list[Problem] = []
    listed: dict[tuple, int] = {}
    last: dict[tuple, Problem] = {}
    beyond: dict[tuple, int] = {}
    for p in problems:
        rule = p.rule()
        if listed.get(rule, 0) < MAX_PER_RULE:
            kept.append(p)
            listed[rule] = listed.get(rule, 0) + 1
            last[rule] = p
        else:
            beyond[rule] = beyond.get(rule, 0) + 1
    counts: dict[Problem, int] = {}
    for p, n in [*more.items(), *((last[rule], n) for rule, n in beyond.items())]:
        under = last.get(p.rule(), p)  # after the last listed row of its kind
        counts[under] = counts.get(under, 0) + n
    return kept, {p: n for p, n in counts.items() if n > 0}


@dataclass
class AnonymizeReport:
    """What was read, transformed, dropped and written (names of files and columns, never values)."""

    read: list[str] = field(default_factory=list)
    transformed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    key_fingerprint: str = ""
    out_dir: Path | None = None

    def describe(self) -> str:
        parts = ["Read:", *(f"  {r}" for r in self.read), "Transformed:", *(f"  {t}" for t in self.transformed),
                 "Dropped (never written):", *(f"  {d}" for d in self.dropped or ["nothing"])]
        if self.written:
            parts += ["Written:", *(f"  {t}.csv: {spec.counted(n, 'row')}" for t, n in self.written.items())]
        parts.append(f"Key fingerprint: {self.key_fingerprint}")
        return "\n".join(parts)


# --- the mapping -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping: per export table its source table and {export column or role: source column}."""

    name: str
    tables: dict[str, str]  # export table -> source table (file stem)
    columns: dict[str, dict[str, str]]  # export table -> {export column or role: source column}
    absent_ok: dict[str, frozenset[str]]  # export table -> export columns whose source column may be absent
    codes: dict[str, dict[str, str]]  # export column -> {source value (casefolded): export value}
    date_format: str | None = None
    datetime_format: str | None = None
    optional: frozenset[str] = frozenset({"adverse_events"})


class MappingError(ValueError):
    """The mapping file cannot be used; `.problems` name each fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def shipped_mapping_path(name: str) -> Path:
    """The path of a mapping shipped with the package (`generic`)."""
    return Path(str(resources.files("dashboard.data.mappings") / f"{name}.toml"))


def load_mapping(name_or_path: str | os.PathLike[str]) -> Mapping:
    """Read a mapping: a shipped name (`generic`) or a TOML file. Raises MappingError naming every fault."""
    text_name = str(name_or_path)
    path = shipped_mapping_path(text_name) if text_name in SHIPPED_MAPPINGS else Path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError([f"{path}: no such mapping file (give a TOML file, or --mapping generic)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError([f"{path}: could not be read ({exc})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_mapping(raw, name=path.name)


def parse_mapping(raw: dict, *, name: str = "mapping") -> Mapping:
    """Check a mapping's structure (parsed TOML) and return it; raises MappingError."""
    problems: list[str] = []
    tables: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    absent_ok: dict[str, frozenset[str]] = {}
    optional = {"adverse_events"}
    known = {*EXPORT_TABLES, "codes", "formats"}
    for key in raw:
        if key not in known:
            problems.append(f"{name}: unknown section [{key}]; the sections are "
                            + ", ".join(f"[{k}]" for k in sorted(known)))
    for table in EXPORT_TABLES:
        section = raw.get(table)
        if section is None:
            if table not in optional:
                problems.append(f"{name}: section [{table}] missing")
            continue
        if not isinstance(section, dict) or not isinstance(section.get("table"), str):
            problems.append(f"{name}: [{table}] needs `table = \"source table name\"`")
            continue
        tables[table] = section["table"].strip()
        cols = section.get("columns", {})
        if not isinstance(cols, dict) or not all(isinstance(v, str) for v in cols.values()):
            problems.append(f"{name}: [{table}.columns] must map export columns to source column names (text)")
            continue
        allowed = {*ROLES[table], *CARRIED[table]}
        for target, source in cols.items():
            if target not in allowed:
                problems.append(f"{name}: [{table}.columns] {target}: not a column of the export's {table} table "
                                f"(expected one of {', '.join(sorted(allowed))})")
            elif _is_free_text(source):
                problems.append(f"{name}: [{table}.columns] {target} = {source!r}: a free-text column is never "
                                "carried over; remove it from the mapping")
            elif target not in ROLES[table] and identifier_kind(source):
                problems.append(f"{name}: [{table}.columns] {target} = {source!r}: the column name suggests "
                                f"{identifier_kind(source)}, which is never carried over")
        required = [c for c, req in ROLES[table].items() if req] + [c for c, req in COLUMNS[table].items()
                                                                     if req and c not in DERIVED]
        for c in required:
            if c not in cols:
                problems.append(f"{name}: [{table}.columns] {c} missing (required)")
        columns[table] = {k: v.strip() for k, v in cols.items()}
        may_lack = section.get("optional", [])
        if not isinstance(may_lack, list) or any(c not in cols or c in required for c in may_lack):
            problems.append(f"{name}: [{table}] optional = [...] lists mapped export columns that are not required "
                            "and whose source column a file may lack")
            may_lack = []
        absent_ok[table] = frozenset(may_lack)
    codes: dict[str, dict[str, str]] = {}
    for column, table in (raw.get("codes") or {}).items():
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            problems.append(f"{name}: [codes.{column}] must map source values to export values (text)")
            continue
        codes[column] = {k.strip().casefold(): v.strip() for k, v in table.items()}
    formats = raw.get("formats") or {}
    if not isinstance(formats, dict):
        problems.append(f"{name}: [formats] must hold `date` and `datetime` strptime formats")
        formats = {}
    for k in formats:
        if k not in ("date", "datetime"):
            problems.append(f"{name}: [formats] {k}: unknown; use `date` and `datetime`")
    if problems:
        raise MappingError(problems)
    return Mapping(name, tables, columns, absent_ok, codes, formats.get("date") or None, formats.get("datetime") or None,
                   frozenset(optional))


def _is_free_text(column: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column.strip())
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    return any(w in FREE_TEXT_WORDS for w in words) or "".join(words) in FREE_TEXT_WORDS


def init_mapping(records_dir: Path) -> str:
    """A mapping skeleton (TOML text) for the CSV files in records_dir: every header found, listed as a
    comment under the section its file most likely fills, with the export's columns to fill in."""
    records_dir = Path(records_dir)
    found = {stem: header for stem, (header, _d) in _headers(records_dir).items()}
    if not found:
        book = _workbook(records_dir, [])
        found = {s.file.split(" sheet ", 1)[1]: s.header for s in (book or {}).values()}
    guesses = {"patients": ("patient",), "sessions": ("session", "encounter", "visit", "dose"),
               "assessments": ("questionnaire", "assessment", "score", "survey"),
               "adverse_events": ("adverse", "event", "side")}
    lines = ["# Mapping written by `ketamine-outcomes anonymize --init` from the tables in "
             f"{records_dir.name}.", "# Fill in each source column name; delete lines you do not have.",
             "# Columns not named here are dropped; free text (notes, comments) is never carried over.",
             "", "[formats]",
             '# date = "%d/%m/%Y"          # how dates are written, when not YYYY-MM-DD',
             '# datetime = "%d/%m/%Y %H:%M"', ""]
    used: set[str] = set()
    for table in EXPORT_TABLES:
        stem = next((s for s in found if s not in used and any(g in s.lower() for g in guesses[table])), "")
        used.add(stem)
        lines.append(f"[{table}]")
        lines.append(f'table = "{stem}"' + ("" if stem else "  # the file (without .csv) holding this table"))
        if stem:
            lines.append("# its columns: " + ", ".join(found[stem]))
        lines.append(f"[{table}.columns]")
        lowered = {h.lower(): h for h in found.get(stem, [])}
        for target in [*ROLES[table], *CARRIED[table]]:
            guess = lowered.get(target, "")
            lines.append(f'{target} = "{guess}"' if guess else f'# {target} = ""')
        lines.append("")
    lines += ["# [codes.route]              # your values -> the export's codes", '# "Infusion" = "IV"', ""]
    return "\n".join(lines)


# --- the key ----------------------------------------------------------------------------------------


class KeyFileError(ValueError):
    """The key file is missing, unreadable, readable by others or not a key."""


def load_key(path: str | os.PathLike[str], *, create: bool = True) -> tuple[bytes, bool]:
    """The clinic's secret key from path (64 hex digits); created (owner-only, 0600) when absent and
    `create`. Returns (key, created). Raises KeyFileError with what to do."""
    path = Path(path)
    if path.is_dir():
        raise KeyFileError(f"{path} is a folder; --key names a file such as clinic.key")
    if not path.exists():
        if not create:
            raise KeyFileError(f"no key file at {path}")
        if not path.parent.is_dir():
            raise KeyFileError(f"cannot create the key file {path}: the folder {path.parent} does not exist")
        key = secrets.token_bytes(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (key.hex() + "\n").encode("ascii"))
        finally:
            os.close(fd)
        return key, True
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"the key file {path} can be read by other users; make it private "
                        f"(chmod 600 {path}) and run again")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError):
        raise KeyFileError(f"{path} is not a key file written by `ketamine-outcomes anonymize` "
                        "(one line of 64 hexadecimal digits)") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path} is not a key file written by `ketamine-outcomes anonymize` "
                        "(one line of 64 hexadecimal digits)")
    return key, False


@contextlib.contextmanager
def key_for_run(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, bool]]:
    """`load_key(path)` for one anonymization run: yields (key, created). A key this run created is
    removed again when the block does not finish (a refused or failed run writes nothing, its new key
    included; the next run makes one). Raises KeyFileError as load_key does."""
    key, created = load_key(path)
    try:
        yield key, created
    except BaseException:
        if created:
            Path(path).unlink(missing_ok=True)
        raise


def key_fingerprint(key: bytes) -> str:
    """A short check value of the key (cannot give the key back): tells whether two runs used one key."""
    return hmac.new(key, b"ketamine-outcomes key check", hashlib.sha256).hexdigest()[:12]


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """Keyed HMAC-SHA256 pseudonym of a record ("p") or encounter ("s") number, valid as an export id."""
    digest = hmac.new(key, f"{kind}\x1f{value.strip()}".encode("utf-8"), hashlib.sha256).hexdigest()
    return kind + digest[:PSEUDONYM_HEX]


# --- reading the records ------------------------------------------------------------------------------


@dataclass
class _Source:
    file: str
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line, {header: value})
    delimiter: str


def _headers(records_dir: Path) -> dict[str, tuple[list[str], str]]:
    out = {}
    for p in sorted(records_dir.iterdir()):
        if p.is_file() and p.suffix.lower() == ".csv":
            try:
                first = p.read_bytes()[: 1 << 20].decode("utf-8-sig", "replace").splitlines()[0]
            except IndexError:
                continue
            d = _delimiter(first)
            out[p.stem] = ([h.strip() for h in next(csv.reader([first], delimiter=d))], d)
    return out


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _read_source(path: Path, problems: list[Problem]) -> _Source | None:
    """A CSV in any dialect the export format accepts (BOM, CRLF or CR, `;` or tab, header in any case)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.append(Problem(path.name, None, None, None, None, "not UTF-8 text: save the file as UTF-8"))
        return None
    lines = io.StringIO(text, newline="")
    first = text.splitlines()[0] if text else ""
    delimiter = _delimiter(first)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        problems.append(Problem(path.name, None, None, None, None, "empty file: a table needs its header row"))
        return None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        line = reader.line_num + 1
        for fields in reader:
            if not any(f.strip() for f in fields):  # a row deleted in a spreadsheet
                line = reader.line_num + 1
                continue
            # a trailing delimiter (empty extra fields) is harmless; missing fields or extra values are not
            if len(fields) < len(header) or any(f.strip() for f in fields[len(header):]):
                problems.append(Problem(path.name, None, line, None, None,
                                        f"{len(fields)} fields where the header has {len(header)}"))
            else:
                rows.append((line, {h.lower(): f.strip() for h, f in zip(header, fields) if h}))
            line = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(path.name, None, reader.line_num, None, None, f"could not be read as CSV: {exc}"))
        return None
    return _Source(path.name, header, rows, delimiter)


def workbook_name(records_dir: Path) -> str:
    return next((p.name for p in records_dir.iterdir() if p.suffix.lower() == ".xlsx"), "workbook")


_EXCEL_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$")


def _workbook(records_dir: Path, problems: list[Problem]) -> dict[str, _Source] | None:
    """The sheets of the folder's one .xlsx workbook (when it holds no CSV file), by lower-case sheet name.

    Read with python-calamine through pandas, every cell as text. A date cell Excel stores without a
    time comes back as midnight; it is read as a date alone, so a questionnaire is never placed against
    a time nobody wrote down.
    """
    if not records_dir.is_dir() or any(p.suffix.lower() == ".csv" for p in records_dir.iterdir()):
        return None
    books = sorted(p for p in records_dir.iterdir() if p.suffix.lower() == ".xlsx" and not p.name.startswith("~$"))
    if not books:
        return None
    if len(books) > 1:
        problems.append(Problem(", ".join(b.name for b in books), None, None, None, None,
                                "more than one workbook: keep the one with the records"))
        return None
    import pandas as pd

    try:
        sheets = pd.read_excel(books[0], sheet_name=None, dtype=str, header=None, keep_default_na=False,
                               engine="calamine")
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is named, never a traceback
        problems.append(Problem(books[0].name, None, None, None, None, f"could not be read as a workbook: {exc}"))
        return None
    out: dict[str, _Source] = {}
    for name, df in sheets.items():
        values = df.values.tolist()
        if not values:
            continue
        header = [str(h).strip() for h in values[0]]
        rows = []
        for i, cells in enumerate(values[1:], start=2):
            cells = [_EXCEL_MIDNIGHT.sub(r"\1", str(c).strip()) for c in cells]
            if any(cells):
                rows.append((i, {h.lower(): c for h, c in zip(header, cells) if h}))
        out[str(name).strip().lower()] = _Source(f"{books[0].name} sheet {name}", header, rows, "")
    return out


def _find_source(records_dir: Path, stem: str) -> Path | None:
    matches = [p for p in records_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
               and p.stem.strip().lower() == stem.lower()]
    return matches[0] if matches else None


# --- dates -----------------------------------------------------------------------------------------


def parse_when(text: str, fmt: str | None) -> tuple[date, dtime | None]:
    """A date or date-time: ISO 8601 (unambiguous, and what a workbook's date cells read as), or else the
    strptime format `fmt` the mapping names.
    Returns (date, time of day or None). Raises ValueError with what to do."""
    text = text.strip()
    if fmt and not _ISO.match(text):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            raise ValueError(f"does not match the mapping's format {fmt!r}") from None
        has_time = any(d in fmt for d in ("%H", "%I", "%M"))
        return parsed.date(), (parsed.time() if has_time else None)
    m = _SLASHED.match(text)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a <= 12 and b <= 12 and a != b:
            raise ValueError("ambiguous date (day/month or month/day?): name the format in the mapping's "
                             '[formats], e.g. date = "%d/%m/%Y"')
        raise ValueError('not written YYYY-MM-DD: name the format in the mapping\'s [formats], e.g. '
                         'date = "%d/%m/%Y"')
    try:
        if len(text) == 10:
            return date.fromisoformat(text), None
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not a date (YYYY-MM-DD, or YYYY-MM-DD HH:MM for a date and time); "
                         "if your dates are written otherwise, name the format in the mapping's [formats]") from None
    return parsed.date(), parsed.time()


def age_band(birth: date, on: date) -> str | None:
    """The export's age band for the whole years between birth and `on`; None under 18."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return next((band for floor, band in AGE_BAND_FLOORS if years >= floor), None)


def quarter(d: date, *, year_only: bool = False) -> str:
    """`YYYY-Qn`; with year_only every start is written as its year's first quarter (docs/choices.md)."""
    return f"{d.year}-Q1" if year_only else f"{d.year}-Q{(d.month - 1) // 3 + 1}"


# --- which values a problem may quote ---------------------------------------------------------------------

NOT_SHOWN = "the value is not shown because it could identify a patient"
SHOWN_MAX_CHARS = 20  # a value quoted in a problem: at most this many characters …
SHOWN_MAX_DIGITS = 4  # … and digits (a phone number, a date, a record number have more)
_SHOWN_TOKEN = re.compile(r"^[A-Za-z0-9_+.\-]+$")
_WORD_SPLIT = re.compile(r"[\W_]+")


MIN_PIECE = 4  # a site or quoted value holding this many letters or digits of an identifying value is refused


def _squeezed(folded: str) -> str:
    """A case-folded text with everything but its letters and digits left out: `mrn100000` for MRN-100000."""
    return _WORD_SPLIT.sub("", folded)


def _words(folded: str) -> set[str]:
    """The words of a case-folded text that hold a letter and are at least two characters long."""
    return {w for w in _WORD_SPLIT.split(folded) if len(w) >= 2 and any(ch.isalpha() for ch in w)}


class _ValueGuard:
    """Which values from the records a problem may quote (docs/choices.md, Issue 14, "Values in problems").

    A value is quoted only when it cannot identify anyone: it stands in a column carried into the export
    (codes, booleans and numbers: never a record or encounter number, name, date or free-text column); it is
    one code-like token, 1–20 ASCII letters, digits, `_`, `-`, `+` and `.` (so no spaces, no `@`), with at
    most 4 digits; it does not read as a date; and neither it nor any of its words is a value, or a word of
    a value, of the records' identifier and date columns (the mapping's record_number, encounter_number,
    birth_date, started_at and taken_at, and every column whose name marks an identifier: names, contact
    details, …). Any other problem keeps its file, line and column, and its message says the value is not
    shown. The identifying values are collected only when a problem has a value to judge.
    """

    def __init__(self, sources: dict[str, "_Source"], mapping: Mapping):
        self._sources = sources
        self._mapping = mapping
        self._judged: dict[str, bool] = {}  # value (case-folded) -> whether it identifies

    @functools.cached_property
    def _collected(self) -> tuple[frozenset[str], frozenset[str], str]:
        """The records' identifying values and their words; the pieces (`_squeezed`, at least
        MIN_PIECE characters) of those that are not free text; and those pieces joined, to search digits in."""
        found: set[str] = set()
        pieces: set[str] = set()
        for table, source in self._sources.items():
            roles = {c.lower() for t, c in self._mapping.columns.get(table, {}).items() if t in ROLES[table]}
            columns = [h.lower() for h in source.header if h and (h.lower() in roles or identifier_kind(h))]
            not_free_text = {c for c in columns if c in roles or not _is_free_text(c)}
            for _line, row in source.rows:
                for c in columns:
                    value = row.get(c, "").strip().casefold()
                    if value:
                        found.add(value)
                        words = _words(value)
                        found.update(words)
                        if c in not_free_text:
                            pieces.update(p for p in (_squeezed(value), *words) if len(p) >= MIN_PIECE)
        return frozenset(found), frozenset(pieces), "\0".join(pieces)

    def identifies(self, value: str) -> bool:
        """Whether `value` could carry an identifying value of the records (a name, record number, contact
        detail, date): it or one of its words is such a value or word (free text's words included); or, with
        spaces and punctuation left out, it contains one of at least MIN_PIECE characters
        (`KowalczykClinic`, `MRN100000`) that is not free text's (whose everyday words would refuse most
        names), or a run of MIN_PIECE digits of one (`100000` of MRN-100000, `20250408` of a session's
        date, `1984` of a birth date)."""
        folded = value.strip().casefold()
        known = self._judged.get(folded)
        if known is None:  # a site column repeats a few values on every row: each is judged once
            known = self._judged[folded] = self._identifies(folded)
        return known

    def _identifies(self, folded: str) -> bool:
        identifying, pieces, joined = self._collected
        if folded in identifying or _words(folded) & identifying:
            return True
        squeezed = _squeezed(folded)
        if any(squeezed[i:j] in pieces for i in range(len(squeezed))
               for j in range(i + MIN_PIECE, len(squeezed) + 1)):
            return True
        return any(run in joined for run in re.findall(rf"\d{{{MIN_PIECE},}}", squeezed))

    def shows(self, table: str | None, target: str | None, value: str) -> bool:
        """Whether `value`, read for export column `target` of `table`, may be quoted in a problem."""
        if table is None or target not in CARRIED.get(table, ()):
            return False
        v = value.strip()
        if not (0 < len(v) <= SHOWN_MAX_CHARS and _SHOWN_TOKEN.match(v)):
            return False
        if sum(ch.isdigit() for ch in v) > SHOWN_MAX_DIGITS or dialects.looks_like_date(v):
            return False
        return not self.identifies(v)

    def problem(self, file: str | None, table: str | None, line: int | None, column: str | None,
                target: str | None, value: str | None, message: str) -> Problem:
        """A Problem that quotes `value` only when `shows` allows it, else says that it is not shown."""
        if value is None or self.shows(table, target, value):
            return Problem(file, table, line, column, value, message)
        return Problem(file, table, line, column, None, f"{message} ({NOT_SHOWN})")


# --- the transformation --------------------------------------------------------------------------------


@dataclass
class _Out:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    origin: list[tuple[str, int]] = field(default_factory=list)  # source (file, line) of each row


def anonymize(
    records_dir: str | os.PathLike[str],
    mapping: Mapping,
    key: bytes,
    out_dir: str | os.PathLike[str],
    *,
    year_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AnonymizeReport:
    """Write the anonymized export of records_dir to out_dir (replacing an earlier output of anonymize).

    Raises AnonymizeRefused (nothing written) when any row cannot be converted, the result would not pass
    the importer, or out_dir holds other files or an output made with another key.
    """
    say = progress or (lambda _m: None)
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    report = AnonymizeReport(key_fingerprint=key_fingerprint(key), out_dir=out_dir)
    _check_out_dir(out_dir, report.key_fingerprint)
    problems: list[Problem] = []
    if not records_dir.is_dir():
        raise AnonymizeRefused([Problem(str(records_dir), None, None, None, None,
                                        "no such folder: give the folder holding the records (CSV files or one "
                                        ".xlsx workbook)")])
    sources: dict[str, _Source] = {}
    workbook = _workbook(records_dir, problems)
    if problems:
        raise AnonymizeRefused(problems, report)
    for table, stem in mapping.tables.items():
        if workbook is not None:
            source = workbook.get(stem.strip().lower())
            if source is None:
                if table not in mapping.optional:
                    problems.append(Problem(f"{workbook_name(records_dir)}", table, None, None, None,
                                            f"the mapping's source table {stem!r} is not a sheet of the workbook "
                                            f"(its sheets: {', '.join(s.file.split('sheet ', 1)[1] for s in workbook.values())})"))
                continue
        else:
            path = _find_source(records_dir, stem)
            if path is None:
                if table not in mapping.optional:
                    problems.append(Problem(f"{stem}.csv", table, None, None, None,
                                            f"the mapping's source table {stem!r} is missing from {records_dir.name}"))
                continue
            source = _read_source(path, problems)
            if source is None:
                continue
        lowered = {h.lower() for h in source.header}
        for target, column in mapping.columns[table].items():
            if column.lower() not in lowered and target in mapping.absent_ok.get(table, ()):
                report.dropped.append(f"{source.file}: has no column {column!r} ({target} left empty)")
            elif column.lower() not in lowered:
                problems.append(Problem(source.file, table, 1, column, None,
                                        f"the mapping names column {column!r} (for {target}), which is not in the "
                                        f"file; its columns are {', '.join(source.header)}"))
        mapped = {c.lower() for c in mapping.columns[table].values()}
        dropped = [h for h in source.header if h and h.lower() not in mapped]
        if dropped:
            report.dropped.append(f"{source.file}: " + ", ".join(dropped))
        report.read.append(f"{source.file}: {spec.counted(len(source.rows), 'row')}, delimiter {_delim_name(source.delimiter)}")
        sources[table] = source
        say(f"Read {source.file}: {spec.counted(len(source.rows), 'row')}")
        if table == "patients" and not source.rows:
            # every session and questionnaire would be named "not in patients.csv", a line each
            problems.append(Problem(source.file, table, None, None, None,
                                    "has no rows, only its header: give the file with the clinic's patients"))
    if problems:
        raise AnonymizeRefused(problems, report)

    guard = _ValueGuard(sources, mapping)
    outs = _transform(sources, mapping, key, year_only, problems, report, guard)
    if problems:
        say(f"{spec.counted(len(problems), 'row problem')} found; checking the values of "
            "every row with the importer too")
    else:
        say("Transformed every row; checking the result with the importer")
    _write_checked(outs, out_dir, report, mapping, say, guard, problems)
    return report


def _delim_name(d: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "": "none (a workbook sheet)"}[d]


def _transform(sources: dict[str, _Source], mapping: Mapping, key: bytes, year_only: bool,
               problems: list[Problem], report: AnonymizeReport, guard: _ValueGuard) -> dict[str, _Out]:
    cols = mapping.columns

    def get(table: str, row: dict[str, str], target: str) -> str:
        column = cols[table].get(target)
        return row.get(column.lower(), "") if column else ""

    def when(table: str, file: str, line: int, row: dict[str, str], target: str, fmt: str | None):
        text = get(table, row, target)
        if not text:
            problems.append(Problem(file, table, line, cols[table][target], None, "required value empty"))
            return None
        try:
            return parse_when(text, fmt)
        except ValueError as exc:
            problems.append(Problem(file, table, line, cols[table][target], None, f"this date could not be read: {exc}"))
            return None

    def carried(table: str, file: str, line: int, row: dict[str, str], target: str) -> str:
        value = get(table, row, target)
        table_codes = mapping.codes.get(target)
        if value and table_codes is not None:
            code = table_codes.get(value.casefold())
            if code is None:
                problems.append(guard.problem(file, table, line, cols[table][target], target, value,
                                              f"not in the mapping's [codes.{target}] list; add it there"))
                return ""
            return code
        if target in FREE_TEXT_CARRIED and spec.SITE_PATTERN.match(value) and guard.identifies(value):
            # the importer accepts any such token here, a patient's last name included (other values it
            # refuses itself, with a message of its own)
            problems.append(guard.problem(
                file, table, line, cols[table][target], target, value,
                f"this {target} is also a name, record number or other identifying value of the records; give "
                f"the {target}s as codes in the mapping's [codes.{target}] list"))
            return ""
        return value

    # Every row is written, so that the importer checks the values it carries in this same run; where a
    # row could not be converted (its problem is reported here), the values computed from it (ids, day,
    # hours, quarter, age band) are left empty, and the importer's complaints about them are dropped
    # (`_to_source`): one run names every problem.
    out = {t: _Out(list(COLUMNS[t])) for t in EXPORT_TABLES}

    def emit(table: str, file: str, line: int, row: dict[str, str], values: dict[str, str]) -> None:
        for target in CARRIED[table]:
            values[target] = carried(table, file, line, row, target)
        out[table].rows.append([values.get(c, "") for c in COLUMNS[table]])
        out[table].origin.append((file, line))

    # patients: record number -> (line, birth date, row); rows that are no patient of their own
    pat_src = sources["patients"]
    patients: dict[str, tuple[int, date | None, dict[str, str]]] = {}
    other_patient_rows: list[tuple[int, dict[str, str]]] = []
    for line, row in pat_src.rows:
        rec = get("patients", row, "record_number")
        if not rec:
            problems.append(Problem(pat_src.file, "patients", line, cols["patients"]["record_number"], None,
                                    "required value empty"))
            other_patient_rows.append((line, row))
            continue
        born = when("patients", pat_src.file, line, row, "birth_date", mapping.date_format)
        birth = born[0] if born else None
        if rec in patients:
            first_line, first_birth, _r = patients[rec]
            what = ("maps to two birth dates" if birth and first_birth and birth != first_birth
                    else "appears twice")
            problems.append(Problem(pat_src.file, "patients", line, cols["patients"]["record_number"], None,
                                    f"this record number {what} (lines {first_line} and {line}); keep one row "
                                    "per patient"))
            other_patient_rows.append((line, row))
            continue
        patients[rec] = (line, birth, row)

    # sessions: dates per patient, first session date (day 0); every row, converted or not
    ses_src = sources["sessions"]
    sessions: list[tuple[int, str, str, date, dtime | None, dict[str, str]]] = []  # converted
    session_rows: list[tuple[int, str, str, date | None, dict[str, str]]] = []  # all: (line, enc, rec, date, row)
    seen_enc: dict[str, int] = {}
    mentioned: set[str] = set()  # record numbers that sessions or questionnaires name
    for line, row in ses_src.rows:
        enc = get("sessions", row, "encounter_number")
        rec = get("sessions", row, "record_number")
        mentioned.add(rec)
        ok = True
        for target, value in (("encounter_number", enc), ("record_number", rec)):
            if not value:
                problems.append(Problem(ses_src.file, "sessions", line, cols["sessions"][target], None,
                                        "required value empty"))
                ok = False
        if rec and rec not in patients:
            problems.append(Problem(ses_src.file, "sessions", line, cols["sessions"]["record_number"], None,
                                    f"this record number is not in {pat_src.file}"))
            ok = False
        if enc and enc in seen_enc:
            problems.append(Problem(ses_src.file, "sessions", line, cols["sessions"]["encounter_number"], None,
                                    f"this encounter number appears twice (lines {seen_enc[enc]} and {line})"))
            ok = False
            enc = ""  # written without a session id; events refer to the first row of this number
        elif enc:
            seen_enc[enc] = line
        started = when("sessions", ses_src.file, line, row, "started_at", mapping.datetime_format)
        if ok and started:
            sessions.append((line, enc, rec, started[0], started[1], row))
        session_rows.append((line, enc, rec if rec in patients else "", started[0] if started else None, row))

    q_src = sources["assessments"]
    questionnaires: list[tuple[int, str, date, dtime | None, dict[str, str]]] = []  # dated, known patient
    q_rows: list[tuple[int, str, tuple[date, dtime | None] | None, dict[str, str]]] = []  # all
    for line, row in q_src.rows:
        rec = get("assessments", row, "record_number")
        mentioned.add(rec)
        taken = None
        if not rec:
            problems.append(Problem(q_src.file, "assessments", line, cols["assessments"]["record_number"], None,
                                    "required value empty"))
        elif rec not in patients:
            problems.append(Problem(q_src.file, "assessments", line, cols["assessments"]["record_number"], None,
                                    f"this record number is not in {pat_src.file}"))
            rec = ""
        else:
            taken = when("assessments", q_src.file, line, row, "taken_at", mapping.datetime_format)
            if taken:
                questionnaires.append((line, rec, taken[0], taken[1], row))
        q_rows.append((line, rec, taken, row))

    day0: dict[str, date] = {}
    for _l, _e, rec, d, _t, _r in sessions:
        if rec not in day0 or d < day0[rec]:
            day0[rec] = d
    dosed = set(day0)
    for _l, rec, d, _t, _r in questionnaires:
        if rec not in dosed and (rec not in day0 or d < day0[rec]):
            day0[rec] = d
    by_day: dict[tuple[str, date], list[datetime | None]] = {}
    for _l, _e, rec, d, t, _r in sessions:
        by_day.setdefault((rec, d), []).append(datetime.combine(d, t) if t else None)

    pid = {rec: pseudonym(key, "p", rec) for rec in patients}
    if len(set(pid.values())) != len(pid):
        problems.append(Problem(pat_src.file, "patients", None, None, None,
                                "two record numbers gave the same pseudonym; run again with a new key"))
    for rec, (line, birth, row) in patients.items():
        values = {"patient_id": pid[rec]}
        if rec not in day0:
            problems.append(Problem(pat_src.file, "patients", line, cols["patients"]["record_number"], None,
                                    "this patient's sessions and questionnaires have no date that could be read, "
                                    "so day 0 cannot be set" if rec in mentioned else
                                    "this patient has no session and no questionnaire, so day 0 cannot be set"))
            emit("patients", pat_src.file, line, row, values)
            continue
        band = None
        if birth is not None:
            band = age_band(birth, day0[rec])
            if band is None:
                problems.append(Problem(pat_src.file, "patients", line, cols["patients"]["birth_date"], None,
                                        "under 18 (or born after) at the first session: no age band of the "
                                        "export fits"))
        values |= {"start_quarter": quarter(day0[rec], year_only=year_only), "age_band": band or ""}
        emit("patients", pat_src.file, line, row, values)
    for line, row in other_patient_rows:
        emit("patients", pat_src.file, line, row, {})

    sid: dict[str, str] = {enc: pseudonym(key, "s", enc) for enc in seen_enc}
    for line, enc, rec, d, row in session_rows:
        values = {"session_id": sid.get(enc, ""), "patient_id": pid.get(rec, "")}
        if d is not None and rec in day0:
            values["day"] = str((d - day0[rec]).days)
        emit("sessions", ses_src.file, line, row, values)
    if len(set(sid.values())) != len(sid):
        problems.append(Problem(ses_src.file, "sessions", None, None, None,
                                "two encounter numbers gave the same pseudonym; run again with a new key"))

    post = 0
    for line, rec, taken, row in q_rows:
        values = {"patient_id": pid.get(rec, "")}
        if taken is not None:
            d, t = taken
            values["day"] = str((d - day0[rec]).days)
            starts = by_day.get((rec, d))
            if starts and (t is None or any(s is None for s in starts)):
                problems.append(Problem(q_src.file, "assessments", line, cols["assessments"]["taken_at"], None,
                                        "taken on a session's date, but without a time of day (on the "
                                        "questionnaire or the session), so it cannot be placed before or "
                                        "after the dose; give both times"))
            elif starts:
                at = datetime.combine(d, t)
                before = [s for s in starts if s < at]
                if before:
                    h = (at - max(before)).total_seconds() / 3600
                    # hundredths of an hour; a questionnaire seconds after the dose is still after it (> 0)
                    values["hours_post_dose"] = f"{max(round(h, 2), 0.01):g}"
                    post += 1
        emit("assessments", q_src.file, line, row, values)

    ae_src = sources.get("adverse_events")
    if ae_src is not None:
        for line, row in ae_src.rows:
            enc = get("adverse_events", row, "encounter_number")
            if enc not in sid:
                problems.append(Problem(ae_src.file, "adverse_events", line,
                                        cols["adverse_events"]["encounter_number"], None,
                                        "required value empty" if not enc else
                                        f"this encounter number is not in {ses_src.file}"))
            emit("adverse_events", ae_src.file, line, row, {"session_id": sid.get(enc, "")})

    for table in EXPORT_TABLES:
        if table in cols:
            c = cols[table]
            if "record_number" in c:
                report.transformed.append(f"{table}: {c['record_number']} → patient_id (keyed pseudonym)")
            if "encounter_number" in c:
                report.transformed.append(f"{table}: {c['encounter_number']} → session_id (keyed pseudonym)")
    report.transformed += [
        f"sessions: {cols['sessions']['started_at']} → day (days since the patient's first session)",
        f"assessments: {cols['assessments']['taken_at']} → day and hours_post_dose ({post:,} taken after a dose)",
        "patients: first session date → start_quarter" + (" (year only, written as YYYY-Q1)" if year_only else ""),
        f"patients: {cols['patients']['birth_date']} → age_band on day 0",
    ]
    report.transformed += [f"{col}: through the mapping's [codes.{col}] list" for col in mapping.codes]
    # optional columns no mapping fills are left out, not written empty: an export that has a column says the
    # clinic recorded it (the esketamine-monitoring measures then read as unmet instead of "not recorded")
    for table, o in out.items():
        unmapped = [i for i, c in enumerate(o.header)
                    if c in spec.REMS_SESSION_COLUMNS + spec.REMS_PATIENT_COLUMNS and not cols[table].get(c)]
        if unmapped:
            o.header = [c for i, c in enumerate(o.header) if i not in unmapped]
            o.rows = [[v for i, v in enumerate(r) if i not in unmapped] for r in o.rows]
    return out


# The order the export's rows are written in, per table: by pseudonym first, so that nothing of the records'
# own order (a list sorted by record number or by date) links a pseudonym back to its record by position.
# Every other column follows as a tie-break, so the order depends on the rows' contents only.
ROW_ORDER = {
    "patients": ("patient_id",),
    "sessions": ("patient_id", "day", "session_id"),
    "assessments": ("patient_id", "day", "hours_post_dose", "instrument", "score"),
    "adverse_events": ("session_id", "event", "severity", "intervention"),
}
_NUMERIC = {"day", "hours_post_dose", "score"}


def _order_rows(o: _Out, columns: tuple[str, ...]) -> None:
    """Sort a table's rows (and their source lines with them) by `columns`, then by every value: numbers
    in numeric order (an empty hours_post_dose, a pre-dose questionnaire, before any number)."""
    at = [o.header.index(c) for c in columns]

    def value(column: str, text: str) -> tuple:
        if column in _NUMERIC:
            try:
                return (1, float(text), "")
            except ValueError:
                return (0 if not text else 2, 0.0, text)
        return (0, 0.0, text)

    keys = [tuple(value(c, row[i]) for c, i in zip(columns, at)) + (tuple(row),) for row in o.rows]
    order = sorted(range(len(o.rows)), key=keys.__getitem__)
    o.rows = [o.rows[i] for i in order]
    o.origin = [o.origin[i] for i in order]


def _sorted(problems: list[Problem]) -> list[Problem]:
    order = {t: i for i, t in enumerate(EXPORT_TABLES)}
    return sorted(problems, key=lambda p: (order.get(p.table or "", -1), p.line or 0, p.column or ""))


def _check_out_dir(out_dir: Path, fingerprint: str) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise AnonymizeRefused([Problem(str(out_dir), None, None, None, None, "exists and is not a folder")])
    if out_dir.is_dir() and any(out_dir.iterdir()):
        report = out_dir / REPORT_FILE
        if not report.is_file():
            raise AnonymizeRefused([Problem(str(out_dir), None, None, None, None,
                                            "the output folder holds other files; give a new or empty folder")])
        previous = re.search(r"^Key fingerprint: (\S+)$", report.read_text(encoding="utf-8", errors="replace"), re.M)
        if previous and previous.group(1) != fingerprint:
            raise AnonymizeRefused([Problem(str(out_dir), None, None, None, None,
                                            "this output was written with another key, so the pseudonyms would "
                                            "not line up with it: give the key used before, or a new folder")])


def _write_checked(outs: dict[str, _Out], out_dir: Path, report: AnonymizeReport, mapping: Mapping,
                   say: Callable[[str], None], guard: _ValueGuard, converting: list[Problem]) -> None:
    """Write the output into a temporary folder, check it with the importer, and swap it in only when
    neither the conversion (`converting`: the rows that could not be converted) nor the importer found a
    problem; otherwise raise AnonymizeRefused with both lists merged, without repeats, by table and line.

    The importer checks the rows in the records' order, so that the rows it lists of a rule with many are
    the first in the records; the files swapped in are then written in ROW_ORDER."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.anonymizing-", dir=out_dir.parent))
    try:
        export = work / "export"
        export.mkdir()
        for table, o in outs.items():
            if table == "adverse_events" and "adverse_events" not in mapping.tables:
                continue
            order = sorted(range(len(o.rows)), key=lambda i: o.origin[i][1])  # the records' order
            o.rows, o.origin = [o.rows[i] for i in order], [o.origin[i] for i in order]
            with (export / f"{table}.csv").open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(o.header)
                w.writerows(o.rows)
            report.written[table] = len(o.rows)
        try:
            import_export(export, work / "check.duckdb")
            checked: list[Problem] = []
            more: dict[Problem, int] = {}
        except ImportRefused as exc:
            checked, more = _to_source(exc.problems, outs, mapping, guard, converting, exc.more)
        if converting or checked:
            raise AnonymizeRefused(_sorted(list(dict.fromkeys([*converting, *checked]))), report, more=more)
        for table, o in outs.items():
            if (export / f"{table}.csv").exists():
                _order_rows(o, ROW_ORDER[table])
                with (export / f"{table}.csv").open("w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(o.header)
                    w.writerows(o.rows)
        (export / REPORT_FILE).write_text(report.describe() + "\n", encoding="utf-8")
        folders.swap_in(export, out_dir)  # an earlier output stays until this one is in place
        say(f"Wrote {out_dir}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _to_source(problems: Iterable[Problem], outs: dict[str, _Out], mapping: Mapping, guard: _ValueGuard,
               converting: Iterable[Problem] = (), more: dict[tuple, int] | None = None,
               ) -> tuple[list[Problem], dict[Problem, int]]:
    """The importer's problems, named by the source file, line and column they came from; a value is
    quoted only when `guard` allows it (a derived column's value, computed here, is never quoted).

    A problem that follows from one the conversion already reported (`converting`) is left out: one in the
    same source cell (a code not in the mapping's list, written empty), or one in a derived column (an id,
    day, hours, quarter or age band left empty) of a row the conversion reported. `more` (the importer's
    count of rows it did not list, per rule) is returned keyed by the last kept problem of its rule; a rule
    none of whose listed rows was kept only followed from the conversion's problems and is left out too."""
    cells = {(p.file, p.line, p.column) for p in converting if p.line is not None}
    rows = {(p.file, p.line) for p in converting if p.line is not None}
    result = []
    last: dict[tuple, Problem] = {}  # the importer's rule -> its last problem kept
    for p in problems:
        named = _source_problem(p, outs, mapping, guard, cells, rows)
        if named is not None:
            result.append(named)
            last[p.rule()] = named
    counted: dict[Problem, int] = {}
    for rule, n in (more or {}).items():
        if rule in last:
            counted[last[rule]] = counted.get(last[rule], 0) + n
    return result, counted


def _source_problem(p: Problem, outs: dict[str, _Out], mapping: Mapping, guard: _ValueGuard,
                    cells: set[tuple], rows: set[tuple]) -> Problem | None:
    """The importer's problem p named by the records' file, line and column, or None when it only follows
    from a problem the conversion reported (see `_to_source`)."""
    o = outs.get(p.table or "")
    if o is None or p.line is None or not (0 <= p.line - 2 < len(o.origin)):
        return Problem(None, p.table, None, p.column, None, p.message)
    file, line = o.origin[p.line - 2]
    column = mapping.columns.get(p.table, {}).get(p.column or "", p.column)
    if (file, line, column) in cells or ((p.column or "") in DERIVED and (file, line) in rows):
        return None
    if (p.column or "") in DERIVED:
        return Problem(file, p.table, line, column, None, p.message)
    message = p.message
    if message.startswith("not one of:") and p.column and p.column not in mapping.codes:
        # the records may name the codes in words ("Infusion"): the mapping translates them
        message += (f"; if your records write these values in other words, translate each one in the "
                    f"mapping's [codes.{p.column}] list")
    return guard.problem(file, p.table, line, column, p.column, p.value, message)
