"""Issue 12, section 4 (and the command-line part of section 3): an unlucky operator's failures end in a
clear message naming the real cause, never in a traceback, a lost record or a half-written folder.

Permission tests run the command as another user (`nobody`) when the tests run as root, since root reads
everything; otherwise the folder's own permissions do it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dashboard import cli
from dashboard.data import ingest, store
from dashboard.reports import export


@pytest.fixture(scope="module")
def db(tmp_path_factory, sample_export) -> Path:
    path = tmp_path_factory.mktemp("failures") / "db.duckdb"
    ingest.import_export(sample_export, path)
    return path


@pytest.fixture
def open_dir():
    """A folder every user can reach (pytest's own temporary folders are private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ko-i12-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def run_as_other_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m dashboard.cli ARGS` as a user without rights to what the test locked away."""
    command = [sys.executable, "-c", "import sys; from dashboard.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    kwargs = {}
    if os.geteuid() == 0:
        kwargs = {"user": 65534, "group": 65534, "extra_groups": []}
    # the audit log (issue 13) in a folder that user may write, so each test meets the fault it sets up
    audit_dir = Path(tempfile.mkdtemp(prefix="ko-audit-"))
    audit_dir.chmod(0o777)
    env = dict(os.environ, HOME=str(cwd), KETAMINE_OUTCOMES_AUDIT=str(audit_dir / "audit.jsonl"))
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env, **kwargs)


# --- imports ----------------------------------------------------------------------------------------------


def test_a_second_import_into_the_same_target_is_refused(tmp_path, sample_export):
    target = tmp_path / "db.duckdb"
    held = ingest._lock_target(target)  # an import in progress holds the lock
    assert held is not None
    try:
        with pytest.raises(ingest.ImportRefused) as exc:
            ingest.import_export(sample_export, target)
        assert "another import is running into this database" in exc.value.report()
        assert not target.exists()
    finally:
        ingest._unlock_target(held)
    assert ingest.import_export(sample_export, target).import_id == 1  # free again once the first ended
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb"]  # no lock file left behind


def test_concurrent_imports_lose_no_history_record(tmp_path, sample_export):
    target = tmp_path / "db.duckdb"
    ingest.import_export(sample_export, target)
    outcomes: list[object] = []

    def one() -> None:
        try:
            outcomes.append(ingest.import_export(sample_export, target).import_id)
        except ingest.ImportRefused as exc:
            outcomes.append(exc.report())

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, str)]
    assert all("another import is running" in r for r in refused)
    assert len(ids) == len(set(ids)) and ids  # never two imports numbered alike
    with duckdb.connect(str(target), read_only=True) as con:
        history = [r[0] for r in con.execute("SELECT import_id FROM import_history ORDER BY import_id").fetchall()]
    assert history == list(range(1, 2 + len(ids)))  # every successful import is recorded, none lost


def test_an_unreadable_import_target_is_named_as_such(open_dir, sample_export, db):
    shutil.copytree(sample_export, open_dir / "export")
    locked = open_dir / "locked"
    locked.mkdir()
    shutil.copy(db, locked / "db.duckdb")
    (locked / "db.duckdb").chmod(0o600)
    locked.chmod(0o733)  # others may enter and write, but not read the file
    r = run_as_other_user(["import", str(open_dir / "export"), "--db", str(locked / "db.duckdb"), "--quiet"],
                          cwd=open_dir)
    assert r.returncode == cli.EXIT_REFUSED, r.stderr
    assert "permission denied" in r.stderr
    assert "not a DuckDB database" not in r.stderr and "Traceback" not in r.stderr


# --- an unreadable or damaged database ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "serve"])
def test_a_database_in_an_unreadable_folder_is_named_as_such(open_dir, db, command):
    locked = open_dir / "locked"
    locked.mkdir()
    shutil.copy(db, locked / "db.duckdb")
    locked.chmod(0o700)
    args = ["export", "--db", str(locked / "db.duckdb"), "--out", str(open_dir / "out")] if command == "export" \
        else ["serve", "--db", str(locked / "db.duckdb"), "--port", "8638"]
    r = run_as_other_user(args, cwd=open_dir)
    assert r.returncode == cli.EXIT_REFUSED, r.stderr
    assert "cannot be read: permission denied" in r.stderr
    assert "Traceback" not in r.stderr and "PermissionError" not in r.stderr


