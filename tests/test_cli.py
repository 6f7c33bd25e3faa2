"""The command line's own guards: what each command refuses to write over, empty paths, and messages instead
of tracebacks (the import's refusals are in test_ingest_cli.py, failures of disks and rights in test_failures.py).

Each refusal is checked for its exact message, its exit code and for leaving the file system as it was.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dashboard import cli
from dashboard.data import ingest, spec
from dashboard.reports import report


@pytest.fixture(scope="module")
def db(tmp_path_factory, sample_export) -> Path:
    path = tmp_path_factory.mktemp("cli") / "db.duckdb"
    ingest.import_export(sample_export, path)
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too), relative name -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- sample --out ---------------------------------------------------------------------------------------------


def test_sample_refuses_a_folder_holding_a_clinics_export(tmp_path, capsys):
    real = tmp_path / "realexport"
    real.mkdir()
    (real / "patients.csv").write_text("patient_id,site\nA1,S1\n")
    before = _tree(tmp_path)
    assert cli.main(["sample", "--out", str(real), "--patients", "5", "--quiet"]) == cli.EXIT_REFUSED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: {real} already holds other files (it is not a previous sample export). Choose a new "
                   "or empty folder, or add --replace to replace that folder and everything in it.\n")
    assert _tree(tmp_path) == before  # nothing written, nothing deleted, no temporary folder


def test_sample_in_parquet_does_not_delete_a_folder_of_csv_tables(tmp_path, capsys):
    csvs = tmp_path / "csvs"
    csvs.mkdir()
    for table in spec.TABLES:
        (csvs / f"{table}.csv").write_text("the clinic's rows\n")
    before = _tree(tmp_path)
    assert cli.main(["sample", "--out", str(csvs), "--patients", "5", "--format", "parquet", "--quiet"]) == \
        cli.EXIT_REFUSED
    assert "already holds other files" in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_sample_refuses_a_file_at_out(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert cli.main(["sample", "--out", str(a_file), "--patients", "5", "--quiet"]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == f"error: {a_file} is a file, not a folder: choose a folder name for the sample export.\n"
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_sample_replaces_its_own_previous_sample_whole_and_other_folders_with_replace(tmp_path, capsys):
    out = tmp_path / "sample"
    assert cli.main(["sample", "--out", str(out), "--patients", "5", "--quiet"]) == cli.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{t}.csv" for t in spec.TABLES), "provenance.json"])
    # a previous sample is this program's own output: replaced whole, no stale CSV beside the Parquet files
    assert cli.main(["sample", "--out", str(out), "--patients", "5", "--format", "parquet", "--quiet"]) == cli.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{t}.parquet" for t in spec.TABLES), "provenance.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]  # no temporary folder left
    # told to, it replaces a folder of other files
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert cli.main(["sample", "--out", str(other), "--patients", "5", "--quiet", "--replace"]) == cli.EXIT_OK
    assert "notes.txt" not in {p.name for p in other.iterdir()}
    capsys.readouterr()
    # the marker file does not disturb the import
    assert cli.main(["import", str(out), "--db", str(tmp_path / "db.duckdb"), "--quiet"]) == cli.EXIT_OK


# --- empty paths ----------------------------------------------------------------------------------------------

FOLDER = "a new or empty folder to write to, such as ./export"


@pytest.mark.parametrize("args, message", [
    (["sample", "--out", ""], f"--out is empty: give {FOLDER}."),
    (["export", "--db", "db.duckdb", "--out", ""], f"--out is empty: give {FOLDER}."),
    (["export", "--db", "", "--out", "o"], "--db is empty: give the database file, such as clinic.duckdb."),
    (["report", "--db", "db.duckdb", "--out", ""], "--out is empty: give the PDF file to write, such as report.pdf."),
    (["import", "export", "--db", ""], "--db is empty: give the database file, such as clinic.duckdb."),
    (["serve", "--db", ""], "--db is empty: give the database file, such as clinic.duckdb."),
    (["serve", "--access-file", " "], "--access-file is empty: give the access file, such as access.csv."),
    (["anonymize", "records", "--mapping", "generic", "--key", "k.key", "--out", ""], f"--out is empty: give {FOLDER}."),
    (["anonymize", "records", "--mapping", "generic", "--key", "", "--out", "o"],
     "--key is empty: give the clinic's key file, such as ~/clinic.key."),
])
def test_an_empty_path_is_refused_before_anything_is_read_or_written(tmp_path, monkeypatch, capsys, args, message):
    # an empty path is the current folder to pathlib: `sample --out ""` wrote 5,000 patients into it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("keep me")
    assert cli.main(args) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {message}\n")
    assert _tree(tmp_path) == {"keep.txt": b"keep me"}


# --- report --out ---------------------------------------------------------------------------------------------


def test_report_into_an_existing_folder_is_refused_and_leaves_no_temporary_file(tmp_path, db, capsys):
    folder = tmp_path / "s1"
    folder.mkdir()
    assert cli.main(["report", "--db", str(db), "--out", str(folder), "--min-cell", "0"]) == cli.EXIT_REFUSED
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {folder} is a folder: give the report's file name, such as {folder / 'report.pdf'}.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1"] and not any(folder.iterdir())


def test_report_under_a_file_is_refused(tmp_path, db, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert cli.main(["report", "--db", str(db), "--out", str(a_file / "r.pdf")]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == f"error: {a_file} is a file, not a folder: give the report a path inside a folder.\n"
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_report_that_cannot_be_written_says_so_and_leaves_no_temporary_file(tmp_path, db, capsys, monkeypatch):
    monkeypatch.setattr(report, "require_parts", lambda: None)
    monkeypatch.setattr(report, "report_pdf_bytes", lambda con, s: b"%PDF-1.7 a stand-in")  # the writing is tested

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))

    monkeypatch.setattr(report.os, "replace", full_disk)
    target = tmp_path / "r.pdf"
    assert cli.main(["report", "--db", str(db), "--out", str(target), "--min-cell", "0"]) == cli.EXIT_REFUSED
    assert capsys.readouterr().err == (
        f"error: cannot write the report: {target}: the disk is full. {target} was left as it was; choose a file name "
        "in a folder you can write to, then run report again.\n")
    assert list(tmp_path.iterdir()) == []
