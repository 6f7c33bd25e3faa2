"""The PDF board report (`ketamine-outcomes report`, the dashboard's "Download report (PDF)").

The PDFs are read back with poppler's `pdftotext -layout` and every number of the key tables is checked
against the CSV export for the same flags (written independently here from the CSV's values); page count,
page numbers and section order are asserted; `pdftoppm` renders the pages. Unit tests cover the cell
formats, the hidden/undefined distinction and the messages when a system part is missing.
"""

from __future__ import annotations

import re
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard import __version__, cli
from dashboard.analysis import disclosure
from dashboard.analysis.disclosure import protect
from dashboard.analysis.settings import Settings
from dashboard.charts import colors, figures
from dashboard.data import spec
from dashboard.reports import definitions, export, report
from metrics_data import relief_summary

SECTION_TITLES = ["Ketamine outcomes report", "Headline by route", "Response by route", "Time to relief",
                  "Side effects", "Maintenance", "Network benchmark", "Esketamine monitoring", "Definitions",
                  "Hidden cells", "Provenance"]
OPTIONAL_TITLES = {"Network benchmark", "Esketamine monitoring"}


def pdf_pages(path) -> list[str]:
    """Text of each page (layout kept: a table row is one line), no-break spaces as spaces."""
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
    pages = text.replace("\u00a0", " ").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def page_count(path) -> int:
    out = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", out, re.M).group(1))


def make(db, tmp_path, flags: list[str], name: str):
    pdf, csv_dir = tmp_path / f"{name}.pdf", tmp_path / name
    assert cli.main(["report", "--db", str(db), "--out", str(pdf), *flags]) == 0
    assert cli.main(["export", "--db", str(db), "--out", str(csv_dir), *flags]) == 0
    return pdf, csv_dir


# --- expected cells, written from the CSV's values ------------------------------------------------------


def pct(v) -> str:
    return "–" if pd.isna(v) else f"{float(v) * 100:.1f} %"


def num(v, digits: int = 1) -> str:
    return "–" if pd.isna(v) else f"{float(v):,.{digits}f}"


def count(v) -> str:
    return "–" if pd.isna(v) else f"{int(v):,}"


def interval(lo, hi, kind: str) -> str:
    if pd.isna(lo) and pd.isna(hi):
        return "–"
    scale, unit = (100, " %") if kind == "pct" else (1, "")
    low = "–" if pd.isna(lo) else f"{float(lo) * scale:.1f}"
    high = "…" if pd.isna(hi) else f"{float(hi) * scale:.1f}"
    return f"{low}–{high}{unit}"


class Expect:
    """Cells as the report must print them: the value of the CSV, 'hidden' where the CSV is empty because of
    the minimum cell: the same file at minimum cell 0 has a value there, or the rule hides the cell although it
    is undefined (`why`: the cells `protect` lists as hidden, from the file at minimum cell 0)."""

    def __init__(self, shown: pd.DataFrame, raw: pd.DataFrame | None, why: dict | None = None):
        self.shown, self.raw, self.why = shown, raw, why or {}

    def cell(self, i: int, cols, fmt) -> str:
        cols = cols if isinstance(cols, tuple) else (cols,)
        if self.raw is not None and any(pd.isna(self.shown.at[i, c]) and not pd.isna(self.raw.at[i, c])
                                        for c in cols):
            return "hidden"
        if any(pd.isna(self.shown.at[i, c]) and i in self.why.get(c, {}) for c in cols):
            return "hidden"
        return fmt(*[self.shown.at[i, c] for c in cols])


def assert_row(text: str, cells: list[str]) -> None:
    """Some line holds these cells in this order, separated by blanks only."""
    pattern = r"\s+".join(r"\s+".join(re.escape(part) for part in c.split()) for c in cells)
    assert re.search(r"(^|\s)" + pattern + r"(\s|$)", text, re.M), f"no row {cells!r}"


