"""Read table files as clinics really write them (clinic-export-format.md, "Files as clinics really write them").

EHRs and spreadsheets write the export's tables with other delimiters, line endings, byte-order marks, file
names in any case, deleted rows left as lines of delimiters, trailing delimiters, pandas index columns, or as
sheets of one Excel workbook. This module finds the table files, works out how each CSV was written (from its
header and one fast pass over its bytes), rewrites a CSV into the plain form only when DuckDB's reader would
misread it (a CR alone as line ending, mixed endings, blank lines that would shift line numbers), and reads
`.xlsx` sheets with python-calamine into text columns. It never decides whether a value is valid: the
importer's checks do, on the same text whatever the file's dialect, so every dialect gives the same database.

Nothing here imports Streamlit or DuckDB.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from dashboard.data import spec

# Delimiters detected from the header, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "commas", ";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}
# File name endings read as a table (any case): NAME.csv, NAME.tsv, NAME.txt, NAME.parquet
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet",)
# python-calamine reads these workbooks the same way; .xlsx is the format's, the others are accepted alike
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
# Characters trimmed around every value (Excel and EHRs pad cells with spaces, tabs and no-break spaces).
TRIM_CHARACTERS = " \t\u00a0"
_CHUNK = 1 << 23  # 8 MB per read when scanning a file's bytes
# A line break (CRLF taken whole, so its CR is not a line of its own), blanks, then another line break:
# an empty line. The atomic group keeps "\r\n" from matching as "\r" then "\n".
_BLANK_LINE = re.compile(rb"(?>\r\n|\r|\n)[ \t]*(?=\r\n|\r|\n)")
_INDEX_NAMES = re.compile(r"^(__index_level_\d+__)$")
_UNNAMED = re.compile(r"^unnamed: ?\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class TableFile:
    """Where one table of the export is: a CSV or Parquet file, or one sheet of an .xlsx workbook."""

    table: str
    path: Path
    fmt: str  # "csv", "parquet" or "xlsx"
    sheet: str | None = None  # the sheet's name as written in the workbook

    @property
    def label(self) -> str:
        return self.path.name


def similar_files(export_dir: Path, table: str) -> list[str]:
    """Files of the folder whose name holds the table's name but is not read as it (`patients (1).csv`,
    `patients.xlsb`), for the message about a missing table."""
    key = table.replace("_", "")
    out = []
    for p in sorted(export_dir.iterdir()):
        squashed = re.sub(r"[^a-z]", "", p.stem.lower())
        if p.is_file() and key in squashed and table_name(p.stem) is None:
            out.append(p.name)
        elif p.is_file() and table_name(p.stem) and p.suffix.lower() not in (*CSV_SUFFIXES, *PARQUET_SUFFIXES):
            out.append(p.name)
    return out


def table_name(text: str) -> str | None:
    """The table a file stem or sheet name stands for (any case, spaces or hyphens for `_`), or None."""
    name = re.sub(r"[\s-]+", "_", text.strip().lower())
    return name if name in spec.TABLES else None


def file_name_note(path: Path, table: str) -> str | None:
    """What the import report says of a table file whose name is not written exactly `table` plus a
    lower-case ending (`Patients.CSV`, `adverse events.csv`), or None."""
    if path.stem == table and path.suffix == path.suffix.lower():
        return None
    how = "case" if path.stem.lower() == table else "case, spaces and hyphens"
    return f"file name matched to {table}{path.suffix.lower()} ignoring {how}"


HEADERS_NAMED = 5  # header names listed in the note about their case or spaces; the rest are counted


def header_names_note(headers: Iterable[str]) -> str | None:
    """What the import report says of format columns whose header differs from the format's name in case or
    surrounding spaces (`Session_ID `), each quoted so its spaces show, or None when every name is exact."""
    changed = [h for h in headers if h != h.strip().lower()]
    if not changed:
        return None
    named = ", ".join(f"{h!r} as {h.strip().lower()}" for h in changed[:HEADERS_NAMED])
    more = f" and {len(changed) - HEADERS_NAMED} more" if len(changed) > HEADERS_NAMED else ""
    return f"column names matched ignoring case and surrounding spaces: {named}{more}"


def find_table_files(export_dir: Path) -> tuple[dict[str, list[TableFile]], list[tuple[str, str]]]:
    """Every file of the folder that holds one of the four tables, by table, and problems as (file, message).

    File names match in any case (`Patients.CSV`). A workbook `export.xlsx` (any case), or else the only
    `.xlsx` in the folder, gives the tables of its sheets named after them; other files are ignored. A table
    found twice is returned with both sources (the importer refuses that).
    """
    found: dict[str, list[TableFile]] = {t: [] for t in spec.TABLES}
    problems: list[tuple[str, str]] = []
    files = sorted(p for p in export_dir.iterdir() if p.is_file() and not p.name.startswith((".", "~$")))
    for p in files:
        suffix = p.suffix.lower()
        name = table_name(p.stem)
        if name and suffix in CSV_SUFFIXES:
            found[name].append(TableFile(name, p, "csv"))
        elif name and suffix in PARQUET_SUFFIXES:
            found[name].append(TableFile(name, p, "parquet"))
    books = [p for p in files if p.suffix.lower() in WORKBOOK_SUFFIXES]
    named = [p for p in books if p.stem.strip().lower() == "export"]
    book = named[0] if len(named) == 1 else books[0] if len(books) == 1 else None
    if book is None and books:
        problems.append((", ".join(p.name for p in books),
                         "several Excel workbooks and none named export.xlsx: keep the one with the tables "
                         "(sheets named patients, sessions, assessments, adverse_events) or name it export.xlsx"))
    elif book is not None:
        try:
            sheets = xlsx_sheet_names(book)
        except XlsxError as exc:
            problems.append((book.name, str(exc)))
            sheets = []
        for sheet in sheets:
            name = table_name(sheet)
            if name:
                found[name].append(TableFile(name, book, "xlsx", sheet))
    return found, problems


# --- CSV -------------------------------------------------------------------------------------------------


@dataclass
class CsvLayout:
    """How a CSV file was written: what the importer needs to read it as the plain form."""

    header: list[str] = field(default_factory=list)
    raw_header: list[str] = field(default_factory=list)  # the header's names as written, spaces kept
    delimiter: str = ","
    bom: bool = False
    line_endings: str = "LF"  # "LF", "CRLF", "CR" (old Excel for Mac) or "mixed"
    blank_lines: bool = False  # lines with nothing or only spaces (DuckDB would skip them, shifting line numbers)
    problem: str | None = None  # why the file cannot be read at all (another encoding, a zero byte)
    problem_value: str | None = None
    problem_line: int | None = None  # where it was found, when that is known

    @property
    def rewrite(self) -> bool:
        """DuckDB reads LF and CRLF files as they are; others are rewritten into LF with blank lines kept."""
        return self.line_endings in ("CR", "mixed") or self.blank_lines

    def notes(self) -> list[str]:
        """What was tolerated, in plain words for the import report."""
        out = []
        if self.delimiter != ",":
            out.append(f"separated by {DELIMITER_NAMES[self.delimiter]}, not commas")
        if self.bom:
            out.append("UTF-8 with a byte-order mark")
        if self.line_endings == "CR":
            out.append("line endings CR alone (old Excel for Mac)")
        elif self.line_endings == "mixed":
            out.append("mixed line endings")
        return out


def looks_utf16(raw: bytes) -> bool:
    """A byte-order mark of UTF-16, or text of which about every other byte is zero (UTF-16 without one): a
    single zero byte in ordinary text is damage, not UTF-16."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = raw[:4096]
    return len(sample) >= 2 and sample.count(b"\x00") >= len(sample) // 4


