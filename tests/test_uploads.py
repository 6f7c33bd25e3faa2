"""The Import page's core (dashboard/data/uploads.py): unpacking uploads, checking them, the problems table."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest

from dashboard.data import store, uploads
from dashboard.data.ingest import Problem


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_unpack_flattens_zips_and_never_writes_outside_the_folder(tmp_path):
    data = zip_bytes({"export/patients.csv": b"a\n", "../../evil.csv": b"b\n", "__MACOSX/export/._x.csv": b"",
                      "export/.hidden.csv": b"", "export/readme.pdf": b"%PDF"})
    names, problems = uploads.unpack([("up.zip", data), ("Sessions.CSV", b"c\n")], tmp_path / "f")
    assert names == ["Sessions.CSV", "evil.csv", "patients.csv"]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == names
    assert not (tmp_path / "evil.csv").exists()
    assert [p.describe() for p in problems] == [
        "up.zip: export/readme.pdf: not a CSV, Parquet, Excel (.xlsx) or mapping (.toml) file; it was left out"]


def test_unpack_names_duplicates_and_broken_zips(tmp_path):
    names, problems = uploads.unpack([("a.zip", zip_bytes({"x/patients.csv": b"1"})), ("patients.csv", b"2"),
                                      ("b.zip", b"not a zip")], tmp_path / "f")
    assert names == ["patients.csv"]
    assert [p.describe() for p in problems] == [
        "patients.csv: a second file named patients.csv (the first came from a.zip: x/patients.csv); upload one of them",
        "b.zip: not a readable zip file (File is not a zip file)"]


def test_check_upload_of_a_ready_export_and_of_records_with_a_bad_key(tmp_path):
    export = store.example_export_dir()
    check = uploads.check_upload([(p.name, p.read_bytes()) for p in export.glob("*.csv")], kind="export")
    try:
        assert check.clean and check.report.startswith("Imported 5 patients")
        assert check.report.endswith("(checked; not imported yet).")
    finally:
        check.discard()
    assert not check.work_dir.exists()
    key = tmp_path / "k.key"
    key.write_text("short\n")
    key.chmod(0o600)
    records = store.package_folder("dashboard.example_records")
    check = uploads.check_upload([("r.zip", uploads.zip_folder_bytes(records))], kind="records", key_path=key)
    try:
        assert not check.clean and check.export_dir is None
        assert [p.message for p in check.problems] == [
            f"{key} is not a key file written by `ketamine-outcomes anonymize` (one line of 64 hexadecimal digits)"]
    finally:
        check.discard()


def test_problems_table_and_csv_are_exact():
    problems = [Problem("patients.csv", "patients", 4, "birth_date", None, "the date ambiguous, \"x\""),
                Problem("up.zip", None, None, None, None, "not a readable zip file")]
    assert uploads.problems_csv_bytes(problems) == (
        b"file,table,line,column,value,problem\n"
        b'patients.csv,patients,4,birth_date,,"the date ambiguous, ""x"""\n'
        b"up.zip,,,,,not a readable zip file\n")
    df = uploads.problems_frame(problems)
    assert list(df.columns) == uploads.PROBLEM_COLUMNS
    assert df["line"].tolist()[0] == 4 and df["line"].isna().tolist() == [False, True]


def test_check_upload_refuses_an_unknown_kind():
    with pytest.raises(ValueError):
        uploads.check_upload([], kind="spreadsheet")