def check_tables(pages: list[str], csv_dir, raw_dir=None) -> int:
    """Every route row of the response, relief and maintenance tables and every event row of the side-effect
    table equals the CSVs'; returns how many cells read 'hidden'."""
    text = "\n".join(pages)

    def load(name):
        shown = pd.read_csv(csv_dir / name, keep_default_na=False, na_values=[""])
        raw = pd.read_csv(raw_dir / name, keep_default_na=False, na_values=[""]) if raw_dir else None
        why = (protect(export.SUMMARY_RULES[name], raw, 11).attrs.get(disclosure.WHY_HIDDEN)
               if raw is not None else None)
        return shown, Expect(shown, raw, why)

    hidden = 0
    response, e = load("response_by_route.csv")
    for i, route in enumerate(response["route"]):
        cells = [colors.route_label(route), e.cell(i, "patients", count), e.cell(i, "evaluable", count),
                 e.cell(i, "responders", count), e.cell(i, "response_rate", pct),
                 e.cell(i, ("response_ci_low", "response_ci_high"), lambda a, b: interval(a, b, "pct")),
                 e.cell(i, "remitters", count), e.cell(i, "remission_rate", pct),
                 e.cell(i, ("remission_ci_low", "remission_ci_high"), lambda a, b: interval(a, b, "pct"))]
        assert_row(text, cells)
        hidden += cells.count("hidden")
    relief, e = load("time_to_relief.csv")
    for i, route in enumerate(relief["route"]):
        cells = [colors.route_label(route), e.cell(i, "patients", count), e.cell(i, "events", count),
                 e.cell(i, "median_days", num),
                 e.cell(i, ("median_ci_low", "median_ci_high"), lambda a, b: interval(a, b, "num")),
                 *[e.cell(i, f"relieved_by_day_{d}", pct) for d in (1, 7, 14, 28)]]
        assert_row(text, cells)
        hidden += cells.count("hidden")
    maint, e = load("maintenance.csv")
    for i, route in enumerate(maint["route"]):
        cells = [colors.route_label(route), e.cell(i, "responders", count),
                 e.cell(i, "responders_in_maintenance", count), e.cell(i, "uptake_rate", pct),
                 e.cell(i, ("uptake_ci_low", "uptake_ci_high"), lambda a, b: interval(a, b, "pct")),
                 e.cell(i, "median_days_to_first_maintenance", num), e.cell(i, "median_interval_days", num),
                 e.cell(i, "sessions_per_patient_month", lambda v: num(v, 2)),
                 e.cell(i, "sustained_response_8w", pct)]
        assert_row(text, cells)
        hidden += cells.count("hidden")
    cohort, ce = load("cohort.csv")
    er = load("response_by_route.csv")[1]
    for i, route in enumerate(cohort["route"]):
        r = response.index[response["route"] == route]
        row = [colors.route_label(route), ce.cell(i, "patients", count), ce.cell(i, "eligible", count)]
        if len(r):
            row += [er.cell(r[0], "response_rate", pct), er.cell(r[0], "remission_rate", pct)]
        assert_row(text, row)  # the headline table's first columns
    se, e = load("side_effects.csv")
    routes = list(dict.fromkeys(se["route"]))
    for event in dict.fromkeys(se["event"]):
        cells = [figures.event_label(event)]
        for route in routes:
            i = se.index[(se["route"] == route) & (se["event"] == event)][0]
            cells.append(e.cell(i, "patient_rate", pct))
        assert_row(text, cells)
        hidden += cells.count("hidden")
    return hidden


def check_structure(path, pages: list[str]) -> None:
    """Page numbers 'Page i of N' on every page, N the PDF's page count; sections in order, each
    content section on a page after the previous one."""
    n = page_count(path)
    assert len(pages) == n
    for i, page in enumerate(pages, start=1):
        assert f"Page {i} of {n}" in page
    first_page = []
    for title in SECTION_TITLES:
        hits = [i for i, page in enumerate(pages) if re.search(rf"^\s*{re.escape(title)}\s*$", page, re.M)]
        if title in OPTIONAL_TITLES and not hits:
            continue  # where present: no benchmark rows or no esketamine sessions in this cohort
        assert hits, title
        first_page.append(hits[0])
    assert first_page == sorted(first_page), first_page
    assert first_page[0] == first_page[1] == 0  # the cover carries the headline table
    # each page's section begins on a new page; the last three follow one another
    content = first_page[1:-3]
    assert all(b > a for a, b in zip(content[1:], content[2:])), first_page


