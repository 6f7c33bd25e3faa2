"""The audit log: who viewed, downloaded, reported or imported what, and when (docs/access.md).

- One file beside the database, `NAME.audit.jsonl` for `NAME.duckdb` (or $KETAMINE_OUTCOMES_AUDIT): an
  import replaces the database file, never this one, so the log survives imports.
- Append-only: entries are only ever appended (O_APPEND, one JSON object per line, under an exclusive
  `flock` so concurrent sessions and the command line never interleave, then fsync). Nothing here
  rewrites or truncates the file.
- Each entry: time (UTC), subject, e-mail, role, effective sites, page, action, files, the filter state as
  the URL query, and the data set's import id. Never patient-level data.
- `record` raises `AuditError` when the entry cannot be written; callers stop the action (nothing is shown
  or downloaded unrecorded).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

AUDIT_ENV = "KETAMINE_OUTCOMES_AUDIT"
ACTIONS = ("view", "download", "report", "import", "export")
COLUMNS = ("time", "subject", "email", "role", "sites", "page", "action", "files", "query", "import_id", "source")
ALL_SITES = "*"  # the `sites` value of someone who sees every site

try:  # POSIX: serialise appends between processes; elsewhere O_APPEND alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class AuditError(RuntimeError):
    """The audit log could not be written or read; the message says where and what to do."""


def audit_path(db_path: str | os.PathLike[str]) -> Path:
    """The audit log of a database: $KETAMINE_OUTCOMES_AUDIT, else `NAME.audit.jsonl` beside `NAME.duckdb`."""
    override = os.environ.get(AUDIT_ENV, "").strip()
    if override:
        return Path(override)
    db = Path(db_path)
    return db.with_name(db.stem + ".audit.jsonl")


def _sites_text(sites: Sequence[str] | None) -> str:
    return ALL_SITES if sites is None else " ".join(sites)


_PERSONS_SITES: Any = object()


def make_entry(*, person: Any, action: str, page: str = "", query: str = "", files: Iterable[str] = (),
               import_id: int | None = None, sites: Sequence[str] | None = _PERSONS_SITES,
               now: datetime | None = None) -> dict[str, Any]:
    """One log entry. `person` is an access.Person (subject, email, role, named_sites, source); `sites`
    the effective sites when they differ from the person's (a command-line export with --scope)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; expected one of {', '.join(ACTIONS)}")
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "subject": person.subject,
        "email": person.email,
        "role": person.role or "",
        "sites": _sites_text(person.named_sites if sites is _PERSONS_SITES else sites),
        "page": page,
        "action": action,
        "files": " ".join(files),
        "query": query,
        "import_id": import_id,
        "source": person.source,
    }


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise AuditError unless an entry could be appended to `path` now (without writing one).

    Leaves nothing new behind: a log file or folders created to find out are removed again, so a command
    refused after this check (an import of a bad export) leaves no empty log beside the database."""
    path = Path(path)
    created: list[Path] = []
    try:
        for folder in reversed([path.parent, *path.parent.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o640)
            created.append(path)
        os.close(fd)
    except OSError as exc:
        raise AuditError(_cannot_write(path, exc)) from None
    finally:
        for made in reversed(created):
            try:
                made.unlink() if made == path else made.rmdir()
            except OSError:  # gone already, or something was put in it meanwhile: not ours to remove
                pass


def _cannot_write(path: Path, exc: OSError) -> str:
    return (f"The audit log {path} cannot be written ({exc.strerror or exc}). Nothing was shown or saved. "
            f"Make the file and its folder writable for the dashboard's user, or set {AUDIT_ENV} to a "
            "writable file.")


def record(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Append one entry (from `make_entry`) to the log at `path`; raises AuditError when that fails."""
    path = Path(path)
    line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"only {written} of {len(line)} bytes written")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
    except OSError as exc:
        raise AuditError(_cannot_write(path, exc)) from None


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Every entry, oldest first, with COLUMNS (`time` as UTC timestamps). A missing file is an empty log.

    A line that is not a complete entry (e.g. cut off by a full disk) is kept as an entry with action
    `unreadable` and the line number in `page`, so nothing disappears from the reader's view."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                    if not isinstance(entry, dict):
                        raise ValueError
                except ValueError:
                    entry = {"action": "unreadable", "page": f"line {number}"}
                rows.append({c: entry.get(c) for c in COLUMNS})
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AuditError(f"The audit log {path} cannot be read ({exc.strerror or exc}).") from None
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce", format="%Y-%m-%dT%H:%M:%S.%fZ")
    df["import_id"] = pd.to_numeric(df["import_id"], errors="coerce").astype("Int64")
    for c in COLUMNS:
        if c not in ("time", "import_id"):
            df[c] = df[c].fillna("").astype(str)
    return df


def filter_log(df: pd.DataFrame, *, people: Sequence[str] = (), actions: Sequence[str] = (),
               start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """Entries by person (e-mail, or subject when there is no e-mail), action, and time (UTC, start
    inclusive, end exclusive). Empty selections mean no filter."""
    keep = pd.Series(True, index=df.index)
    if people:
        keep &= person_label(df).isin(list(people))
    if actions:
        keep &= df["action"].isin(list(actions))
    if start is not None:
        keep &= df["time"] >= _utc(start)
    if end is not None:
        keep &= df["time"] < _utc(end)
    return df[keep].reset_index(drop=True)


def _utc(when: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def person_label(df: pd.DataFrame) -> pd.Series:
    """Who each entry is about: the e-mail, or the subject when there is none (local and command-line use)."""
    return df["email"].where(df["email"] != "", df["subject"])


def log_csv_bytes(df: pd.DataFrame) -> bytes:
    """The entries as CSV (COLUMNS, times as ISO 8601 UTC), for the Audit page's download."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in df[list(COLUMNS)].itertuples(index=False):
        values = []
        for c, v in zip(COLUMNS, row):
            if c == "time":
                values.append("" if pd.isna(v) else v.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            elif c == "import_id":
                values.append("" if pd.isna(v) else str(int(v)))
            else:
                values.append(str(v))
        writer.writerow(values)
    return buf.getvalue().encode("utf-8")
