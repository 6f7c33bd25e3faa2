"""Files as clinics really write them (clinic-export-format.md, issue 10): every dialect gives exactly the
database of the plain export, what was tolerated is reported, and what cannot be read is refused, named."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv  # noqa: F401  (pa.csv)
import pyarrow.parquet as pq
import pytest

from dashboard.data import dialects, spec
from dashboard.data.ingest import ImportRefused, import_export

EXAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "example_export"


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every table (the derived ones too, so every summary) except the import's own records."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name NOT IN ('import_history', 'import_notes') "
            "ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n}").fetchall() for n in names}


def notes(db: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT file, note FROM import_notes ORDER BY rowid").fetchall()


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict[str, list[tuple]]:
    db = tmp_path_factory.mktemp("plain") / "db.duckdb"
    import_export(EXAMPLE, db)
    return dump(db)


def copy_example(tmp_path: Path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(EXAMPLE, out, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return out


def rewrite(path: Path, change) -> None:
    path.write_bytes(change(path.read_bytes()))


def each_csv(folder: Path, change) -> None:
    for p in sorted(folder.glob("*.csv")):
        rewrite(p, change)


def imported(folder: Path, tmp_path: Path):
    db = tmp_path / "db.duckdb"
    summary = import_export(folder, db)
    return dump(db), notes(db), summary


# --- dialects that import exactly like the plain export -------------------------------------------------


def mixed_endings(data: bytes) -> bytes:
    lines = data.split(b"\n")
    ends = [b"\r\n", b"\r", b"\n"]
    return b"".join(line + ends[i % 3] for i, line in enumerate(lines[:-1])) + lines[-1]


CASES = {
    # failing input 1: old Excel for Mac
    "cr_alone": (lambda f: rewrite(f / "patients.csv", lambda d: d.replace(b"\n", b"\r")),
                 [("patients.csv", "line endings CR alone (old Excel for Mac)")]),
    "crlf_bom_no_final_newline": (lambda f: each_csv(f, lambda d: b"\xef\xbb\xbf" + d.replace(b"\n", b"\r\n").rstrip(b"\r\n")),
                                  [(t, "UTF-8 with a byte-order mark") for t in
                                   ("patients.csv", "sessions.csv", "assessments.csv", "adverse_events.csv")]),
    "mixed_endings": (lambda f: rewrite(f / "sessions.csv", mixed_endings), [("sessions.csv", "mixed line endings")]),
    # failing input 3
    "file_names_in_any_case": (lambda f: [(f / "patients.csv").rename(f / "patients.CSV"),
                                          (f / "sessions.csv").rename(f / "Sessions.Csv"),
                                          (f / "adverse_events.csv").rename(f / "Adverse Events.csv")],
                               [("patients.CSV", "file name matched to patients.csv ignoring case"),
                                ("Sessions.Csv", "file name matched to sessions.csv ignoring case"),
                                ("Adverse Events.csv", "file name matched to adverse_events.csv ignoring case, "
                                                       "spaces and hyphens")]),
    # failing input 4, and the other delimiters
    "semicolons": (lambda f: rewrite(f / "patients.csv", lambda d: d.replace(b",", b";")),
                   [("patients.csv", "separated by semicolons (;), not commas")]),
    "tabs": (lambda f: each_csv(f, lambda d: d.replace(b",", b"\t")),
             [(t, "separated by tabs, not commas") for t in
              ("patients.csv", "sessions.csv", "assessments.csv", "adverse_events.csv")]),
    "header_case_and_spaces": (lambda f: rewrite(f / "patients.csv", lambda d: d.replace(
        b"patient_id,site", b" Patient_ID ,SITE ", 1)),
        [("patients.csv", "column names matched ignoring case and surrounding spaces: ' Patient_ID ' as "
                          "patient_id, 'SITE ' as site")]),
    # the newcomer's case: both at once, in the sessions table
    "file_name_and_header_case": (lambda f: [(f / "sessions.csv").rename(f / "Sessions.CSV"), rewrite(
        f / "Sessions.CSV", lambda d: d.replace(b"session_id,", b"Session_ID ,", 1))],
        [("Sessions.CSV", "file name matched to sessions.csv ignoring case"),
         ("Sessions.CSV", "column names matched ignoring case and surrounding spaces: 'Session_ID ' as session_id")]),
    "values_with_spaces": (lambda f: rewrite(f / "sessions.csv", lambda d: b"\n".join(
        [d.split(b"\n")[0]] + [b", ".join(b"  " + v + b" \t" for v in line.split(b",")) if line else line
                               for line in d.split(b"\n")[1:]])), []),
    # failing input 5: rows deleted in a spreadsheet, and blank lines among the rows
    "delimiter_only_lines": (lambda f: rewrite(f / "sessions.csv", lambda d: d + b",,,,,,,,,,,,,,,,\n" * 1247),
                             [("sessions.csv", "ignored 1,247 empty lines (nothing but delimiters or spaces: rows "
                                               "deleted in a spreadsheet)")]),
    "blank_lines_inside": (lambda f: rewrite(f / "assessments.csv", lambda d: d.replace(b"\n", b"\n\n  \n", 3)),
                           [("assessments.csv", "ignored 6 empty lines (nothing but delimiters or spaces: rows "
                                                "deleted in a spreadsheet)")]),
    "trailing_delimiter": (lambda f: rewrite(f / "adverse_events.csv", lambda d: d.replace(b"\n", b",\n")),
                           [("adverse_events.csv", "ignored 1 empty column (no name and no values)")]),
    "pandas_index_column": (lambda f: rewrite(f / "assessments.csv", lambda d: b"\n".join(
        (b"," + line if i == 0 else str(i - 1).encode() + b"," + line) if line else line
        for i, line in enumerate(d.split(b"\n")))),
        [("assessments.csv", "ignored the first column, unnamed, holding the row numbers 0, 1, 2, … "
                             "(an index column written by pandas)")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dialect_imports_like_the_plain_export(tmp_path, plain, case):
    change, expected_notes = CASES[case]
    folder = copy_example(tmp_path)
    change(folder)
    got, tolerated, summary = imported(folder, tmp_path)
    assert got == plain
    assert tolerated == expected_notes
    # the console report lists the same
    assert [n for n in summary.notes if n.startswith("Tolerated")] == [
        f"Tolerated in {file}: {note}." for file, note in expected_notes]


def test_parquet_with_the_pandas_index_and_padded_text(tmp_path, plain):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in spec.TABLES:
        table = pa.csv.read_csv(EXAMPLE / f"{name}.csv", convert_options=pa.csv.ConvertOptions(
            column_types={c: pa.string() for c in ("patient_id", "session_id", "site")}))
        if name == "patients":
            table = table.set_column(1, "site", pa.array([f" {v} " for v in table["site"].to_pylist()]))
        # pandas writes a non-default index as __index_level_0__
        table = table.append_column("__index_level_0__", pa.array(range(10, 10 + table.num_rows)))
        pq.write_table(table, folder / f"{name.upper()}.parquet")
    got, tolerated, _ = imported(folder, tmp_path)
    assert got == plain
    assert tolerated == [note for t in spec.TABLES for note in (
        (f"{t.upper()}.parquet", f"file name matched to {t}.parquet ignoring case"),
        (f"{t.upper()}.parquet", "ignored the index column __index_level_0__ that pandas writes"))]


def write_workbook(path: Path, change=None) -> None:
    """The example export as one workbook, numbers stored as numbers (as Excel does when a CSV is opened)."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name in spec.TABLES:
        ws = wb.create_sheet(name.replace("_", " ").title() if name == "adverse_events" else name)
        lines = (EXAMPLE / f"{name}.csv").read_text().splitlines()
        for i, line in enumerate(lines):
            cells: list[object] = []
            for v in line.split(","):
                try:
                    cells.append(int(v) if i and v.lstrip("-").isdigit() else float(v) if i and "." in v else v or None)
                except ValueError:
                    cells.append(v or None)
            ws.append(cells)
        if change:
            change(name, ws)
    wb.save(path)


