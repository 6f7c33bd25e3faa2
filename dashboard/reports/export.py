"""The CSV summaries of docs/metrics.md: computed once, protected, formatted by one function.

`compute_summaries` runs the metrics for a `Settings` and applies disclosure control to each table;
`summary_csv_bytes` is the only CSV formatter; `provenance` describes what the files were made from.
The command line (`ketamine-outcomes export`) and the dashboard's downloads both come through here, so the
same settings give the same bytes (no clock time, no random order, numbers in a fixed format).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import hashlib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

import duckdb
import numpy as np
import pandas as pd

from dashboard import __version__
from dashboard.analysis import adjusted, benchmark, metrics, rems

from dashboard.data import folders, spec, store
from dashboard.analysis.disclosure import protect
from dashboard.analysis.settings import FILTER_NAMES, Settings, quoted

LOG = logging.getLogger("ketamine_outcomes.export")

SUMMARY_FILES = (
    "cohort.csv", "response_by_route.csv", "time_to_relief.csv", "time_to_relief_curve.csv",
    "side_effects.csv", "maintenance.csv",
    "rems.csv",
    "adjusted_response.csv", "benchmark.csv",  # issue 15 (fair comparisons)
    "headline.csv", "trend.csv",
)
PROVENANCE_FILE = "provenance.json"
SIGNIFICANT_DIGITS = 10  # non-integer numbers: enough for any rate or day, stable against last-bit noise
ZIP_NAME = "ketamine-outcomes-summaries.zip"
FILE_NAME_MAX = 120  # characters of the cohort part of a download's name before it is shortened


# file -> (disclosure rule name, how the raw table is computed)
_SUMMARY_SOURCES = {
    "cohort.csv": ("cohort", lambda con, s: metrics.funnel_from_counts(metrics.outcome_counts(con, s))),
    "response_by_route.csv": (
        "response_by_route", lambda con, s: metrics.response_from_counts(s, metrics.outcome_counts(con, s))),
    "time_to_relief.csv": ("time_to_relief", lambda con, s: metrics.time_to_relief(con, s, logrank=False).summary),
    "time_to_relief_curve.csv": (
        "time_to_relief_curve", lambda con, s: metrics.time_to_relief(con, s, logrank=False).curve),
    "side_effects.csv": ("side_effects", metrics.side_effects),
    "maintenance.csv": ("maintenance", metrics.maintenance),
    "rems.csv": ("rems", rems.rems),
    "trend.csv": ("trend", metrics.trend),
}
# file -> its disclosure rule (the name `disclosure.protect` takes)
SUMMARY_RULES = {file: rule for file, (rule, _) in _SUMMARY_SOURCES.items()}
# files whose function applies the minimum-cell rule itself (their protection builds on another table's)
_PROTECTED_SOURCES = {
    "adjusted_response.csv": adjusted.protected_adjusted_response,
}


def compute_summary(con: duckdb.DuckDBPyConnection, s: Settings, file: str, *,
                    named_sites: frozenset[str] | None = None) -> pd.DataFrame:
    """One summary table (a name in SUMMARY_FILES) for these settings, disclosure control applied.

    The dashboard loads only the files a page shows; the export takes all of them through here, so both
    give the same table (metrics' query memo shares the queries two files have in common).

    benchmark.csv names only the sites in `named_sites` (None: every site; docs/access.md): a caller that
    knows the viewer's scope passes it, so no other site's name or numbers reach the file."""
    if file == "headline.csv":
        return compute_headline(con, s)
    if file == "benchmark.csv":
        return benchmark.network_benchmark(con, s, named_sites=named_sites)
    if file in _PROTECTED_SOURCES:
        return _PROTECTED_SOURCES[file](con, s)
    name, compute = _SUMMARY_SOURCES[file]
    # maintenance.csv's query counts response_by_route.csv's patients too, which its protection needs
    source_raw = (lambda: metrics.maintenance_response(con, s)) if file == "maintenance.csv" else None
    return metrics.protected(con, s, file, lambda: protect_table(con, s, name, compute(con, s),
                                                                 source_raw=source_raw))


# rule -> (count column, the file whose table shows the same count for the same patients per route):
# maintenance.csv's responders are response_by_route.csv's, which may hide a route's 0 responders beside
# fewer than k evaluable patients (a share of a small group) or as another hidden count's cover
_SHARED_COUNTS = {"maintenance": ("responders", "response_by_route.csv")}


def protect_table(con: duckdb.DuckDBPyConnection, s: Settings, rule: str, raw: pd.DataFrame, *,
                  source_raw: Callable[[], pd.DataFrame] | None = None) -> pd.DataFrame:
    """`disclosure.protect(rule, raw, s.min_cell)`, with the counts `raw` shares with another file hidden
    wherever that file hides them (_SHARED_COUNTS), so no file shows a cell another hides: every caller
    that protects such a table (the export, the pages, the PDF report) goes through here.

    The other file's hidden cells are read from its protected summary for `s` (shared through metrics'
    memo), or, with `source_raw`, from its raw table computed from a query the caller reads anyway (the same
    rows and counts: the Maintenance page's `metrics.maintenance_response`): suppression decides on exact
    counts, so the same cells are hidden either way."""
    shared = _SHARED_COUNTS.get(rule)
    if shared is None or s.min_cell <= 0 or raw.empty:
        return protect(rule, raw, s.min_cell)
    column, source = shared
    if source_raw is None:
        other = compute_summary(con, s, source)
    else:
        other = protect(SUMMARY_RULES[source], source_raw(), s.min_cell)
    hidden_routes = set(other.loc[other[column].isna(), "route"].astype(str))
    mask = raw["route"].astype(str).isin(hidden_routes).to_numpy()
    return protect(rule, raw, s.min_cell, hidden_elsewhere={column: mask})


def command_line_flags(s: Settings) -> list[str]:
    """The `ketamine-outcomes export` flags that write these files: the settings' own (`to_args`, defaults
    left out) and the scope, which is not part of a link but changes the numbers."""
    return s.to_args() + [flag for site in (s.scope or ()) for flag in ("--scope", site)]


def raw_summary(con: duckdb.DuckDBPyConnection, s: Settings, file: str) -> pd.DataFrame:
    """One summary table before disclosure control (the PDF report compares it with the protected one to
    tell a hidden cell from an undefined one; never shown or written as it is)."""
    return _SUMMARY_SOURCES[file][1](con, s)


# The headline's five sources are independent: computed three at a time, one's query runs in DuckDB while
# another's pandas work holds the interpreter. Measured on two cores, new filter states, one to five at a
# time interleaved: 131 / 126 / 108 / 118 ms median at 100,000 patients, 272 / 251 / 249 / 254 ms at
# 1,000,000. A source two of them share (the outcome counts) is computed once, the other waiting for it
# (metrics' memo).
HEADLINE_WORKERS = 3


def compute_headline(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """headline.csv (metrics.md "Headline by route"), disclosure applied: each number is taken from its own
    page's protected table (response_by_route.csv, time_to_relief.csv, the side-effects rule over
    `any_side_effect`, maintenance.csv and the Response page's protected pairwise comparison), so it equals
    what that page and file show and hides exactly what they hide. See `metrics.headline_from`.

    The maintenance columns come from `metrics.maintenance_intensity` under maintenance.csv's rule: the same
    values and hidden cells as maintenance.csv, without the timing medians the headline does not show.
    The sources are computed HEADLINE_WORKERS at a time; an error in one is raised here."""
    sources = (  # the slowest first (the outcome counts' query, the sustained-response times)
        lambda: compute_summary(con, s, "response_by_route.csv"),
        lambda: protect_table(con, s, "maintenance", metrics.maintenance_intensity(con, s)),
        lambda: compute_summary(con, s, "time_to_relief.csv"),
        lambda: protected_any_side_effect(con, s),
        lambda: protected_route_comparison(con, s)[1],
    )
    with ThreadPoolExecutor(max_workers=HEADLINE_WORKERS, thread_name_prefix="ko-headline") as pool:
        response, maintenance, relief, any_effect, pairwise = pool.map(lambda compute: compute(), sources)
    return metrics.headline_from(response, relief, any_effect, maintenance, pairwise)


def protected_any_side_effect(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Patients and sessions with any side effect per route and `ALL` (`metrics.any_side_effect`) under
    side_effects.csv's rule: the Overview's tile and its headline's column, computed once per connection and
    state (metrics' memo) for both."""
    return metrics.protected(con, s, "any_side_effect",
                             lambda: protect("side_effects", metrics.any_side_effect(con, s), s.min_cell))


