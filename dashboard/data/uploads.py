"""Check files uploaded through the dashboard's Import page, without Streamlit (the page only draws).

`check_upload(files, kind=…)` unpacks the uploaded files (CSV, Parquet, a mapping TOML, or zips of them)
into a fresh working folder, then either anonymizes identified records (`anonymize.anonymize`, which
itself checks its result with the importer) or dry-runs the importer on a ready export, into a throw-away
database. Its `UploadCheck` holds every problem (file, line, column, value, what is wrong) and, when there
are none, the checked export folder that `import_checked` imports for real, the same way
`ketamine-outcomes import` does (a new database file swapped in, so a running dashboard switches to it).
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import pandas as pd

from dashboard.data import anonymize as an, dialects, spec
from dashboard.data.ingest import COLUMNS, ImportRefused, ImportSummary, Problem, import_export

KINDS = ("records", "export")
ACCEPTED = (".csv", ".parquet", ".toml", ".xlsx")
MAX_UNPACKED_BYTES = 4 << 30  # a zip that unpacks to more than 4 GB is refused (a zip bomb, or not an export)
PROBLEM_COLUMNS = ["file", "table", "line", "column", "value", "problem"]


@dataclass
class UploadCheck:
    """The result of checking an upload: problems (empty when it can be imported) and what was found."""

    kind: str
    work_dir: Path
    export_dir: Path | None
    problems: list[Problem] = field(default_factory=list)
    report: str = ""
    files: list[str] = field(default_factory=list)
    key_created: Path | None = None

    @property
    def clean(self) -> bool:
        return not self.problems and self.export_dir is not None

    def discard(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def unpack(files: Iterable[tuple[str, bytes]], folder: Path) -> tuple[list[str], list[Problem]]:
    """Write uploaded files (zips unpacked, folders inside them flattened) into folder.

    Returns (file names written, problems). File names are reduced to their last part, so nothing can be
    written outside folder; files of other types (and macOS `__MACOSX` entries) are named as problems.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, where it came from)
    problems: list[Problem] = []

    def put(name: str, data: bytes, origin: str) -> None:
        base = PurePosixPath(name.replace("\\", "/")).name.strip()
        if not base or base.startswith(".") or "__MACOSX" in name:
            return
        if not base.lower().endswith(ACCEPTED):
            problems.append(Problem(origin, None, None, None, None,
                                    "not a CSV, Parquet, Excel (.xlsx) or mapping (.toml) file; it was left out"))
            return
        if base.lower() in written:
            problems.append(Problem(origin, None, None, None, None,
                                    f"a second file named {base} (the first came from {written[base.lower()][1]}); "
                                    "upload one of them"))
            return
        written[base.lower()] = (base, origin)
        (folder / base).write_bytes(data)

    for name, data in files:
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    members = [m for m in z.infolist() if not m.is_dir()]
                    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                        problems.append(Problem(name, None, None, None, None,
                                                "unpacks to more than 4 GB; upload the tables themselves"))
                        continue
                    for m in members:
                        put(m.filename, z.read(m), f"{name}: {m.filename}")
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                problems.append(Problem(name, None, None, None, None, f"not a readable zip file ({exc})"))
        else:
            put(name, data, name)
    return sorted(name for name, _origin in written.values()), problems


