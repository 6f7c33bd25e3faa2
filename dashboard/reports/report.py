"""The board report: one PDF of the current view, the same from the dashboard's button and the command line.

`report_pdf_bytes(con, settings)` builds the document as an ordered list of sections (`SECTIONS`): a cover
(the cohort in plain words, filters and settings, the data set and its import time), the headline table by
route, one section per dashboard page (response, time to relief, side effects, maintenance) with its charts
and key table, the definitions, what small cells were hidden and why, and the provenance. Every number comes
from the same core functions as the CSV export (`export.compute_summary`, `disclosure.protect`), under the
same minimum cell; every chart from the dashboard's own builders (`dashboard/charts/figures.py`), exported as
SVG with Plotly's static-image path (kaleido 1.x, which drives the system's Chromium) so charts stay vector
graphics; the layout is HTML with print CSS made into a PDF by WeasyPrint (page numbers in the margin).

Adding a section is one function `section_x(build: ReportBuild) -> Section | None` appended to `SECTIONS`
(before "definitions"): it reads tables through `build.summary(file)` / `build.protected(name, raw)`, adds
charts with `Section.chart(fig)`, tables with `Section.table(...)`, and reports what disclosure hid with
`build.note_hidden(...)`, which the "Hidden cells" section lists.

System parts: WeasyPrint needs Debian's `libpango-1.0-0` and `libpangoft2-1.0-0`; kaleido needs Chromium
(Debian's `chromium`). `missing_parts()` names what is absent and the command that installs it;
`report_pdf_bytes` raises `ReportUnavailable` with that text instead of a traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import datetime as dt
import html
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

from dashboard import __version__
from dashboard.analysis import benchmark, metrics, rems
from dashboard.analysis import disclosure
from dashboard.analysis.disclosure import protect
from dashboard.analysis.settings import Settings
from dashboard.charts import colors, figures
from dashboard.data import spec, store
from dashboard.reports import export
from dashboard.reports.definitions import definitions_html

REPORT_FILE = "ketamine-outcomes-report.pdf"
CHART_WIDTH_PX = 760  # the SVG's own width: 13 px chart text prints at about 8 pt on the A4 text width
DEBIAN_PACKAGES = ("chromium", "libpango-1.0-0", "libpangoft2-1.0-0")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
HIDDEN = "hidden"
UNDEFINED = "–"


class ReportUnavailable(RuntimeError):
    """A system part the PDF needs is missing; the message says exactly what to install."""


class ReportNotWritten(store.StoreError):
    """The PDF cannot be written where asked (a folder there, no permission, disk full); says what to do."""


class EmptyCohort(ValueError):
    """No patient, or fewer than the minimum cell, matches the filters: a report would show nothing."""


def check_cohort(con: duckdb.DuckDBPyConnection, s: Settings) -> None:
    """Raise EmptyCohort with what to do when the cohort is empty or too small to show (as the dashboard's
    pages say it; the count is cohort.csv's, protected alike)."""
    n = protect("cohort", metrics.cohort_size(con, s), s.min_cell)["patients"].iloc[0]
    if pd.isna(n):
        raise EmptyCohort(f"This cohort is too small to report ({s.describe_filters()}): it has fewer than "
                          f"{s.min_cell} patients, so every figure would be hidden. Widen the filters.")
    if n == 0:
        raise EmptyCohort(f"No patients match these filters ({s.describe_filters()}). Remove a filter.")


# --- system parts ------------------------------------------------------------------------------------


def browser_path() -> str | None:
    """The Chromium kaleido will drive: $BROWSER_PATH (kaleido's own override), else one on the PATH."""
    override = os.environ.get("BROWSER_PATH")
    if override:
        return override if Path(override).exists() else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_parts() -> list[str]:
    """What the PDF report needs and this machine lacks, each with what to install (empty: all present)."""
    problems: list[str] = []
    try:
        import weasyprint  # noqa: F401 - loading it loads Pango, the part that may be missing
    except OSError:
        problems.append("the Pango text libraries that WeasyPrint lays the PDF out with are missing: install "
                        "them with `sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0`")
    except ImportError:
        problems.append(f"the Python package weasyprint is missing: {store.REINSTALL}")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        problems.append(f"the Python package kaleido is missing: {store.REINSTALL}")
    if browser_path() is None:
        problems.append("Chromium, which draws the charts, is missing: install it with "
                        "`sudo apt-get install chromium` (or set BROWSER_PATH to a Chromium or Chrome binary)")
    return problems


def require_parts() -> None:
    problems = missing_parts()
    if problems:
        raise ReportUnavailable("The PDF report cannot be made on this machine: " + "; ".join(problems) + ".")


# --- formatting (one rule for every table cell) ----------------------------------------------------------


def _isnan(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v))


def fmt_count(v: object) -> str:
    """1234 -> '1,234'."""
    return UNDEFINED if _isnan(v) else f"{int(round(float(v))):,}"  # type: ignore[arg-type]


def fmt_pct(v: object) -> str:
    """0.4251 -> '42.5 %' (one decimal, a no-break space before the sign)."""
    return UNDEFINED if _isnan(v) else f"{float(v) * 100:.1f}\u00a0%"  # type: ignore[arg-type]


def fmt_num(v: object, digits: int = 1) -> str:
    return UNDEFINED if _isnan(v) else f"{float(v):,.{digits}f}"  # type: ignore[arg-type]


def fmt_p(v: object) -> str:
    """A p-value as a reader expects it: '< 0.0001', '0.003', '0.42' (the dashboard's rule)."""
    if _isnan(v):
        return UNDEFINED
    p = float(v)  # type: ignore[arg-type]
    if p < 0.0001:
        return "<\u00a00.0001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def fmt_interval(lo: object, hi: object, kind: str) -> str:
    """'38.1–47.0 %' (kind 'pct'), '4.0–7.0' (kind 'num'); an open upper end shows as '…'."""
    if _isnan(lo) and _isnan(hi):
        return UNDEFINED
    f = (lambda x: f"{float(x) * 100:.1f}") if kind == "pct" else (lambda x: f"{float(x):.1f}")
    text = f"{UNDEFINED if _isnan(lo) else f(lo)}–{'…' if _isnan(hi) else f(hi)}"
    return text + ("\u00a0%" if kind == "pct" else "")