def cut_copy(db: Path, folder: Path, kept: float | str) -> Path:
    """A copy of `db` cut short: the first `kept` share of its bytes, or all but the last byte."""
    cut = folder / "cut.duckdb"
    data = db.read_bytes()
    cut.write_bytes(data[:-1] if kept == "all but one byte" else data[: int(len(data) * kept)])
    return cut


@pytest.mark.parametrize("command", ["export", "report"])
@pytest.mark.parametrize("kept", [0.2, 0.5, 0.8, 0.95, "all but one byte"])
def test_a_database_cut_short_is_called_damaged(tmp_path, db, capsys, command, kept):
    # cut anywhere: near its end the lost blocks are ones no summary reads, so the file's size is checked
    # against the blocks its header describes when it is opened; either way the command names the damage and
    # exits as refused, without a traceback
    cut = cut_copy(db, tmp_path, kept)
    out = tmp_path / ("out" if command == "export" else "report.pdf")
    assert cli.main([command, "--db", str(cut), "--out", str(out)]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert f"error: {cut} is damaged: the file is shorter than the database it describes" in err
    assert "Traceback" not in err and not out.exists()


# --- the server ---------------------------------------------------------------------------------------------


@contextmanager
def serving_alone(db: Path, tmp_path: Path, launcher: str = "cli", ignored: tuple[str, ...] = ()):
    """`serve` (or `dev.py serve`) on `db` started as from a terminal, with the signals `ignored` ignored as
    `nohup` ignores SIGHUP; yields (the command's process, answers(): whether the server answers) once it
    answers. Afterwards nothing of it is left running, whatever happened. (serving.served stops the command by
    its process group; these tests signal the command's own process, as `kill PID` does.)"""
    import signal

    from serving import answers, child_pids, dashboard_command, free_port, kill_all, wait_until_answering

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [part.replace("{port}", str(port)) for part in dashboard_command(db)]
    if launcher == "dev.py":
        command = [sys.executable, str(Path(__file__).resolve().parent.parent / "dev.py"), *command[3:]]

    def as_from_a_terminal() -> None:  # whatever this test run ignores (nohup: SIGHUP; a background job: SIGINT)
        for name in ("SIGHUP", "SIGINT"):
            signal.signal(getattr(signal, name), signal.SIG_IGN if name in ignored else signal.SIG_DFL)

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=as_from_a_terminal)
    children: list[int] = []
    try:
        wait_until_answering(base, proc, log)
        children = child_pids(proc.pid)
        yield proc, lambda: answers(base)
    finally:
        kill_all([proc.pid, *children])


@pytest.mark.parametrize("signame, launcher", [("SIGTERM", "cli"), ("SIGINT", "cli"), ("SIGHUP", "cli"),
                                               ("SIGTERM", "dev.py")])
def test_stopping_serve_stops_the_server(tmp_path, db, signame, launcher):
    # `serve` runs Streamlit as a child: `kill PID` once stopped the command and left the server serving; the
    # README's `python3 dev.py serve` ran that command as a child in turn
    import signal

    with serving_alone(db, tmp_path, launcher) as (proc, answers):
        os.kill(proc.pid, getattr(signal, signame))  # the command's own process only, as `kill PID` does
        assert proc.wait(timeout=30) == cli.EXIT_OK
        assert not answers()


def test_serve_started_with_nohup_outlives_a_hangup(tmp_path, db):
    # a signal the command was started ignoring stays ignored, by the server too (cli.run_until_stopped)
    import signal
    import time

    with serving_alone(db, tmp_path, ignored=("SIGHUP",)) as (proc, answers):
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None and answers()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == cli.EXIT_OK and not answers()