def test_excel_workbook_imports_like_the_plain_export(tmp_path, plain):
    folder = tmp_path / "export"
    folder.mkdir()

    def site_as_number(name, ws):
        if name == "patients":
            ws.append([" ", None, "  "])  # a row left with spaces only, as a cleared row may be
    write_workbook(folder / "Export.xlsx", site_as_number)
    (folder / "notes.xlsx").write_bytes(b"not a workbook, and ignored: export.xlsx is the one")
    got, tolerated, summary = imported(folder, tmp_path)
    assert got == plain
    assert summary.source_format == "xlsx"
    assert tolerated[:2] == [("Export.xlsx", "read from sheet patients of the Excel workbook"),
                             ("Export.xlsx", "ignored 1 empty row (nothing but delimiters or spaces: rows deleted "
                                             "in a spreadsheet)")]
    assert tolerated[-1] == ("Export.xlsx", "read from sheet Adverse Events of the Excel workbook")


def test_excel_numbers_where_text_is_meant_are_read_as_text(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()

    def numeric_site(name, ws):
        if name == "patients":
            for row in ws.iter_rows(min_row=2, min_col=2, max_col=2):
                row[0].value = 7
    write_workbook(folder / "export.xlsx", numeric_site)
    import_export(folder, tmp_path / "db.duckdb")
    with duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True) as con:
        assert con.execute("SELECT DISTINCT site FROM patients").fetchall() == [("7",)]