@dataclass(frozen=True)
class Column:
    """A table column: the source column(s), its heading and how a value is written.

    `kind`: 'text', 'route', 'count', 'pct', 'num' (with `digits`), 'p', or 'interval_pct' / 'interval_num'
    (then `source` is (low, high))."""

    source: str | tuple[str, str]
    heading: str
    kind: str = "count"
    digits: int = 1

    def sources(self) -> tuple[str, ...]:
        return self.source if isinstance(self.source, tuple) else (self.source,)

    def format(self, row: Mapping[str, Any]) -> str:
        if self.kind == "interval_pct":
            return fmt_interval(row[self.source[0]], row[self.source[1]], "pct")
        if self.kind == "interval_num":
            return fmt_interval(row[self.source[0]], row[self.source[1]], "num")
        v = row[self.source]  # type: ignore[index]
        if self.kind == "route":
            return colors.route_label(str(v))
        if self.kind == "text":
            return str(v)
        if self.kind == "pct":
            return fmt_pct(v)
        if self.kind == "num":
            return fmt_num(v, self.digits)
        if self.kind == "p":
            return fmt_p(v)
        return fmt_count(v)


# --- building ------------------------------------------------------------------------------------------


@dataclass
class HiddenNote:
    section: str
    table: str
    cells: int
    where: list[str]


@dataclass
class Section:
    """One part of the report: a title and its blocks (HTML text, charts, tables) in order."""

    key: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    new_page: bool = True

    def text(self, html_text: str) -> "Section":
        self.blocks.append(html_text)
        return self

    def paragraph(self, text: str) -> "Section":
        return self.text(f"<p>{html.escape(text)}</p>")

    def heading(self, text: str) -> "Section":
        return self.text(f"<h3>{html.escape(text)}</h3>")

    def chart(self, fig: Any) -> "Section":
        """A Plotly figure from dashboard/charts/figures.py, exported as SVG when the report is made."""
        self.blocks.append(fig)
        return self

    def table(self, df: pd.DataFrame, columns: Sequence[Column], *, hidden: pd.DataFrame | None = None,
              caption: str = "", css_class: str = "") -> "Section":
        self.blocks.append(table_html(df, columns, hidden=hidden, caption=caption, css_class=css_class))
        return self


