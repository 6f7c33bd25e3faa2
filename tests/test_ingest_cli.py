"""The `import` command: exit codes and messages, no tracebacks, and a killed import leaving no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

from conftest import write_export
from dashboard import cli
from test_ingest import BASE, tables

ROOT = Path(__file__).resolve().parent.parent


def test_cli_import_prints_progress_and_summary(tmp_path, capsys):
    export = write_export(tmp_path / "e", tables())
    assert cli.main(["import", str(export), "--db", str(tmp_path / "db.duckdb")]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert out.startswith("Imported 4 patients, 4 sessions, 6 assessments, 2 adverse events from ")
    assert "Read patients.csv: 4 rows" in err and "Checked every value" in err


def test_cli_quiet_prints_no_progress(tmp_path, capsys):
    export = write_export(tmp_path / "e", tables())
    assert cli.main(["import", str(export), "--db", str(tmp_path / "db.duckdb"), "--quiet"]) == cli.EXIT_OK
    assert capsys.readouterr().err == ""


def test_cli_refusal_exits_non_zero_with_every_problem(tmp_path, capsys):
    export = write_export(tmp_path / "e", tables(sessions={0: {"route": "IO"}}, assessments={0: {"score": "99"}}))
    db = tmp_path / "db.duckdb"
    assert cli.main(["import", str(export), "--db", str(db), "--quiet"]) == cli.EXIT_REFUSED
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"Import refused: 2 problems in {export}. Nothing was imported; {db} was not created.",
        "  sessions.csv, table sessions, line 2, column route, value 'IO': not one of: IV IM SC IN SL PO",
        "  assessments.csv, table assessments, line 2, column score, value '99': out of range: must be a whole number from 0 to 27",
    ]
    assert not db.exists()


def test_cli_subprocess_missing_folder_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dashboard.cli", "import", str(tmp_path / "missing"), "--db", str(tmp_path / "db.duckdb")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines()[1] == f"  {tmp_path / 'missing'}: the export folder does not exist"


def test_cli_subprocess_broken_files_have_no_traceback(tmp_path):
    export = write_export(tmp_path / "e", tables())
    (export / "patients.csv").write_bytes(b"patient_id,site\n\xff\xfe\n")
    (export / "sessions.csv").write_bytes(b"")
    (export / "adverse_events.parquet").write_bytes(b"garbage")
    result = subprocess.run(
        [sys.executable, "-m", "dashboard.cli", "import", str(export), "--db", str(tmp_path / "db.duckdb")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "sessions.csv, table sessions: empty file (0 bytes): a table needs at least its header row" in result.stderr
    assert "adverse_events.csv and adverse_events.parquet, table adverse_events: two files for one table" in result.stderr


_KILLED_IMPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dashboard.data import ingest

    real = ingest._previous_history

    def stall(*args, **kwargs):
        # the new database is fully loaded but not yet swapped in: the worst moment to be killed
        print("READY", flush=True)
        time.sleep(600)

    ingest._previous_history = stall
    ingest.import_export(Path(sys.argv[1]), Path(sys.argv[2]))
""")


def test_import_killed_mid_way_leaves_the_old_database_and_the_next_run_cleans_up(tmp_path):
    db = tmp_path / "db.duckdb"
    from dashboard.data.ingest import import_export

    import_export(write_export(tmp_path / "old", tables()), db)
    before = db.read_bytes()
    new = write_export(tmp_path / "new", tables(adverse_events=None))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(new), str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert db.read_bytes() == before
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".db.duckdb."))
    assert f".db.duckdb.importing-{proc.pid}" in leftovers
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM adverse_events").fetchone() == (len(BASE["adverse_events"][1]),)

    messages: list[str] = []
    import_export(new, db, progress=messages.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb", "new", "old"]
    assert f"Removed .db.duckdb.importing-{proc.pid}, left by an interrupted import" in messages


def test_cli_ctrl_c_during_import_says_nothing_changed(tmp_path, capsys, monkeypatch):
    from dashboard.data import ingest

    export = write_export(tmp_path / "e", tables())
    db = tmp_path / "db.duckdb"
    assert cli.main(["import", str(export), "--db", str(db), "--quiet"]) == cli.EXIT_OK
    before = db.read_bytes()
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "import_export", interrupted)
    assert cli.main(["import", str(export), "--db", str(db), "--quiet"]) == 130
    out, err = capsys.readouterr()
    assert err == f"Import interrupted; {db} was not changed.\n"
    assert "Traceback" not in out + err
    assert db.read_bytes() == before


def test_cli_import_report_lists_what_was_tolerated(tmp_path, capsys):
    # issue 10, failing inputs 4 and 5: a ;-separated file and rows deleted in a spreadsheet
    export = write_export(tmp_path / "e", tables())
    path = export / "patients.csv"
    path.write_bytes(path.read_bytes().replace(b",", b";"))
    with (export / "sessions.csv").open("a") as f:
        f.write(",,,,,,,,,,,,,,,,\n" * 1247)
    assert cli.main(["import", str(export), "--db", str(tmp_path / "db.duckdb"), "--quiet"]) == cli.EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "Tolerated in patients.csv: separated by semicolons (;), not commas.",
        "Tolerated in sessions.csv: ignored 1,247 empty lines (nothing but delimiters or spaces: rows deleted in a "
        "spreadsheet).",
    ]


def test_cli_import_into_a_missing_folder_is_refused_and_creates_none(tmp_path, capsys):
    export = write_export(tmp_path / "e", tables())
    target = tmp_path / "nowhere" / "deeper" / "db.duckdb"
    assert cli.main(["import", str(export), "--db", str(target), "--quiet"]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == (
        f"error: the folder {target.parent} does not exist: create it first or choose another --db.\n")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "afile").write_text("x")
    assert cli.main(["import", str(export), "--db", str(tmp_path / "afile" / "db.duckdb"), "--quiet"]) == \
        cli.EXIT_REFUSED
    assert capsys.readouterr().err == f"error: {tmp_path / 'afile'} is a file, not a folder: choose another --db.\n"


def test_a_refused_import_leaves_no_audit_log(tmp_path, capsys, monkeypatch):
    from dashboard.reports import audit

    monkeypatch.delenv(audit.AUDIT_ENV, raising=False)  # the log beside the database
    export = write_export(tmp_path / "e", tables())
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert cli.main(["import", str(export), "--db", str(notes), "--quiet"]) == cli.EXIT_REFUSED
    assert "this file is not a DuckDB database" in capsys.readouterr().err
    bad = write_export(tmp_path / "bad", tables(sessions={0: {"route": "IO"}}))
    assert cli.main(["import", str(bad), "--db", str(tmp_path / "new.duckdb"), "--quiet"]) == cli.EXIT_REFUSED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "e", "notes.txt"]  # no notes.audit.jsonl, no new.*
    assert notes.read_text() == "my notes"
    # an import that happens is recorded as before
    assert cli.main(["import", str(export), "--db", str(tmp_path / "new.duckdb"), "--quiet"]) == cli.EXIT_OK
    assert len(audit.read_log(tmp_path / "new.audit.jsonl")) == 1