def guess_encoding(raw: bytes) -> str:
    """The encoding bytes that are not UTF-8 most likely are, in words for a message."""
    if looks_utf16(raw):
        return "UTF-16 (Excel's \"Unicode Text\")"
    return "Latin-1 (Windows-1252)"


ZERO_BYTE = ("a zero byte (NUL) in the text: the file is damaged or not a CSV text file; export it again from "
             "the clinic system, or remove that character")


def encoding_message(raw: bytes) -> str:
    return f"not UTF-8 text: this file looks like it was saved as {guess_encoding(raw)}; save it as UTF-8 " \
           "(in Excel: \"CSV UTF-8\")"


def choose_delimiter(line: str, expected: Iterable[str]) -> tuple[str, list[str]]:
    """The delimiter that splits the header line into the most format column names (then the most fields)."""
    expected = set(expected)
    best: tuple[int, int, int] | None = None
    chosen = (",", [line])
    for rank, d in enumerate(DELIMITERS):
        fields = next(csv.reader([line], delimiter=d), [])
        known = sum(1 for f in fields if f.strip().lower() in expected)
        key = (known, len(fields), -rank)
        if best is None or key > best:
            best, chosen = key, (d, fields)
    return chosen


def sniff_csv(path: Path, expected: Iterable[str]) -> CsvLayout:
    """Read the header and scan the bytes once: delimiter, byte-order mark, line endings, blank lines.

    A file in UTF-16, or whose header is not UTF-8, gets `.problem` (the importer refuses it, naming the
    encoding it looks like). Cost: one pass over the file with C-speed byte counts.
    """
    layout = CsvLayout()
    with path.open("rb") as f:
        head = f.read(1 << 20)
    if looks_utf16(head):
        layout.problem = encoding_message(head)
        return layout
    if b"\x00" in head:  # DuckDB's reader would stop there with an error of its own
        at = head.index(b"\x00")
        layout.problem, layout.problem_line = ZERO_BYTE, len(re.findall(rb"\r\n|\r|\n", head[:at])) + 1
        return layout
    layout.bom = head.startswith(b"\xef\xbb\xbf")
    first = re.split(rb"\r\n|\r|\n", head, maxsplit=1)[0]
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        layout.problem = encoding_message(first)
        layout.problem_value = first[max(0, exc.start - 20): exc.end + 20].decode("utf-8", "replace").strip()
        return layout
    layout.delimiter, fields = choose_delimiter(line, expected)
    layout.raw_header = list(fields)
    layout.header = [h.strip() for h in fields]

    crlf = cr = lf = 0
    carry = overlap = b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            buf = carry + chunk
            if chunk:
                # counted up to just before the last line break, so a CRLF is never cut in two
                cut = max(max(buf.rfind(b"\n"), buf.rfind(b"\r")) - 1, 0)
                part, carry = buf[:cut], buf[cut:]
            else:
                part, carry = buf, b""
            # as few passes as possible: a file without CR (the usual case) needs three substring tests
            n_cr = part.count(b"\r")
            if n_cr:
                n_crlf = part.count(b"\r\n")
                crlf += n_crlf
                cr += n_cr - n_crlf
                lf += part.count(b"\n") - n_crlf
            elif b"\n" in part:
                lf += 1
            # a blank line may begin in the previous part: look at it from that part's last line break on
            seen = overlap + part
            if not layout.blank_lines and _has_blank_line(seen, b"\r" in seen):
                layout.blank_lines = True
            last = max(seen.rfind(b"\n"), seen.rfind(b"\r"))
            overlap = seen[max(last, len(seen) - 4096, 0):]
            if not chunk:
                break
    if overlap.strip(b"\r\n") and not overlap.strip(b" \t\r\n"):
        layout.blank_lines = True  # a last line of only spaces, without a line ending
    kinds = [k for k, n in (("CRLF", crlf), ("CR", cr), ("LF", lf)) if n]
    layout.line_endings = kinds[0] if len(kinds) == 1 else "LF" if not kinds else "mixed"
    return layout