# --- the PDFs ---------------------------------------------------------------------------------------


def test_report_numbers_equal_the_csv_export(sample_db, tmp_path):
    pdf, csv_dir = make(sample_db, tmp_path, ["--min-cell", "0"], "all")
    pages = pdf_pages(pdf)
    check_structure(pdf, pages)
    assert check_tables(pages, csv_dir) == 0
    cover = pages[0]
    assert "All patients: 2,000 patients, of whom" in cover
    assert "Minimum cell 0 (small-cell protection off)" in re.sub(r"\s+", " ", cover)
    text = "\n".join(pages)
    assert "no value in this report is hidden" in re.sub(r"\s+", " ", text)
    assert f"ketamine-outcomes {__version__}" in text
    with duckdb.connect(str(sample_db), read_only=True) as con:
        import_id, sha = con.execute("SELECT import_id, source_sha256 FROM import_history "
                                     "ORDER BY import_id DESC LIMIT 1").fetchall()[0]
    provenance = re.sub(r"\s+", " ", text[text.rindex("Provenance"):])
    assert f"Data set id import {import_id}" in provenance and f"Source SHA-256 {sha}" in provenance
    assert "ketamine-outcomes report --db sample.duckdb --out report.pdf --min-cell 0" in text
    # pdftoppm draws every page
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    assert len(list(tmp_path.glob("page-*.png"))) == len(pages)


def test_routes_diagnoses_and_sexes_read_in_words_as_on_the_dashboard(sample_db, tmp_path):
    """The log-rank pairs, the side-effect table's route columns and the cover's filters use the dashboard's
    words ('IV infusion vs IM injection'), never the codes of links and files ('IV vs IM')."""
    flags = ["--min-cell", "0", "--diagnosis", "MDD", "--diagnosis", "PTSD", "--sex", "F"]
    pdf, csv_dir = make(sample_db, tmp_path, flags, "words")
    text = "\n".join(pdf_pages(pdf))
    flat = re.sub(r"\s+", " ", text)
    cover = re.sub(r"\s+", " ", pdf_pages(pdf)[0])
    assert "major depression, PTSD" in cover and "Sex female" in cover  # the filters table, not MDD, PTSD, F
    logrank = flat[flat.index("Pairwise log-rank tests"):]
    assert "IV infusion vs IM injection" in logrank and "Intranasal vs Oral" in logrank
    routes = "|".join(spec.ROUTES)
    assert not re.search(rf"\b({routes}) (vs|−) ({routes})\b", flat), "a pair of route codes in the report"
    # the side-effect table: one column per route, headed in words
    se = pd.read_csv(csv_dir / "side_effects.csv", keep_default_na=False, na_values=[""])
    assert_row(text, ["Side effect"] + [colors.route_label(r) for r in dict.fromkeys(se["route"])])


def test_small_cohort_hides_what_the_csv_hides(sample_db, tmp_path):
    flags = ["--age-band", "65-74"]  # about 110 patients: several routes below the minimum cell of 11
    pdf, csv_dir = make(sample_db, tmp_path, flags, "small")
    raw_dir = tmp_path / "raw"
    assert cli.main(["export", "--db", str(sample_db), "--out", str(raw_dir), *flags, "--min-cell", "0"]) == 0
    pages = pdf_pages(pdf)
    check_structure(pdf, pages)
    assert check_tables(pages, csv_dir, raw_dir) > 0
    flat = re.sub(r"\s+", " ", "\n".join(pages))
    assert "age 65-74" in pages[0]
    assert "With a minimum cell of 11, no count from 1 to 10 is shown" in flat
    # the hidden-cells section names the tables and routes concerned
    text = "\n".join(pages)
    hidden_page = text[re.search(r"^\s*Hidden cells\s*$", text, re.M).end():text.rindex("Provenance")]
    response = pd.read_csv(csv_dir / "response_by_route.csv", keep_default_na=False, na_values=[""])
    raw = pd.read_csv(raw_dir / "response_by_route.csv", keep_default_na=False, na_values=[""])
    hidden_routes = [r for i, r in enumerate(response["route"])
                     if (response.iloc[i, 1:].isna() & raw.iloc[i, 1:].notna()).any()]
    assert hidden_routes
    assert "response_by_route.csv" in hidden_page
    section = re.sub(r"\s+", " ", hidden_page)
    for route in hidden_routes:
        assert colors.route_label(route) in section