def test_excel_date_in_age_band_is_refused_with_how_to_keep_text(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()

    def dated(name, ws):
        if name == "patients":
            ws["D3"].value = dt.datetime(2024, 6, 18)  # 18-24 turned into a date
            ws["C4"].value = dt.datetime(2025, 7, 1)
    write_workbook(folder / "export.xlsx", dated)
    db = tmp_path / "db.duckdb"
    import_export(EXAMPLE, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(ImportRefused) as info:
        import_export(folder, db)
    got = [(p.file, p.line, p.column, p.value, p.message) for p in info.value.problems]
    assert got == [
        ("export.xlsx", 3, "age_band", "2024-06-18", "Excel turned the age band into a date (2024-06-18): format "
         "the column as Text and type the value again (e.g. 18-24), or prefix it with an apostrophe ('18-24)"),
        ("export.xlsx", 4, "start_quarter", "2025-07-01", "Excel turned the start quarter into a date (2025-07-01): "
         "format the column as Text and type the value again (e.g. 2025-Q3), or prefix it with an apostrophe "
         "('2025-Q3)"),
    ]
    assert "export.xlsx, table patients, row 3, column age_band" in info.value.report()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # refused: the database is unchanged


def test_age_band_that_excel_turned_into_a_date_in_a_csv(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "patients.csv", lambda d: d.replace(b",25-34,", b",Jun-24,", 1))
    with pytest.raises(ImportRefused) as info:
        import_export(folder, tmp_path / "db.duckdb")
    (p,) = info.value.problems
    assert (p.column, p.value, p.message) == ("age_band", "Jun-24", dialects.excel_date_message("age_band", "Jun-24"))


# --- what cannot be read is refused, named ---------------------------------------------------------------


def refusal(folder: Path, tmp_path: Path) -> ImportRefused:
    with pytest.raises(ImportRefused) as info:
        import_export(folder, tmp_path / "db.duckdb")
    assert not (tmp_path / "db.duckdb").exists()
    return info.value


def test_utf16_file_is_refused_naming_the_encoding(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "adverse_events.csv", lambda d: d.decode().encode("utf-16"))
    p = refusal(folder, tmp_path).problems[0]
    assert (p.file, p.message) == ("adverse_events.csv", 'not UTF-8 text: this file looks like it was saved as UTF-16 '
                                   '(Excel\'s "Unicode Text"); save it as UTF-8 (in Excel: "CSV UTF-8")')


def test_a_zero_byte_is_named_as_damage_at_its_line_not_as_utf16(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "patients.csv", lambda d: d.replace(b"\n", b"\x00\n", 3).replace(b"\x00\n", b"\n", 2))
    p = refusal(folder, tmp_path).problems[0]
    assert (p.file, p.line, p.message) == ("patients.csv", 3, dialects.ZERO_BYTE)


def test_unnamed_column_with_values_is_refused(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "adverse_events.csv", lambda d: b"\n".join(
        (line + b"," + (b"" if i == 0 else b"x") if line else line) for i, line in enumerate(d.split(b"\n"))))
    (p,) = refusal(folder, tmp_path).problems
    assert (p.file, p.line, p.column, p.value) == ("adverse_events.csv", 2, None, "x")
    assert p.message.startswith("column 5 (no name) has no name but holds values: give it the name of a format column")


def test_decimal_comma_is_named(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "sessions.csv", lambda d: d.replace(b",", b";"))
    text = (folder / "sessions.csv").read_text().splitlines()
    head = text[0].split(";")
    row = text[1].split(";")
    row[head.index("dose_mg")] = "37,5"
    text[1] = ";".join(row)
    (folder / "sessions.csv").write_text("\n".join(text) + "\n")
    (p,) = refusal(folder, tmp_path).problems
    assert (p.line, p.column, p.value, p.message) == (
        2, "dose_mg", "37,5", "not a number: write the decimal point as a full stop (37.5) and no thousands separators")


# --- plausibility limits ---------------------------------------------------------------------------------


def test_questionnaire_at_an_absurd_day_is_refused_naming_the_limit(tmp_path):
    # failing input 2: the import accepted day 2147483647 and the export then ran out of memory
    folder = copy_example(tmp_path)
    patient = (folder / "patients.csv").read_text().splitlines()[1].split(",")[0]
    n = len((folder / "assessments.csv").read_text().splitlines())
    with (folder / "assessments.csv").open("a") as f:
        f.write(f"{patient},2147483647,,PCL5,30\n{patient},10000,,PCL5,30\n{patient},-365,,PCL5,30\n"
                f"{patient},-366,,PCL5,30\n{patient},99999999999999999999,,PCL5,30\n"
                f"{patient},-99999999999999999999,,PCL5,30\n")
    got = [(p.line, p.column, p.value, p.message) for p in refusal(folder, tmp_path).problems]
    assert got == [
        (n + 1, "day", "2147483647", "implausible: more than 10000 days (about 27 years) after the first session, "
         "the plausibility limit; check the value"),
        (n + 4, "day", "-366", "implausible: more than 365 days before the first session, the plausibility limit "
         "for a screening or baseline questionnaire; check the value"),
        # beyond what a day is stored as: the same limit is named, not the storage's range
        (n + 5, "day", "99999999999999999999", "implausible: more than 10000 days (about 27 years) after the "
         "first session, the plausibility limit; check the value"),
        (n + 6, "day", "-99999999999999999999", "implausible: more than 365 days before the first session, the "
         "plausibility limit for a screening or baseline questionnaire; check the value"),
    ]


def test_session_day_and_sessions_per_patient_limits(tmp_path):
    folder = copy_example(tmp_path)
    lines = (folder / "sessions.csv").read_text().splitlines()
    head = lines[0].split(",")
    first = lines[1].split(",")
    extra = []
    for k in range(2000):  # with the example's own sessions, more than 2,000 for this patient
        row = list(first)
        row[head.index("session_id")] = f"X{k}"
        row[head.index("day")] = str(1 + k % 9000)
        extra.append(",".join(row))
    late = list(first)
    late[head.index("session_id")], late[head.index("day")] = "LATE", "10001"
    huge = list(first)
    huge[head.index("session_id")], huge[head.index("day")] = "HUGE", "99999999999999999999"
    own = sum(1 for line in lines[1:] if line.split(",")[1] == first[1])
    (folder / "sessions.csv").write_text("\n".join(lines + extra + [",".join(late), ",".join(huge)]) + "\n")
    got = [(p.line, p.column, p.value, p.message) for p in refusal(folder, tmp_path).problems]
    # the 2,001st session of the patient, at its line; and the day beyond 10,000
    line_2001 = len(lines) + (2000 - own) + 1
    assert got == [
        (line_2001, "patient_id", first[1], f"implausible: this patient has {own + 2002} sessions, more than the "
         "plausibility limit of 2000 per patient; check the export"),
        (len(lines) + 2001, "day", "10001", "implausible: more than 10000 days (about 27 years) after the first "
         "session, the plausibility limit; check the value"),
        (len(lines) + 2002, "day", "99999999999999999999", "implausible: more than 10000 days (about 27 years) "
         "after the first session, the plausibility limit; check the value"),
    ]


def set_cell(folder: Path, table: str, column: str, value: str) -> int:
    """Write `value` into `column` of the first data row of table.csv; returns its line (2)."""
    lines = (folder / f"{table}.csv").read_text().splitlines()
    head = lines[0].split(",")
    row = lines[1].split(",")
    row[head.index(column)] = value
    lines[1] = ",".join(f'"{v}"' if "," in v else v for v in row)
    (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    return 2


@pytest.mark.parametrize(("table", "column", "value", "message"), [
    ("sessions", "sbp_pre", "NULL", "NULL is not a value: leave the cell empty for a missing value"),
    ("sessions", "dose_mg", "N/A", "N/A is not a value: leave the cell empty for a missing value"),
    ("sessions", "dose_mg", "#VALUE!", "an Excel error value (#VALUE!), not data: fix the formula in the spreadsheet "
     "or type the value"),
    ("sessions", "dose_mg", "1,000", "not a number: write the decimal point as a full stop (37.5) and no thousands "
     "separators"),
    ("sessions", "cadss", "1.2E+1", "not a whole number: the spreadsheet wrote it in scientific notation; format "
     "the column as Number and write the value in full"),
    ("sessions", "monitoring_minutes", "1/3/1900", "not a whole number: the spreadsheet shows it as a date; format "
     "the column as Number and enter the value again"),
    ("patients", "site", "1.23E+11", "Excel turned this id into a number in scientific notation: format the column "
     "as Text and enter the ids again from the source"),
    ("patients", "age_band", "18-Jun", "Excel turned the age band into a date (18-Jun): format the column as Text "
     "and type the value again (e.g. 18-24), or prefix it with an apostrophe ('18-24)"),
])
def test_values_a_spreadsheet_changed_get_a_message_that_says_what_to_do(tmp_path, table, column, value, message):
    folder = copy_example(tmp_path)
    line = set_cell(folder, table, column, value)
    (p,) = refusal(folder, tmp_path).problems
    assert (p.file, p.line, p.column, p.value, p.message) == (f"{table}.csv", line, column, value, message)


# --- the byte scan and the rewrite, at every chunk size ------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 1 << 23])
@pytest.mark.parametrize(("data", "endings", "blank", "rewritten"), [
    (b"a,b\n1,2\n3,4\n", "LF", False, None),
    (b"a,b\r\n1,2\r\n3,4", "CRLF", False, None),
    (b"a,b\r1,2\r3,4\r", "CR", False, b"a,b\n1,2\n3,4\n"),
    (b"a,b\r\n1,2\r3,4\n5,6", "mixed", False, b"a,b\n1,2\n3,4\n5,6"),
    (b"a,b\n1,2\n\n3,4\n", "LF", True, b"a,b\n1,2\n,\n3,4\n"),
    (b"a,b\r\n1,2\r\n \t \r\n3,4\r\n", "CRLF", True, b"a,b\n1,2\n,\n3,4\n"),
    (b"a,b\n1,2\n 3,4\n", "LF", False, None),  # a value with a leading space is not a blank line
    (b"a,b\n1,2\n3,4\n  ", "LF", True, b"a,b\n1,2\n3,4\n,"),
])
def test_scan_and_rewrite_do_not_depend_on_chunk_boundaries(tmp_path, monkeypatch, chunk, data, endings, blank,
                                                            rewritten):
    monkeypatch.setattr(dialects, "_CHUNK", chunk)
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    layout = dialects.sniff_csv(path, ["a", "b"])
    assert (layout.header, layout.delimiter, layout.line_endings, layout.blank_lines) == (["a", "b"], ",", endings, blank)
    assert layout.rewrite == (rewritten is not None)
    if rewritten is not None:
        dialects.normalise_csv(path, layout, tmp_path / "out.csv")
        assert (tmp_path / "out.csv").read_bytes() == rewritten


@pytest.mark.parametrize(("header", "delimiter"), [
    ("patient_id,site,age_band", ","), ("patient_id;site;age_band", ";"), ("patient_id\tsite\tage_band", "\t"),
    ("patient_id|site|age_band", "|"),
    # a semicolon inside a comma-separated header does not win: the split that names more columns does
    ("patient_id,site;x,age_band", ","),
])
def test_delimiter_is_the_one_that_names_the_format_columns(header, delimiter):
    assert dialects.choose_delimiter(header, ["patient_id", "site", "age_band"])[0] == delimiter


def test_index_of_a_filtered_frame_is_ignored(tmp_path, plain):
    # pandas writes the index it has: after filtering rows it is increasing but not 0, 1, 2, …
    folder = copy_example(tmp_path)
    rewrite(folder / "sessions.csv", lambda d: b"\n".join(
        (b"Unnamed: 0," + line if i == 0 else str(3 * i + 1).encode() + b"," + line) if line else line
        for i, line in enumerate(d.split(b"\n"))))
    got, tolerated, _ = imported(folder, tmp_path)
    assert got == plain
    assert tolerated == [("sessions.csv", "ignored the first column, Unnamed: 0, holding increasing row numbers "
                                          "(an index column written by pandas)")]


def test_a_first_column_that_is_not_an_index_is_refused(tmp_path):
    folder = copy_example(tmp_path)
    rewrite(folder / "adverse_events.csv", lambda d: b"\n".join(
        (b"," + line if i == 0 else (b"5," if i == 1 else b"2,") + line) if line else line
        for i, line in enumerate(d.split(b"\n"))))
    (p,) = refusal(folder, tmp_path).problems
    assert (p.line, p.column, p.value) == (2, None, "5")
    assert p.message.startswith("column 1 (no name) has no name but holds values")


def test_a_missing_table_names_the_file_that_may_hold_it(tmp_path):
    folder = copy_example(tmp_path)
    (folder / "patients.csv").rename(folder / "patients (1).csv")
    p = refusal(folder, tmp_path).problems[0]
    assert p.message == ("required table missing: expected patients.csv or patients.parquet (or a sheet of that "
                         "name in an Excel workbook export.xlsx); found patients (1).csv: rename it patients.csv "
                         "(or .parquet) if it holds the table")


def test_a_table_as_a_file_and_as_a_sheet_is_refused(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    write_workbook(folder / "export.xlsx")
    shutil.copy(EXAMPLE / "sessions.csv", folder / "sessions.csv")
    problems = refusal(folder, tmp_path).problems
    assert (problems[0].file, problems[0].message) == (
        "sessions.csv and export.xlsx (sheet sessions)", "two files for one table; keep only one of them")


def test_a_damaged_workbook_is_refused_naming_it(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "export.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    problems = refusal(folder, tmp_path).problems
    assert problems[0].file == "export.xlsx"
    assert problems[0].message.startswith("not a readable Excel workbook (")
    assert problems[0].message.endswith("save it again from Excel as .xlsx, or export each table as CSV UTF-8")