def test_a_ready_export_uploaded_as_records_is_named_and_makes_no_key(tmp_path):
    export = store.example_export_dir()
    key = tmp_path / "new.key"
    for files in ([(p.name, p.read_bytes()) for p in export.glob("*.csv")],
                  [("export.zip", uploads.zip_folder_bytes(export))]):
        check = uploads.check_upload(files, kind="records", key_path=key)
        try:
            assert [p.message for p in check.problems] == [uploads.READY_EXPORT_HINT]
            assert check.key_created is None and not key.exists()
        finally:
            check.discard()
    records = store.package_folder("dashboard.example_records")
    assert not uploads.looks_like_export(records)


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_ready_export_with_semicolons_or_tabs_is_recognised_too(tmp_path, delimiter):
    # the importer reads semicolon and tab exports (clinic-export-format.md), so the hint must know them too,
    # with a byte-order mark as spreadsheet programs write it
    export = tmp_path / "export"
    export.mkdir()
    for p in store.example_export_dir().glob("*.csv"):
        text = p.read_text(encoding="utf-8").replace(",", delimiter)
        (export / p.name).write_text("\ufeff" + text, encoding="utf-8")
    assert uploads.looks_like_export(export)
    check = uploads.check_upload([(p.name, p.read_bytes()) for p in export.glob("*.csv")], kind="records",
                                 key_path=tmp_path / "new.key")
    try:
        assert [p.message for p in check.problems] == [uploads.READY_EXPORT_HINT]
    finally:
        check.discard()


def test_a_refused_records_check_leaves_no_new_key(tmp_path):
    records = store.package_folder("dashboard.example_records")
    files = {p.name: p.read_bytes() for p in records.glob("*.csv")}
    # a record referring to nothing: the first session's record number changed to one no patient has
    broken = dict(files)
    sessions = next(n for n in files if n.lower().startswith("sessions"))
    rows = files[sessions].decode("utf-8").splitlines(keepends=True)
    header = next(csv.reader([rows[0]]))
    first = next(csv.reader([rows[1]]))
    first[header.index("record_number")] = "NO-SUCH-RECORD"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, first])
    broken[sessions] = (out.getvalue() + "".join(rows[2:])).encode("utf-8")
    key = tmp_path / "new.key"
    check = uploads.check_upload(list(broken.items()), kind="records", key_path=key)
    try:
        assert check.problems and check.key_created is None and not key.exists()
    finally:
        check.discard()
    check = uploads.check_upload(list(files.items()), kind="records", key_path=key)
    try:
        assert check.clean and check.key_created == key and key.exists()
    finally:
        check.discard()


def test_identifying_values_never_reach_the_problems_table_or_its_csv(tmp_path):
    # the Import page shows anonymize's problems: an e-mail in site, a phone number in prior_failed_treatments,
    # a full name in sex and a sentence in an adverse event are named by file, line and column only
    from identified import IDENTIFYING_EDITS, edited_records

    records = edited_records(tmp_path / "rec", IDENTIFYING_EDITS)
    check = uploads.check_upload([(p.name, p.read_bytes()) for p in records.glob("*.csv")], kind="records",
                                 key_path=tmp_path / "k.key")
    try:
        assert [(p.file, p.line, p.column, p.value) for p in check.problems] == [
            ("patients.csv", 2, "site", None), ("patients.csv", 3, "prior_failed_treatments", None),
            ("patients.csv", 4, "sex", None), ("adverse_events.csv", 2, "event", None)]
        assert all(p.message.endswith("(the value is not shown because it could identify a patient)")
                   for p in check.problems)
        shown = (uploads.problems_csv_bytes(check.problems).decode("utf-8")
                 + uploads.problems_frame(check.problems).to_csv() + repr(check.problems))
        assert [v for v in IDENTIFYING_EDITS.values() if v in shown] == []
    finally:
        check.discard()


def test_the_problems_table_counts_the_rows_the_importer_does_not_list(tmp_path):
    from identified import edited_records

    records = edited_records(tmp_path / "rec", {("questionnaires.csv", line, "score"): "x" for line in range(2, 32)})
    check = uploads.check_upload([(p.name, p.read_bytes()) for p in records.glob("*.csv")], kind="records",
                                 key_path=tmp_path / "k.key")
    try:
        assert [(p.line, p.column, p.value) for p in check.problems] == [
            *((line, "score", "x") for line in range(2, 22)), (None, "score", None)]
        assert check.problems[-1].message == "… and 10 more rows with the same problem"
        assert uploads.problems_csv_bytes(check.problems).decode("utf-8").splitlines()[-1] == (
            "questionnaires.csv,assessments,,score,,… and 10 more rows with the same problem")
    finally:
        check.discard()