def _has_blank_line(part: bytes, cr: bool) -> bool:
    """Whether bytes hold an empty line (or one of only spaces and tabs). Plain substring tests run at memory
    speed; the regular expression (far slower) runs only where a line starts with a blank."""
    breaks = (b"\n\n", b"\r\r", b"\n\r\n", b"\r\n\r\n") if cr else (b"\n\n",)
    if any(x in part for x in breaks):
        return True
    starts = (b"\n ", b"\n\t", b"\r ", b"\r\t") if cr else (b"\n ", b"\n\t")
    if any(x in part for x in starts):
        return _BLANK_LINE.search(part) is not None
    return False


def normalise_csv(path: Path, layout: CsvLayout, out: Path) -> None:
    """Write `path` with LF line endings, each blank line replaced by a line of delimiters, so that DuckDB
    reads one record per line (line numbers stay those of the file) and the blank lines as empty rows, which
    the importer then drops and counts. Only used when `layout.rewrite`; streams in chunks."""
    empty = (layout.delimiter * max(len(layout.header) - 1, 1)).encode()
    carry = b""
    with path.open("rb") as f, out.open("wb") as w:
        while True:
            chunk = f.read(_CHUNK)
            buf = carry + chunk
            if chunk:
                # hold back the last partial line, and a final CR that may be the first half of a CRLF
                keep = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
                cut = max(buf.rfind(b"\n", 0, keep), buf.rfind(b"\r", 0, keep)) + 1
                head, carry = buf[:cut], buf[cut:]
            else:
                head, carry = buf, b""
            lines = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            tail = lines.pop()  # text after the last line break: only at the end of the file
            w.write(b"".join((ln if ln.strip(b" \t") else empty) + b"\n" for ln in lines))
            if tail:
                w.write(tail if tail.strip(b" \t") else empty)
            if not chunk:
                break