def test_serve_says_at_once_that_a_database_is_from_an_older_version(tmp_path, db):
    """`serve` checks that the file is there and readable before it starts, but started without a word on a
    database built by an older version, which only each page then named. The server's warming of the default
    view opens it at once and says so in the terminal, with what to do (and without a traceback)."""
    import time

    from conftest import older_version_copy
    from serving import dashboard_command, served

    old = older_version_copy(db, tmp_path / "old.duckdb")
    log = tmp_path / "serve.log"
    with served(dashboard_command(old), log):
        deadline = time.monotonic() + 90
        while "older version" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
    said = log.read_text(errors="replace")
    assert "was built by an older version of Ketamine Outcomes" in said
    assert f"ketamine-outcomes import EXPORT_DIR --db {old}" in said
    assert "Traceback" not in said and "cohort_outcomes" not in said


# --- exports ----------------------------------------------------------------------------------------------


def test_an_unknown_site_is_named_and_exits_non_zero(tmp_path, db, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--site", "NOPE"]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "--site: 'NOPE' is not a site in this database; its sites are S" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["export", "report"])
def test_an_unknown_scope_is_named_not_written_as_an_empty_cohort(tmp_path, db, capsys, command):
    # a mistyped --scope wrote an export of zeros ("site s1 (your access)") with exit 0, and a report said
    # "No patients match these filters"
    with duckdb.connect(str(db), read_only=True) as con:
        sites = ", ".join(r[0] for r in con.execute("SELECT DISTINCT site FROM patients ORDER BY 1").fetchall())
    out = tmp_path / ("out" if command == "export" else "r.pdf")
    argv = [command, "--db", str(db), "--out", str(out)]
    assert cli.main([*argv, "--scope", "s1"]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == (
        f"error: --scope: 's1' is not a site in this database; its sites are {sites} ('s1' is written 'S1' here).\n")
    assert cli.main([*argv, "--scope", "S1", "--scope", "S99", "--scope", "T"]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == (
        f"error: --scope: 'S99', 'T' are not sites in this database; its sites are {sites}.\n")
    assert not out.exists()


def test_export_refuses_a_file_and_a_folder_of_other_files(tmp_path, db, capsys):
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    assert cli.main(["export", "--db", str(db), "--out", str(a_file)]) == cli.EXIT_REFUSED
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("keep me too")
    assert cli.main(["export", "--db", str(db), "--out", str(other)]) == cli.EXIT_REFUSED
    assert "already holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    # told to replace it, the folder becomes the export
    assert cli.main(["export", "--db", str(db), "--out", str(other), "--replace", "--min-cell", "0"]) == cli.EXIT_OK
    assert sorted(p.name for p in other.iterdir()) == sorted([*export.SUMMARY_FILES, "provenance.json"])


def test_a_previous_export_is_replaced_whole(tmp_path, db):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--route", "IV", "--min-cell", "0"]) == 0
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--route", "IN", "--min-cell", "0"]) == 0
    cohort = pd.read_csv(out / "cohort.csv")
    assert list(cohort["route"]) in (["IN", "ALL"], ["ALL"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EACCES])
def test_an_export_failing_halfway_leaves_the_previous_export_untouched(tmp_path, db, capsys, monkeypatch, failure):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--route", "IV", "--min-cell", "0"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # two files written, the third fails
            raise OSError(failure, os.strerror(failure))
        real_fsync(fd)

    monkeypatch.setattr(export.os, "fsync", failing_fsync)
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--route", "IN", "--min-cell", "0"]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert ("the disk is full" if failure == errno.ENOSPC else "permission denied") in err
    assert "was left as it was" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the IV export, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .tmp files or half folders


def test_an_export_into_an_unwritable_folder_says_so(open_dir, db):
    locked = open_dir / "locked"
    locked.mkdir()
    locked.chmod(0o755)  # readable, not writable by others
    shutil.copy(db, open_dir / "db.duckdb")
    (open_dir / "db.duckdb").chmod(0o644)
    r = run_as_other_user(["export", "--db", str(open_dir / "db.duckdb"), "--out", str(locked / "out")], cwd=open_dir)
    assert r.returncode == cli.EXIT_REFUSED, r.stderr
    assert "cannot write the export" in r.stderr and "permission denied" in r.stderr
    assert "Traceback" not in r.stderr