def hidden_mask(raw: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """True where disclosure control hid a value: every cell `protect` lists as hidden (its WHY_HIDDEN record),
    and any other cell shown empty whose raw value is defined.

    Both tables have the same rows and columns (protect() keeps them, except for the curve). A value the metrics
    left undefined (a median never reached) is hidden too when its rule hides it: the page says "too few to
    show" there, and '–' ("not defined") would tell a small group's finding."""
    mask = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    for col in shown.columns:
        if col in raw.columns:
            mask[col] = shown[col].isna().to_numpy() & raw[col].reindex(shown.index).notna().to_numpy()
    for col, cells in (shown.attrs.get(disclosure.WHY_HIDDEN) or {}).items():
        if col in mask.columns:
            rows = [label for label in cells if label in mask.index]
            mask.loc[rows, col] = True
    return mask


def table_html(df: pd.DataFrame, columns: Sequence[Column], *, hidden: pd.DataFrame | None = None,
               caption: str = "", css_class: str = "") -> str:
    """An HTML table; a cell disclosure control hid reads 'hidden', an undefined one '–'."""
    if df is None or df.empty:
        return '<p class="note">No rows for this cohort.</p>'
    head = "".join(f"<th>{html.escape(c.heading)}</th>" for c in columns)
    rows = []
    for idx, row in df.iterrows():
        cells = []
        for c in columns:
            is_hidden = hidden is not None and any(
                s in hidden.columns and bool(hidden.at[idx, s]) for s in c.sources())
            text = HIDDEN if is_hidden else c.format(row)
            cls = "hidden" if is_hidden else ("label" if c.kind in ("text", "route") else "num")
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="data {css_class}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


class ReportBuild:
    """What the sections read: the connection, the settings, the summary tables (computed once) and the
    notes of what disclosure control hid (for the "Hidden cells" section)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: Settings, *, made_at: dt.datetime):
        self.con = con
        self.settings = settings
        self.made_at = made_at
        self.notes: list[HiddenNote] = []
        self._summaries: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
        self.provenance = export.provenance(con, settings)

    @property
    def k(self) -> int:
        return self.settings.min_cell

    @property
    def instrument(self) -> str:
        """The questionnaire in words for sentences ("on GAD-7", "on each patient's own questionnaire")."""
        return self.settings.instrument_words

    def summary_pair(self, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(raw, protected) of an export file; the protected table equals the CSV's."""
        if file not in self._summaries:
            raw = export.raw_summary(self.con, self.settings, file)
            self._summaries[file] = (raw, export.protect_table(self.con, self.settings, export.SUMMARY_RULES[file], raw))
        return self._summaries[file]

    def summary(self, file: str) -> pd.DataFrame:
        return self.summary_pair(file)[1]

    def hidden(self, file: str) -> pd.DataFrame:
        raw, shown = self.summary_pair(file)
        return hidden_mask(raw, shown)

    def protected(self, name: str, raw: pd.DataFrame) -> pd.DataFrame:
        return export.protect_table(self.con, self.settings, name, raw)

    def note_hidden(self, section: str, table: str, mask: pd.DataFrame, labels: Iterable[str] | None = None) -> None:
        """Record the cells `mask` marks hidden (rows named by `labels`, default: their route)."""
        n = int(mask.to_numpy().sum())
        if n == 0:
            return
        rows = mask.any(axis=1)
        names = list(labels) if labels is not None else None
        where = []
        for pos, (idx, flag) in enumerate(rows.items()):
            if flag:  # a label does not break across lines (no-break spaces)
                where.append((names[pos] if names is not None else str(idx)).replace(" ", "\u00a0"))
        self.notes.append(HiddenNote(section, table, n, list(dict.fromkeys(where))))

    def note_text(self, section: str, table: str, text: str) -> None:
        self.notes.append(HiddenNote(section, table, 0, [text]))


def _route_labels(df: pd.DataFrame) -> list[str]:
    return [colors.route_label(str(r)) for r in df["route"]] if "route" in df else []


# --- the sections ------------------------------------------------------------------------------------


def section_cover(b: ReportBuild) -> Section:
    s = b.settings
    cohort = b.summary("cohort.csv")
    all_row = cohort[cohort["route"].astype(str) == spec.ALL]
    n = all_row["patients"].iloc[0] if len(all_row) else 0
    eligible = all_row["eligible"].iloc[0] if len(all_row) else 0
    size = (f"fewer than {s.min_cell} patients" if _isnan(n)
            else spec.counted(n, "patient"))
    sec = Section("cover", "Ketamine outcomes report", new_page=False)
    sec.text(f'<p class="subtitle">{html.escape(s.describe_filters())}: {html.escape(size)}'
             f"{'' if _isnan(eligible) else f', of whom {fmt_count(eligible)} eligible'}.</p>")
    sec.paragraph(
        f"Outcomes of ketamine treatment by route for this cohort, measured on {b.instrument} "
        f"(baseline of at least {s.baseline_words}). Counts under {s.min_cell} patients, and rates or medians "
        "resting on them, are hidden to protect patients' privacy." if s.min_cell > 0 else
        f"Outcomes of ketamine treatment by route for this cohort, measured on {b.instrument} (baseline of at "
        f"least {s.baseline_words}). Small-cell protection is off (minimum cell 0)."
    )
    rows = []
    labels = {"route": "Route", "site": "Site", "diagnosis": "Primary diagnosis", "sex": "Sex",
              "age_band": "Age band", "setting": "Setting", "severity": "Baseline severity"}
    for name, label in labels.items():  # in the words the sidebar shows
        rows.append((label, ", ".join(s.filter_words(name)) or "any"))
    rows.append(("Started", f"{s.from_quarter or 'earliest'} to {s.to_quarter or 'latest'}"))
    rows.append(("Treatment-resistant", "any" if s.treatment_resistant is None
                 else ("yes" if s.treatment_resistant else "no")))
    rows.append(("Integration therapy", "any" if s.integration is None else ("yes" if s.integration else "no")))
    rows += [
        ("Questionnaire", s.instrument_label + (" (major depression and other diagnoses on PHQ-9, PTSD on "
                                                "PCL-5, the rest on GAD-7)" if s.matched else "")),
        ("Minimum baseline score", s.baseline_words),
        ("Population", "observed (patients with an endpoint score)" if s.population == "observed"
         else "intention to treat (a missing endpoint counts as no response)"),
        ("Relief threshold", "50 % improvement (response)" if s.relief == "response"
         else f"minimal important change (a drop of {s.mcid_words} points)"),
        ("Endpoint window", f"{s.window} days after the last induction session"),
        ("Minimum cell", f"{s.min_cell}" + (" (small-cell protection off)" if s.min_cell == 0 else "")),
    ]
    sec.heading("Filters and settings")
    sec.text(_pairs_html(rows, columns=2))
    data = b.provenance["data_set"]
    sec.heading("Data set")
    if "import_id" in data:
        imported = dt.datetime.strptime(data["imported_at"], "%Y-%m-%dT%H:%M:%SZ")
        rows = [
            ("Source", f"{data['source']} ({data['source_format']})"),
            ("Imported", imported.strftime("%d %B %Y, %H:%M UTC") + f" (import {data['import_id']})"),
            ("Database", data["database"]),
            ("Data set id", f"SHA-256 {data['source_sha256'][:16]}…"),
            _data_set_extent(s, data),
        ]
    else:
        rows = [("Database", data["database"]), ("Imported", "no import recorded")]
    rows.append(("Report made", b.made_at.strftime("%d %B %Y, %H:%M UTC")))
    sec.text(_pairs_html(rows))
    return sec


def _data_set_extent(s: Settings, data: dict) -> tuple[str, str]:
    """The cover's line on how much of the data set the report covers: for someone who sees every site, the
    whole data set's row counts; for someone limited to some sites (access.md: every report obeys the scope),
    those sites, since the whole data set's counts include other sites' numbers and are left out of a scoped
    provenance (export.provenance)."""
    if s.scope is None:
        return ("Whole data set", ", ".join(f"{fmt_count(v)} {t.replace('_', ' ')}"
                                            for t, v in data.get("rows", {}).items()))
    sites = ", ".join(s.scope or ()) or "no site"
    return ("Sites", f"{sites} only: this report covers the sites its reader may see (the whole data set's "
                     "counts are left out)")


def _pairs_html(rows: Iterable[tuple[str, str]], columns: int = 1) -> str:
    """Label/value pairs as a table, `columns` pairs side by side (filled row by row)."""
    rows = list(rows)
    lines = []
    for i in range(0, len(rows), columns):
        chunk = rows[i:i + columns]
        lines.append("<tr>" + "".join(f"<th>{html.escape(k)}</th><td>{html.escape(v)}</td>" for k, v in chunk)
                     + "</tr>")
    return f'<table class="pairs pairs-{columns}">{"".join(lines)}</table>'


def headline_order(b: ReportBuild, routes: Sequence[str]) -> list[str]:
    """`routes` in the order of the headline (headline.csv, the Overview's first table: ranked by response
    rate, a hidden rate after the shown ones, metrics.md "Headline by route"); a route the headline has no
    row for (no eligible patient) follows in its given order, `ALL` last."""
    ranked = [str(r) for r in export.compute_summary(b.con, b.settings, "headline.csv")["route"]]
    rest = [r for r in routes if r not in ranked and r != spec.ALL]
    order = [r for r in ranked if r in routes and r != spec.ALL] + rest
    return order + ([spec.ALL] if spec.ALL in routes else [])


def section_headline(b: ReportBuild) -> Section:
    """The headline table by route: patients, response, remission, relief, side effects, maintenance; the
    routes ranked as in headline.csv and on the Overview (`headline_order`)."""
    sec = Section("headline", "Headline by route", new_page=False)
    cohort, response = b.summary("cohort.csv"), b.summary("response_by_route.csv")
    relief, maint = b.summary("time_to_relief.csv"), b.summary("maintenance.csv")
    any_raw = metrics.any_side_effect(b.con, b.settings)
    any_se = b.protected("side_effects", any_raw)
    parts = [
        (cohort, b.hidden("cohort.csv"), {"patients": "patients", "eligible": "eligible"}),
        (response, b.hidden("response_by_route.csv"),
         {"response_rate": "response_rate", "remission_rate": "remission_rate"}),
        (relief, b.hidden("time_to_relief.csv"), {"median_days": "median_days"}),
        (any_se, hidden_mask(any_raw, any_se), {"patient_rate": "any_side_effect"}),
        (maint, b.hidden("maintenance.csv"), {"uptake_rate": "uptake_rate"}),
    ]
    routes = headline_order(b, list(cohort["route"].astype(str)))
    table = pd.DataFrame({"route": routes})
    mask = pd.DataFrame({"route": [False] * len(routes)})
    for df, hid, cols in parts:
        by_route = {str(r): i for i, r in enumerate(df["route"].astype(str))}
        for src, dst in cols.items():
            table[dst] = [df[src].iloc[by_route[r]] if r in by_route else np.nan for r in routes]
            mask[dst] = [bool(hid[src].iloc[by_route[r]]) if r in by_route else False for r in routes]
    sec.table(table, [
        Column("route", "Route", "route"), Column("patients", "Patients"), Column("eligible", "Eligible"),
        Column("response_rate", "Response", "pct"), Column("remission_rate", "Remission", "pct"),
        Column("median_days", "Median days to relief", "num"),
        Column("any_side_effect", "Patients with any side effect", "pct"),
        Column("uptake_rate", "Maintenance uptake", "pct"),
    ], hidden=mask, css_class="headline")
    b.note_hidden("Headline by route", "headline table", mask.drop(columns="route"), _route_labels(table))
    sec.text(f'<p class="note">Response: improvement of 50 % or more on {html.escape(b.instrument)} at the '
             "endpoint; remission: an endpoint score at or below the cut-off; median days to relief: Kaplan–Meier; "
             "side effects: share of patients with a session who had any side effect recorded; uptake: share of "
             "responders with a maintenance session. 95 % intervals are in the sections that follow. "
             "'hidden': withheld to protect privacy; '–': not defined (e.g. the median was not reached).</p>")
    return sec


def section_response(b: ReportBuild) -> Section:
    s = b.settings
    sec = Section("response", "Response by route")
    sec.paragraph(
        f"Response is an improvement of 50 % or more on {b.instrument} from baseline to the endpoint (the last "
        f"score within {s.window} days after the last induction session); remission is an endpoint score of "
        f"{s.remission_words} or less. Population: "
        + ("patients with an endpoint score." if s.population == "observed"
           else "every eligible patient (a missing endpoint counts as no response)."))
    response = b.summary("response_by_route.csv")
    hid = b.hidden("response_by_route.csv")
    sec.chart(figures.create_response_figure(response, s.instrument_label))
    sec.table(response, [
        Column("route", "Route", "route"), Column("patients", "Eligible"), Column("evaluable", "Evaluable"),
        Column("responders", "Responders"), Column("response_rate", "Response", "pct"),
        Column(("response_ci_low", "response_ci_high"), "95 % interval", "interval_pct"),
        Column("remitters", "Remitters"), Column("remission_rate", "Remission", "pct"),
        Column(("remission_ci_low", "remission_ci_high"), "95 % interval", "interval_pct"),
    ], hidden=hid, caption="Response and remission by route (Wilson intervals)")
    b.note_hidden("Response by route", "response_by_route.csv", hid.drop(columns="route"), _route_labels(response))
    pairwise = export.protected_route_comparison(b.con, s, "response")[1]
    if not pairwise.empty:
        sec.chart(figures.create_comparison_figure(pairwise, "response"))
        hidden_pairs = [colors.route_pair_label(a, c) for a, c, d in zip(pairwise["route_a"], pairwise["route_b"],
                                                                        pairwise["difference"]) if pd.isna(d)]
        if hidden_pairs and b.k > 0:
            b.note_text("Response by route", "route comparison",
                        f"differences {', '.join(hidden_pairs)} (a route with fewer than {b.k} patients)")
    trajectory = b.protected("trajectory", metrics.trajectory(b.con, s))
    # under matched: mean improvement in percent (the questionnaires' points cannot share an axis)
    sec.chart(figures.create_trajectory_figure(trajectory, b.instrument, max_week=12, percent=s.matched))
    adjusted = export.compute_summary(b.con, s, "adjusted_response.csv")  # protected, as the CSV
    if not adjusted.empty and adjusted["adjusted_rate"].notna().any():
        used = next((str(v) for v in adjusted["adjusted_for"] if isinstance(v, str) and v), "")
        sec.heading("Adjusted for case mix")
        sec.paragraph(
            "A route given to more severe or treatment-resistant patients can look worse than it is. The adjusted "
            "rate is each route's expected response rate had every evaluable patient of this cohort been treated "
            "by it (logistic regression, marginal standardisation, 95 % delta-method intervals)"
            + (f", adjusted for {used}." if used else "."))
        sec.chart(figures.create_adjusted_figure(adjusted))
        sec.table(adjusted, [
            Column("route", "Route", "route"), Column("evaluable", "Evaluable"),
            Column("crude_rate", "Crude", "pct"), Column("adjusted_rate", "Adjusted", "pct"),
            Column(("adjusted_ci_low", "adjusted_ci_high"), "95 % interval", "interval_pct"),
            Column("difference", "Difference from reference", "pct"),
            Column(("difference_ci_low", "difference_ci_high"), "95 % interval", "interval_pct"),
        ], caption="Crude and case-mix-adjusted response (adjusted_response.csv)")
    return sec


def section_relief(b: ReportBuild) -> Section:
    s = b.settings
    sec = Section("relief", "Time to relief")
    threshold = ("50 % improvement (response)" if s.relief == "response"
                 else f"a drop of {s.mcid_words}+ points on {b.instrument}")
    sec.paragraph("Days from the first session to the first score that meets the relief threshold "
                  f"({threshold}; post-dose scores count). Patients who never meet it count until their last "
                  "follow-up score (Kaplan–Meier).")
    summary, curve = b.summary("time_to_relief.csv"), b.summary("time_to_relief_curve.csv")
    at_risk = b.protected("relief_at_risk", metrics.time_to_relief(b.con, s, logrank=False).at_risk)
    if figures.relief_curve_has_steps(curve):
        sec.chart(figures.create_relief_figure(curve, at_risk, threshold))
    else:
        sec.paragraph(figures.relief_curve_missing_words(s.min_cell))
    hid = b.hidden("time_to_relief.csv")
    sec.table(summary, [
        Column("route", "Route", "route"), Column("patients", "Patients"), Column("events", "Relieved"),
        Column("median_days", "Median days", "num"),
        Column(("median_ci_low", "median_ci_high"), "95 % interval", "interval_num"),
        Column("relieved_by_day_1", "By day 1", "pct"), Column("relieved_by_day_7", "By day 7", "pct"),
        Column("relieved_by_day_14", "By day 14", "pct"), Column("relieved_by_day_28", "By day 28", "pct"),
    ], hidden=hid, caption="Median time to relief and share relieved by day (Kaplan–Meier)")
    b.note_hidden("Time to relief", "time_to_relief.csv", hid.drop(columns="route"), _route_labels(summary))
    if b.k > 0 and not curve.empty:
        b.note_text("Time to relief", "time_to_relief_curve.csv",
                    f"curve steps resting on fewer than {b.k} events or patients at risk are left out (the curves "
                    "step only where enough patients were relieved since the last step)")
    raw_logrank = metrics.time_to_relief(b.con, s).logrank
    logrank = b.protected("logrank", raw_logrank)
    if not logrank.empty:
        lr = logrank.assign(pair=[colors.route_pair_label(a, c)
                                  for a, c in zip(logrank["route_a"], logrank["route_b"])])
        lr_mask = hidden_mask(raw_logrank, logrank)
        sec.table(lr, [Column("pair", "Routes", "text"), Column("statistic", "Statistic (Z)", "num", 2),
                       Column("p_value", "p (raw)", "p"), Column("p_adjusted", "p (adjusted)", "p")],
                  hidden=lr_mask, caption="Pairwise log-rank tests (Benjamini–Hochberg adjusted)",
                  css_class="narrow")
        b.note_hidden("Time to relief", "log-rank tests", lr_mask[["statistic", "p_value", "p_adjusted"]],
                      list(lr["pair"]))
    return sec


def section_side_effects(b: ReportBuild) -> Section:
    s = b.settings
    sec = Section("side_effects", "Side effects")
    sec.paragraph("Every session of the cohort's patients, grouped by the route of the session. Severe blood "
                  "pressure: a peak of 180 systolic or 110 diastolic or more.")
    se = b.summary("side_effects.csv")
    hid = b.hidden("side_effects.csv")
    sec.chart(figures.create_side_effect_heatmap(se))
    events = [e for e in spec.SUMMARY_EVENTS if e in set(se["event"].astype(str))]
    sec.chart(figures.create_incidence_figure(se, events[:8]))
    # key table: share of patients with each event (events down, routes across), as side_effects.csv has it
    routes = list(dict.fromkeys(se["route"].astype(str)))
    wide = pd.DataFrame({"event": [figures.event_label(e) for e in events]})
    wide_mask = pd.DataFrame({"event": [False] * len(events)})
    for r in routes:
        sel = (se["route"].astype(str) == r).to_numpy()
        names = se.loc[sel, "event"].astype(str).to_numpy()
        rates = dict(zip(names, se.loc[sel, "patient_rate"]))
        flags = dict(zip(names, hid.loc[sel, "patient_rate"]))
        wide[r] = [rates.get(e, np.nan) for e in events]
        wide_mask[r] = [bool(flags.get(e, False)) for e in events]
    cols = [Column("event", "Side effect", "text")] + [
        Column(r, colors.route_label(r), "pct") for r in routes]
    sec.table(wide, cols, hidden=wide_mask,
              caption="Share of patients with the effect in at least one session of the route")
    b.note_hidden("Side effects", "side_effects.csv", hid.drop(columns=["route", "event"]), _route_labels(se))
    bp = b.protected("blood_pressure", metrics.blood_pressure(b.con, s))
    sec.chart(figures.create_blood_pressure_figure(bp))
    return sec


def section_maintenance(b: ReportBuild) -> Section:
    s = b.settings
    sec = Section("maintenance", "Maintenance")
    sec.paragraph("After induction, responders may continue with maintenance sessions. Timing is counted from "
                  "each patient's last induction session.")
    maint = b.summary("maintenance.csv")
    hid = b.hidden("maintenance.csv")
    sec.chart(figures.create_maintenance_rates_figure(maint))
    sec.table(maint, [
        Column("route", "Route", "route"), Column("responders", "Responders"),
        Column("responders_in_maintenance", "In maintenance"), Column("uptake_rate", "Uptake", "pct"),
        Column(("uptake_ci_low", "uptake_ci_high"), "95 % interval", "interval_pct"),
        Column("median_days_to_first_maintenance", "Median days to first", "num"),
        Column("median_interval_days", "Median days between", "num"),
        Column("sessions_per_patient_month", "Sessions per patient-month", "num", 2),
        Column("sustained_response_8w", "Sustained at 8 weeks", "pct"),
    ], hidden=hid, caption="Maintenance by route")
    b.note_hidden("Maintenance", "maintenance.csv", hid.drop(columns="route"), _route_labels(maint))
    projection = b.protected("maintenance_projection", metrics.maintenance_projection(b.con, s))
    sec.chart(figures.create_projection_figure(projection))
    return sec


def section_benchmark(b: ReportBuild) -> Section | None:
    """The network benchmark (benchmark.csv, named only within the person's scope), where sites have
    evaluable patients."""
    table = export.compute_summary(b.con, b.settings, "benchmark.csv")
    if table.empty:
        return None
    sec = Section("benchmark", "Network benchmark")
    sec.paragraph(
        "Each site's response rate against the network: the median and 75th percentile of the benchmarked sites "
        "(at least 30 evaluable patients, and at least 5 such sites), the pooled rate of all sites, and the "
        "funnel plot's 95 % and 99.8 % control limits around it. Every filter but site applies.")
    network = benchmark.network_distribution(b.con, b.settings)
    for measure in ("response",):
        n = network.get(measure)
        sec.chart(figures.create_benchmark_funnel_figure(
            table, measure, pooled=None if n is None else _num_or_none(n.pooled),
            median=None if n is None else _num_or_none(n.median), p75=None if n is None else _num_or_none(n.p75)))
    sec.table(table, [
        Column("site", "Site", "text"), Column("measure", "Measure", "text"), Column("evaluable", "Evaluable"),
        Column("events", "Events"), Column("rate", "Rate", "pct"),
        Column(("ci_low", "ci_high"), "95 % interval", "interval_pct"),
        Column("network_median", "Network median", "pct"), Column("network_p75", "Network P75", "pct"),
        Column("network_pooled", "Pooled", "pct"), Column("position", "Position", "text"),
    ], caption="Sites against the network (benchmark.csv)")
    return sec


def _num_or_none(v: object) -> float | None:
    return None if v is None or _isnan(v) else float(v)


def section_esketamine(b: ReportBuild) -> Section | None:
    """Esketamine (SPRAVATO REMS) monitoring, where the cohort has esketamine sessions in the clinic."""
    table = b.summary("rems.csv")
    if table.empty:
        return None
    hid = b.hidden("rems.csv")
    sec = Section("esketamine", "Esketamine monitoring")
    sec.paragraph(
        f"Over esketamine sessions held in the clinic: monitoring of at least {b.settings.rems_minutes} minutes, "
        "blood pressure before dosing, at 40 minutes and at discharge, pulse oximetry, and the Patient Monitoring "
        "Form submitted within 7 days (the SPRAVATO REMS).")
    # as the dashboard's page: no sessions, or too few to show anything, said in words instead of a chart of
    # empty rates (which read "hidden" or "not in the export")
    unshown = figures.rems_unshown(table.loc[table["site"].astype(str) == spec.ALL, "sessions"].iloc[0],
                                   b.settings.min_cell)
    if unshown is not None:
        _, lead, rest = unshown
        return sec.paragraph(f"{lead} {rest}")
    lacking = rems.lacking_columns(b.con)
    if lacking:
        sec.paragraph("The clinic export lacks the columns of these measures, so they are left empty, not zero: "
                      + "; ".join(f"{spec.REMS_LABELS.get(m, m)} ({', '.join(c)})" for m, c in lacking.items()) + ".")
    sec.chart(figures.create_rems_rate_figure(table, "monitored_min"))
    labels = ["All sites" if str(v) == spec.ALL else f"Site {v}" for v in table["site"]]
    cols = [Column("site", "Site", "text"), Column("sessions", "Sessions")]
    for m in ("monitored_min", "bp_three_points", "pulse_oximetry", "form_within_7d"):
        cols.append(Column(f"{m}_rate", spec.REMS_LABELS.get(m, m), "pct"))
    sec.table(table, cols, hidden=hid, caption="Monitoring rules met, per site (rems.csv)")
    b.note_hidden("Esketamine monitoring", "rems.csv", hid.drop(columns="site"), labels)
    return sec


def section_definitions(b: ReportBuild) -> Section:
    return Section("definitions", "Definitions").text(definitions_html(b.settings))


def section_hidden(b: ReportBuild) -> Section:
    sec = Section("hidden", "Hidden cells", new_page=False)
    k = b.k
    if k <= 0:
        sec.paragraph("Small-cell protection is off (minimum cell 0): no value in this report is hidden. Share it "
                      "only where your data governance allows counts of single patients.")
        return sec
    sec.paragraph(
        f"With a minimum cell of {k}, no count from 1 to {k - 1} is shown, nor any rate, interval or median resting "
        f"on fewer than {k} patients, nor any cell that would let such a count be worked out from the totals "
        "(a second cell is hidden with it). Hidden values read 'hidden' in the tables and are marked on the charts; "
        "they are not zero and not a finding. The CSV downloads hide exactly the same cells.")
    if not b.notes:
        sec.paragraph("No value of this report needed hiding for this cohort.")
        return sec
    rows = "".join(
        f"<tr><td>{html.escape(n.section)}</td><td>{html.escape(n.table)}</td>"
        f"<td class=\"num\">{n.cells if n.cells else ''}</td><td>{html.escape('; '.join(n.where))}</td></tr>"
        for n in b.notes)
    sec.text('<table class="data notes"><thead><tr><th>Section</th><th>Table</th><th>Cells hidden</th>'
             f"<th>Where</th></tr></thead><tbody>{rows}</tbody></table>")
    return sec


def section_provenance(b: ReportBuild) -> Section:
    p = b.provenance
    data = p["data_set"]
    sec = Section("provenance", "Provenance", new_page=False)
    flags = " ".join(p["command_line_flags"])
    rows = [
        ("Program", f"ketamine-outcomes {p['program_version']}"),
        ("Report made", b.made_at.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("Data set id", f"import {data.get('import_id', '–')}"),
        ("Source SHA-256", data.get("source_sha256", "–")),
        ("Imported", data.get("imported_at", "no import recorded")),
        ("Database", data["database"]),
        ("Same view in the dashboard", "?" + p["query_string"] if p["query_string"] else "(no parameters)"),
        ("Same report from the command line",
         f"ketamine-outcomes report --db {data['database']} --out report.pdf {flags}".strip()),
        ("Same numbers as CSV", f"ketamine-outcomes export --db {data['database']} --out DIR {flags}".strip()),
    ]
    sec.text(_pairs_html(rows))
    return sec


# The report in reading order. Add a section by writing one function (ReportBuild -> Section | None) and
# inserting it here; sections after "maintenance" read what the content sections noted as hidden.
SECTIONS: list[Callable[[ReportBuild], Section | None]] = [
    section_cover,
    section_headline,
    section_response,
    section_relief,
    section_side_effects,
    section_maintenance,
    section_benchmark,
    section_esketamine,
    section_definitions,
    section_hidden,
    section_provenance,
]


# --- charts: kaleido (Chromium) -> SVG ---------------------------------------------------------------


def _opts(fig: Any) -> dict[str, Any]:
    height = fig.layout.height or figures.HEIGHT
    return {"format": "svg", "width": CHART_WIDTH_PX, "height": int(height)}


def _print_ready(fig: Any) -> Any:
    fig = type(fig)(fig)  # a copy: the builders' figures are not changed
    fig.update_layout(paper_bgcolor="white", plot_bgcolor="white")
    return fig


# what kaleido's error says when its tab ran an export before its page script had loaded
PAGE_NOT_READY = "kaleido_scopes is not defined"


class ChartRenderer:
    """One kaleido browser (Chromium) on an event loop of its own thread.

    `start()` returns at once: the browser starts while the caller computes the numbers (a Chromium start
    is several seconds). `svgs(figs)` waits for it and exports each figure as SVG, one caller at a time.
    The dashboard keeps one renderer for the next report; the command line closes it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._kaleido: Any = None
        self._opened: Any = None  # concurrent future of the browser's start
        self._lock = threading.Lock()

    def start(self) -> "ChartRenderer":
        if self._loop is not None:
            return self
        import kaleido

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="report-charts", daemon=True)
        self._thread.start()

        async def open_browser() -> None:
            self._kaleido = kaleido.Kaleido(n=1, timeout=120)
            await self._kaleido.open()

        self._opened = asyncio.run_coroutine_threadsafe(open_browser(), self._loop)
        return self

    def svgs(self, figs: Sequence[Any]) -> list[bytes]:
        """SVG bytes of each Plotly figure (text kept as text, so it prints as vectors).

        A browser whose page was not ready (kaleido 1.5 may run the export in its tab before the page's own
        script is there: "kaleido_scopes is not defined", seen on a loaded machine) is replaced by a new one
        and the figures exported again, once."""
        figs = [_print_ready(f) for f in figs]

        async def render() -> list[bytes]:
            return [await self._kaleido.calc_fig(f, opts=_opts(f)) for f in figs]

        with self._lock:
            retried = False
            while True:
                self.start()
                assert self._loop is not None
                self._opened.result()
                try:
                    return asyncio.run_coroutine_threadsafe(render(), self._loop).result()
                except Exception as exc:  # noqa: BLE001 - kaleido's own error types are private
                    if retried or PAGE_NOT_READY not in str(exc):
                        raise
                    retried = True
                    self.close()

    def close(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            try:
                # A browser still starting (a report that failed while Chromium started) is waited for and
                # closed: stopped half-open, its Chromium and profile folder outlived the process, whose exit
                # then printed a traceback (the folder "not empty").
                self._opened.result(timeout=60)
            except Exception:  # noqa: BLE001 - it never started (or never will): nothing to close
                pass
            else:
                asyncio.run_coroutine_threadsafe(self._kaleido.close(), loop).result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._kaleido = self._opened = self._thread = None


_SHARED: ChartRenderer | None = None
_SHARED_LOCK = threading.Lock()


def shared_renderer() -> ChartRenderer:
    """The long-lived process's renderer (the dashboard): one Chromium kept for every report, closed when
    the process exits."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ChartRenderer().start()
            atexit.register(_close_shared)
        return _SHARED


def _close_shared() -> None:
    renderer = _SHARED
    if renderer is not None:
        _reset_shared(renderer)


def _reset_shared(renderer: ChartRenderer) -> None:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is renderer:
            _SHARED = None
    try:
        renderer.close()
    except Exception:  # noqa: BLE001 - a browser that died may not close cleanly
        pass


# --- layout: HTML + print CSS -> PDF (WeasyPrint) -----------------------------------------------------


CSS = """
@page {
  size: A4; margin: 18mm 16mm 20mm 16mm;
  @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; color: #555; }
  @bottom-left { content: "%(footer)s"; font-size: 8pt; color: #555; }
}
html { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 9.5pt; color: #111; }
h1 { font-size: 20pt; margin: 0 0 4mm 0; }
h2 { font-size: 14pt; margin: 0 0 3mm 0; border-bottom: 1px solid #999; padding-bottom: 1mm; }
h3 { font-size: 11pt; margin: 5mm 0 2mm 0; }
section.page-break { break-before: page; }
section { margin-bottom: 6mm; }
.subtitle { font-size: 12pt; margin-bottom: 5mm; }
p { margin: 0 0 2.5mm 0; line-height: 1.35; }
p.note { font-size: 8pt; color: #444; }
figure { margin: 2mm 0 3mm 0; break-inside: avoid; }
figure { text-align: center; }
table { border-collapse: collapse; margin: 2mm 0 4mm 0; }
table.data { width: 100%; font-size: 7.8pt; }
table.data caption { caption-side: top; text-align: left; font-weight: bold; font-size: 8.5pt; margin-bottom: 1mm; }
table.data th { text-align: right; border-bottom: 1px solid #555; padding: 1mm 1.2mm; vertical-align: bottom; }
table.data th:first-child { text-align: left; }
table.data td { padding: 0.7mm 1.2mm; border-bottom: 0.5px solid #ddd; vertical-align: top; white-space: nowrap; }
table.data td.num, table.data td.hidden { text-align: right; }
table.data td.hidden { color: #777; font-style: italic; }
table.data tr { break-inside: avoid; }
table.narrow { width: auto; }
table.notes td { white-space: normal; }
table.pairs { font-size: 9pt; width: 100%; }
table.pairs th { text-align: left; padding: 0.6mm 2mm 0.6mm 0; vertical-align: top; font-weight: bold; }
table.pairs-1 th { width: 25%; }
table.pairs-2 th { width: 18%; }
table.pairs-2 td { width: 32%; padding-right: 3mm; }
table.pairs td { padding: 0.6mm 0; vertical-align: top; overflow-wrap: anywhere; }
p.definition { margin-bottom: 2mm; }
"""


TEXT_WIDTH_MM = 178  # A4 less the page margins
MAX_CHART_HEIGHT_MM = 105  # a tall chart is narrowed so that two charts and a table share a page


def _figure_html(svg: bytes, height_px: int) -> str:
    width_mm = TEXT_WIDTH_MM
    if TEXT_WIDTH_MM * height_px / CHART_WIDTH_PX > MAX_CHART_HEIGHT_MM:
        width_mm = MAX_CHART_HEIGHT_MM * CHART_WIDTH_PX / height_px
    data = base64.b64encode(svg).decode("ascii")
    return f'<figure><img style="width: {width_mm:.1f}mm" src="data:image/svg+xml;base64,{data}"></figure>'


def build_sections(con: duckdb.DuckDBPyConnection, settings: Settings, *,
                   made_at: dt.datetime | None = None) -> tuple[ReportBuild, list[Section]]:
    """Run every section builder in order (numbers and figures, no rendering)."""
    made_at = made_at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    build = ReportBuild(con, settings, made_at=made_at)
    sections = [sec for fn in SECTIONS if (sec := fn(build)) is not None]
    return build, sections


def report_html(build: ReportBuild, sections: Sequence[Section], svgs: Sequence[bytes]) -> str:
    """The whole document as HTML; `svgs` are the sections' charts in order."""
    it = iter(svgs)
    parts = []
    for sec in sections:
        cls = ' class="page-break"' if sec.new_page else ""
        tag = "h1" if sec.key == "cover" else "h2"
        body = []
        for block in sec.blocks:
            body.append(block if isinstance(block, str)
                        else _figure_html(next(it), _opts(block)["height"]))
        parts.append(f'<section id="{sec.key}"{cls}><{tag}>{html.escape(sec.title)}</{tag}>{"".join(body)}</section>')
    footer = f"Ketamine outcomes · {build.settings.describe_filters()}"
    footer = html.escape(footer.replace("\\", "").replace('"', "'"), quote=False)
    css = CSS.replace("%(footer)s", footer)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Ketamine outcomes report</title><style>{css}</style></head><body>"
            f'{"".join(parts)}</body></html>')


def report_pdf_bytes(con: duckdb.DuckDBPyConnection, settings: Settings, *, keep_browser: bool = False,
                     made_at: dt.datetime | None = None, timings: dict[str, float] | None = None) -> bytes:
    """The PDF report for these settings. Raises ReportUnavailable when a system part is missing.

    Numbers: the CSV export's (same functions, same minimum cell). `made_at` (UTC, default now) is printed
    on the cover and in the provenance. `keep_browser`: keep the charts' Chromium for the next report (the
    dashboard); otherwise it is started for this report and closed. `timings`, when given, receives the
    seconds spent on numbers (with figure building), charts (SVG export, waiting for the browser's start
    included) and layout (WeasyPrint) — for bench/report.py."""
    clock = time.perf_counter
    t0 = clock()
    require_parts()
    renderer = shared_renderer() if keep_browser else ChartRenderer().start()
    try:
        build, sections = build_sections(con, settings, made_at=made_at)
        t1 = clock()
        figs = [blk for sec in sections for blk in sec.blocks if not isinstance(blk, str)]
        try:
            svgs = renderer.svgs(figs)
        except Exception:
            if not keep_browser:
                raise
            _reset_shared(renderer)  # a kept browser that died: one new start, once
            renderer = shared_renderer()
            svgs = renderer.svgs(figs)
        t2 = clock()
    finally:
        if not keep_browser:
            renderer.close()
    import weasyprint

    pdf = weasyprint.HTML(string=report_html(build, sections, svgs)).write_pdf()
    if timings is not None:
        timings.update(numbers=t1 - t0, charts=t2 - t1, layout=clock() - t2, charts_count=len(figs))
    return pdf


def write_report(db_path: str | os.PathLike[str], out: str | os.PathLike[str], s: Settings) -> Path:
    """Write the PDF report for a database and settings to `out` (through a temporary name).

    Raises store.StoreError (database missing, damaged or too old; ReportNotWritten when `out` is a folder or
    cannot be written, leaving `out` as it was and no temporary file), EmptyCohort, or ReportUnavailable
    (system part missing)."""
    path = Path(out)
    if path.is_dir():  # said before the PDF is built (seconds), not after
        raise ReportNotWritten(f"{path} is a folder: give the report's file name, such as {path / 'report.pdf'}.")
    above = next((folder for folder in path.parents if folder.exists()), None)
    if above is not None and not above.is_dir():
        raise ReportNotWritten(f"{above} is a file, not a folder: give the report a path inside a folder.")
    require_parts()

    def build(con: duckdb.DuckDBPyConnection) -> bytes:
        export.check_known_values(con, s)  # a mistyped site is named, not reported as an empty cohort
        check_cohort(con, s)
        return report_pdf_bytes(con, s)

    pdf = export.read_database(db_path, build)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(pdf)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder refuses that too: then it held no temporary file either
            pass
        where = Path(exc.filename) if getattr(exc, "filename", None) and exc.filename != str(tmp) else path
        raise ReportNotWritten(
            f"cannot write the report: {export.os_problem(exc, where)}. {path} was left as it was; choose a "
            "file name in a folder you can write to, then run report again.") from None
    return path