def field_count(line: str, delimiter: str) -> int:
    """How many fields a CSV line holds (quotes respected), for the message about a ragged line."""
    return len(next(csv.reader(io.StringIO(line), delimiter=delimiter), []))


def column_role(name: str, position: int, fmt: str) -> str | None:
    """What a column not in the format may be: "index" (pandas' Parquet index, always ignored),
    "unnamed" (an empty or `Unnamed: 0` header: ignored if every value is empty, or if it is the first column
    holding 0, 1, 2, …), or None (an ordinary column)."""
    stripped = name.strip()
    if fmt == "parquet" and _INDEX_NAMES.match(stripped):
        return "index"
    if stripped == "" or _UNNAMED.match(stripped):
        return "unnamed"
    return None


# --- Excel -----------------------------------------------------------------------------------------------


class XlsxError(Exception):
    """An Excel workbook that cannot be read (the message says what to do)."""


@dataclass
class XlsxSheet:
    """One sheet as text columns: `header`, `columns` (one list of str|None per header cell, data rows only,
    row 2 of the sheet first) and the cells Excel stored as dates or times: (row, column index, ISO text)."""

    header: list[str]
    columns: list[list[str | None]]
    dates: list[tuple[int, int, str]]


def xlsx_sheet_names(path: Path) -> list[str]:
    try:
        from python_calamine import CalamineWorkbook

        return list(CalamineWorkbook.from_path(str(path)).sheet_names)
    except ImportError as exc:  # a broken installation, not the user's file
        raise XlsxError(f"cannot read Excel workbooks: python-calamine is not installed ({exc}); "
                        "reinstall the dashboard") from None
    except Exception as exc:  # calamine raises its own error types for damaged or non-xlsx files
        raise XlsxError(f"not a readable Excel workbook ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "save it again from Excel as .xlsx, or export each table as CSV UTF-8") from None


def cell_text(value: object) -> str | None:
    """A cell as the text a CSV would hold: numbers Excel stored for text (a site code 7) read as `7`,
    booleans as true/false, empty as None. Dates and times are returned in ISO form (the caller refuses them)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def read_xlsx_sheet(path: Path, sheet: str) -> XlsxSheet:
    """A sheet's header (row 1) and its cells as text (see `cell_text`); rows and columns keep their places,
    so row r of the sheet is data row r − 2."""
    try:
        from python_calamine import CalamineWorkbook

        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except Exception as exc:
        raise XlsxError(f"sheet {sheet} could not be read ({type(exc).__name__}); save the workbook again as .xlsx") from None
    if not rows:
        return XlsxSheet([], [], [])
    header = [(cell_text(v) or "").strip() for v in rows[0]]
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in range(width)]
    dates: list[tuple[int, int, str]] = []
    for r, row in enumerate(rows[1:], start=2):
        for c in range(width):
            value = row[c] if c < len(row) else None
            if isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta)):
                dates.append((r, c, cell_text(value) or ""))
            columns[c].append(cell_text(value))
    # cells to the right of the header (a value in a column without a name) become unnamed columns
    extra = max((len(row) for row in rows), default=0) - width
    for c in range(width, width + max(extra, 0)):
        values = [cell_text(row[c]) if c < len(row) else None for row in rows[1:]]
        if any(v is not None for v in values):
            header.append("")
            columns.append(values)
    return XlsxSheet(header, columns, dates)


def excel_date_message(column: str, iso: str) -> str:
    """Why a cell Excel stored as a date is refused, and how to keep the value as text."""
    what = {"age_band": "the age band", "start_quarter": "the start quarter"}.get(column)
    if what:
        example = "18-24" if column == "age_band" else "2025-Q3"
        return (f"Excel turned {what} into a date ({iso}): format the column as Text and type the value again "
                f"(e.g. {example}), or prefix it with an apostrophe ('{example})")
    return (f"Excel stored this cell as a date or time ({iso}); the export holds no calendar dates: format the "
            "column as Text or Number and enter the value again")


# Values Excel leaves in a CSV when it turned an age band or a quarter into a date: Jun-24, 24-Jun, 6/18/2024,
# 2024-06-18, 18.06.2024, or a serial day number of this century.
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_DATE_LIKE = re.compile(
    rf"^({_MONTH}[-/ .]\d{{1,4}}|\d{{1,4}}[-/ .]{_MONTH}([-/ .]\d{{2,4}})?|\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}"
    r"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?|(3[6-9]|[4-6]\d)\d{3})$",
    re.IGNORECASE,
)


def looks_like_date(value: str) -> bool:
    """Whether text reads as a calendar date as spreadsheets write them (`Jun-24`, `3-1-25`, `18.06.2024`,
    `2024-06-18 09:00`, an Excel serial day of this century)."""
    return bool(_DATE_LIKE.match(value.strip()))


def excel_date_hint(column: str | None, value: str | None) -> str | None:
    """A better message for an age band or quarter that Excel turned into a date on its way to a CSV."""
    if column in ("age_band", "start_quarter") and value and _DATE_LIKE.match(value.strip()):
        return excel_date_message(column, value.strip())
    return None


_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def decimal_comma_hint(value: str | None) -> str | None:
    """A better message for a number written with a decimal comma (37,5) or a thousands separator."""
    if value and _DECIMAL_COMMA.match(value.strip()):
        return "not a number: write the decimal point as a full stop (37.5) and no thousands separators"
    return None


_MISSING_WORDS = {"NULL", "NA", "N/A", "NAN", "NONE", "NIL", "-", "--", "?", "MISSING", "UNKNOWN"}
_EXCEL_ERRORS = re.compile(r"^#(N/A|VALUE!|REF!|DIV/0!|NAME\?|NUM!|NULL!|SPILL!|CALC!)$", re.IGNORECASE)
_SCIENTIFIC = re.compile(r"^[+-]?\d+(\.\d+)?[Ee][+-]?\d+$")


def spreadsheet_hint(column: str | None, value: str | None, message: str) -> str:
    """The message for a refused value, or a better one when the value shows what a spreadsheet or an EHR did
    to it: an age band or quarter turned into a date, a decimal comma, a word for "missing", an Excel error
    value, scientific notation, a number shown as a date."""
    if value is None:
        return message
    v = value.strip()
    hint = excel_date_hint(column, v)
    if hint:
        return hint
    if v.upper() in _MISSING_WORDS and not message.startswith("unknown"):
        return f"{v} is not a value: leave the cell empty for a missing value"
    if _EXCEL_ERRORS.match(v):
        return f"an Excel error value ({v}), not data: fix the formula in the spreadsheet or type the value"
    if message in ("not a number", "not a whole number"):
        if _SCIENTIFIC.match(v):
            return (f"{message}: the spreadsheet wrote it in scientific notation; format the column as Number "
                    "and write the value in full")
        if _DATE_LIKE.match(v):
            return f"{message}: the spreadsheet shows it as a date; format the column as Number and enter the value again"
        return decimal_comma_hint(v) or message
    if message.startswith("not a valid code") and _SCIENTIFIC.match(v):
        return ("Excel turned this id into a number in scientific notation: format the column as Text and "
                "enter the ids again from the source")
    return message