def check_upload(
    files: Iterable[tuple[str, bytes]],
    *,
    kind: str,
    key_path: Path | None = None,
    year_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> UploadCheck:
    """Unpack and check an upload. kind "records": identified records anonymized with the uploaded
    mapping (.toml) or the generic one, pseudonyms keyed by key_path (created owner-only if absent);
    kind "export": a ready anonymized export. Never raises for bad input: problems are in the result."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    say = progress or (lambda _m: None)
    work = Path(tempfile.mkdtemp(prefix="ketamine-outcomes-upload-"))
    source = work / "upload"
    names, problems = unpack(files, source)
    result = UploadCheck(kind, work, None, problems, files=names)
    say(f"Received {spec.counted(len(names), 'file')}: {', '.join(names) or 'none'}")
    if problems:
        return result
    if kind == "export":
        tomls = [n for n in names if n.lower().endswith(".toml")]
        if tomls:
            (source / tomls[0]).unlink()
        try:
            summary = import_export(source, work / "check.duckdb", progress=say)
        except ImportRefused as exc:
            result.problems = exc.problems + _more(exc)
            return result
        result.export_dir = source
        result.report = summary.describe().split(" into ")[0] + " (checked; not imported yet)."
        return result

    tomls = [n for n in names if n.lower().endswith(".toml")]
    if len(tomls) > 1:
        result.problems = [Problem(", ".join(tomls), None, None, None, None,
                                   "more than one mapping file; upload one")]
        return result
    try:
        mapping = an.load_mapping(source / tomls[0] if tomls else "generic")
    except an.MappingError as exc:
        result.problems = [Problem(tomls[0] if tomls else "generic", None, None, None, None, p) for p in exc.problems]
        return result
    say(f"Mapping: {tomls[0] if tomls else 'the generic layout'}")
    if looks_like_export(source):
        # the records' checks would only say that the mapping's columns (record numbers, dates) are missing
        result.problems = [Problem(None, None, None, None, None, READY_EXPORT_HINT)]
        return result
    if key_path is None:
        result.problems = [Problem(None, None, None, None, None, "no key file is configured for pseudonyms")]
        return result
    try:
        with an.key_for_run(key_path) as (key, created):  # a refused check keeps no new key
            if tomls:
                (source / tomls[0]).unlink()
            report = an.anonymize(source, mapping, key, work / "export", year_only=year_only, progress=say)
    except an.KeyFileError as exc:
        result.problems = [Problem(str(key_path), None, None, None, None, str(exc))]
        return result
    except an.AnonymizeRefused as exc:
        result.problems = exc.listed()  # with "… and N more rows with the same problem" after a rule's last row
        return result
    if created:
        result.key_created = key_path
        say(f"Created the key file {key_path} (readable by its owner only)")
    result.export_dir = work / "export"
    result.report = report.describe()
    return result


READY_EXPORT_HINT = ("These files look like a ready, anonymized export (a patients table with a patient_id column), "
                     "not clinic records: choose “A ready, anonymized export” under “What are you uploading?” and "
                     "check again.")


def looks_like_export(folder: Path) -> bool:
    """True when `folder` holds a patients table (CSV or Parquet) whose header has the export format's
    `patient_id` column: a ready export uploaded as clinic records."""
    for path in folder.iterdir():
        if path.stem.lower() != "patients":
            continue
        try:
            if path.suffix.lower() == ".csv":
                # the header as the importer reads it: comma, semicolon or tab, any byte-order mark
                header = dialects.sniff_csv(path, COLUMNS["patients"]).header
            elif path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                header = pq.read_schema(path).names
            else:
                continue
        except Exception:  # noqa: BLE001 - an unreadable file is the records' checks' to name
            continue
        if "patient_id" in (h.strip().lower() for h in header):
            return True
    return False


def _more(exc: ImportRefused) -> list[Problem]:
    """The importer's count of further rows with the same problem, as rows of the problems table."""
    return [Problem(rule[0], rule[1], None, rule[2], None, f"… and {spec.counted(n, 'more row')} with the same problem")
            for rule, n in exc.more.items()]


def import_checked(check: UploadCheck, db_path: Path, *, source_label: str,
                   progress: Callable[[str], None] | None = None) -> ImportSummary:
    """Import a clean upload into db_path exactly as `ketamine-outcomes import` does; raises ImportRefused."""
    if not check.clean:
        raise ValueError("only an upload checked without problems can be imported")
    return import_export(check.export_dir, db_path, progress=progress, source_label=source_label)


def problems_frame(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem: file, table, line, column, value, problem (the Import page's table)."""
    rows = [[p.file or "", p.table or "", p.line, p.column or "", p.value if p.value is not None else "", p.message]
            for p in problems]
    df = pd.DataFrame(rows, columns=PROBLEM_COLUMNS)
    df["line"] = df["line"].astype("Int64")
    return df


def problems_csv_bytes(problems: list[Problem]) -> bytes:
    """The problems table as CSV (UTF-8, header row), as the page's download offers it."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(PROBLEM_COLUMNS)
    for p in problems:
        w.writerow([p.file or "", p.table or "", "" if p.line is None else p.line, p.column or "",
                    "" if p.value is None else p.value, p.message])
    return out.getvalue().encode("utf-8")


def zip_folder_bytes(folder: Path) -> bytes:
    """A folder's files as a zip (tests and the README's walk-through upload the example records so)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in ACCEPTED:
                z.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()