def test_a_relief_curve_hidden_entirely_is_said_not_drawn(sample_db, tmp_path, hidden_relief_cohort):
    site, diagnosis = hidden_relief_cohort
    pdf, _ = make(sample_db, tmp_path, ["--site", site, "--diagnosis", diagnosis], "hidden-curve")
    flat = re.sub(r"\s+", " ", "\n".join(pdf_pages(pdf)))
    section = flat[flat.index("Time to relief Days from the first session"):flat.index("Median time to relief and")]
    assert ("No curve can be shown for this cohort: every step of it rests on fewer than 11 relieved patients or "
            "patients at risk, so all are hidden to protect patients' privacy.") in section


# --- units ------------------------------------------------------------------------------------------


def test_cell_formats():
    assert report.fmt_pct(0.42516) == "42.5\u00a0%"
    assert report.fmt_pct(np.nan) == "–"
    assert report.fmt_count(1234.0) == "1,234"
    assert report.fmt_count(pd.NA) == "–"
    assert report.fmt_num(3.04) == "3.0"
    assert report.fmt_p(0.00004) == "<\u00a00.0001"
    assert report.fmt_p(0.0042) == "0.0042"
    assert report.fmt_p(0.123) == "0.12"
    assert report.fmt_interval(0.381, 0.47, "pct") == "38.1–47.0\u00a0%"
    assert report.fmt_interval(4, np.nan, "num") == "4.0–…"
    assert report.fmt_interval(np.nan, np.nan, "num") == "–"


def test_hidden_is_told_apart_from_undefined():
    raw = pd.DataFrame({"route": ["IV", "IM", "ALL"], "patients": [30, 4, 34],
                        "median_days": [np.nan, 3.0, 7.0]})
    shown = pd.DataFrame({"route": ["IV", "IM", "ALL"], "patients": pd.array([30, pd.NA, 34], dtype="Int64"),
                          "median_days": [np.nan, np.nan, 7.0]})
    mask = report.hidden_mask(raw, shown)
    assert mask["patients"].tolist() == [False, True, False]
    assert mask["median_days"].tolist() == [False, True, False]  # IV's median was never reached: not hidden
    html = report.table_html(shown, [report.Column("route", "Route", "route"), report.Column("patients", "n"),
                                     report.Column("median_days", "Median", "num")], hidden=mask)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells == ["IV infusion", "30", "–", "IM injection", "hidden", "hidden",
                     "All routes", "34", "7.0"]


def test_an_undefined_value_the_rule_hides_reads_hidden_not_undefined():
    # IM's 5 patients never reached half relieved: its median is undefined, but the rule hides it (fewer than 11
    # patients), and '–' ("not defined: the median was not reached") would tell that small group's finding
    raw = relief_summary([("IV", 60, 40, 20), ("IM", 5, 1, 4), ("IN", 40, 30, 10), ("ALL", 105, 71, 34)], 0.5)
    raw["median_days"] = [7.0, np.nan, 9.0, 8.0]
    shown = protect("time_to_relief", raw, 11)
    mask = report.hidden_mask(raw, shown)
    # (IN's median goes with its events, the cover for IM's one event)
    assert mask["median_days"].tolist() == [False, True, True, False]
    html = report.table_html(shown, [report.Column("route", "Route", "route"),
                                     report.Column("median_days", "Median", "num")], hidden=mask)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", html)[2:4] == ["IM injection", "hidden"]