def protected_route_comparison(con: duckdb.DuckDBPyConnection, s: Settings,
                               outcome: str = "response") -> tuple[metrics.RouteComparison, pd.DataFrame]:
    """The routes compared on `outcome` (`metrics.route_comparison`) and its pairwise table under the
    route_comparison rule: the Response page's comparison, the Overview headline's "compared with the best" and
    the PDF report's chart, protected once per connection, state and outcome (metrics' memo)."""
    comparison = metrics.route_comparison(con, s, outcome)
    return comparison, metrics.protected(
        con, s, f"route_comparison[{outcome}]",
        lambda: protect("route_comparison", comparison.pairwise, s.min_cell))


def compute_summaries(con: duckdb.DuckDBPyConnection, s: Settings, *,
                      named_sites: frozenset[str] | None = None) -> dict[str, pd.DataFrame]:
    """The summary tables for these settings, disclosure control applied (minimum cell s.min_cell);
    benchmark.csv names only `named_sites` (None: every site)."""
    return {file: compute_summary(con, s, file, named_sites=named_sites) for file in SUMMARY_FILES}


def format_value(v: Any) -> str:
    """One cell: empty for undefined, integers as integers, other numbers with 10 significant digits."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if math.isnan(x) or math.isinf(x):
            return ""
        if x == 0:
            return "0"  # no "-0"
        text = format(x, f".{SIGNIFICANT_DIGITS}g")
        if "e" in text:  # plain decimal notation, never 1e-05
            text = format(Decimal(text), "f")
        return text
    return str(v)


def summary_csv_bytes(df: pd.DataFrame) -> bytes:
    """The CSV of a summary table: header in the table's column order, `\\n` line endings, UTF-8."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([str(c) for c in df.columns])
    for row in df.itertuples(index=False, name=None):
        writer.writerow([format_value(v) for v in row])
    return buf.getvalue().encode("utf-8")


