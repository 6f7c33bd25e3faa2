"""The importer: every refusal rule of docs/clinic-export-format.md, the report, and the all-or-nothing swap."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import duckdb
import pytest

from dashboard.data import ingest
from dashboard.data.ingest import ImportRefused, Problem, import_export
from conftest import write_export

P_HEAD = ["patient_id", "site", "start_quarter", "age_band", "sex", "primary_diagnosis",
          "treatment_resistant", "prior_failed_treatments", "hypertension"]
S_HEAD = ["session_id", "patient_id", "day", "route", "drug", "setting", "phase", "dose_mg",
          "integration_therapy", "sbp_pre", "sbp_peak", "dbp_pre", "dbp_peak", "heart_rate_peak", "cadss",
          "monitoring_minutes", "completed"]
A_HEAD = ["patient_id", "day", "hours_post_dose", "instrument", "score"]
E_HEAD = ["session_id", "event", "severity", "intervention"]

BASE = {
    "patients": (P_HEAD, [
        ["P1", "north", "2025-Q1", "25-34", "F", "MDD", "true", "3", "false"],
        ["P2", "north", "2025-Q2", "35-44", "", "GAD", "", "", ""],
        ["P3", "south", "2025-Q3", "45-54", "M", "PTSD", "YES", "0", "No"],
        ["P4", "south", "2025-Q4", "75+", "X", "OTHER", "false", "1", "true"],  # screened, never dosed
    ]),
    "sessions": (S_HEAD, [
        ["S1", "P1", "0", "IV", "ketamine", "clinic", "induction", "35", "true", "120", "140", "80", "90", "95", "12", "120", "true"],
        ["S2", "P1", "3", "IV", "", "clinic", "induction", "35.5", "", "", "", "", "", "", "", "", ""],
        ["S3", "P2", "0", "IN", "esketamine", "clinic", "induction", "56", "0", "130", "150", "85", "95", "", "", "", "0"],
        ["S0", "P2", "0", "IN", "esketamine", "clinic", "maintenance", "84", "1", "", "", "", "", "", "", "", "1"],
    ]),
    "assessments": (A_HEAD, [
        ["P1", "-7", "", "PHQ9", "20"],
        ["P1", "0", "", "PHQ9", "19"],
        ["P1", "3", "4", "PHQ9", "11"],
        ["P1", "28", "", "PHQ9", "6"],
        ["P2", "0", "2.5", "GAD7", "12"],
        ["P3", "-2", "", "PCL5", "50"],
    ]),
    "adverse_events": (E_HEAD, [
        ["S1", "nausea", "moderate", "true"],
        ["S3", "dizziness", "", ""],
    ]),
}


def tables(**changes):
    """BASE with rows replaced: changes like sessions={1: {"day": "5"}} or patients=(header, rows)."""
    t = copy.deepcopy(BASE)
    for name, change in changes.items():
        if change is None:
            del t[name]
        elif isinstance(change, tuple):
            t[name] = change
        else:
            head, rows = t[name]
            for index, cells in change.items():
                for column, value in cells.items():
                    rows[index][head.index(column)] = value
    return t


def refused(tmp_path: Path, export: Path | None = None, **changes) -> ImportRefused:
    folder = export if export is not None else write_export(tmp_path / "export", tables(**changes))
    with pytest.raises(ImportRefused) as info:
        import_export(folder, tmp_path / "db.duckdb")
    assert not (tmp_path / "db.duckdb").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".db.duckdb")]
    return info.value


def only(exc: ImportRefused) -> Problem:
    assert len(exc.problems) == 1, exc.report()
    return exc.problems[0]


def dump(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name NOT IN ('import_history', 'import_notes') ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n}").fetchall() for n in names}


# --- a valid export -----------------------------------------------------------------------------------------


def test_valid_export_loads_typed_rows_with_defaults(tmp_path):
    db = tmp_path / "db.duckdb"
    messages: list[str] = []
    summary = import_export(write_export(tmp_path / "e", tables()), db, progress=messages.append)
    assert summary.rows == {"patients": 4, "sessions": 4, "assessments": 6, "adverse_events": 2}
    assert summary.import_id == 1
    assert "Imported 4 patients, 4 sessions, 6 assessments, 2 adverse events" in summary.describe()
    assert any(m.startswith("Read sessions.csv: 4 rows") for m in messages)
    assert any(m.startswith("Checked every value") for m in messages)
    assert any(m.startswith("Loaded 16 rows") for m in messages)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT * FROM patients ORDER BY patient_id").fetchall() == [
            ("P1", "north", "2025-Q1", "25-34", "F", "MDD", True, 3, False, None),
            ("P2", "north", "2025-Q2", "35-44", "U", "GAD", False, None, False, None),
            ("P3", "south", "2025-Q3", "45-54", "M", "PTSD", True, 0, False, None),
            ("P4", "south", "2025-Q4", "75+", "X", "OTHER", False, 1, True, None),
        ]
        sessions = con.execute(
            "SELECT session_id, patient_id, day, drug, dose_mg, integration_therapy, completed, session_number, sbp_pre "
            "FROM sessions").fetchall()
        # stored sorted by patient, day, session_id; S0 before S3 on the same day
        assert sessions == [
            ("S1", "P1", 0, "ketamine", 35.0, True, True, 1, 120),
            ("S2", "P1", 3, "ketamine", 35.5, False, True, 2, None),
            ("S0", "P2", 0, "esketamine", 84.0, True, True, 1, None),
            ("S3", "P2", 0, "esketamine", 56.0, False, False, 2, 130),
        ]
        assert con.execute("SELECT patient_id, day, hours_post_dose, instrument, score, t FROM assessments").fetchall() == [
            ("P1", -7, None, "PHQ9", 20, -7.0),
            ("P1", 0, None, "PHQ9", 19, 0.0),
            ("P1", 3, 4.0, "PHQ9", 11, 3 + 4 / 24),
            ("P1", 28, None, "PHQ9", 6, 28.0),
            ("P2", 0, 2.5, "GAD7", 12, 2.5 / 24),
            ("P3", -2, None, "PCL5", 50, -2.0),
        ]
        assert con.execute("SELECT * FROM adverse_events").fetchall() == [
            ("S1", "nausea", "moderate", True), ("S3", "dizziness", "mild", False)]
        history = con.execute("SELECT import_id, source, source_format, patients, sessions, assessments, "
                              "adverse_events, source_sha256 FROM import_history").fetchall()
    digest = hashlib.sha256()
    for name in ("patients", "sessions", "assessments", "adverse_events"):
        digest.update((tmp_path / "e" / f"{name}.csv").read_bytes())
    assert history == [(1, str(tmp_path / "e"), "csv", 4, 4, 6, 2, digest.hexdigest())]


def test_adverse_events_may_be_absent_and_columns_in_any_order(tmp_path):
    head, rows = BASE["patients"]
    order = list(reversed(range(len(head))))
    export = write_export(tmp_path / "e", tables(
        adverse_events=None, patients=([head[i].upper() for i in order], [[r[i] for i in order] for r in rows])))
    summary = import_export(export, tmp_path / "db.duckdb", source_label="clinic A, March")
    assert summary.rows["adverse_events"] == 0
    assert summary.source == "clinic A, March"
    assert dump(tmp_path / "db.duckdb")["patients"][0] == ("P1", "north", "2025-Q1", "25-34", "F", "MDD", True, 3, False, None)


def test_header_only_file_is_an_empty_table(tmp_path):
    export = write_export(tmp_path / "e", tables(adverse_events=(E_HEAD, [])))
    assert import_export(export, tmp_path / "db.duckdb").rows["adverse_events"] == 0


def test_the_example_export_imports_cleanly(tmp_path):
    example = Path(__file__).resolve().parent.parent / "sample_data" / "example_export"
    summary = import_export(example, tmp_path / "db.duckdb")
    assert summary.rows["patients"] == 5 and summary.rows["sessions"] == 10


def test_same_export_twice_gives_identical_tables_and_history_carries_over(tmp_path):
    export = write_export(tmp_path / "e", tables())
    db = tmp_path / "db.duckdb"
    import_export(export, db)
    first = dump(db)
    summary = import_export(export, db, source_label="again")
    assert summary.import_id == 2
    assert dump(db) == first
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT import_id, source FROM import_history ORDER BY 1").fetchall() == [
            (1, str(export)), (2, "again")]


def test_unreadable_old_database_starts_the_history_afresh(tmp_path):
    db = tmp_path / "db.duckdb"
    db.write_bytes(b"\0" * 8 + b"DUCK" + b"\xff" * 4096)  # a DuckDB header, then damage
    messages: list[str] = []
    summary = import_export(write_export(tmp_path / "e", tables()), db, progress=messages.append)
    assert summary.import_id == 1
    assert any("could not be read" in m and "starts afresh" in m for m in messages)
    assert "starts afresh" in summary.describe()


def test_a_file_that_is_not_a_database_is_not_overwritten(tmp_path):
    target = tmp_path / "patients.csv"
    target.write_text("precious,data\n")
    with pytest.raises(ImportRefused) as info:
        import_export(write_export(tmp_path / "e", tables()), target)
    assert only(info.value).message.startswith("this file is not a DuckDB database, so the import will not overwrite it")
    assert target.read_text() == "precious,data\n"
    # the heading names the file at fault, not the export folder (a newcomer read "1 problem in smp")
    assert info.value.report().splitlines()[0] == (
        f"Import refused: 1 problem with {target}. Nothing was imported; {target} was left unchanged.")


def test_csv_and_parquet_of_the_same_data_give_identical_databases(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_export = write_export(tmp_path / "csv", tables())
    pq_dir = tmp_path / "parquet"
    pq_dir.mkdir()
    ints = {"prior_failed_treatments", "day", "sbp_pre", "sbp_peak", "dbp_pre", "dbp_peak", "heart_rate_peak",
            "cadss", "monitoring_minutes", "score"}
    floats = {"dose_mg", "hours_post_dose"}
    bools = {"treatment_resistant", "hypertension", "integration_therapy", "completed", "intervention"}
    for name, (head, rows) in BASE.items():
        columns = {}
        for i, col in enumerate(head):
            values = [r[i] if r[i] != "" else None for r in rows]
            if col in ints:
                columns[col] = pa.array([None if v is None else int(v) for v in values], pa.int64())
            elif col in floats:
                # a whole number stored as a float (day 3.0) is still whole
                columns[col] = pa.array([None if v is None else float(v) for v in values], pa.float64())
            elif col in bools:
                columns[col] = pa.array(
                    [None if v is None else v.lower() in ("true", "1", "yes") for v in values], pa.bool_())
            else:
                columns[col] = pa.array(values, pa.string())
        if name == "assessments":
            columns["day"] = pa.array([float(r[1]) for r in rows], pa.float64())
        pq.write_table(pa.table(columns), pq_dir / f"{name}.parquet")
    import_export(csv_export, tmp_path / "a.duckdb")
    summary = import_export(pq_dir, tmp_path / "b.duckdb")
    assert summary.source_format == "parquet"
    a, b = dump(tmp_path / "a.duckdb"), dump(tmp_path / "b.duckdb")
    assert set(a) >= {"patients", "sessions", "assessments", "adverse_events"}
    assert a == b


# --- files and folders --------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    exc = refused(tmp_path, export=tmp_path / "nope")
    assert only(exc) == Problem(str(tmp_path / "nope"), None, None, None, None, "the export folder does not exist")
    assert exc.report().splitlines()[1] == f"  {tmp_path / 'nope'}: the export folder does not exist"


def test_not_a_folder(tmp_path):
    f = tmp_path / "file.csv"
    f.write_text("x\n")
    assert only(refused(tmp_path, export=f)).message.startswith("not a folder")


def test_missing_required_table(tmp_path):
    exc = refused(tmp_path, sessions=None)
    skipped = ("the values of this table were not checked: they refer to sessions, which could not be read; "
               "fix the problems listed for it and import again")
    assert [(p.file, p.table, p.message) for p in exc.problems] == [
        ("sessions.csv", "sessions", "required table missing: expected sessions.csv or sessions.parquet "
                                     "(or a sheet of that name in an Excel workbook export.xlsx)"),
        ("assessments.csv", "assessments", skipped),
        ("adverse_events.csv", "adverse_events", skipped),
    ]


def test_csv_and_parquet_of_one_table(tmp_path):
    export = write_export(tmp_path / "e", tables())
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{export / 'patients.csv'}')) TO '{export / 'patients.parquet'}'")
    exc = refused(tmp_path, export=export)
    p = exc.problems[0]
    assert (p.file, p.message) == ("patients.csv and patients.parquet", "two files for one table; keep only one of them")
    assert [q.table for q in exc.problems[1:]] == ["sessions", "assessments"]  # not checked: they refer to patients


def test_empty_file(tmp_path):
    export = write_export(tmp_path / "e", tables())
    (export / "assessments.csv").write_bytes(b"")
    p = only(refused(tmp_path, export=export))
    assert (p.file, p.table, p.message) == (
        "assessments.csv", "assessments", "empty file (0 bytes): a table needs at least its header row")


LATIN1 = ('not UTF-8 text: this file looks like it was saved as Latin-1 (Windows-1252); save it as UTF-8 '
          '(in Excel: "CSV UTF-8")')


def test_non_utf8_file_names_the_line(tmp_path):
    export = write_export(tmp_path / "e", tables())
    path = export / "patients.csv"
    path.write_bytes(path.read_bytes().replace(b"north,2025-Q2", b"M\xfcnchen,2025-Q2"))
    exc = refused(tmp_path, export=export)
    first = exc.problems[0]
    assert (first.file, first.table, first.line, first.message) == (
        "patients.csv", "patients", 3, LATIN1)
    assert exc.problems[1].message == "the values of this table were not checked: fix the problems listed for it and import again"


def test_non_utf8_header(tmp_path):
    export = write_export(tmp_path / "e", tables())
    path = export / "adverse_events.csv"
    path.write_bytes(b"session_id,\xe9vent,severity,intervention\nS1,nausea,,\n")
    p = only(refused(tmp_path, export=export))
    assert (p.file, p.line, p.message) == ("adverse_events.csv", 1, LATIN1)


def test_truncated_and_ragged_csv(tmp_path):
    export = write_export(tmp_path / "e", tables())
    path = export / "sessions.csv"
    text = path.read_text()
    lines = text.splitlines()
    lines[2] = lines[2] + ",extra"
    cut = "\n".join(lines)[:-40]  # the last line cut short, as by an interrupted copy
    path.write_text(cut)
    exc = refused(tmp_path, export=export)
    got = [(p.file, p.line, p.message) for p in exc.problems]
    short = len(cut.splitlines()[-1].split(","))
    assert got == [
        ("sessions.csv", 3, "the line has 18 fields but the header has 17: "
         "too many fields: a ragged line (every line needs one field per header column)"),
        ("sessions.csv", 5, f"the line has {short} fields but the header has 17: "
         "too few fields: a truncated or ragged line (every line needs one field per header column)"),
        ("sessions.csv", None, "the values of this table were not checked: fix the problems listed for it and import again"),
        ("assessments.csv", None, "the values of this table were not checked: they refer to sessions, which could "
         "not be read; fix the problems listed for it and import again"),
        ("adverse_events.csv", None, "the values of this table were not checked: they refer to sessions, which could "
         "not be read; fix the problems listed for it and import again"),
    ]
    assert exc.problems[0].value == lines[2]


def test_unclosed_quote(tmp_path):
    export = write_export(tmp_path / "e", tables())
    path = export / "adverse_events.csv"
    path.write_text("session_id,event,severity,intervention\nS1,\"nausea,mild,true\n")
    exc = refused(tmp_path, export=export)
    assert (exc.problems[0].line, exc.problems[0].message) == (
        2, "a quoted field is not closed (a truncated file, or a stray quote)")


def test_unreadable_parquet(tmp_path):
    export = write_export(tmp_path / "e", tables(adverse_events=None))
    (export / "adverse_events.parquet").write_bytes(b"PAR1 this is not parquet")
    p = only(refused(tmp_path, export=export))
    assert p.file == "adverse_events.parquet" and p.message.startswith("not a readable Parquet file: ")


def test_parquet_with_wrong_types(tmp_path):
    export = write_export(tmp_path / "e", tables(assessments=None, adverse_events=None))
    duckdb.sql(f"""COPY (SELECT 'P1' AS patient_id, DATE '2025-03-01' AS day, NULL::DOUBLE AS hours_post_dose,
                   'PHQ9' AS instrument, 20 AS score) TO '{export / 'assessments.parquet'}'""")
    duckdb.sql(f"""COPY (SELECT 'S1' AS session_id, 'nausea' AS event, NULL AS severity, 0.0 AS intervention
                   UNION ALL SELECT 'S1', 'headache', 'mild', 2.5) TO '{export / 'adverse_events.parquet'}'""")
    exc = refused(tmp_path, export=export)
    got = [(p.file, p.line, p.column, p.value, p.message) for p in exc.problems]
    assert got == [
        ("assessments.parquet", None, "day", "DATE", "the column holds calendar dates or times (type DATE); "
         "the data must be anonymized first (count days since the patient's first session)"),
        ("assessments.parquet", None, None, None,
         "the values of this table were not checked: fix the problems listed for it and import again"),
        ("adverse_events.parquet", 1, "intervention", "0.0", "not a boolean (true/false, 1/0 or yes/no)"),
        ("adverse_events.parquet", 2, "intervention", "2.5", "not a boolean (true/false, 1/0 or yes/no)"),
    ]
    assert "adverse_events.parquet, table adverse_events, row 2, column intervention, value '2.5'" in exc.report()


def test_parquet_float_with_a_fraction_in_an_int_column(tmp_path):
    export = write_export(tmp_path / "e", tables(assessments=None))
    duckdb.sql(f"""COPY (SELECT * FROM (VALUES ('P1', 0.0, NULL::DOUBLE, 'PHQ9', 20.0),
                                            ('P1', 7.5, NULL, 'PHQ9', 18.0)) t(patient_id, day, hours_post_dose, instrument, score))
                   TO '{export / 'assessments.parquet'}'""")
    p = only(refused(tmp_path, export=export))
    assert (p.file, p.line, p.column, p.value, p.message) == ("assessments.parquet", 2, "day", "7.5", "not a whole number")


# --- columns ------------------------------------------------------------------------------------------------


def test_missing_required_column(tmp_path):
    head, rows = BASE["assessments"]
    exc = refused(tmp_path, assessments=(head[:4], [r[:4] for r in rows]))
    assert [(p.file, p.line, p.column, p.message) for p in exc.problems] == [
        ("assessments.csv", 1, "score", "required column missing"),
        ("assessments.csv", None, None, "the values of this table were not checked: fix the problems listed for it "
         "and import again"),
    ]


def test_missing_optional_column_is_fine(tmp_path):
    head, rows = BASE["adverse_events"]
    export = write_export(tmp_path / "e", tables(adverse_events=(head[:2], [r[:2] for r in rows])))
    import_export(export, tmp_path / "db.duckdb")
    assert dump(tmp_path / "db.duckdb")["adverse_events"] == [("S1", "nausea", "mild", False), ("S3", "dizziness", "mild", False)]


def test_unknown_column_lists_the_expected_ones(tmp_path):
    head, rows = BASE["adverse_events"]
    p = only(refused(tmp_path, adverse_events=(head + ["comment"], [r + ["ok"] for r in rows])))
    assert (p.file, p.line, p.column, p.message) == (
        "adverse_events.csv", 1, "comment",
        "unknown column; the expected columns are session_id, event, severity, intervention")


@pytest.mark.parametrize(("column", "kind"), [
    ("First_Name", "a name"), ("lastName", "a name"), ("patient name", "a name"), ("date_of_birth", "a birth date"),
    ("DOB", "a birth date"), ("e-mail", "an e-mail address"), ("Email", "an e-mail address"),
    ("phone_number", "a phone number"), ("Address", "an address"), ("street", "an address"), ("City", "an address"),
    ("zip", "an address"), ("post_code", "an address"), ("patient_mrn", "a medical record number"),
    ("Medical Record Number", "a medical record number"), ("SSN", "a social security number"),
    ("insurance_id", "an insurance number"), ("visit_date", "calendar dates"), ("admissionTimestamp", "calendar dates"),
])
def test_identifier_like_column_names(tmp_path, column, kind):
    head, rows = BASE["patients"]
    p = only(refused(tmp_path, patients=(head + [column], [r + ["x"] for r in rows])))
    assert (p.file, p.line, p.column) == ("patients.csv", 1, column)
    assert p.message == (f"the column name suggests {kind}; the data must be anonymized first "
                         "(no names, birth dates, calendar dates, contact details or record numbers)")


def test_a_column_holding_calendar_dates_is_named(tmp_path):
    head, rows = BASE["sessions"]
    exc = refused(tmp_path, sessions=(head + ["visit"], [r + [v] for r, v in zip(rows, ["", "x", "2025-03-04", "7"])]))
    assert [(p.line, p.column, p.value, p.message) for p in exc.problems] == [
        # every format column, the optional esketamine monitoring ones too
        (1, "visit", None, "unknown column; the expected columns are " + ", ".join(ingest.COLUMNS["sessions"])),
        (4, "visit", "2025-03-04", "looks like a calendar date; the data must be anonymized first"),
    ]


@pytest.mark.parametrize("column", ["prior_failed_treatments", "site_code", "ethnicity", "weekday"])
def test_ordinary_column_names_are_not_identifiers(column):
    assert ingest.identifier_kind(column) is None


# --- values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "row", "column", "value", "message"), [
    ("patients", 3, "patient_id", "jane.doe@example.org", "looks like an e-mail address; the data must be anonymized first"),
    ("patients", 3, "patient_id", "123-45-6789", "looks like a social security number; the data must be anonymized first"),
    ("patients", 3, "patient_id", "+1 555 123 4567", "looks like a phone number; the data must be anonymized first"),
    ("patients", 3, "patient_id", "(555) 123-4567", "looks like a phone number; the data must be anonymized first"),
    ("patients", 3, "patient_id", "1984-03-07", "looks like a calendar date; the data must be anonymized first"),
    ("patients", 3, "patient_id", "07/03/1984", "looks like a calendar date; the data must be anonymized first"),
    ("patients", 3, "patient_id", "1/3/2025", "looks like a calendar date; the data must be anonymized first"),
    ("patients", 3, "patient_id", "01.03.2025", "looks like a calendar date; the data must be anonymized first"),
    ("patients", 3, "patient_id", "0044 20 7946 0958", "looks like a phone number; the data must be anonymized first"),
    ("patients", 3, "patient_id", "555-123-4567", "looks like a phone number; the data must be anonymized first"),
    ("patients", 3, "patient_id", "555.123.4567", "looks like a phone number; the data must be anonymized first"),
    ("patients", 1, "site", "clinic@example.com", "looks like an e-mail address; the data must be anonymized first"),
    ("adverse_events", 0, "session_id", "2025-03-01", "looks like a calendar date; the data must be anonymized first"),
])
def test_identifier_text_in_id_and_code_columns(tmp_path, table, row, column, value, message):
    exc = refused(tmp_path, **{table: {row: {column: value}}})
    first = exc.problems[0]
    assert (first.table, first.line, first.column, first.value, first.message) == (table, row + 2, column, value, message)


@pytest.mark.parametrize("pseudonym", ["2024-0001", "5551234567", "20250301", "00123456789", "A-1984_03"])
def test_pseudonyms_that_resemble_numbers_are_accepted(tmp_path, pseudonym):
    export = write_export(tmp_path / "e", tables(patients={2: {"patient_id": pseudonym}},
                                                 assessments={5: {"patient_id": pseudonym}}))
    assert import_export(export, tmp_path / "db.duckdb").rows["patients"] == 4


@pytest.mark.parametrize(("table", "row", "column", "value", "message"), [
    ("patients", 3, "patient_id", "P 1", "not a valid code: 1–64 characters of letters, digits, - and _"),
    ("patients", 3, "site", "s" * 33, "not a valid code: 1–32 characters of letters, digits, - and _"),
    ("patients", 3, "start_quarter", "2025-Q5", "not a quarter YYYY-Qn from 2000-Q1 to 2099-Q4 (e.g. 2025-Q3)"),
    ("patients", 3, "start_quarter", "1999-Q1", "not a quarter YYYY-Qn from 2000-Q1 to 2099-Q4 (e.g. 2025-Q3)"),
    ("patients", 0, "age_band", "17", "not one of: 18-24 25-34 35-44 45-54 55-64 65-74 75+"),
    ("patients", 0, "sex", "female", "not one of: F M X U"),
    ("patients", 0, "primary_diagnosis", "mdd", "not one of: GAD MDD PTSD SAD PANIC OCD OTHER"),
    ("patients", 0, "treatment_resistant", "maybe", "not a boolean (true/false, 1/0 or yes/no)"),
    ("patients", 0, "prior_failed_treatments", "-1", "out of range: must be a whole number from 0 to 2147483647"),
    ("patients", 0, "prior_failed_treatments", "two", "not a whole number"),
    ("sessions", 3, "day", "3.5", "not a whole number"),
    ("sessions", 3, "day", "-3", "out of range: must be a whole number from 0 to 2147483647"),
    ("sessions", 0, "route", "IO", "not one of: IV IM SC IN SL PO"),
    ("sessions", 0, "drug", "ketamin", "not one of: ketamine esketamine"),
    ("sessions", 0, "setting", "hospital", "not one of: clinic home"),
    ("sessions", 0, "phase", "taper", "not one of: induction maintenance"),
    ("sessions", 0, "dose_mg", "0", "out of range: must be more than 0 and at most 1000 mg"),
    ("sessions", 0, "dose_mg", "1000.5", "out of range: must be more than 0 and at most 1000 mg"),
    ("sessions", 0, "dose_mg", "35mg", "not a number"),
    ("sessions", 0, "dose_mg", "nan", "nan is not a value: leave the cell empty for a missing value"),
    ("sessions", 0, "dose_mg", "inf", "not a number"),
    ("sessions", 0, "integration_therapy", "y", "not a boolean (true/false, 1/0 or yes/no)"),
    ("sessions", 0, "sbp_pre", "59", "out of range: must be a whole number from 60 to 260"),
    ("sessions", 0, "sbp_peak", "261", "out of range: must be a whole number from 60 to 260"),
    ("sessions", 0, "dbp_pre", "29", "out of range: must be a whole number from 30 to 160"),
    ("sessions", 0, "dbp_peak", "161", "out of range: must be a whole number from 30 to 160"),
    ("sessions", 0, "heart_rate_peak", "221", "out of range: must be a whole number from 30 to 220"),
    ("sessions", 0, "cadss", "93", "out of range: must be a whole number from 0 to 92"),
    ("sessions", 0, "monitoring_minutes", "1441", "out of range: must be a whole number from 0 to 1440"),
    ("sessions", 0, "completed", "done", "not a boolean (true/false, 1/0 or yes/no)"),
    ("assessments", 0, "day", "-7.2", "not a whole number"),
    ("assessments", 0, "day", "99999999999", "implausible: more than 10000 days (about 27 years) after the first "
     "session, the plausibility limit; check the value"),
    ("assessments", 2, "hours_post_dose", "24", "out of range: hours after dosing must be more than 0 and less than 24"),
    ("assessments", 2, "hours_post_dose", "0", "out of range: hours after dosing must be more than 0 and less than 24"),
    ("assessments", 2, "hours_post_dose", "four", "not a number"),
    ("assessments", 0, "instrument", "GAD-7", "not one of: GAD7 PHQ9 PCL5"),
    ("assessments", 4, "score", "22", "out of range: must be a whole number from 0 to 21"),
    ("assessments", 0, "score", "28", "out of range: must be a whole number from 0 to 27"),
    ("assessments", 5, "score", "81", "out of range: must be a whole number from 0 to 80"),
    ("assessments", 5, "score", "-1", "out of range: must be a whole number from 0 to 80"),
    ("adverse_events", 0, "event", "Nausea", "not one of: dissociation dizziness nausea vomiting sedation vertigo "
     "headache anxiety hypertension tachycardia hallucination disorientation cognitive other"),
    ("adverse_events", 0, "severity", "high", "not one of: mild moderate severe"),
    ("adverse_events", 0, "intervention", "2", "not a boolean (true/false, 1/0 or yes/no)"),
])
def test_value_outside_type_enum_or_range(tmp_path, table, row, column, value, message):
    p = only(refused(tmp_path, **{table: {row: {column: value}}}))
    assert (p.file, p.table, p.line, p.column, p.value, p.message) == (f"{table}.csv", table, row + 2, column, value, message)


@pytest.mark.parametrize(("table", "column"), [
    ("patients", "site"), ("patients", "start_quarter"), ("patients", "age_band"), ("patients", "primary_diagnosis"),
    ("sessions", "session_id"), ("sessions", "route"), ("sessions", "setting"), ("sessions", "phase"),
    ("sessions", "day"), ("assessments", "day"), ("assessments", "instrument"), ("assessments", "score"),
    ("adverse_events", "event"),
])
def test_required_value_empty(tmp_path, table, column):
    row = 3 if table == "sessions" else 0  # S0: nothing refers to it
    p = only(refused(tmp_path, **{table: {row: {column: ""}}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (table, row + 2, column, None, "required value is empty")


def test_required_id_empty_also_breaks_its_references(tmp_path):
    exc = refused(tmp_path, patients={2: {"patient_id": ""}})
    got = [(p.table, p.line, p.column, p.message) for p in exc.problems]
    assert got == [("patients", 4, "patient_id", "required value is empty"),
                   ("assessments", 7, "patient_id", "unknown patient_id: not in patients")]


def test_duplicate_patient_id(tmp_path):
    p = only(refused(tmp_path, patients={2: {"patient_id": "P1"}}, assessments={5: {"patient_id": "P1"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "patients", 4, "patient_id", "P1", "duplicate patient_id (first on line 2)")


def test_duplicate_session_id(tmp_path):
    p = only(refused(tmp_path, sessions={1: {"session_id": "S1"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "sessions", 3, "session_id", "S1", "duplicate session_id (first on line 2)")


def test_unknown_patient_in_sessions(tmp_path):
    p = only(refused(tmp_path, sessions={3: {"patient_id": "P9"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "sessions", 5, "patient_id", "P9", "unknown patient_id: not in patients")


def test_unknown_patient_in_assessments(tmp_path):
    p = only(refused(tmp_path, assessments={5: {"patient_id": "P9"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "assessments", 7, "patient_id", "P9", "unknown patient_id: not in patients")


def test_unknown_session_in_adverse_events(tmp_path):
    p = only(refused(tmp_path, adverse_events={1: {"session_id": "S9"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "adverse_events", 3, "session_id", "S9", "unknown session_id: not in sessions")


def test_sessions_not_starting_on_day_0(tmp_path):
    p = only(refused(tmp_path, sessions={2: {"day": "2"}, 3: {"day": "1"}}, assessments={4: {"day": "1"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "sessions", 5, "day", "1", "this patient's first session is not on day 0 (days count from the first session)")


def test_post_dose_questionnaire_without_a_session_that_day(tmp_path):
    p = only(refused(tmp_path, assessments={3: {"hours_post_dose": "2"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "assessments", 5, "hours_post_dose", "2", "a post-dose questionnaire on day 28, but this patient has no session on that day")


def test_esketamine_only_intranasal(tmp_path):
    p = only(refused(tmp_path, sessions={0: {"drug": "esketamine"}}))
    assert (p.table, p.line, p.column, p.value, p.message) == (
        "sessions", 2, "drug", "esketamine", "esketamine is only given intranasally: the route must be IN")


def test_booleans_in_any_case_and_quoted_empty_cells(tmp_path):
    export = write_export(tmp_path / "e", tables(patients={0: {"treatment_resistant": "TRUE"}},
                                                 sessions={0: {"completed": "No"}}))
    path = export / "adverse_events.csv"
    path.write_text(path.read_text().replace("S3,dizziness,,", 'S3,dizziness,"",""'))
    import_export(export, tmp_path / "db.duckdb")
    d = dump(tmp_path / "db.duckdb")
    assert d["patients"][0][6] is True
    assert d["sessions"][0][16] is False
    assert d["adverse_events"][1] == ("S3", "dizziness", "mild", False)


def test_values_with_surrounding_spaces_are_trimmed(tmp_path):
    # clinic-export-format.md "Files as clinics really write them": values with surrounding spaces
    import_export(write_export(tmp_path / "e", tables(sessions={0: {"route": " IV", "day": "0 "}})), tmp_path / "db.duckdb")
    assert dump(tmp_path / "db.duckdb")["sessions"][0][2:4] == (0, "IV")
    # a value inside is still taken as written, and the report quotes it so the space shows
    (tmp_path / "b").mkdir()
    p = only(refused(tmp_path / "b", sessions={0: {"route": "I V"}}))
    assert (p.line, p.column, p.value, p.message) == (2, "route", "I V", "not one of: IV IM SC IN SL PO")
    assert "value 'I V'" in p.describe()


# --- the report ---------------------------------------------------------------------------------------------


def test_many_errors_across_tables_are_reported_together(tmp_path):
    head, rows = BASE["patients"]
    exc = refused(tmp_path, patients=(head + ["email"], [r + ["x"] for r in rows]),
                  sessions={0: {"route": "IO"}}, assessments={1: {"score": "99"}}, adverse_events={0: {"event": "x"}})
    got = [(p.table, p.line, p.column) for p in exc.problems]
    assert got == [("patients", 1, "email"), ("sessions", 2, "route"), ("assessments", 3, "score"),
                   ("adverse_events", 2, "event")]
    report = exc.report().splitlines()
    assert report[0] == f"Import refused: 4 problems in {tmp_path / 'export'}. Nothing was imported; {tmp_path / 'db.duckdb'} was not created."
    assert report[2] == "  sessions.csv, table sessions, line 2, column route, value 'IO': not one of: IV IM SC IN SL PO"
    assert len(report) == 5


def test_report_caps_each_rule_at_20_rows(tmp_path):
    head, rows = BASE["assessments"]
    many = [["P1", str(d), "", "PHQ9", "30"] for d in range(100, 150)]
    exc = refused(tmp_path, assessments=(head, rows + many), sessions={1: {"route": "XX"}})
    assert len(exc.problems) == 21
    assert exc.more == {("assessments.csv", "assessments", "score", "out of range: must be a whole number from # to #"): 30}
    # issue 10: one kind of problem across many rows is said once, naming its first lines
    report = exc.report().splitlines()
    assert report[0].startswith("Import refused: 51 problems in ")
    assert report[1] == "  sessions.csv, table sessions, line 3, column route, value 'XX': not one of: IV IM SC IN SL PO"
    assert report[2] == ("  assessments.csv, table assessments, column score: out of range: must be a whole number "
                         "from 0 to 27 (50 lines: lines 8, 9, 10, 11, 12 and 45 more; value '30')")
    assert len(report) == 3


def test_report_caps_structural_errors_too(tmp_path):
    export = write_export(tmp_path / "e", tables())
    with (export / "assessments.csv").open("a") as f:
        f.writelines("P1,40,,PHQ9\n" for _ in range(25))
    exc = refused(tmp_path, export=export)
    assert len(exc.problems) == 21
    report = exc.report().splitlines()
    assert report[-2].startswith("  assessments.csv, table assessments: the line has 4 fields but the header has 5: "
                                 "too few fields")
    assert report[-2].endswith("(25 lines: lines 8, 9, 10, 11, 12 and 20 more; value 'P1,40,,PHQ9')")
    assert report[-1] == ("  assessments.csv, table assessments: the values of this table were not checked: "
                          "fix the problems listed for it and import again")


# --- all or nothing -----------------------------------------------------------------------------------------


@pytest.fixture
def old_db(tmp_path) -> tuple[Path, bytes]:
    db = tmp_path / "db.duckdb"
    import_export(write_export(tmp_path / "old", tables()), db)
    return db, db.read_bytes()


def test_refused_import_leaves_the_old_database_byte_identical(tmp_path, old_db):
    db, before = old_db
    with pytest.raises(ImportRefused) as info:
        import_export(write_export(tmp_path / "bad", tables(sessions={0: {"route": "IO"}})), db)
    assert db.read_bytes() == before
    assert f"{db} was left unchanged" in info.value.report()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "db.duckdb", "old"]


@pytest.mark.parametrize("step", ["load_sql", "_previous_history"])
def test_interrupted_import_leaves_the_old_database_unchanged(tmp_path, old_db, monkeypatch, step):
    db, before = old_db
    real = getattr(ingest, step)

    def interrupt(*args, **kwargs):
        name = args[0] if args else None
        if step == "_previous_history" or (isinstance(name, str) and name.startswith("load_assessments")):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, step, interrupt)
    with pytest.raises(KeyboardInterrupt):
        import_export(write_export(tmp_path / "new", tables(adverse_events=None)), db)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb", "new", "old"]


def test_old_database_open_in_a_reader_keeps_working(tmp_path, old_db):
    db, _ = old_db
    reader = duckdb.connect(str(db), read_only=True)
    try:
        import_export(write_export(tmp_path / "new", tables(adverse_events=None)), db)
        assert reader.execute("SELECT count(*) FROM adverse_events").fetchone() == (2,)
    finally:
        reader.close()
    assert dump(db)["adverse_events"] == []


def test_stale_temp_files_of_killed_imports_are_removed(tmp_path, old_db):
    db, _ = old_db
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    for suffix in (f".importing-{dead}", f".importing-{dead}.wal"):
        (tmp_path / f".db.duckdb{suffix}").write_bytes(b"partial")
    (tmp_path / f".db.duckdb.importing-{dead}.tmp").mkdir()
    messages: list[str] = []
    import_export(write_export(tmp_path / "new", tables()), db, progress=messages.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb", "new", "old"]
    assert f"Removed .db.duckdb.importing-{dead}, left by an interrupted import" in messages


# --- reading ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "stored"), [("+5", 5), ("007", 7), ("3.0", 3), ("3.", 3), ("0", 0),
                                                ("5 ", 5), (" 5", 5)])
def test_whole_numbers_in_their_usual_spellings(tmp_path, value, stored):
    import_export(write_export(tmp_path / "e", tables(patients={0: {"prior_failed_treatments": value}})), tmp_path / "db.duckdb")
    assert dump(tmp_path / "db.duckdb")["patients"][0][7] == stored


@pytest.mark.parametrize("value", ["5 5", "0x10", "1_000", "5-"])
def test_other_spellings_are_not_whole_numbers(tmp_path, value):
    p = only(refused(tmp_path, patients={0: {"prior_failed_treatments": value}}))
    assert (p.line, p.column, p.value, p.message) == (2, "prior_failed_treatments", value, "not a whole number")


def test_scientific_notation_is_not_a_whole_number_and_says_why(tmp_path):
    p = only(refused(tmp_path, patients={0: {"prior_failed_treatments": "1e3"}}))
    assert (p.line, p.column, p.value, p.message) == (
        2, "prior_failed_treatments", "1e3", "not a whole number: the spreadsheet wrote it in scientific notation; "
        "format the column as Number and write the value in full")


def test_windows_line_endings_and_a_byte_order_mark(tmp_path):
    export = write_export(tmp_path / "e", tables())
    for name in ("patients", "sessions"):
        path = export / f"{name}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    import_export(export, tmp_path / "db.duckdb")
    assert dump(tmp_path / "db.duckdb")["patients"][0][8] is False  # the last column has no stray \r


def test_line_numbers_count_the_header_as_line_1_in_a_long_file(tmp_path):
    head, rows = BASE["assessments"]
    many = [["P1", str(d), "", "PHQ9", "5"] for d in range(100, 5100)]
    many[4321][4] = "28"
    p = only(refused(tmp_path, assessments=(head, rows + many)))
    assert (p.line, p.value) == (len(rows) + 4321 + 2, "28")


def test_a_database_path_that_cannot_be_written_is_refused_cleanly(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ImportRefused) as info:
        import_export(write_export(tmp_path / "e", tables()), tmp_path / "afile" / "db.duckdb")
    p = only(info.value)
    assert p.message.startswith("the new database could not be written: ")


def test_one_row_left_out_reads_in_the_singular():
    # "… and 1 more rows with the same problem", "1 problems": one noun per count, through spec.counted
    problems = [Problem("a.csv", "assessments", line, "score", "x", "not a whole number") for line in range(2, 22)]
    refused = ImportRefused(problems[:1], more={problems[0].rule(): 1})
    assert refused.report().splitlines() == [
        "Import refused: 2 problems. Nothing was imported.",
        "  a.csv, table assessments, line 2, column score, value 'x': not a whole number",
        "  … and 1 more row with the same problem"]
    assert ImportRefused(problems[:1]).report().splitlines()[0] == "Import refused: 1 problem. Nothing was imported."
    from dashboard.data import spec

    assert [spec.counted(n, "patient") for n in (0, 1, 2, 1234, 1.0)] == [
        "0 patients", "1 patient", "2 patients", "1,234 patients", "1 patient"]