def test_sections_in_reading_order():
    assert [fn.__name__ for fn in report.SECTIONS] == [
        "section_cover", "section_headline", "section_response", "section_relief", "section_side_effects",
        "section_maintenance", "section_benchmark", "section_esketamine", "section_definitions", "section_hidden",
        "section_provenance"]


def test_missing_chromium_is_named_with_what_to_install(sample_db, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    problems = report.missing_parts()
    assert len(problems) == 1 and "sudo apt-get install chromium" in problems[0]
    out = tmp_path / "r.pdf"
    assert cli.main(["report", "--db", str(sample_db), "--out", str(out)]) == cli.EXIT_INSTALLATION
    err = capsys.readouterr().err
    assert "The PDF report cannot be made on this machine" in err and "sudo apt-get install chromium" in err
    assert "Traceback" not in err and not out.exists()
    # everything else still works
    assert cli.main(["export", "--db", str(sample_db), "--out", str(tmp_path / "csv")]) == 0


def test_missing_pango_is_named_with_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint":  # what WeasyPrint raises when Debian's Pango is absent
            raise OSError("cannot load library 'libpango-1.0-0': No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pango)
    problems = report.missing_parts()
    assert any("sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0" in p for p in problems)
    with pytest.raises(report.ReportUnavailable, match="libpango-1.0-0 libpangoft2-1.0-0"):
        report.require_parts()


def test_report_cli_errors(tmp_path, capsys):
    assert cli.main(["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "r.pdf")]) == 1
    assert "No database at" in capsys.readouterr().err
    assert cli.main(["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "r.pdf"),
                     "--window", "-3"]) == cli.EXIT_USAGE


def test_an_empty_or_too_small_cohort_is_refused_with_a_message(sample_db, tmp_path, capsys):
    out = tmp_path / "r.pdf"
    # a site the data set does not have is named as a typo, as the export names it
    assert cli.main(["report", "--db", str(sample_db), "--out", str(out), "--site", "NOWHERE"]) == 1
    assert "--site: 'NOWHERE' is not a site in this database; its sites are S1" in capsys.readouterr().err
    with duckdb.connect(str(sample_db), read_only=True) as con:
        present = set(con.execute("SELECT site, sex::VARCHAR FROM patients GROUP BY ALL").fetchall())
        site, sex = con.execute("SELECT site, sex::VARCHAR FROM patients GROUP BY ALL HAVING count(*) < 11 "
                                "ORDER BY ALL LIMIT 1").fetchall()[0]
    nobody = next((s, x) for s in sorted({s for s, _ in present}) for x in spec.SEXES
                  if (s, x) not in present and x in {x for _, x in present})
    assert cli.main(["report", "--db", str(sample_db), "--out", str(out), "--site", nobody[0], "--sex", nobody[1]]) == 1
    assert f"No patients match these filters (site {nobody[0]}; " in capsys.readouterr().err
    assert cli.main(["report", "--db", str(sample_db), "--out", str(out), "--site", site, "--sex", sex]) == 1
    assert "too small to report" in capsys.readouterr().err
    assert not out.exists()


def test_a_scoped_report_is_made_and_names_no_other_site(sample_db, tmp_path, capsys):
    """`report --scope S1` (a site director's report) once failed with a traceback: the cover read the whole
    data set's row counts, which a scoped provenance leaves out. The report is made, says which sites it
    covers instead of the whole data set's counts, and no other site's code appears anywhere in it."""
    pdf = tmp_path / "s1.pdf"
    assert cli.main(["report", "--db", str(sample_db), "--out", str(pdf), "--scope", "S1", "--site", "S2"]) == 0
    # a site outside the scope is named and dropped, as in the dashboard (the report covers S1)
    assert capsys.readouterr().err == "warning: --site: 'S2' is not among the sites of --scope (S1); dropped\n"
    pages = pdf_pages(pdf)
    check_structure(pdf, pages)
    text = "\n".join(pages)
    assert not re.findall(r"\bS[2-6]\b", text), "another site is named in a scoped report"
    cover = re.sub(r"\s+", " ", pages[0])
    assert "Whole data set" not in cover
    assert "Sites S1 only: this report covers the sites its reader may see (the whole data set's counts are " \
           "left out)" in cover
    assert "site S1 (your access): 446 patients, of whom" in cover  # S1 alone, as the dashboard says it
    # the command line that reproduces it keeps the scope
    assert "ketamine-outcomes report --db sample.duckdb --out report.pdf --scope S1" in re.sub(r"\s+", " ", text)
    # a report of every site still gives the whole data set's counts
    with duckdb.connect(str(sample_db), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM patients").fetchone()[0]
        _, sections = report.build_sections(con, Settings())
    assert f"Whole data set</th><td>{n:,} patients, " in sections[0].blocks[-1]


def test_the_headline_table_ranks_routes_as_the_overview_and_headline_csv(sample_db, tmp_path):
    """metrics.md "Headline by route": ranked by response rate, ALL last. The PDF once listed the routes in
    the fixed order IV, IM, SC, IN, SL, PO while the Overview and headline.csv ranked them."""
    pdf, csv_dir = make(sample_db, tmp_path, [], "ranked")
    cover = pdf_pages(pdf)[0]
    table = cover[cover.index("Headline by route"):cover.index("Response: improvement")]
    labels = [colors.route_label(r) for r in [*spec.ROUTES, spec.ALL]]
    shown = [label for line in table.splitlines() for label in labels if line.strip().startswith(label + " ")]
    headline = pd.read_csv(csv_dir / "headline.csv", keep_default_na=False, na_values=[""])
    assert shown == [colors.route_label(r) for r in headline["route"]]
    assert shown == ["Sublingual", "Intranasal", "IV infusion", "Subcutaneous", "IM injection", "Oral", "All routes"]


def test_definitions_one_text_for_page_and_report():
    s = Settings(instrument="PHQ9", window=14, min_cell=5)
    md = definitions.definitions_markdown(s)
    assert "**Endpoint.** The last follow-up score that was not taken straight after a dose, within 14 days" in md
    assert f"An endpoint score of {spec.REMISSION_CUT['PHQ9']} or less on PHQ-9" in md
    assert "(now 5)" in md
    # the route comparison's verdict is the adjusted p-value; its intervals are per pair, not adjusted
    assert ("95 % intervals (for each pair alone, not adjusted for making several comparisons)" in md
            and "Two routes differ beyond chance when the adjusted p-value is below 0.05; otherwise they are not "
                "clearly different, even when the interval just clears zero." in md)
    # what readers asked about: remission above response, and a cohort of 5,001 from 5,000 patients
    assert "so a route's remission rate can be above its response rate" in md
    assert "the cohort of the whole data set may read 5,001 where it holds 5,000" in md
    assert "a count may read one or two above the count it is part of (15 evaluable patients of 14 eligible)" in md
    html = definitions.definitions_html(s)
    assert "<b>Endpoint.</b> The last follow-up score" in html
    assert "<i>Observed</i>: rates are among" in html and "**" not in html
    assert definitions.inline_html("a < b, **c** & *d*") == "a &lt; b, <b>c</b> &amp; <i>d</i>"


# --- the dashboard's button (AppTest; the browser test clicks it and reads the PDF) -------------------------


def _app(sample_db, monkeypatch, **params):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from dashboard.app import ui

    monkeypatch.setenv(ui.DB_ENV, str(sample_db))
    at = AppTest.from_file(str(Path(ui.__file__).with_name("main.py")), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    return at


def _report_button(at):
    buttons = [b for b in at.sidebar.get("download_button") if b.proto.label == "Download report (PDF)"]
    assert len(buttons) == 1
    return buttons[0]


def test_the_button_is_in_the_sidebar_and_off_when_a_part_is_missing(sample_db, monkeypatch, tmp_path):
    from dashboard.app import ui

    ui.load_report_problems.clear()
    at = _app(sample_db, monkeypatch)
    at.run()
    assert not at.exception
    assert not _report_button(at).proto.disabled
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    ui.load_report_problems.clear()
    try:
        at = _app(sample_db, monkeypatch)
        at.run()
        assert not at.exception and not at.error
        assert _report_button(at).proto.disabled
        notes = " ".join(c.value for c in at.sidebar.caption)
        assert "The PDF report is not available on this server" in notes
        assert "sudo apt-get install chromium" in notes
        assert at.get("plotly_chart"), "the rest of the dashboard still works"
    finally:
        ui.load_report_problems.clear()


def test_the_button_makes_the_command_lines_report(sample_db, monkeypatch):
    """The button's data callable is the command line's function for the page's settings."""
    from dashboard.app import ui

    at = _app(sample_db, monkeypatch, route=["IV", "IN"], min_cell="0")
    at.run()
    ctx = at.session_state[ui.CONTEXT_KEY]
    # a link without an instrument or diagnosis: the dashboard's default, matched (docs/choices.md)
    assert ctx.settings == Settings(route=("IV", "IN"), min_cell=0, instrument="matched")
    con = ui.load_connection(ctx.signature)
    build, sections = report.build_sections(con, ctx.settings)
    assert [s.key for s in sections] == ["cover", "headline", "response", "relief", "side_effects", "maintenance",
                                         "benchmark", "esketamine", "definitions", "hidden", "provenance"]
    from dashboard.reports import export

    assert build.summary("response_by_route.csv").equals(export.compute_summary(con, ctx.settings,
                                                                                "response_by_route.csv"))
    # the PDF says the matched instrument in words, and plots the trajectory in percent
    texts = " ".join(b for s in sections for b in s.blocks if isinstance(b, str))
    assert "Matched to diagnosis" in texts and "each patient&#x27;s own questionnaire" in texts
    titles = [b.layout.title.text for s in sections for b in s.blocks if not isinstance(b, str)]
    assert "Weekly improvement from baseline by route" in titles


def test_a_browser_page_not_ready_is_replaced_and_the_charts_exported_again(monkeypatch):
    # kaleido 1.5 may run an export in its tab before the page's script has loaded (seen once on a loaded
    # machine: "ReferenceError: kaleido_scopes is not defined"): the renderer opens a new browser, once
    import kaleido
    import plotly.graph_objects as go

    real = kaleido.Kaleido.calc_fig
    browsers = []

    async def first_page_not_ready(self, fig, *args, **kwargs):  # noqa: ANN001, ANN202
        browsers.append(id(self))
        if len(browsers) == 1:
            raise RuntimeError("{'type': 'object', 'subtype': 'error', 'description': "
                               "'ReferenceError: kaleido_scopes is not defined'}")
        return await real(self, fig, *args, **kwargs)

    monkeypatch.setattr(kaleido.Kaleido, "calc_fig", first_page_not_ready)
    renderer = report.ChartRenderer()
    try:
        svgs = renderer.svgs([go.Figure(go.Bar(x=["IV"], y=[1]))])
        assert len(svgs) == 1 and svgs[0].lstrip().startswith(b"<svg")
        assert len(browsers) == 2 and browsers[0] != browsers[1]  # a new browser the second time

        async def never_ready(self, fig, *args, **kwargs):  # noqa: ANN001, ANN202
            browsers.append(id(self))
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")

        monkeypatch.setattr(kaleido.Kaleido, "calc_fig", never_ready)
        browsers.clear()
        with pytest.raises(RuntimeError, match="kaleido_scopes"):  # twice in a row: said, not tried again
            renderer.svgs([go.Figure(go.Bar(x=["IV"], y=[1]))])
        assert len(browsers) == 2
    finally:
        renderer.close()


def test_a_renderer_closed_while_its_browser_starts_closes_the_browser():
    # a report that fails while Chromium is still starting (the command line closes the renderer at once)
    # once left the start pending: "Task was destroyed but it is pending!" and Chromium's profile folder behind
    code = ("from dashboard.reports.report import ChartRenderer\n"
            "r = ChartRenderer().start()\n"
            "r.close()\n"
            "print('closed')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and r.stdout.strip() == "closed", r.stderr
    assert "Task was destroyed" not in r.stderr and "Traceback" not in r.stderr, r.stderr