def _database_name(con: duckdb.DuckDBPyConnection) -> str:
    with con.cursor() as cur:
        row = cur.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
    return Path(row[0]).name if row and row[0] else "(in memory)"


def provenance(con: duckdb.DuckDBPyConnection, s: Settings) -> dict[str, Any]:
    """What the summaries were computed from: filters, settings, minimum cell, data set, program version.

    Deterministic for the same database and settings (the import time is the data set's, not now)."""
    filters: dict[str, Any] = {}
    for name in FILTER_NAMES:
        value = getattr(s, name)
        filters[name] = list(value) if isinstance(value, tuple) else value
    history = store.run_query(con, "import_provenance")
    data_set: dict[str, Any] = {"database": _database_name(con)}
    if len(history):
        h = history.iloc[0]
        data_set.update({
            "import_id": int(h["import_id"]),
            "imported_at": pd.Timestamp(h["imported_at"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": str(h["source"]),
            "source_format": str(h["source_format"]),
            "source_sha256": str(h["source_sha256"]),
            # the whole data set's row counts include every site: only for someone who may see them all
            **({"rows": {t: int(h[t]) for t in spec.TABLES}} if s.scope is None else {}),
            "imported_by_version": str(h["program_version"]),
        })
    return {
        "program": "ketamine-outcomes",
        "program_version": __version__,
        "filters": filters,
        "filters_description": s.describe_filters(),
        # the sites the person who asked may see (null: every site); the cohort is within them
        "scope": None if s.scope is None else list(s.scope),
        "settings": {
            "instrument": s.instrument,
            # under matched, each questionnaire's own default minimum applies to its patients
            "min_baseline": (dict(spec.DEFAULT_MIN_BASELINE) if s.matched else s.baseline_minimum),
            "population": s.population,
            "relief": s.relief,
            "window": s.window,
            "min_cell": s.min_cell,
            "rems_minutes": s.rems_minutes,
        },
        "min_cell": s.min_cell,
        "query_string": s.to_query_string(),
        "command_line_flags": command_line_flags(s),
        "data_set": data_set,
        "files": list(SUMMARY_FILES),
    }


def provenance_bytes(con: duckdb.DuckDBPyConnection, s: Settings) -> bytes:
    return (json.dumps(provenance(con, s), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def summary_files(con: duckdb.DuckDBPyConnection, s: Settings, *,
                  named_sites: frozenset[str] | None = None) -> dict[str, bytes]:
    """Every file of the export, name -> bytes: the CSVs then provenance.json."""
    files = {name: summary_csv_bytes(df) for name, df in compute_summaries(con, s, named_sites=named_sites).items()}
    files[PROVENANCE_FILE] = provenance_bytes(con, s)
    return files


def summaries_zip_bytes(con: duckdb.DuckDBPyConnection, s: Settings, *,
                        named_sites: frozenset[str] | None = None, when: datetime | None = None) -> bytes:
    """All files (the summary CSVs and provenance.json) in one zip; benchmark.csv names only `named_sites`
    (None: every site). Each entry's bytes are the command line's; the entries are dated `when` (default:
    now, local time, as any file one saves), so a reader's unzip tool shows when the summaries were made.
    The same `when` gives the same zip bytes."""
    stamp = (when or datetime.now()).timetuple()[:6]
    stamp = (max(stamp[0], 1980), *stamp[1:])  # the zip format cannot date anything before 1980
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in summary_files(con, s, named_sites=named_sites).items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def cohort_tag(s: Settings) -> str:
    """The filters and non-default settings in a short form for file names: `site-S2__route-IV-IN`
    (one `name-value-value` part per parameter, in the URL's order, `__` between parts); empty for the
    defaults. Only letters, digits, `-`, `+` and `_` (`age-band-75+`); a very long one is cut and ends in
    a short hash of the whole, so two different cohorts never share a name."""
    parts: dict[str, list[str]] = {}
    for key, value in s.to_query_params():
        parts.setdefault(key.replace("_", "-"), []).append(value)
    tag = "__".join("-".join([key, *values]) for key, values in parts.items())
    tag = re.sub(r"[^A-Za-z0-9+_-]", "-", tag)
    if len(tag) > FILE_NAME_MAX:
        digest = hashlib.sha256(tag.encode()).hexdigest()[:8]
        tag = f"{tag[:FILE_NAME_MAX - 10].rstrip('-_')}--{digest}"
    return tag


def download_name(file: str, s: Settings) -> str:
    """A summary's file name carrying the cohort: `response_by_route__site-S2__route-IV-IN.csv`; the plain
    name (`response_by_route.csv`) for the defaults. The bytes are the export's for the same settings."""
    tag = cohort_tag(s)
    if not tag:
        return file
    stem, dot, ext = file.rpartition(".")
    return f"{stem}__{tag}{dot}{ext}" if dot else f"{file}__{tag}"


# What queries/derive_*.sql build that the metric queries read: a table's newest column, or a macro.
DERIVED_COLUMNS = (
    ("patient_summary", "maintenance_gaps"),
    ("patient_summary", "pk"),
    ("patient_baseline", "ep_scores"),
    ("cohort_base", "week_scores"),
    ("session_facts", "severe_mask"),
    ("session_facts", "b_pcl5"),
    ("session_facts", "matched_severe_floor"),  # instrument=matched (derive_25's 'matched' rows)
    ("cohort_base", "scale_max"),
    ("patient_route_effects", "severe_e13"),
    ("export_columns", "column_name"),  # which optional columns the export had (rems.csv)
    ("sessions", "form_submitted_day"),
    ("cell_key_secret", "secret"),
    ("esketamine_clinic_sessions", "first_of_patient"),
)
DERIVED_MACROS = ("cohort", "cohort_outcomes", "cohort_sessions", "cohort_route_effects", "cohort_esketamine_sessions")


def require_derived_tables(con: duckdb.DuckDBPyConnection, db_path: str | os.PathLike[str]) -> None:
    """Raise StoreError when the database predates the derived tables the metrics read (re-import it)."""
    with con.cursor() as cur:
        columns = set(cur.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall())
        macros = {r[0] for r in cur.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro'").fetchall()}
    missing = [f"{t}.{c}" for t, c in DERIVED_COLUMNS if (t, c) not in columns]
    missing += [f"macro {m}" for m in DERIVED_MACROS if m not in macros]
    if missing:
        # the parts by name for whoever reads a debug log; the message says what it means and what to do
        LOG.info("%s lacks %s", db_path, ", ".join(missing))
        raise store.StoreError(
            f"{db_path} was built by an older version of Ketamine Outcomes: it lacks tables this version computes "
            f"when it imports. Import the clinic export again with this version (`ketamine-outcomes import "
            f"EXPORT_DIR --db {db_path}`); the clinic's files are not changed."
        )


class ExportError(store.StoreError):
    """The summaries could not be written (folder not writable, disk full, a folder that is not an export)."""


def check_known_values(con: duckdb.DuckDBPyConnection, s: Settings) -> None:
    """Raise ExportError naming every site of the scope or the site filter that is not a site of this
    database: an unknown site would give an empty cohort (an export of zeros, a report refused for "no
    patients") that reads as "no patients" rather than as a typo. Site codes are compared as written; a code
    that differs only in case is suggested."""
    every = metrics.filter_options(con, s.replace(scope=None))["site"]
    unknown_scope = [v for v in (s.scope or ()) if v not in every]
    if unknown_scope:
        by_case = {v.casefold(): v for v in every}
        hints = [f"{quoted(v)} is written {quoted(by_case[v.casefold()])} here" for v in unknown_scope
                 if v.casefold() in by_case]
        raise ExportError(_not_sites("--scope", unknown_scope, every, hints))
    sites = metrics.filter_options(con, s)["site"]  # the message names only sites within the person's scope
    unknown = [v for v in s.site if v not in every]  # a real site outside the scope: an empty cohort (access.md)
    if unknown:
        raise ExportError(_not_sites("--site", unknown, sites))


def _not_sites(flag: str, unknown: Sequence[str], sites: Sequence[str], hints: Sequence[str] = ()) -> str:
    """"--site: 'S9' is not a site in this database; its sites are S1, S2." (with `hints` in parentheses)."""
    return (f"{flag}: " + ", ".join(quoted(v) for v in unknown)
            + f" {'is not a site' if len(unknown) == 1 else 'are not sites'} in this database; its sites are "
            + ", ".join(sites) + (f" ({'; '.join(hints)})" if hints else "") + ".")


def is_previous_export(folder: Path) -> bool:
    """True when `folder` holds only what an export (or `sample`) writes: provenance.json naming
    ketamine-outcomes and the files it lists (so replacing it loses nothing else)."""
    try:
        meta = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("program") != "ketamine-outcomes":
        return False
    listed = set(meta.get("files") or ()) | {PROVENANCE_FILE}
    return names <= listed


def mark_as_output(folder: Path, **details: Any) -> None:
    """Write provenance.json into `folder` naming ketamine-outcomes, `details` and the files the folder holds,
    so `is_previous_export` knows it for a folder this program wrote (the sample export; the summaries write
    their own, fuller provenance.json)."""
    files = sorted(p.name for p in folder.iterdir() if p.name != PROVENANCE_FILE)
    meta = {"program": "ketamine-outcomes", "version": __version__, **details, "files": files}
    (folder / PROVENANCE_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def os_problem(exc: OSError, path: Path) -> str:
    """`path: reason` in plain words for an OSError met writing an output (permission denied, disk full…)."""
    import errno

    reasons = {
        errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EEXIST: "it already exists",
        errno.ENAMETOOLONG: "the name is too long", errno.EISDIR: "it is a folder",
    }
    if exc.errno == errno.EEXIST and path.exists() and not path.is_dir():  # a folder of the path is a file
        return f"{path}: it is a file, not a folder"
    return f"{path}: {reasons.get(exc.errno, exc.strerror or str(exc))}"


def check_output_folder(out: Path, *, replace: bool, kind: str = "export") -> None:
    """Raise ExportError unless `out` may become the output folder: new, empty, a previous output of this
    program (`is_previous_export`), or anything when `replace` is true; a file at `out` is always refused.
    `kind` names the output in the messages ("export", "sample export"). Writes nothing."""
    try:
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out} is a file, not a folder: choose a folder name for the {kind}.")
        if out.is_dir() and any(out.iterdir()) and not replace and not is_previous_export(out):
            raise ExportError(
                f"{out} already holds other files (it is not a previous {kind}). Choose a new or empty folder, "
                "or add --replace to replace that folder and everything in it."
            )
    except PermissionError as exc:
        raise ExportError(f"cannot write the {kind}: {os_problem(exc, out)}. Choose a folder you can write to.") from None


def write_folder(out: Path, fill: Callable[[Path], None], *, kind: str = "export", again: str = "export again") -> None:
    """Make the folder `out` with `fill(folder)`, all or nothing; raises ExportError when it cannot be written.

    `fill` writes into a new folder beside `out`, which is swapped in only when it returns, so a failure
    (full disk, interrupted run, an error in `fill`) leaves `out` as it was and no temporary files behind.
    Call `check_output_folder` first: an existing `out` is replaced whole. `kind` and `again` word the
    message ("cannot write the export ... then export again")."""
    import shutil
    import tempfile

    parent = out.parent if str(out.parent) else Path(".")
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
        fill(tmp)
        os.chmod(tmp, 0o755)
        folders.swap_in(tmp, out)
        tmp = None
    except OSError as exc:
        where = Path(exc.filename) if getattr(exc, "filename", None) else out
        raise ExportError(
            f"cannot write the {kind}: {os_problem(exc, where)}. {out} was left as it was; free space or choose "
            f"a folder you can write to, then {again}."
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def read_database(db_path: str | os.PathLike[str], compute: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
    """`compute(con)` on the database file opened read-only, once it is known to hold every table this version
    derives (`require_derived_tables`); the connection is closed afterwards. Raises store.StoreError: the file
    missing, from an older version, or damaged (a file damaged past its first blocks fails only when read)."""
    con = store.open_database(db_path, read_only=True)
    try:
        require_derived_tables(con, db_path)
        return compute(con)
    except duckdb.Error as exc:
        raise store.read_error(exc, db_path) from None
    finally:
        con.close()


def write_summaries(db_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], s: Settings, *,
                    replace: bool = False) -> list[Path]:
    """Write the summary CSVs and provenance.json as the folder out_dir, all or nothing; raises store.StoreError
    (ExportError for the output side).

    The files are written into a new folder beside out_dir and swapped in only when all are written
    (`write_folder`), so a failure (full disk, interrupted run) leaves out_dir as it was and no temporary
    files behind. An existing out_dir is replaced only when it is empty or a previous export
    (`is_previous_export`), or `replace` is true; a file at out_dir is refused (`check_output_folder`)."""
    def compute(con: duckdb.DuckDBPyConnection) -> dict[str, bytes]:
        check_known_values(con, s)
        return summary_files(con, s)

    files = read_database(db_path, compute)
    out = Path(out_dir)
    check_output_folder(out, replace=replace)

    def fill(folder: Path) -> None:
        for name, data in files.items():
            with open(folder / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

    write_folder(out, fill)
    return [out / name for name in files]
