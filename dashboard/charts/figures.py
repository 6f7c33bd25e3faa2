"""Plotly figure builders for the dashboard: pure functions from summary DataFrames to figures.

Each `create_*_figure` takes tables shaped as docs/core-api.md describes, **after** disclosure control
(hidden cells are NaN), and returns a `plotly.graph_objects.Figure` with a title, axis titles with units,
hover text and the fixed route colours, markers and dashes of `colors.py`. Nothing here imports
Streamlit, so the builders are tested on hand-made tables. Where a value is hidden the figure says so
on the chart ("hidden") instead of drawing nothing, and `hidden_routes` lists them for the caption.
"""

from __future__ import annotations

import copy
import math
import re
import textwrap
import threading
from collections import OrderedDict
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from dashboard.charts import colors
from dashboard.data import spec

NAN = float("nan")
FONT = dict(family="Source Sans Pro, Arial, sans-serif", size=13)
HEIGHT = 430
BASE_MARGIN_PX = 10  # each chart's margins before the room for its labels (`labelled_margins`)
BANDED_ROUTES = 3  # interval bands on line charts for at most this many lines (ALL included)

EVENT_LABELS: dict[str, str] = {e: e.capitalize() for e in spec.EVENTS}
EVENT_LABELS.update({
    "cognitive": "Cognitive effects",
    "other": "Other",
    spec.BP_SEVERE: "Severe BP (≥ 180/110)",
})

FUNNEL_STEPS: tuple[tuple[str, str], ...] = (
    ("patients", "In the cohort"),
    ("with_sessions", "With a session"),
    ("with_baseline", "With a baseline score"),
    ("eligible", "Eligible (baseline at or above the minimum)"),
    ("with_followup", "With a follow-up score"),
    ("with_endpoint", "With an endpoint score"),
)


# --- helpers ----------------------------------------------------------------------------------------


def _isnan(v: object) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return bool(math.isnan(float(v)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _num(v: object) -> float | None:
    return None if _isnan(v) else float(v)  # type: ignore[arg-type]


def floats(values: Iterable[object]) -> np.ndarray:
    """Numbers as a float array, hidden cells (NaN, None, pd.NA of nullable columns) as NaN."""
    return np.array([NAN if _isnan(v) else float(v) for v in values], dtype=float)  # type: ignore[arg-type]


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns (hidden cells are <NA>) as float columns with NaN, which Plotly draws as gaps."""
    if df is None or df.empty:
        return df
    nullable = {col for col, dtype in df.dtypes.items()
                if isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(dtype)}
    if not nullable or df.columns.has_duplicates:
        return df.astype(dict.fromkeys(nullable, "float64")) if nullable else df.copy()
    # one frame built at once: converted column by column, the REMS table's 23 nullable columns took 8 ms a chart
    out = pd.DataFrame({col: df[col].to_numpy(dtype="float64", na_value=NAN) if col in nullable else df[col]
                        for col in df.columns}, index=df.index.copy())
    out.attrs = copy.deepcopy(df.attrs)
    return out


def _plain_inputs(fn):  # noqa: ANN001, ANN202
    """Apply `plain` to every DataFrame argument of a figure builder."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        args = tuple(plain(a) if isinstance(a, pd.DataFrame) else a for a in args)
        kwargs = {k: plain(v) if isinstance(v, pd.DataFrame) else v for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    return wrapper


def _stack(*columns: Iterable[object]) -> np.ndarray:
    return np.column_stack([floats(c) for c in columns])


# --- hidden and undefined values, as a reader sees them (tiles, tables, hover text) ----------------------


def pct_bound(bound: float) -> str:
    """An upper bound of a rate as a percentage, rounded up so it stays a true bound: '< 1.3 %'."""
    if float(bound) >= 0.1:  # whole percents from 10 % up: '< 65 %'
        return f"< {min(math.ceil(float(bound) * 100 - 1e-9), 100)} %"
    pct = math.ceil(float(bound) * 1000 - 1e-9) / 10
    return f"< {pct:g} %"


def hidden_text(df: pd.DataFrame | None, label: object, column: str, *, percent: bool = False,
                k: int | None = None) -> str | None:
    """What a hidden cell of a protected table says on screen, or None when the cell is not hidden.

    From `disclosure.hidden_reason`: a count from 1 to k−1 reads "fewer than k"; a rate over a shown
    denominator whose count is such a count reads "< 1.3 %" (k / n, rounded up; "too few to show" when that
    bound would be 100 %, which says nothing and reads like a result); a rate or median resting
    on fewer than k patients reads "fewer than k patients", one computed from such a count "too few to
    show"; a cell hidden to protect another reads "hidden"
    (it may be k or more, so no bound is claimed). In a table without the record every empty cell reads
    "hidden". Never "None", "nan" or a blank. (`k` is accepted for callers' convenience and unused.)"""
    from dashboard.analysis import disclosure

    if df is None or label is None:
        return None
    if df.attrs.get(disclosure.WHY_HIDDEN) is None:
        # a table protected without the record (or made by hand): an empty cell is taken as hidden, the
        # builders' long-standing convention, never as a finding
        return "hidden" if _isnan(df.at[label, column]) else None
    reason = disclosure.hidden_reason(df, label, column)
    return None if reason is None else _reason_text(reason, percent)


def _reason_text(reason: tuple[str, float], percent: bool) -> str:
    kind, value = reason
    if kind == "fewer_than":
        return f"fewer than {int(value)}"
    if kind == "rate_below":
        if not percent:
            return "hidden"
        # a bound of 100 % (fewer than 11 of 11) says nothing a reader can use and reads like a result
        return "too few to show" if pct_bound(value) == pct_bound(1.0) else pct_bound(value)
    if kind == "too_few":
        return f"fewer than {int(value)} patients"
    if kind == "rests_on_few":
        return "too few to show"
    return "hidden"


def cell_text(df: pd.DataFrame, label: object, column: str, kind: str = "count", *,
              undefined: str = "–", k: int | None = None) -> str:
    """One cell as text: `kind` "count" (1,985), "pct" (42.5 %), "pct0" (43 %), "days" (7.0 days),
    "decimal0"/"decimal1"/"decimal2" (1,160 / 3.4 / 1.02); a hidden cell as `hidden_text`, an undefined
    one as `undefined`."""
    hidden = hidden_text(df, label, column, percent=kind.startswith("pct"), k=k)
    if hidden is not None:
        return hidden
    return _value_text(df.at[label, column], kind, undefined)


def column_text(df: pd.DataFrame, column: str, kind: str = "count", *, undefined: str = "–") -> list[str]:
    """`cell_text` of every row of one column, in the table's order: the column and its record of hidden
    cells are read once, not once per cell (a table of a hundred rows took tens of milliseconds a rerun)."""
    from dashboard.analysis import disclosure

    why = df.attrs.get(disclosure.WHY_HIDDEN)
    reasons = (why or {}).get(column, {})
    percent = kind.startswith("pct")
    texts = []
    for label, v in zip(df.index, df[column].to_numpy(dtype=object)):
        if why is None and _isnan(v):
            texts.append("hidden")  # a table without the record: see `hidden_text`
        elif why is not None and label in reasons:
            texts.append(_reason_text(reasons[label], percent))
        else:
            texts.append(_value_text(v, kind, undefined))
    return texts


def _value_text(v: object, kind: str, undefined: str) -> str:
    """A cell that is not hidden, as `cell_text` shows it."""
    if _isnan(v):
        return undefined
    f = float(v)  # type: ignore[arg-type]
    if kind == "count":
        return f"{int(round(f)):,}"
    if kind == "pct":
        return f"{f * 100:.1f} %"
    if kind == "pct0":
        return f"{f * 100:.0f} %"
    if kind == "days":
        return fmt_days(f)
    if kind.startswith("decimal"):
        return f"{f:,.{int(kind[-1])}f}"
    return f"{f:,}"


def fmt_pct(v: object, digits: int = 1) -> str:
    """'42.5 %' or 'hidden' for a NaN rate."""
    return "hidden" if _isnan(v) else f"{float(v) * 100:.{digits}f} %"  # type: ignore[arg-type]


def fmt_count(v: object) -> str:
    return "hidden" if _isnan(v) else f"{int(round(float(v))):,}"  # type: ignore[arg-type]


def fmt_days(v: object) -> str:
    if _isnan(v):
        return "–"
    return f"{fmt_day_number(v)} days"


def fmt_day_number(v: object) -> str:
    """A number of days as the dashboard writes it: whole from 10 on, else to a tenth (a 4-hour post-dose
    score is day 0.2, not 0); '–' when missing."""
    if _isnan(v):
        return "–"
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.0f}" if f >= 10 else f"{f:.1f}"


def event_label(event: str) -> str:
    return EVENT_LABELS.get(event, str(event))


def _routes(df: pd.DataFrame) -> list[str]:
    """Routes in the table's order (spec order, ALL last), each once."""
    if df is None or df.empty or "route" not in df:
        return []
    order = {r: i for i, r in enumerate((*spec.ROUTES, spec.ALL))}
    return sorted(dict.fromkeys(str(r) for r in df["route"]), key=lambda r: order.get(r, len(order)))


# Every figure is drawn on Plotly's white template. As the default template it is attached once, without being
# validated again; naming it in each figure's layout validated the whole template every time (a quarter of
# the time it takes to build a figure).
pio.templates.default = "plotly_white"


class _Draft:
    """A figure assembled as plain dicts and built as one `go.Figure` at the end (`figure()`).

    Plotly's object tree checks and copies every property on each `add_trace`, `update_*axes` and
    `go.Scatter(...)`: a chart of a dozen traces took 25-60 ms to assemble, three to four times what
    building the same figure from its dicts at once takes, and each new filter state builds every chart on
    the page again while the person waits. The methods here take the arguments of the `go.Figure` methods
    of the same names (traces as dicts with their `type`, see `_trace`), place traces, axes and
    annotations in a subplot grid as `make_subplots` figures do, and merge updates as Plotly's `update`
    does (`_merge`; a list replaces the one there). tests/test_figures.py makes the same calls both ways and
    compares the figures; the builders' figures are unchanged: every figure the test suite's tables give was
    compared with the object API's.
    """

    def __init__(self, **subplots: Any) -> None:
        """`subplots`: `make_subplots`' arguments (none: one plot)."""
        self.data: list[dict[str, Any]] = []
        if subplots:
            layout, self._grid = _subplot_grid(subplots)
            self.layout = copy.deepcopy(layout)
        else:
            self.layout, self._grid = {}, None

    def add_trace(self, trace: dict[str, Any], row: int | None = None, col: int | None = None) -> None:
        if row is not None and self._grid is not None:
            xaxis, yaxis = self._grid[row - 1][col - 1]
            trace = {**trace, "xaxis": xaxis.replace("axis", ""), "yaxis": yaxis.replace("axis", "")}
        self.data.append(trace)

    def _axes(self, axis: int, row: int | None, col: int | None) -> list[str]:
        if self._grid is None:
            return ["xaxis" if axis == 0 else "yaxis"]
        return [cell[axis] for r, cells in enumerate(self._grid, 1) for c, cell in enumerate(cells, 1)
                if (row is None or r == row) and (col is None or c == col)]

    def update_xaxes(self, row: int | None = None, col: int | None = None, **properties: Any) -> None:
        for key in self._axes(0, row, col):
            _merge(self.layout.setdefault(key, {}), properties)

    def update_yaxes(self, row: int | None = None, col: int | None = None, **properties: Any) -> None:
        for key in self._axes(1, row, col):
            _merge(self.layout.setdefault(key, {}), properties)

    def update_layout(self, **properties: Any) -> None:
        _merge(self.layout, properties)

    def add_annotation(self, row: int | None = None, col: int | None = None, **properties: Any) -> None:
        if row is not None and self._grid is not None:
            xaxis, yaxis = self._grid[row - 1][col - 1]
            # the cell's axes, or their domains when the reference asked for a domain ("x domain")
            refs = {ref: axis.replace("axis", "") + (" domain" if "domain" in str(properties.get(ref, "")) else "")
                    for ref, axis in (("xref", xaxis), ("yref", yaxis))}
            properties = {**properties, **refs}
        self.layout.setdefault("annotations", []).append(copy.deepcopy(properties))

    def figure(self, title: str, *, height: int = HEIGHT, legend: bool = True) -> go.Figure:
        """The finished figure with the dashboard's title, font, size, margins and legend
        (`_base_layout_properties`), its margins grown beforehand to the room its labels take
        (`labelled_margins`)."""
        self.update_layout(**_base_layout_properties(title, height=height, legend=legend))
        try:
            room = labelled_margins(self.layout, self.data)
        except _UNREAD:  # go.Figure below says, in its words, which value Plotly refuses
            room = None
        if room:
            margin = self.layout["margin"]
            margin.update({side: max(margin.get(side, 0), px) for side, px in room.items()})
        return go.Figure(data=self.data, layout=self.layout)


# Arial's advance widths in ems, Latin-1 and the typographic marks the labels use (Liberation Sans has the same
# metrics; tests/test_figures.py reads them from its font file). The charts name "Source Sans Pro", which the browser
# does not have (Streamlit's own face is "Source Sans"), so they are drawn in Arial or Liberation Sans.
_ARIAL_EMS = {ch: em for em, chars in (
    (0.191, "'"), (0.222, 'ijl‘’'), (0.26, '|¦'), (0.278, ' !,./:;I[\\]ft·ÌÍÎÏìíîï'), (0.333, '()-`r¡¨²³´¸¹“”'),
    (0.334, '{}'), (0.35, '•'), (0.355, '"'), (0.365, 'º'), (0.37, 'ª'), (0.389, '*'), (0.4, '°'), (0.469, '^'),
    (0.5, 'Jcksvxyzçýÿ'), (0.537, '¶'), (0.549, '±÷≥≤'), (0.552, '¯'),
    (0.556, '#$0123456789?L_abdeghnopqu¢£¤¥§«»àáâãäåèéêëðñòóôõöùúûüþ–'), (0.576, 'µ'), (0.584, '+<=>~¬×−'),
    (0.611, 'FTZ¿ßø'), (0.667, '&ABEKPSVXYÀÁÂÃÄÅÈÉÊËÝÞ'), (0.722, 'CDHNRUwÇÐÑÙÚÛÜ'), (0.737, '©®'),
    (0.778, 'GOQÒÓÔÕÖØ'), (0.833, 'Mm'), (0.834, '¼½¾'), (0.889, '%æ'), (0.944, 'W'), (1.0, 'Æ—…'), (1.015, '@'),
) for ch in chars}
_WIDEST_EM = 1.015  # a character not in the table: as wide as any, so the room is never short

# Plotly's room beyond the labels themselves (pixels, at the dashboard's sizes; measured in Chromium on the
# figures of the test suite, desktop layout): tick labels' standoff, an axis title's line, the legend's
# symbols and padding.
_Y_LABEL_PAD = 17
_Y_TITLE_PX = 38
_Y_EMPTY_TITLE_PX = 32  # an empty title ("") keeps most of its line
_X_LABELS_PX = 34
_X_LABEL_LINE_PX = 16  # of the x labels' room: a line of labels (the rest is their standoff)
_X_TURNED_PAD_PX = 5  # upright labels stand this much further from the axis
_PLOTLY_PAD_PX = 12  # Plotly adds its padding to whatever pushes a margin (when every margin is at least this)
_PLOTLY_MIN_PLOT_PX = 64  # the plot's least width (Plotly's minreducedwidth): it shrinks margins that leave less
# a percentage axis Plotly ticks itself at least this wide keeps its labels flat (its 0-100 % in at most ten ticks)
_OWN_TICKS_FLAT_PX = 160
_TICK_LINE_PX = 15  # the height Plotly gives a line of x tick labels when it decides to turn them (its font 12 px)
# Plotly's autorange keeps points off a category axis's ends: 5 % of its length and half a marker each side
_POINTS_PAD_SHARE, _POINTS_PAD_PX = 0.05, 6.5
_X_TITLE_PX = 30
_TITLE_LINE_PX = 18  # a further line of a wrapped axis title
# a vertical legend: its entries are drawn narrower than Arial (Streamlit's chart theme gives the legend its own
# face), so its width is fitted as a share of the Arial width plus the symbols and padding, at least the width
# plus the padding (long entries with digits)
_LEGEND_TEXT_SHARE, _LEGEND_PAD, _LEGEND_MIN_PAD = 0.865, 67, 46
# a horizontal legend's entry: its symbol and the gap to its text, and the gap to the next entry
_LEGEND_ENTRY_PAD, _LEGEND_ITEM_GAP = 44, 5
_COLORBAR_PX = 145
_RIGHT_PX = 20  # the last x tick label's half standing beyond the plot
_SLACK_PX = 4  # Plotly grows a margin that only just fits by a pixel or two
# what the margins estimate raises on a value it does not read (one Plotly itself would refuse, or read otherwise):
# the figure then gets no estimate and Plotly grows its margins in the browser
_UNREAD = (TypeError, ValueError, IndexError, KeyError, ArithmeticError)
DESKTOP_CHART_PX = 980  # a full-width chart's width in a 1440-pixel window with the sidebar open


def text_px(text: object, size: float) -> float:
    """The width in pixels of TEXT drawn in Arial at SIZE pixels (`_ARIAL_EMS`)."""
    return sum(_ARIAL_EMS.get(ch, _WIDEST_EM) for ch in str(text)) * size


def _prop(props: object, *path: str) -> Any:
    """The property at PATH ("title", "font", "size") as a draft holds it: nested dicts, Plotly's shorthand
    ("title_font_size", "title_font" then "size", …) kept as given until `go.Figure` resolves it (`_merge`), or a
    Plotly object; None when it is not set."""
    if not path:
        return props
    if not isinstance(props, dict):
        try:  # a Plotly object (go.layout.YAxis, a font) reads like a dict
            props = props.to_plotly_json()  # type: ignore[union-attr]
        except AttributeError:
            return None
    for i in range(len(path), 0, -1):
        key = "_".join(path[:i])
        if key in props:
            found = _prop(props[key], *path[i:])
            if found is not None:
                return found
    return None


def _category_labels(values: object) -> list[str] | None:
    """VALUES (a trace's x or y) when they are category labels (strings), else None."""
    if isinstance(values, (np.ndarray, pd.Series, pd.Index)):
        values = values.tolist()
    if isinstance(values, (list, tuple)) and len(values) and all(isinstance(v, str) for v in values):
        return list(values)
    return None


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # "auto", None
        return 0.0


_AXIS_KEY = re.compile(r"([xy]axis\d*)(?:_|$)")


def _axis_key(ref: str) -> str:
    """The layout key of the axis a trace or an anchor refers to: "x" -> "xaxis", "y2" -> "yaxis2"."""
    return f"{ref[0]}axis{ref[1:]}"


def _layout_axes(layout: dict[str, Any], traces: list[dict[str, Any]], letter: str) -> list[str]:
    """The keys ("yaxis", "yaxis2", …) of the figure's x or y axes (LETTER): those set in the layout, nested or in
    shorthand ("yaxis2_title_text"), and those a trace is drawn on."""
    names = {m.group(1) for m in map(_AXIS_KEY.match, layout) if m and m.group(1)[0] == letter}
    names.update(_axis_key(str(t.get(f"{letter}axis") or letter)) for t in traces)
    return sorted(names)


def _on_axis(trace: dict[str, Any], key: str) -> bool:
    """Whether TRACE is drawn on axis KEY ("xaxis2"): its "xaxis" reference, "x" when it has none."""
    letter = key[0]
    return str(trace.get(f"{letter}axis") or letter) == key.replace("axis", "")


def _categories(layout: dict[str, Any], traces: list[dict[str, Any]], key: str) -> list[str]:
    """Axis KEY's categories in Plotly's order of appearance: its category order's, then its traces' (strings)."""
    order = _prop(layout, key, "categoryarray")
    seen = dict.fromkeys(str(v) for v in (() if order is None else order))
    for trace in traces:
        if _on_axis(trace, key):
            seen.update(dict.fromkeys(_category_labels(trace.get(key[0])) or ()))
    return list(seen)


def _tick_labels(layout: dict[str, Any], traces: list[dict[str, Any]], key: str) -> list[str] | None:
    """The tick labels axis KEY ("yaxis2") will show: its categories, its tick texts, or a percentage axis's
    ticks; None when Plotly chooses them (a numeric axis)."""
    if _prop(layout, key, "showticklabels") is False:
        return []
    ticktext = _prop(layout, key, "ticktext")
    if ticktext is not None:
        return [str(v) for v in ticktext]
    labels = _categories(layout, traces, key)
    if labels:
        return labels
    if str(_prop(layout, key, "tickformat") or "").endswith("%"):  # d3's percentage format (".0%")
        tickvals = _prop(layout, key, "tickvals")
        return [f"{_number(v) * 100:.0f}%" for v in ((0, 1) if tickvals is None else tickvals)]
    return None


def _title(layout: dict[str, Any], key: str) -> str | None:
    """Axis KEY's title text ("" keeps a line too), also given as a bare string; None when it has none."""
    title = _prop(layout, key, "title")
    return title if isinstance(title, str) else _prop(layout, key, "title", "text")


def _on_the_edge(layout: dict[str, Any], key: str) -> bool:
    """Whether axis KEY stands on the figure's edge (its anchor axis's domain starts at 0): the labels of an axis
    between panels push no margin."""
    letter = "x" if key[0] == "y" else "y"
    anchor = str(_prop(layout, key, "anchor") or letter)
    domain = _prop(layout, _axis_key(anchor), "domain")
    return domain is None or _number(domain[0]) <= 0.001


def labelled_margins(layout: dict[str, Any], traces: list[dict[str, Any]]) -> dict[str, int] | None:
    """The left, right and bottom margins (pixels) Plotly would grow a figure's to, on a desktop, so that its
    tick labels, axis titles, legend and colour bar fit; None when they cannot be told beforehand (a numeric
    axis whose ticks Plotly chooses).

    Plotly draws a chart, finds its labels do not fit the margins it was given, grows them and draws the chart
    again: 10-35 ms more for each chart in the browser on every page and filter change (bench/RESULTS.md).
    Given these margins it draws once. The labels are measured with Arial's widths (`text_px`) and Plotly's
    paddings as measured; a margin too small is grown as before, one too wide leaves a few pixels blank.
    """
    left = _left_room(layout, traces)
    if left is None:
        return None
    room = {"l": left, "r": _RIGHT_PX}
    names = _legend_names(layout, traces)
    beside = (_prop(layout, "legend", "orientation") or "v") == "v" and _number(_prop(layout, "legend", "x") or 1.02) >= 1
    if names and beside:
        widest = max(text_px(n, FONT["size"]) for n in names)
        room["r"] = math.ceil(max(_LEGEND_TEXT_SHARE * widest + _LEGEND_PAD, widest + _LEGEND_MIN_PAD)) + _SLACK_PX
    if any(t.get("type") == "heatmap" and t.get("showscale", True) is not False for t in traces):
        room["r"] = max(room["r"], _COLORBAR_PX)
    if DESKTOP_CHART_PX - room["l"] - room["r"] < _PLOTLY_MIN_PLOT_PX:
        return None  # Plotly shrinks margins that leave less: its to lay out
    axes = _x_axes_room(layout, traces, DESKTOP_CHART_PX - room["l"] - room["r"])
    if axes is None:
        return None
    bottom = [px for side, px, _ in axes if side == "bottom"]
    if bottom:
        room["b"] = math.ceil(max(bottom)) + _SLACK_PX
    return room


def _lines(text: object) -> list[str]:
    return str(text).split("<br>")


def _label_px(text: object, size: float) -> float:
    """The width of a label or title drawn in lines (<br>): its longest line's."""
    return max(text_px(line, size) for line in _lines(text))


def _left_room(layout: dict[str, Any], traces: list[dict[str, Any]]) -> int | None:
    """The left margin the y axes on the figure's left edge take (their tick labels and titles), or None when a
    numeric axis's labels cannot be told beforehand (or no axis stands there)."""
    left: list[float] = []
    for key in _layout_axes(layout, traces, "y"):
        if _prop(layout, key, "visible") is False or _prop(layout, key, "side") == "right" or not _on_the_edge(layout, key):
            continue
        labels = _tick_labels(layout, traces, key)
        if labels is None:
            return None
        size = _number(_prop(layout, key, "tickfont", "size")) or FONT["size"]
        title = _title(layout, key)
        # a title's line as tall as its font ("Numbers at risk" at 12 px under Time to relief's curves), each
        # further line of a wrapped title (a phone's) one more
        title_size = _number(_prop(layout, key, "title", "font", "size")) or FONT["size"]
        title_px = 0.0 if title is None else (
            (_Y_TITLE_PX if title else _Y_EMPTY_TITLE_PX) + _TITLE_LINE_PX * (len(_lines(title)) - 1)) * title_size / FONT["size"]
        labels_px = max(_label_px(v, size) for v in labels) + _Y_LABEL_PAD if labels else 0.0
        left.append(labels_px + title_px)
    return math.ceil(max(left)) + _SLACK_PX if left else None


def _tick_angle(count: int, widest: float, lines: int, size: float, spacing: float, given: object) -> float:
    """The angle (degrees) Plotly draws an x axis's COUNT labels at (the widest WIDEST pixels, in at most LINES
    lines of SIZE pixels), SPACING pixels apart: as GIVEN when set; otherwise flat while side by side they fit,
    else 30 degrees when the spacing is at least tan(60 degrees) times their lines' height, else upright
    (Plotly's autotickangles, [0, 30, 90])."""
    if given is not None and given != "auto":
        folded = abs(_number(given)) % 180  # 180 degrees is flat upside down, 135 slants as 45
        return 180 - folded if folded > 90 else folded
    if count < 2 or widest + 2 <= spacing:
        return 0.0
    line = _TICK_LINE_PX * size / FONT["size"] * lines
    return 30.0 if spacing / math.hypot(spacing, line) >= math.cos(math.radians(30)) else 90.0


def _last_category(layout: dict[str, Any], traces: list[dict[str, Any]], key: str) -> str | None:
    """The category axis KEY ("xaxis") shows last, at its right or upper end: the category order's last, else the
    last new one of its traces' (Plotly's order of appearance), the first where the axis is reversed; None
    when the axis is not a category axis."""
    order = _prop(layout, key, "categoryarray")
    order = _categories(layout, traces, key) if order is None else [str(v) for v in order]
    if not order:
        return None
    return order[0] if _prop(layout, key, "autorange") == "reversed" else order[-1]


def _last_tick(layout: dict[str, Any], traces: list[dict[str, Any]], key: str, labels: list[str],
               axis_px: float) -> tuple[str, float, float] | None:
    """Axis KEY's last tick label, the pixels from its tick to the axis's end and the ticks' spacing, when they
    can be told: categories (half a step in from the end where bars or cells stand on them, `_POINTS_PAD_SHARE`
    of the axis and `_POINTS_PAD_PX` in for points and lines), or tick values on a set range; None otherwise."""
    if not labels:
        return None
    last = _last_category(layout, traces, key)
    if last is not None:
        boxed = any(_on_axis(t, key) and t.get("type", "scatter") != "scatter" for t in traces)
        if boxed:
            return last, axis_px / len(labels) / 2, axis_px / len(labels)
        pad = _POINTS_PAD_SHARE * axis_px + _POINTS_PAD_PX
        return last, pad, (axis_px - 2 * pad) / max(len(labels) - 1, 1)
    tickvals, span = _prop(layout, key, "tickvals"), _prop(layout, key, "range")
    if tickvals is None or span is None or len(tickvals) < 2 or len(labels) != len(tickvals) or len(span) != 2:
        return None
    if any(v is None or isinstance(v, str) for v in (*span, *tickvals)):
        return None  # a range left open, dates: Plotly's to tell
    start, end = _number(span[0]), _number(span[1])
    values = [_number(v) for v in tickvals]
    if not (start < end and all(a < b for a, b in zip(values, values[1:])) and start <= values[0] and values[-1] <= end):
        return None  # a reversed range, ticks out of order or outside it
    per_unit = axis_px / (end - start)
    spacing = (values[-1] - values[0]) * per_unit / (len(values) - 1)
    return labels[-1], (end - values[-1]) * per_unit, spacing


def _x_axes_room(layout: dict[str, Any], traces: list[dict[str, Any]], plot_px: float,
                 top: bool = False) -> list[tuple[str, float, float]] | None:
    """For each x axis on the figure's bottom or top edge that shows labels: (its side, "bottom" or "top"; the
    room beyond the plot its tick labels and title take on that side; how far its labels reach beyond the plot's
    right end (0 for an axis that ends before it), or `_RIGHT_PX` less Plotly's padding where they cannot be
    told), the plot PLOT_PX pixels wide; axes on top only with TOP. None when a percentage axis Plotly ticks
    itself is too narrow to tell whether its labels turn."""
    out: list[tuple[str, float, float]] = []
    for key in _layout_axes(layout, traces, "x"):
        side = "top" if _prop(layout, key, "side") == "top" else "bottom"
        if (_prop(layout, key, "visible") is False or _prop(layout, key, "showticklabels") is False
                or (side == "bottom" and not _on_the_edge(layout, key)) or (side == "top" and not top)):
            continue
        known = _tick_labels(layout, traces, key)
        labels = known or []
        size = _number(_prop(layout, key, "tickfont", "size")) or FONT["size"]
        widest = max((_label_px(v, size) for v in labels), default=0.0)
        domain = _prop(layout, key, "domain")
        domain = (0, 1) if domain is None else domain
        axis_px = plot_px * (_number(domain[1]) - _number(domain[0]))
        last = _last_tick(layout, traces, key, labels, axis_px) if known is not None else None
        own_ticks = known is not None and last is None and _prop(layout, key, "tickvals") is None
        if own_ticks and axis_px < _OWN_TICKS_FLAT_PX:
            return None  # a percentage axis Plotly ticks itself, too narrow to tell whether it turns its labels
        spacing = last[2] if last is not None else axis_px / max(len(labels), 1)
        lines = max((len(_lines(v)) for v in labels), default=1)
        degrees = _tick_angle(len(labels), widest, lines, size, spacing, _prop(layout, key, "tickangle"))
        angle = math.radians(degrees)
        # a turned label stands on its end: its length down, its lines' height across, a little further out
        height = _X_LABEL_LINE_PX * lines * size / FONT["size"]
        title = _title(layout, key)
        title_px = 0.0 if title is None else _X_TITLE_PX + _TITLE_LINE_PX * (len(_lines(title)) - 1)
        room = (_X_LABELS_PX - _X_LABEL_LINE_PX + _X_TURNED_PAD_PX * math.sin(angle)
                + widest * math.sin(angle) + height * math.cos(angle) + title_px)
        if own_ticks:  # a percentage axis Plotly ticks itself: "100%" may stand at its end
            beyond = _label_px("100%", size) / 2
        elif last is None:
            beyond = _RIGHT_PX - _PLOTLY_PAD_PX  # Plotly's own numeric ticks: the last one's label may stand at the end
        else:
            # the last label centred on its tick, or upright beside it, or slanting away from it to the right
            label, inside, _ = last
            label_px = _label_px(label, size)
            reach = {0.0: label_px / 2, 90.0: height}.get(degrees, label_px * math.cos(angle))
            beyond = max(reach - inside, 0.0)
        if _number(domain[1]) < 0.999:
            beyond = 0.0  # a left panel's labels stand over the next panel, not beyond the figure
        out.append((side, room, beyond))
    return out


def _legend_names(layout: dict[str, Any], traces: list[dict[str, Any]]) -> list[str]:
    """The legend's entries, one a named trace that shows in it (Plotly's, however the traces are grouped), in
    order; none when the legend is not shown (by default: fewer than two entries)."""
    names = [str(t["name"]) for t in traces if t.get("name") not in (None, "") and t.get("showlegend") is not False]
    shown = _prop(layout, "showlegend")
    return names if names and (shown is True or (shown is None and len(names) > 1)) else []


def legend_rows(names: list[str], width_px: float) -> int:
    """The rows a horizontal legend of NAMES takes across WIDTH_PX pixels, as Plotly lays it out: entries side by
    side (symbol and text), a new row where the next does not fit."""
    rows, x = 1, 0.0
    for name in names:
        entry = _LEGEND_TEXT_SHARE * _label_px(name, FONT["size"]) + _LEGEND_ENTRY_PAD
        if x and x + entry > width_px - _SLACK_PX:  # the entries' widths are Arial's, near enough
            rows, x = rows + 1, 0.0
        x += entry + _LEGEND_ITEM_GAP
    return rows


def phone_margins(layout: dict[str, Any], traces: list[dict[str, Any]]) -> dict[str, int] | None:
    """The left, right and bottom margins (pixels) Plotly would grow a phone layout's (`fit_for_phone`) to, drawn
    PHONE_CHART_PX wide: the y labels and their wrapped titles, the x labels (upright where they do not fit
    side by side at 30 degrees), the last x label standing beyond the plot, a horizontal colour bar below it
    and the legend below everything (`PHONE_LEGEND_ROW_PX` a row); None when they cannot be told beforehand.
    As `labelled_margins` for a desktop: given these, Plotly draws the chart once."""
    left = _left_room(layout, traces)
    if left is None:
        return None
    # a heatmap fit_for_phone did not turn keeps its colour bar beside it
    least = _COLORBAR_PX if any(t.get("type") == "heatmap" and t.get("showscale", True) is not False
                                and _prop(t, "colorbar", "orientation") != "h" for t in traces) else BASE_MARGIN_PX

    # the labels' reach beyond the plot's right end pushes the right margin, to that plus Plotly's padding, at the
    # plot's width (its labels may turn): grown until the labels at that width need no more
    def needed(right: int) -> tuple[int, list[tuple[str, float, float]]] | None:
        axes = _x_axes_room(layout, traces, PHONE_CHART_PX - left - right, top=True)
        if axes is None:
            return None
        return max([least, *(math.ceil(beyond + _PLOTLY_PAD_PX) + _SLACK_PX for _, _, beyond in axes
                             if beyond > 0)]), axes

    right, found = least, needed(least)
    while found is not None and found[0] > right and right < max(PHONE_CHART_PX / 4, least):
        right, found = found[0], needed(found[0])
    if found is None or found[0] > right:
        return None  # labels that would take a quarter of a phone's width: Plotly's to lay out
    if found[0] < right:
        # less can hold too: labels turned at the wider plot reached further than upright ones at the narrower
        less = needed(found[0])
        if less is not None and less[0] <= found[0]:
            right, found = found[0], less
    axes = found[1]
    plot_px = PHONE_CHART_PX - left - right
    bottom = max([BASE_MARGIN_PX, *(room + _SLACK_PX for side, room, _ in axes if side == "bottom")])
    for t in traces:
        # a horizontal colour bar (the turned heatmap's) below the plot, at Y (a share of the plot's height) and
        # PHONE_COLORBAR_PX tall: the margin holds it wherever the plot's bottom lands
        y = _number(_prop(t, "colorbar", "y"))
        if t.get("type") == "heatmap" and _prop(t, "colorbar", "orientation") == "h" and y < 0:
            height, top = _number(_prop(layout, "height")) or HEIGHT, _number(_prop(layout, "margin", "t"))
            bottom = max(bottom, (PHONE_COLORBAR_PX - y * (height - top)) / (1 - y) + _SLACK_PX)
    if plot_px < _PLOTLY_MIN_PLOT_PX:
        return None  # Plotly shrinks margins that leave less: its to lay out
    names = _legend_names(layout, traces)
    if names and _prop(layout, "legend", "orientation") != "h":
        return None  # a legend beside the plot (fit_for_phone puts every legend it shows below)
    if names:
        bottom += PHONE_LEGEND_ROW_PX * legend_rows(names, plot_px)
    return {"l": left, "r": right, "b": math.ceil(bottom)}


def _trace(kind: str, **properties: Any) -> dict[str, Any]:
    """A trace of type `kind` ("scatter", "bar", "heatmap") as `_Draft.add_trace` takes it."""
    return {"type": kind, **properties}


def _merge(into: dict[str, Any], properties: dict[str, Any]) -> None:
    """Plotly's `update`: nested properties merged key by key, any other value (a list too) replaced; dicts and
    lists copied. A shorthand name ("title_text") and the nested form of the same property ("title") meet as
    in Plotly, the later call winning: shorthand after the nested form goes into it, and the nested form after
    shorthand takes the shorthand in first. (Otherwise shorthand is kept as given; `go.Figure` resolves it.)"""
    for name, value in properties.items():
        head, _, rest = name.partition("_")
        if rest and isinstance(into.get(head), dict):
            _merge(into[head], {rest: value})
            continue
        if isinstance(value, dict):
            for key in [k for k in into if k.startswith(name + "_")]:
                _merge(into.setdefault(name, {}), {key[len(name) + 1:]: into.pop(key)})
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _merge(into[name], value)
        else:
            into[name] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value


_SUBPLOT_GRIDS: "OrderedDict[str, tuple[dict[str, Any], list[list[tuple[str, str]]]]]" = OrderedDict()
_SUBPLOT_GRIDS_MAX = 64  # grids differ by panel titles and spacing: a few per page
_SUBPLOT_GRIDS_LOCK = threading.Lock()  # every session's script thread builds figures


def _subplot_grid(subplots: dict[str, Any]) -> tuple[dict[str, Any], list[list[tuple[str, str]]]]:
    """`make_subplots(**subplots)`' layout (its axes' domains and anchors, the panel titles) as a dict and
    the layout keys of each cell's axes, `[row][col] -> ("xaxis2", "yaxis2")`; computed once per grid (the
    same few grids recur on every page), the caller copies the layout."""
    key = repr(sorted(subplots.items()))  # the arguments hold lists (row heights, titles): not hashable as they are
    with _SUBPLOT_GRIDS_LOCK:
        grid = _SUBPLOT_GRIDS.get(key)
        if grid is not None:
            _SUBPLOT_GRIDS.move_to_end(key)
            return grid
    made = make_subplots(**subplots)
    layout = made.layout.to_plotly_json()
    layout.pop("template", None)  # the default template: every new figure applies it itself
    refs = [[cell[0].layout_keys[:2] for cell in cells] for cells in made._grid_ref]
    grid = (layout, refs)  # a new dict of its own, never changed: each figure copies it
    with _SUBPLOT_GRIDS_LOCK:
        _SUBPLOT_GRIDS[key] = grid
        while len(_SUBPLOT_GRIDS) > _SUBPLOT_GRIDS_MAX:
            _SUBPLOT_GRIDS.popitem(last=False)
    return grid


TITLE_LINE_CHARS = 80  # a chart title's line on a desktop: fits a full-width chart from a 1024-pixel window
TITLE_LINE_PX = 22  # the height of a further title line


def _base_layout_properties(title: str, *, height: int = HEIGHT, legend: bool = True) -> dict[str, Any]:
    """Every chart's title, font, height, margins and legend."""
    # Plotly never wraps a title: a long one (the relief threshold in words) ran past the chart and was cut
    # mid-word. Wrapped, each further line gets its own room above the plot.
    if len(title) > TITLE_LINE_CHARS and "<br>" not in title:
        title = _wrap(title, TITLE_LINE_CHARS)
    extra = TITLE_LINE_PX * title.count("<br>")
    return dict(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=17)),
        font=FONT,
        height=height + extra,
        margin=dict(l=BASE_MARGIN_PX, r=BASE_MARGIN_PX, t=70 + extra, b=BASE_MARGIN_PX),
        showlegend=legend,
        # Legend on the right: above the plot it collides with titles of multi-panel figures.
        legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.01, title=dict(text="")),
        hoverlabel=dict(font_size=13),
    )


PHONE_LINE_CHARS = 38  # characters of a title line on a 390-pixel-wide phone at the phone's font sizes


def _wrap(text: str, width: int) -> str:
    """`text` broken into lines of at most `width` characters with Plotly's <br> (existing <br> kept)."""
    return "<br>".join(line for part in str(text).split("<br>") for line in (textwrap.wrap(part, width) or [""]))


PHONE_TOP_AXIS_PX = 100  # a turned heatmap's routes above the plot on a phone: axis title and slanted names
# Plotly's toolbar is always shown on a touch screen, over the chart's top 28 pixels: a title set at the top
# with this padding starts under it (Plotly draws a top-anchored title's first line 15 pixels above its pad)
PHONE_TITLE_PAD_PX = 46
PHONE_ROW_LABEL_CHARS = 14  # a turned heatmap's row names on a phone, per line ("Disorientation")
# room above the tallest bar whose number stands upright over it on a phone: Plotly's autorange leaves room for
# the number lying flat, so the upright "1,241" over the tallest bar was cut to "1"
PHONE_UPRIGHT_TEXT_HEADROOM = 1.25
# a number beside the longest of horizontal bars needs its own width of the panel on a phone: at 390 pixels the
# plot area beside the routes' names is about 230 pixels (shared by the panels), a character of the bars'
# 12-pixel numbers about 7, and Plotly pads the text by 3 on each side
PHONE_PLOT_PX = 230
PHONE_TEXT_CHAR_PX = 7
PHONE_TEXT_PAD_PX = 6
# a chart's width on a 390-pixel phone (Streamlit pads the page by 16 pixels a side): the margins a phone layout is
# given beforehand (`phone_margins`) are those of this width; a wider phone draws once too (its labels turn no
# more), a narrower one may grow them
PHONE_CHART_PX = 358
PHONE_LEGEND_ROW_PX = 29  # a row of the legend below a phone's chart
PHONE_COLORBAR_PX = 74  # the turned heatmap's horizontal colour bar with its title and numbers
# the plot's own height at least: the titles, panel titles, labels and legend of a short chart (one route's
# maintenance rates, 250 pixels) left its plot 64 pixels on a phone
PHONE_MIN_PLOT_PX = 120

HIDDEN_LABEL = "hidden: "  # a withheld rate's label beside its dot: "hidden: fewer than 11", "hidden: < 65 %"


def _short_hidden_label(text: object) -> object:
    """A withheld rate's label in its phone form: the bound alone when it is short ("< 65 %"), else "hidden"."""
    if not (isinstance(text, str) and text.startswith(HIDDEN_LABEL)):
        return text
    said = text[len(HIDDEN_LABEL):]
    return said if len(said) <= 8 else "hidden"


def _phone_cell_text(percent: object, text: object) -> object:
    """A heatmap cell's words in their phone form, from the cell's rate in per cent and its desktop text:
    whole per cent without a space from 10 % ("45%", "100%"), one decimal under it ("4.6%", so a small rate
    never reads as 0), a hidden cell's bound without spaces ("<11%") and "hidden" as it is."""
    if not _isnan(percent):
        p = float(percent)  # type: ignore[arg-type]
        return f"{p:.0f}%" if p >= 9.95 or p == 0 else f"{p:.1f}%"
    return text.replace(" ", "") if isinstance(text, str) and text.startswith("<") else text


def fit_for_phone(fig: go.Figure) -> go.Figure:
    """A copy of a finished figure laid out for a phone's narrow screen (about 360 pixels of chart): titles,
    panel titles and axis titles wrapped instead of overlapping, the legend below the plot instead of
    taking half the width, a heatmap with more columns than rows turned so its cells are wide enough for
    their words, in their short form ("45%", "<11%"), its colour bar below. The data, colours and hover texts
    are unchanged. It is given the margins its labels and legend take (`phone_margins`), so that Plotly draws it
    once, and made taller where they would leave the plot less than PHONE_MIN_PLOT_PX.
    The figure given is not changed (figures are shared between sessions)."""
    out = go.Figure(fig)
    # the desktop's margins grown for its labels (`labelled_margins`) do not fit a phone's layout: Plotly grows
    # the phone's own from the base
    out.update_layout(margin=dict(l=BASE_MARGIN_PX, r=BASE_MARGIN_PX, b=BASE_MARGIN_PX))
    layout = out.layout
    title = layout.title.text
    lines = 1
    if title:
        wrapped = _wrap(title.replace("<br>", " "), PHONE_LINE_CHARS)  # from the whole title, not the desktop lines
        lines = wrapped.count("<br>") + 1
        out.update_layout(title=dict(text=wrapped, font=dict(size=15)))
    x_axes = list(out.select_xaxes())
    # panels side by side share the width; panels stacked (the monitoring rules on a phone) each have it all
    columns = max(len({tuple(axis.domain or (0, 1)) for axis in x_axes}), 1)
    panel_lines = 0
    top_axis = 0  # room for an axis drawn above the plot, between it and the title
    for note in layout.annotations or ():
        # panel titles of subplots sit above their panel, each a share of the width; those of the top row in
        # the top margin, those of lower rows (make_subplots: centred over the panel, standing on it) between rows
        if not (note.text and note.yref == "paper" and note.y is not None and note.showarrow is False):
            continue
        top_row = note.y >= 1 - 1e-9  # make_subplots' top domain may end at 0.9999999999999999
        if top_row or (note.xref == "paper" and note.yanchor == "bottom" and note.xanchor == "center"):
            note.text = _wrap(note.text, PHONE_LINE_CHARS // columns)
            note.font = dict(size=11)
            if top_row:
                panel_lines = max(panel_lines, note.text.count("<br>") + 1)
    for axis in x_axes:  # centred under a plot area narrower than the screen (labels take the left)
        if axis.title and axis.title.text:
            axis.title.text = _wrap(axis.title.text, (PHONE_LINE_CHARS - 10) // columns)
    for axis in out.select_yaxes():
        if axis.title and axis.title.text:
            axis.title.text = _wrap(axis.title.text, PHONE_LINE_CHARS)
    if len(out.data) == 1 and out.data[0].type == "heatmap":
        h = out.data[0]
        z = np.asarray(h.z, dtype=float)
        if z.ndim == 2 and z.shape[1] > z.shape[0]:
            text = None if h.text is None else np.asarray(
                [[_phone_cell_text(v, t) for v, t in zip(zr, tr)] for zr, tr in zip(z, h.text)], dtype=object).T
            custom = None if h.customdata is None else np.asarray(h.customdata, dtype=object).T
            hover = (h.hovertemplate or "").replace("%{x}", "%{__X__}").replace("%{y}", "%{x}").replace("%{__X__}", "%{y}")
            # the longest event's name ("Severe BP (≥ 180/110)") set the margin for all: two lines fit a row
            rows = [_wrap(v, PHONE_ROW_LABEL_CHARS) if isinstance(v, str) else v for v in h.x]
            h.update(z=z.T, x=h.y, y=rows, text=text, customdata=custom, hovertemplate=hover,
                     textfont=dict(size=10), colorbar=dict(orientation="h", y=-0.08, yanchor="top", thickness=12,
                                                           title=dict(side="top")))
            x_title, y_title = out.layout.xaxis.title.text, out.layout.yaxis.title.text
            out.update_xaxes(title_text=y_title, tickangle=-30, side="top", autorange=None)
            # the events' names say what the rows are: without the axis title (and its gap) the six columns
            # of five routes and "All routes" get half as wide again (25 px a cell was too narrow for "hidden")
            out.update_yaxes(title_text=None, autorange="reversed", tickangle=0, tickfont=dict(size=10))
            out.update_layout(height=max(420, 160 + 34 * z.shape[1]) + PHONE_TOP_AXIS_PX)
            top_axis = PHONE_TOP_AXIS_PX
    upright_tops: dict[str, float] = {}  # y axis -> its tallest bar with an upright number above it
    for trace in out.data:
        # long category labels of horizontal bars (the funnel's steps) took two thirds of the width
        if trace.type == "bar" and trace.orientation == "h" and trace.y is not None and any(
                isinstance(v, str) and len(v) > PHONE_LINE_CHARS // 2 for v in trace.y):
            trace.y = [_wrap(v, PHONE_LINE_CHARS // 2) if isinstance(v, str) else v for v in trace.y]
            trace.cliponaxis = False
        # side by side over a group of five routes, each "hidden" above its empty bar ran into the next
        # ("hiddenhiddenhidden"): upright, each stands over its own bar
        if trace.type == "bar" and trace.orientation in (None, "v") and trace.text is not None and not isinstance(
                trace.text, str) and any(isinstance(v, str) and v for v in trace.text):
            trace.textangle = -90
            if trace.textposition == "outside":
                heights = [float(v) for v in (trace.y if trace.y is not None else ())
                           if isinstance(v, (int, float, np.number)) and math.isfinite(float(v))]
                axis = trace.yaxis or "y"
                upright_tops[axis] = max([upright_tops.get(axis, 0.0), *heights])
        # "hidden: fewer than 11" beside a panel a third of the screen wide is cut off: the short form, the
        # hover still says it in full
        if trace.type == "scatter" and trace.mode == "text" and trace.text is not None and not isinstance(trace.text, str):
            trace.text = [_short_hidden_label(t) for t in trace.text]
    for axis_ref, top in upright_tops.items():
        axis = out.layout[_axis_key(axis_ref)]
        if top > 0 and axis.range is None and axis.autorange in (None, True):
            axis.range = [0, top * PHONE_UPRIGHT_TEXT_HEADROOM]
    for axis_ref, ends in _side_text_ends(out).items():
        # a number beside a horizontal bar that reaches the panel's end was cut at the chart's right edge (the
        # maintenance timing's "27" read "2"): the axis reaches far enough for the longest bar and its number
        axis = out.layout[_axis_key(axis_ref)]
        domain = axis.domain or (0, 1)
        panel_px = PHONE_PLOT_PX * (domain[1] - domain[0])
        needed = max(value / max(1 - (PHONE_TEXT_CHAR_PX * chars + PHONE_TEXT_PAD_PX) / panel_px, 0.4)
                     for value, chars in ends)
        if axis.range is not None:
            axis.range = [axis.range[0], max(axis.range[1], needed)]
        elif axis.autorange in (None, True) and needed > 0:
            axis.range = [0, needed]
    # a legend Plotly shows (`_legend_names`), even of one route: beside the plot it took a third of the width
    entries = _legend_names({"showlegend": out.layout.showlegend},
                            [{"name": t.name, "showlegend": t.showlegend} for t in out.data])
    if entries:
        # below everything (axis titles, rotated ticks): anchored to the bottom of the figure, two a row
        rows = math.ceil(len(entries) / 2)
        extra = 26 * rows + 20
        out.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom", yref="container"),
                          height=(out.layout.height or HEIGHT) + extra,
                          margin=dict(b=BASE_MARGIN_PX + extra))
    # On a touch screen Plotly's toolbar is always shown, across the top right of the chart, where Plotly
    # centred the title in the top margin (the title ran under its icons; a title of three lines or more also
    # ran into the plot, and panel titles or an axis drawn above the plot stood in its lower lines): the title
    # stands at the top, under the toolbar, with its lines, the panels' titles and that axis below it.
    out.update_layout(title=dict(y=1, yref="container", yanchor="top", pad=dict(t=PHONE_TITLE_PAD_PX)),
                      margin=dict(t=PHONE_TITLE_PAD_PX + TITLE_LINE_PX * lines + 15 * panel_lines + top_axis))
    # the margins the labels and legend will take, given beforehand so that Plotly draws the chart once; the
    # figure taller where they would leave the plot too little height
    for _ in range(2):
        try:  # the objects' own values (Figure.to_plotly_json would encode arrays as base64)
            room = phone_margins(out.layout.to_plotly_json(), [t.to_plotly_json() for t in out.data])
        except _UNREAD:
            room = None
        if room is None:
            break
        out.update_layout(margin=room)
        short = PHONE_MIN_PLOT_PX - ((out.layout.height or HEIGHT) - out.layout.margin.t - room["b"])
        if short <= 0:
            break
        out.update_layout(height=(out.layout.height or HEIGHT) + short)
    return out


def _side_text_ends(fig: go.Figure) -> dict[str, list[tuple[float, int]]]:
    """Per x axis, each horizontal bar that carries its number outside it: (the bar's length in the axis's
    units, the number's length in characters)."""
    ends: dict[str, list[tuple[float, int]]] = {}
    for trace in fig.data:
        if trace.type != "bar" or trace.orientation != "h" or trace.textposition != "outside" or trace.x is None:
            continue
        texts = trace.text if trace.text is not None and not isinstance(trace.text, str) else [trace.text] * len(trace.x)
        for value, text in zip(trace.x, texts):
            if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)) and float(value) > 0:
                ends.setdefault(trace.xaxis or "x", []).append((float(value), len(str(text or ""))))
    return ends


def _empty(title: str, message: str) -> go.Figure:
    """A figure that says why it has nothing to draw (never an empty canvas)."""
    fig = _Draft()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color=colors.NEUTRAL))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig.figure(title, height=260, legend=False)


def hidden_routes(df: pd.DataFrame, column: str) -> list[str]:
    """Routes whose `column` is hidden (NaN) in a disclosure-applied table."""
    if df is None or df.empty or column not in df:
        return []
    return [str(r) for r, v in zip(df["route"], df[column]) if _isnan(v)]


def _interval_arrays(rate: float | None, lo: object, hi: object) -> tuple[float, float]:
    if rate is None or _isnan(lo) or _isnan(hi):
        return 0.0, 0.0
    return max(rate - float(lo), 0.0), max(float(hi) - rate, 0.0)  # type: ignore[arg-type]


def _add_rate_dots(
    fig: _Draft,
    df: pd.DataFrame,
    rate: str,
    low: str,
    high: str,
    *,
    numerator: str | None,
    denominator: str | None,
    what: str,
    col: int = 1,
    showlegend: bool = True,
) -> None:
    """One marker per route at its rate with a horizontal interval bar; 'hidden' where withheld."""
    for i, row in df.iterrows():
        route = str(row["route"])
        label = colors.route_label(route)
        value = _num(row.get(rate))
        minus, plus = _interval_arrays(value, row.get(low), row.get(high))
        counts = ""
        if numerator and denominator:
            counts = (f"<br>{cell_text(df, i, numerator, undefined='0')} of "
                      f"{cell_text(df, i, denominator, undefined='0')} patients")
        shown = cell_text(df, i, rate, "pct", undefined="no patients")
        interval = (f"<br>95 % interval: {fmt_pct(row.get(low))} to {fmt_pct(row.get(high))}"
                    if value is not None else "")
        hover = f"<b>{label}</b><br>{what}: {shown}{interval}{counts}<extra></extra>"
        fig.add_trace(
            _trace(
                "scatter",
                x=[value if value is not None else 0.0],
                y=[label],
                mode="markers" if value is not None else "text",
                text=None if value is not None else [f"{HIDDEN_LABEL}{shown}" if shown != "hidden" else "hidden"],
                textposition="middle right",
                textfont=dict(color=colors.NEUTRAL),
                marker=dict(color=colors.route_color(route), symbol=colors.route_symbol(route), size=13,
                            line=dict(width=1, color="white")),
                error_x=dict(type="data", symmetric=False, array=[plus], arrayminus=[minus],
                             color=colors.route_color(route), thickness=2.5, width=6),
                name=label,
                legendgroup=route,
                showlegend=showlegend,
                hovertemplate=hover,
            ),
            row=1, col=col,
        )


# --- overview -----------------------------------------------------------------------------------------


@_plain_inputs
def create_funnel_figure(funnel: pd.DataFrame) -> go.Figure:
    """The cohort funnel (every route together): how many patients reach each step of the analysis."""
    title = "Cohort funnel"  # short: a long title wraps under the chart toolbar on a phone
    if funnel is None or funnel.empty:
        return _empty(title, "No patients match these filters.")
    all_rows = funnel[funnel["route"] == spec.ALL]
    row = all_rows.iloc[0] if len(all_rows) else funnel.iloc[-1]
    labels = [label for _, label in FUNNEL_STEPS]
    values = [_num(row.get(col)) for col, _ in FUNNEL_STEPS]
    first = values[0]
    text = []
    for v in values:
        if v is None:
            text.append("hidden")
        elif first:
            text.append(f"{v:,.0f} ({v / first:.0%})")
        else:
            text.append(f"{v:,.0f}")
    fig = _Draft()
    fig.add_trace(
        _trace(
            "bar",
            x=[v or 0 for v in values],
            y=labels,
            orientation="h",
            text=text,
            textposition="auto",
            marker=dict(color=colors.route_fill(spec.ALL, 0.7)),
            hovertemplate="%{y}: %{text}<extra></extra>",
            name="All routes",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text=None)
    fig.update_xaxes(title_text="Patients", rangemode="tozero")
    return fig.figure(title, height=340, legend=False)


@_plain_inputs
def create_trend_figure(trend: pd.DataFrame) -> go.Figure:
    """Response rate by start quarter (trend.csv): one line per route and all routes together (thicker),
    hover with the 95 % interval and n; a hidden point is a grey ring on the axis whose hover says why."""
    title = "Response rate by the quarter treatment started"
    if trend is None or trend.empty:
        return _empty(title, "No patients started treatment in these quarters.")
    quarters = sorted(dict.fromkeys(str(q) for q in trend["start_quarter"]))
    fig = _Draft()
    for route in _routes(trend):
        rows = trend[trend["route"].astype(str) == route]
        label = colors.route_label(route) if route != spec.ALL else "All routes"
        x, y, hover, hx, htext = [], [], [], [], []
        for i, row in rows.iterrows():
            q = str(row["start_quarter"])
            value = _num(row["response_rate"])
            n = cell_text(rows, i, "evaluable", undefined="0")
            if value is None:
                reason = cell_text(rows, i, "response_rate", "pct", undefined="no patients")
                hx.append(q)
                htext.append(f"<b>{label}</b>, {q}<br>Response rate: {reason}<br>n = {n}<extra></extra>")
                x.append(q)
                y.append(None)
                hover.append("")
                continue
            x.append(q)
            y.append(value)
            hover.append(f"<b>{label}</b>, {q}<br>Response rate: {fmt_pct(value, 0)} "
                         f"(95 % interval {fmt_pct(row['response_ci_low'], 0)} to {fmt_pct(row['response_ci_high'], 0)})"
                         f"<br>n = {n}")
        fig.add_trace(_trace("scatter",
            x=x, y=y, mode="lines+markers", name=label, legendgroup=route, connectgaps=False,
            line=dict(color=colors.route_color(route), dash=colors.route_dash(route),
                      width=colors.route_line_width(route)),
            marker=dict(symbol=colors.route_symbol(route), size=8, color=colors.route_color(route)),
            hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
        ))
        if hx:
            fig.add_trace(_trace("scatter",
                x=hx, y=[0.0] * len(hx), mode="markers", name=f"{label}: hidden", legendgroup=route,
                showlegend=False, marker=dict(symbol="circle-open", size=10, color=colors.HIDDEN, line=dict(width=2)),
                hovertemplate=htext,
            ))
    fig.update_xaxes(categoryorder="array", categoryarray=quarters, title_text="Quarter treatment started",
                     type="category")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title_text="Responders (%)")
    return fig.figure(title, height=360)


# --- response ---------------------------------------------------------------------------------------


@_plain_inputs
def create_response_figure(response: pd.DataFrame, instrument_label: str = "") -> go.Figure:
    """Response and remission rates per route, side by side, each with its 95 % Wilson interval."""
    title = "Response and remission by route" + (f" ({instrument_label})" if instrument_label else "")
    if response is None or response.empty:
        return _empty(title, "No eligible patients in this cohort.")
    # short panel titles and one axis title: on a phone the two panels are 150 px wide each
    fig = _Draft(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1,
                        subplot_titles=("Response", "Remission"))
    _add_rate_dots(fig, response, "response_rate", "response_ci_low", "response_ci_high",
                   numerator="responders", denominator="evaluable", what="Response rate", col=1)
    _add_rate_dots(fig, response, "remission_rate", "remission_ci_low", "remission_ci_high",
                   numerator="remitters", denominator="evaluable", what="Remission rate", col=2, showlegend=False)
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_xaxes(title_text="% of patients")  # short: two panels share a phone screen
    fig.update_yaxes(autorange="reversed", title_text=None)
    return fig.figure(title, height=max(250, 110 + 44 * len(response)), legend=False)


@_plain_inputs
def create_comparison_figure(pairwise: pd.DataFrame, outcome: str = "response") -> go.Figure:
    """Forest plot of the pairwise differences in rate between routes with 95 % intervals."""
    title = f"Difference in {outcome} rate between routes"
    if pairwise is None or pairwise.empty:
        return _empty(title, "Fewer than two routes to compare.")
    fig = _Draft()
    labels = []
    for _, row in pairwise.iterrows():
        a, b = str(row["route_a"]), str(row["route_b"])
        label = colors.route_pair_label(a, b)
        labels.append(label)
        d = _num(row.get("difference"))
        if d is None:
            fig.add_trace(_trace("scatter", x=[0], y=[label], mode="text", text=["hidden"], showlegend=False,
                                            textposition="middle right", hoverinfo="skip"))
            continue
        minus, plus = _interval_arrays(d, row.get("ci_low"), row.get("ci_high"))
        p_adj = _num(row.get("p_adjusted"))
        fig.add_trace(_trace("scatter",
            x=[d * 100], y=[label], mode="markers",
            marker=dict(color=colors.NEUTRAL, size=11, symbol="diamond"),
            error_x=dict(type="data", symmetric=False, array=[plus * 100], arrayminus=[minus * 100],
                         color=colors.NEUTRAL, thickness=2, width=5),
            showlegend=False,
            hovertemplate=(
                f"<b>{colors.route_label(a)} minus {colors.route_label(b)}</b>"
                f"<br>{fmt_pct(row.get('rate_a'))} vs {fmt_pct(row.get('rate_b'))}"
                f"<br>Difference: {d * 100:+.1f} percentage points"
                f"<br>95 % interval: {_num(row.get('ci_low')) * 100 if _num(row.get('ci_low')) is not None else float('nan'):+.1f}"
                f" to {_num(row.get('ci_high')) * 100 if _num(row.get('ci_high')) is not None else float('nan'):+.1f}"
                f"<br>p (Benjamini–Hochberg adjusted): {'–' if p_adj is None else f'{p_adj:.3g}'}<extra></extra>"
            ),
        ))
    fig.update_xaxes(title_text="Difference in rate (percentage points), first route minus second", zeroline=False)
    fig.update_yaxes(autorange="reversed", title_text="Routes compared", type="category", categoryorder="array",
                     categoryarray=labels)
    figure = fig.figure(title, height=max(260, 90 + 36 * len(labels)), legend=False)
    figure.add_vline(x=0, line=dict(color="#999999", dash="dot"))  # Plotly places the line on the finished axes
    return figure


@_plain_inputs
def create_trajectory_figure(trajectory: pd.DataFrame, instrument_label: str = "score",
                             max_week: int | None = None, percent: bool = False) -> go.Figure:
    """Weekly mean score per route with a 95 % interval band (weeks up to `max_week`).

    percent: the trajectory's `mean_score` is the mean improvement from baseline in percent (instrument
    `matched`, where raw scores of different questionnaires cannot share an axis: metrics.trajectory)."""
    title = ("Weekly improvement from baseline by route" if percent
             else f"Weekly {instrument_label} score by route")
    if trajectory is None or trajectory.empty:
        return _empty(title, "No follow-up scores in this cohort.")
    if max_week is not None:
        trajectory = trajectory[trajectory["week"] <= max_week]
    fig = _Draft()
    routes = _routes(trajectory)
    # Seven overlapping bands are unreadable: with many routes only the all-routes band is drawn.
    banded = set(routes) if len(routes) <= BANDED_ROUTES else {spec.ALL}
    for route in routes:
        d = trajectory[trajectory["route"] == route].sort_values("week")
        color = colors.route_color(route)
        label = colors.route_label(route)
        weeks = list(d["week"])
        # Upper edge then lower edge filled to it: hidden weeks (NaN) leave a gap instead of a stray polygon.
        if route in banded:
            fig.add_trace(_trace("scatter", x=weeks, y=floats(d["ci_high"]), mode="lines", line=dict(width=0),
                                            hoverinfo="skip", showlegend=False, legendgroup=route, connectgaps=False))
            fig.add_trace(_trace("scatter", x=weeks, y=floats(d["ci_low"]), mode="lines", line=dict(width=0),
                                            fill="tonexty", fillcolor=colors.route_fill(route, 0.12), hoverinfo="skip",
                                            showlegend=False, legendgroup=route, connectgaps=False))
        fig.add_trace(_trace("scatter",
            x=weeks, y=floats(d["mean_score"]), mode="lines+markers", name=label, legendgroup=route,
            line=dict(color=color, dash=colors.route_dash(route), width=colors.route_line_width(route)),
            marker=dict(symbol=colors.route_symbol(route), size=7, color=color),
            customdata=_stack(d["patients"], d["ci_low"], d["ci_high"]),
            hovertemplate=(f"<b>{label}</b><br>Week %{{x}}<br>"
                           + ("Mean improvement: %{y:.1f} % improvement from baseline" if percent
                              else "Mean score: %{y:.1f} points")
                           + "<br>95 % interval: %{customdata[1]:.1f} to %{customdata[2]:.1f}"
                           "<br>Patients: %{customdata[0]:,.0f}<extra></extra>"),
            connectgaps=False,
        ))
    last = trajectory["week"].max() if len(trajectory) else 0
    fig.update_xaxes(title_text="Weeks since the first session", dtick=1 if last <= 16 else None, rangemode="tozero")
    if percent:
        # improvement can be negative (worse than baseline): the axis is not pinned to zero
        fig.update_yaxes(title_text="Mean improvement from baseline (%)", zeroline=True)
    else:
        fig.update_yaxes(title_text=f"Mean {instrument_label} score (points)", rangemode="tozero")
    return fig.figure(title)


@_plain_inputs
def create_breakdown_figure(breakdown: pd.DataFrame, by_label: str) -> go.Figure:
    """Response rate per group (site, diagnosis or severity band) and route, with 95 % intervals."""
    title = f"Response rate by {by_label} and route"
    if breakdown is None or breakdown.empty:
        return _empty(title, "No evaluable patients in this cohort.")
    fig = _Draft()
    groups = list(dict.fromkeys(str(g) for g in breakdown["group"]))
    for route in _routes(breakdown):
        d = breakdown[breakdown["route"] == route].set_index(breakdown[breakdown["route"] == route]["group"].astype(str))
        d = d.reindex(groups)
        rates = [_num(v) for v in d["response_rate"]]
        lows, highs = d["response_ci_low"], d["response_ci_high"]
        minus = [_interval_arrays(r, lo, hi)[0] for r, lo, hi in zip(rates, lows, highs)]
        plus = [_interval_arrays(r, lo, hi)[1] for r, lo, hi in zip(rates, lows, highs)]
        label = colors.route_label(route)
        fig.add_trace(_trace("bar",
            x=groups, y=[r if r is not None else 0 for r in rates], name=label, legendgroup=route,
            marker=dict(color=colors.route_color(route), pattern=dict(shape=colors.route_pattern(route))),
            error_y=dict(type="data", symmetric=False, array=plus, arrayminus=minus, color="#333333", thickness=1.2),
            # "hidden" only where the row exists and disclosure control emptied it; absent combinations stay blank
            text=["hidden" if r is None and present else "" for r, present in zip(rates, d["route"].notna())],
            textposition="outside",
            customdata=_stack(d["responders"], d["evaluable"]),
            hovertemplate=(f"<b>{label}</b>, %{{x}}<br>Response rate: %{{y:.1%}}"
                           "<br>%{customdata[0]:,.0f} of %{customdata[1]:,.0f} patients<extra></extra>"),
        ))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%", title_text="Response rate (%) with 95 % interval")
    fig.update_xaxes(title_text=by_label.capitalize(), type="category")
    return fig.figure(title)


# --- time to relief -----------------------------------------------------------------------------------


@_plain_inputs
def numbers_at_risk(at_risk: pd.DataFrame, days: Sequence[int]) -> pd.DataFrame:
    """The numbers at risk (route, day, at_risk from metrics' weekly table) on the given days.

    A number withheld by disclosure control stays NaN; a day past the table's end has nobody at risk.
    """
    rows = []
    for route in _routes(at_risk):
        d = at_risk[at_risk["route"] == route].set_index("day")["at_risk"]
        for day in days:
            rows.append({"route": route, "day": day, "at_risk": d.get(day, 0)})
    return pd.DataFrame(rows, columns=["route", "day", "at_risk"])


def relief_curve_has_steps(curve: pd.DataFrame) -> bool:
    """Whether a (protected) time_to_relief_curve.csv has anything past the curves' common start at day 0:
    when every step is withheld, a chart would be empty axes, which reads as "nobody was relieved"."""
    return not curve.empty and bool((pd.to_numeric(curve["day"], errors="coerce") > 0).any())


def relief_curve_missing_words(min_cell: int) -> str:
    """Why no relief curve is drawn (see relief_curve_has_steps), for the page and the PDF report."""
    if min_cell > 0:
        return (f"No curve can be shown for this cohort: every step of it rests on fewer than {min_cell} relieved "
                "patients or patients at risk, so all are hidden to protect patients' privacy.")
    return "No curve to show: no patient in this cohort reached relief during follow-up."


RISK_ROW_PAD = 0.09  # of the days shown, left of day 0 and right of the last tick: half a number at risk's width


@_plain_inputs
def create_relief_figure(curve: pd.DataFrame, at_risk: pd.DataFrame, threshold_label: str,
                         horizon: float | None = None) -> go.Figure:
    """Kaplan–Meier cumulative relief per route with 95 % bands, and a numbers-at-risk table beneath.

    A number at risk withheld by disclosure control shows as '–'. `horizon` (days) limits the x axis to the
    first at-risk day at or after it (the Time to relief page opens on the first 8 weeks, where nearly all
    relief happens); None shows the whole follow-up.
    """
    title = f"Share of patients relieved over time — threshold: {threshold_label}"
    if curve is None or curve.empty:
        return _empty(title, "No patients with a follow-up score in this cohort.")
    routes = _routes(curve)
    fig = _Draft(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.16)
    last_shown = 0.0
    for route in routes:
        d = curve[curve["route"] == route].sort_values("day").reset_index(drop=True)
        # Disclosure control publishes the curve only at steps resting on enough events and patients at risk;
        # the hidden steps in between are dropped, so the drawn curve is the coarser published one.
        d = d[d["relieved"].notna()]
        rel = floats(d["relieved"])
        # The band is undefined where S is 1 or 0: it is the point itself there.
        low = np.where(np.isnan(floats(d["ci_low"])), rel, floats(d["ci_low"]))
        high = np.where(np.isnan(floats(d["ci_high"])), rel, floats(d["ci_high"]))
        days = np.concatenate([[0.0], floats(d["day"])])
        rel, low, high = (np.concatenate([[0.0], v]) for v in (rel, low, high))
        if len(days) > 1:
            last_shown = max(last_shown, float(days[-1]))
        color = colors.route_color(route)
        label = colors.route_label(route)
        fig.add_trace(_trace("scatter", x=days, y=high, mode="lines", line=dict(width=0, shape="hv"), hoverinfo="skip",
                                        showlegend=False, legendgroup=route), row=1, col=1)
        fig.add_trace(_trace("scatter", x=days, y=low, mode="lines", line=dict(width=0, shape="hv"), fill="tonexty",
                                        fillcolor=colors.route_fill(route, 0.12), hoverinfo="skip", showlegend=False,
                                        legendgroup=route), row=1, col=1)
        step_at_risk = np.concatenate([[np.nan], floats(d["at_risk"])])
        fig.add_trace(_trace("scatter",
            # a route none of whose steps may be shown draws no line: its legend entry says so
            x=days, y=rel, mode="lines", name=label if (days > 0).any() else f"{label} (no step shown)",
            legendgroup=route,
            line=dict(color=color, dash=colors.route_dash(route), width=colors.route_line_width(route), shape="hv"),
            customdata=np.column_stack([low, high, step_at_risk]),
            hovertemplate=(f"<b>{label}</b><br>Day %{{x:.1f}}<br>Relieved: %{{y:.1%}}"
                           "<br>95 % interval: %{customdata[0]:.1%} to %{customdata[1]:.1%}"
                           "<br>At risk: %{customdata[2]:,.0f}<extra></extra>"),
        ), row=1, col=1)
    # The x axis and the numbers-at-risk row share the days of the core's at-risk table (metrics.at_risk_days),
    # up to the first of them at or after the curves' last published step (later follow-up is all censored).
    days = sorted(int(d) for d in at_risk["day"].dropna().unique()) if len(at_risk) else []
    if not days:
        # weekly, with longer steps for long follow-up: at most about 100 ticks whatever the last day
        step = 7 * max(1, math.ceil(last_shown / (7 * 100)))
        days = list(range(0, max(step, int(math.ceil(last_shown / step)) * step) + 1, step))
    end = next((d for d in days if d >= last_shown), days[-1])
    if horizon is not None and end > horizon:
        end = next((d for d in days if d >= horizon), end)
        last_shown = min(last_shown, float(end))
    tick_days = [d for d in days if d <= end]
    max_day = float(max(end, last_shown))
    risk = numbers_at_risk(at_risk, tick_days)
    hidden_text = "–"
    for route in routes:
        r = risk[risk["route"] == route]
        fig.add_trace(_trace("scatter",
            x=r["day"], y=[colors.route_label(route)] * len(r), mode="text",
            text=[hidden_text if _isnan(v) else f"{int(v):,}" for v in r["at_risk"]],
            textfont=dict(color=colors.route_color(route), size=12), showlegend=False,
            cliponaxis=False,  # a number wider than the room left of day 0 is drawn whole, never cut ("1,308" read "308")
            hovertemplate=f"{colors.route_label(route)}: %{{text}} at risk on day %{{x}}<extra></extra>",
        ), row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title_text="Patients relieved (%)", row=1, col=1)
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False, title_text="Numbers at risk", row=2,
                     col=1, tickfont=dict(size=11), title_font=dict(size=12))
    # the curves' axis matches the at-risk row's (shared_xaxes): a range on one alone is overruled in the
    # browser by the other's autorange (the whole follow-up was drawn under "First 8 weeks")
    # room either side for the numbers at risk centred under the first and last ticks
    last_day = max(tick_days[-1], max_day)
    pad = max(0.5, RISK_ROW_PAD * last_day)
    days_range = [-pad, last_day + pad]
    fig.update_xaxes(tickvals=tick_days, range=days_range, row=1, col=1)
    fig.update_xaxes(tickvals=tick_days, range=days_range, showgrid=False, title_text="Days since the first session",
                     row=2, col=1)
    fig.update_xaxes(showticklabels=True, title_text="Days since the first session", row=1, col=1)
    return fig.figure(title, height=max(560, 430 + 26 * len(routes)))


# --- side effects -------------------------------------------------------------------------------------


@_plain_inputs
def create_side_effect_heatmap(side_effects: pd.DataFrame) -> go.Figure:
    """Route × event heatmap of the share of sessions with the event ('hidden' cells in grey)."""
    title = "Side effects: share of sessions with each event, by route"
    if side_effects is None or side_effects.empty:
        return _empty(title, "No sessions in this cohort.")
    routes = _routes(side_effects)
    events = [e for e in spec.SUMMARY_EVENTS if e in set(side_effects["event"].astype(str))]
    pivot = (side_effects.assign(event=side_effects["event"].astype(str), route=side_effects["route"].astype(str))
             .pivot_table(index="route", columns="event", values="session_rate", aggfunc="first", dropna=False)
             .reindex(index=routes, columns=events))
    counts = (side_effects.assign(event=side_effects["event"].astype(str), route=side_effects["route"].astype(str))
              .pivot_table(index="route", columns="event", values="sessions_with_event", aggfunc="first", dropna=False)
              .reindex(index=routes, columns=events))
    z = np.array([floats(row) for row in pivot.to_numpy()], dtype=float)
    # a hidden cell says what may be said: "fewer than 11 (< 0.2 %)", never a blank that reads as no data
    where = {(str(r), str(e)): i for i, r, e in zip(side_effects.index, side_effects["route"], side_effects["event"])}
    # the cell holds the bound ("< 0.2 %", short enough to fit); the hover says it in full
    text, full = [], []
    for r, row in zip(routes, z):
        line, said = [], []
        for e, v in zip(events, row):
            if not _isnan(v):
                line.append(fmt_pct(v, 1))
                said.append(fmt_pct(v, 1))
                continue
            i = where.get((r, e))
            count = hidden_text(side_effects, i, "sessions_with_event") if i is not None else None
            bound = hidden_text(side_effects, i, "session_rate", percent=True) if i is not None else None
            short = bound if bound and bound.startswith("<") else "hidden"
            line.append(short)
            if count and count.startswith("fewer") and short.startswith("<"):
                said.append(f"{count} sessions ({short})")
            else:
                said.append(bound or count or "hidden")
        text.append(line)
        full.append(said)
    shown = z[np.isfinite(z)]
    # a fixed scale from 0: when every shown rate is 0, Plotly would centre the scale on 0 (−0.5 to 0.5 %)
    top = float(shown.max()) * 100 if shown.size and shown.max() > 0 else 1.0
    fig = _Draft()
    fig.add_trace(_trace("heatmap",
        z=z * 100, x=[event_label(e) for e in events], y=[colors.route_label(r) for r in routes],
        text=text, texttemplate="%{text}", textfont=dict(size=11),
        colorscale=colors.RATE_COLORSCALE, zmin=0, zmax=top, colorbar=dict(title=dict(text="Sessions (%)")),
        customdata=np.array(full, dtype=object),
        hovertemplate="<b>%{y}</b><br>%{x}: %{customdata} of sessions<extra></extra>",
        xgap=2, ygap=2,
    ))
    fig.update_xaxes(title_text="Side effect", tickangle=-35, side="bottom")
    fig.update_yaxes(title_text="Route of the session", autorange="reversed")
    fig.update_layout(plot_bgcolor=colors.HIDDEN)
    return fig.figure(title, height=max(380, 200 + 40 * len(routes)), legend=False)


@_plain_inputs
def create_incidence_figure(side_effects: pd.DataFrame, events: Iterable[str] | None = None) -> go.Figure:
    """Per-patient incidence of each event per route, with 95 % intervals (`patient_ci_low/high`)."""
    title = "Patients with each side effect at least once, by route"
    if side_effects is None or side_effects.empty:
        return _empty(title, "No sessions in this cohort.")
    df = side_effects.assign(event=side_effects["event"].astype(str))
    chosen = [e for e in (events or spec.SUMMARY_EVENTS) if e in set(df["event"])]
    df = df[df["event"].isin(chosen)]
    fig = _Draft()
    top = 0.0
    for route in _routes(df):
        rows = df[df["route"] == route]
        # hidden rates: a grey ring at 0 whose hover says what may be said ("fewer than 11 of 866 patients")
        hx, hy, htext = [], [], []
        for i, row in rows.iterrows():
            if _isnan(row["patient_rate"]) and str(row["event"]) in chosen:
                n = cell_text(rows, i, "patients_with_event", undefined="0")
                of = cell_text(rows, i, "patients", undefined="0")
                bound = hidden_text(rows, i, "patient_rate", percent=True) or "hidden"
                hx.append(0.0)
                hy.append(event_label(str(row["event"])))
                htext.append(f"<b>{colors.route_label(route)}</b><br>{event_label(str(row['event']))}: {n} of {of} "
                             f"patients ({bound})<extra></extra>")
        d = rows.set_index("event").reindex(chosen)
        rates = [_num(v) for v in d["patient_rate"]]
        lo = d["patient_ci_low"] if "patient_ci_low" in d else pd.Series(np.nan, index=d.index)
        hi = d["patient_ci_high"] if "patient_ci_high" in d else pd.Series(np.nan, index=d.index)
        minus = [_interval_arrays(r, a, b)[0] for r, a, b in zip(rates, lo, hi)]
        plus = [_interval_arrays(r, a, b)[1] for r, a, b in zip(rates, lo, hi)]
        label = colors.route_label(route)
        fig.add_trace(_trace("scatter",
            x=[r if r is not None else None for r in rates], y=[event_label(e) for e in chosen],
            mode="markers", name=label, legendgroup=route, offsetgroup=route,
            marker=dict(color=colors.route_color(route), symbol=colors.route_symbol(route), size=10),
            error_x=dict(type="data", symmetric=False, array=plus, arrayminus=minus,
                         color=colors.route_color(route), thickness=1.5, width=3),
            customdata=_stack(d["patients_with_event"], d["patients"], lo, hi),
            hovertemplate=(f"<b>{label}</b><br>%{{y}}: %{{x:.1%}} of patients"
                           "<br>95 % interval: %{customdata[2]:.1%} to %{customdata[3]:.1%}"
                           "<br>%{customdata[0]:,.0f} of %{customdata[1]:,.0f} patients<extra></extra>"),
        ))
        if hx:
            fig.add_trace(_trace("scatter",
                x=hx, y=hy, mode="markers", name=f"{label}: hidden", legendgroup=route, offsetgroup=route,
                showlegend=False, marker=dict(symbol="circle-open", size=10, color=colors.route_color(route),
                                              line=dict(width=1.5)),
                hovertemplate=htext,
            ))
        highs = [float(b) for b in hi if not _isnan(b)] + [r for r in rates if r is not None]
        top = max([top, *highs])
    fig.update_layout(scattermode="group")
    # from 0 to just past the highest interval: a rate cannot be negative
    fig.update_xaxes(tickformat=".0%", range=[0, min(1.0, max(top, 0.05) * 1.08)],
                     title_text="Patients (%) with 95 % interval; rings at 0: hidden (hover for the bound)")
    fig.update_yaxes(autorange="reversed", title_text="Side effect", type="category")
    return fig.figure(title, height=max(420, 120 + 26 * len(chosen) * max(1, len(_routes(df))) // 2))


@_plain_inputs
def create_severity_figure(severity: pd.DataFrame, route: str) -> tuple[go.Figure, list[str]]:
    """Severity mix (mild / moderate / severe share) of each event for one route.

    Events with any hidden severity count are left out (a share of a partly hidden total would mislead);
    they are returned so the page can say so.
    """
    title = f"Severity: {colors.route_label(route)}"
    if severity is None or severity.empty:
        return _empty(title, "No side effects recorded in this cohort."), []
    d = severity[severity["route"].astype(str) == route].assign(event=lambda x: x["event"].astype(str),
                                                                 severity=lambda x: x["severity"].astype(str))
    events = [e for e in spec.EVENTS if e in set(d["event"])]
    table = d.pivot_table(index="event", columns="severity", values="sessions_with_event", aggfunc="first",
                          dropna=False).reindex(index=events, columns=list(spec.SEVERITIES))
    partly_hidden = [e for e in events if table.loc[e].isna().any() and not table.loc[e].isna().all()
                     or table.loc[e].isna().all()]
    shown = [e for e in events if e not in partly_hidden and table.loc[e].sum() > 0]
    if not shown:
        return _empty(title, "Every severity count here rests on too few sessions and is hidden."), partly_hidden
    totals = table.loc[shown].sum(axis=1)
    fig = _Draft()
    for sev in spec.SEVERITIES:
        counts = table.loc[shown, sev].fillna(0)
        fig.add_trace(_trace("bar",
            x=counts / totals, y=[event_label(e) for e in shown], orientation="h", name=sev.capitalize(),
            marker=dict(color=colors.SEVERITY_COLORS[sev], line=dict(color="white", width=0.5)),
            customdata=_stack(counts, totals),
            hovertemplate=(f"%{{y}}, {sev}: %{{x:.0%}}<br>%{{customdata[0]:,.0f}} of %{{customdata[1]:,.0f}} sessions"
                           "<extra></extra>"),
        ))
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="Share of sessions with the event (%)")
    fig.update_yaxes(autorange="reversed", title_text="Side effect")
    return fig.figure(title, height=max(320, 110 + 28 * len(shown))), partly_hidden


@_plain_inputs
def create_fade_figure(by_session: pd.DataFrame, event: str, max_session: int = 12) -> go.Figure:
    """How often an event occurs at each session number, per route (does it fade with repeat dosing?)."""
    title = f"{event_label(event)} by session number"
    if by_session is None or by_session.empty:
        return _empty(title, "No sessions in this cohort.")
    d = by_session[(by_session["event"].astype(str) == event) & (by_session["session_number"] <= max_session)]
    if d.empty:
        return _empty(title, "No sessions for this event.")
    fig = _Draft()
    for route in _routes(d):
        r = d[d["route"] == route].sort_values("session_number")
        label = colors.route_label(route)
        fig.add_trace(_trace("scatter",
            x=r["session_number"], y=r["session_rate"], mode="lines+markers", name=label, legendgroup=route,
            line=dict(color=colors.route_color(route), dash=colors.route_dash(route),
                      width=colors.route_line_width(route)),
            marker=dict(symbol=colors.route_symbol(route), size=8, color=colors.route_color(route)),
            customdata=_stack(r["sessions_with_event"], r["sessions"]),
            hovertemplate=(f"<b>{label}</b><br>Session %{{x}}: %{{y:.1%}}"
                           "<br>%{customdata[0]:,.0f} of %{customdata[1]:,.0f} sessions<extra></extra>"),
            connectgaps=False,
        ))
    fig.update_xaxes(title_text="Session number (1 = the patient's first session)", dtick=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", title_text="Sessions with the event (%)")
    return fig.figure(title)


@_plain_inputs
def create_blood_pressure_figure(bp: pd.DataFrame) -> go.Figure:
    """Median peak systolic and diastolic pressure per route, and the share of sessions at ≥ 180/110."""
    title = "Blood pressure during sessions"
    if bp is None or bp.empty:
        return _empty(title, "No sessions with vital signs in this cohort.")
    fig = _Draft(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06, column_widths=[0.6, 0.4],
                        subplot_titles=("Median peak pressure (filled: systolic, open: diastolic)",
                                        "Sessions at 180/110 mmHg or more"))
    pressures = np.concatenate([floats(bp["sbp_peak_median"]), floats(bp["dbp_peak_median"])])
    hidden_at = float(np.nanmin(pressures)) if np.isfinite(pressures).any() else 80.0
    for _, row in bp.iterrows():
        route = str(row["route"])
        label = colors.route_label(route)
        color = colors.route_color(route)
        n = fmt_count(row.get("sessions_with_vitals"))
        for col, fill, name in (("sbp_peak_median", True, "systolic"), ("dbp_peak_median", False, "diastolic")):
            v = _num(row.get(col))
            fig.add_trace(_trace("scatter",
                x=[v], y=[label], mode="markers", legendgroup=route, showlegend=col == "sbp_peak_median",
                name=label,
                marker=dict(color=color if fill else "white", symbol=colors.route_symbol(route), size=13,
                            line=dict(color=color, width=2)),
                hovertemplate=(f"<b>{label}</b><br>Median peak {name}: "
                               f"{'hidden' if v is None else f'{v:.0f} mmHg'}<br>Sessions with vitals: {n}<extra></extra>"),
            ), row=1, col=1)
        if _num(row.get("sbp_peak_median")) is None and _num(row.get("dbp_peak_median")) is None:
            fig.add_trace(_trace("scatter", x=[hidden_at], y=[label], mode="text", text=["hidden"], showlegend=False,
                                            textposition="middle right", textfont=dict(color=colors.NEUTRAL),
                                            hoverinfo="skip"), row=1, col=1)
        share = _num(row.get("share_bp_severe"))
        fig.add_trace(_trace("bar",
            x=[share or 0], y=[label], orientation="h", showlegend=False, legendgroup=route, name=label,
            marker=dict(color=color, pattern=dict(shape=colors.route_pattern(route))),
            text=[fmt_pct(share)], textposition="outside",
            hovertemplate=f"<b>{label}</b><br>{fmt_pct(share)} of sessions with vitals ({n})<extra></extra>",
        ), row=1, col=2)
    fig.update_xaxes(title_text="Median peak pressure (mmHg)", row=1, col=1)
    shares = floats(bp["share_bp_severe"])
    top = float(np.nanmax(shares)) if np.isfinite(shares).any() else 0.0
    # the bars are the share of sessions at 180/110 or more (the panel's title), out of the sessions with vitals
    fig.update_xaxes(title_text="% of sessions with vitals", tickformat=".1%" if top < 0.05 else ".0%",
                     range=[0, max(top * 1.3, 0.01)], row=1, col=2)
    fig.update_yaxes(autorange="reversed", title_text="Route", col=1)
    return fig.figure(title, height=max(250, 120 + 44 * len(bp)), legend=False)


# --- maintenance ----------------------------------------------------------------------------------------


@_plain_inputs
def create_maintenance_rates_figure(maintenance: pd.DataFrame) -> go.Figure:
    """Maintenance uptake among responders and the 8-week sustained response, per route, with intervals."""
    title = "Maintenance uptake and sustained response by route"
    if maintenance is None or maintenance.empty:
        return _empty(title, "No responders in this cohort.")
    fig = _Draft(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1,
                        subplot_titles=("Started maintenance", "Still responding at 8 weeks"))
    _add_rate_dots(fig, maintenance, "uptake_rate", "uptake_ci_low", "uptake_ci_high",
                   numerator="responders_in_maintenance", denominator="responders", what="Uptake", col=1)
    _add_rate_dots(fig, maintenance, "sustained_response_8w", "sustained_ci_low", "sustained_ci_high",
                   numerator=None, denominator=None, what="Sustained response (Kaplan–Meier)", col=2,
                   showlegend=False)
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_xaxes(title_text="% of responders")  # short: two panels share a phone screen
    fig.update_yaxes(autorange="reversed", title_text=None)
    return fig.figure(title, height=max(250, 110 + 44 * len(maintenance)), legend=False)


@_plain_inputs
def create_maintenance_timing_figure(maintenance: pd.DataFrame) -> go.Figure:
    """Median days to the first maintenance session and median days between maintenance sessions."""
    title = "Timing of maintenance sessions (medians over maintenance patients)"
    if maintenance is None or maintenance.empty:
        return _empty(title, "No maintenance patients in this cohort.")
    fig = _Draft(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("Days from the last induction session to the first maintenance session",
                                        "Days between maintenance sessions"))
    for col, column in ((1, "median_days_to_first_maintenance"), (2, "median_interval_days")):
        for _, row in maintenance.iterrows():
            route = str(row["route"])
            label = colors.route_label(route)
            v = _num(row.get(column))
            fig.add_trace(_trace("bar",
                x=[v or 0], y=[label], orientation="h", name=label, legendgroup=route, showlegend=False,
                marker=dict(color=colors.route_color(route), pattern=dict(shape=colors.route_pattern(route))),
                text=["hidden" if v is None else f"{v:.0f}"], textposition="outside",
                hovertemplate=(f"<b>{label}</b><br>Median: {fmt_days(v)}"
                               f"<br>Maintenance patients: {fmt_count(row.get('maintenance_patients'))}<extra></extra>"),
            ), row=1, col=col)
    fig.update_xaxes(title_text="Days (median)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", title_text=None)
    fig.update_yaxes(title_text="Route", col=1)
    return fig.figure(title, height=max(250, 110 + 44 * len(maintenance)), legend=False)


@_plain_inputs
def create_projection_figure(projection: pd.DataFrame) -> go.Figure:
    """Projected maintenance sessions per month that the current responders will need, per route."""
    title = "Projected maintenance sessions per month for the current responders"
    if projection is None or projection.empty:
        return _empty(title, "No responders in this cohort.")
    proj = projection[projection["route"].astype(str) != spec.ALL]
    if proj.empty:
        proj = projection
    fig = _Draft()
    for _, row in proj.iterrows():
        route = str(row["route"])
        label = colors.route_label(route)
        v = _num(row.get("sessions_per_month"))
        fig.add_trace(_trace("bar",
            x=[label], y=[v or 0], name=label, legendgroup=route, showlegend=False,
            marker=dict(color=colors.route_color(route), pattern=dict(shape=colors.route_pattern(route))),
            text=["hidden" if v is None else f"{v:,.0f}"], textposition="outside",
            hovertemplate=(f"<b>{label}</b><br>{'hidden' if v is None else f'{v:,.1f}'} sessions per month"
                           f"<br>Current responders: {fmt_count(row.get('current_responders'))}"
                           f"<br>Expected in maintenance: {fmt_count(row.get('expected_in_maintenance'))}<extra></extra>"),
        ))
    fig.update_yaxes(title_text="Maintenance sessions per month", rangemode="tozero")
    fig.update_xaxes(title_text="Route")
    return fig.figure(title, legend=False)


# --- esketamine (SPRAVATO REMS) monitoring --------------------------------------------------------------

REMS_DISTRIBUTION_LABELS = {
    "monitoring_minutes": ("Minutes of monitoring after dosing", "minutes"),
    "ready_to_leave_minutes": ("Minutes until ready to leave", "minutes"),
    "sbp_rise_40min": ("Rise in systolic pressure at 40 minutes", "mmHg"),
    "dbp_rise_40min": ("Rise in diastolic pressure at 40 minutes", "mmHg"),
}


REMS_ROW_PX = 30  # a site's row in a panel of the monitoring rules
REMS_PANEL_GAP_PX = 80  # between two rows of panels: the lower panel's title and the upper's axis
REMS_N_AT = 1.05  # where a panel's column of n starts, in the rate's units (right of 100 %)


def rems_label(measure: str) -> str:
    return spec.REMS_LABELS.get(measure, measure)


def rems_site_name(site: object) -> str:
    """A row of rems.csv in words: "Site S2", or "All sites" for the overall row."""
    return "All sites" if str(site) == spec.ALL else f"Site {site}"


def _rems_unit(measure: str) -> str:
    return "patients" if measure in spec.REMS_PATIENT_MEASURES else "sessions"


def _rems_lacking(rems: pd.DataFrame, measure: str) -> bool:
    """Whether the clinic export lacks what `measure` needs: every count and rate of it empty, not zero, and
    none of them hidden by disclosure control (a measure recorded for only a few sessions is hidden in every
    row, which is not a column missing from the export)."""
    from dashboard.analysis import disclosure

    if f"{measure}_rate" not in rems:
        return True
    columns = (measure, f"{measure}_of", f"{measure}_rate")
    if not all(rems[c].isna().all() for c in columns):
        return False
    return not any(disclosure.hidden_reason(rems, label, c) for c in columns for label in rems.index)


def rems_rate_word(recorded: object) -> str:
    """What stands for an esketamine monitoring rate that is not drawn: "none recorded" when the rule could be
    checked in no session (its count of recorded sessions is a shown 0: the rate is undefined, not a finding
    and not hidden), else "hidden" (disclosure control)."""
    return "none recorded" if not _isnan(recorded) and float(recorded) == 0 else "hidden"


def rems_unshown(sessions: object, min_cell: int) -> tuple[bool, str, str] | None:
    """Why a cohort's esketamine monitoring has nothing to show, from rems.csv's overall `sessions`
    (disclosure applied), in the words the dashboard's page and the PDF report both use: None when there are
    sessions to show, else (hidden, lead, rest), one sentence read "lead rest" — hidden (True) when the count
    itself is withheld as too small, else no esketamine session in the clinic matches the filters."""
    if _isnan(sessions):
        return (True, "Too few to show:", f"this cohort's esketamine sessions in the clinic rest on fewer than "
                f"{min_cell} patients or sessions, so every figure would be hidden to protect patients' privacy.")
    if float(sessions) == 0:  # type: ignore[arg-type]
        return (False, "No esketamine sessions held in the clinic",
                "match these filters. Esketamine given at home is not monitored under the REMS.")
    return None


def _rems_hover(name: str, measure: str, row: pd.Series) -> str:
    """One site's rate of `measure` for the hover: the share, its 95 % interval and the counts it rests on."""
    return (f"<b>{name}</b><br>{rems_label(measure)}: {fmt_pct(_num(row[f'{measure}_rate']))}<br>95 % interval: "
            f"{fmt_pct(row[f'{measure}_ci_low'])} to {fmt_pct(row[f'{measure}_ci_high'])}<br>"
            f"{fmt_count(row[measure])} of {fmt_count(row[f'{measure}_of'])} {_rems_unit(measure)}")


@_plain_inputs
def create_rems_rate_figure(rems: pd.DataFrame, measure: str) -> go.Figure:
    """One esketamine monitoring measure per site and overall (rems.csv, disclosure applied): the rate as a
    marker (the intranasal route's colour; overall in black) with its 95 % Wilson interval and, in the hover
    and the axis label, how many sessions (or patients) it rests on. Hidden rates read "hidden", rates over no
    recorded session "none recorded"; a measure the export lacks draws a message instead."""
    title = rems_label(measure)
    rate, low, high, of = f"{measure}_rate", f"{measure}_ci_low", f"{measure}_ci_high", f"{measure}_of"
    if rems is None or rems.empty or rate not in rems:
        return _empty(title, "No esketamine sessions in the clinic for this cohort")
    if _rems_lacking(rems, measure):
        return _empty(title, "The clinic export does not include the columns this measure needs")
    unit = _rems_unit(measure)
    fig = _Draft()
    for _, row in rems.iloc[::-1].iterrows():  # top to bottom: sites, then overall
        site = str(row["site"])
        route = spec.ALL if site == spec.ALL else "IN"
        name = rems_site_name(site)
        label = f"{name} (n = {fmt_count(row[of])})"
        value = _num(row[rate])
        minus, plus = _interval_arrays(value, row[low], row[high])
        fig.add_trace(_trace("scatter",
            x=[value if value is not None else 0.0], y=[label],
            mode="markers" if value is not None else "text",
            text=None if value is not None else [rems_rate_word(row[of])], textposition="middle right",
            textfont=dict(color=colors.NEUTRAL),
            marker=dict(color=colors.route_color(route), symbol=colors.route_symbol(route), size=13,
                        line=dict(width=1, color="white")),
            error_x=dict(type="data", symmetric=False, array=[plus], arrayminus=[minus],
                         color=colors.route_color(route), thickness=2.5, width=6),
            showlegend=False,
            hovertemplate=_rems_hover(name, measure, row) + "<extra></extra>",
        ))
    fig.update_xaxes(title_text=f"Share of {unit} (95 % interval)", range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(title_text=None)
    return fig.figure(title, height=max(220, 70 + 45 * len(rems)), legend=False)


@_plain_inputs
def create_rems_rules_figure(rems: pd.DataFrame, measures: Sequence[str], columns: int = 2) -> go.Figure:
    """Several esketamine monitoring measures (rems.csv, disclosure applied) in one figure, a panel each,
    `columns` panels a row (two on a wide screen, one on a phone): per site and overall the rate as a marker
    (the intranasal route's colour; overall in black) with its 95 % Wilson interval, and right of each panel
    the number it rests on (n: sessions, or patients for enrolment), as `create_rems_rate_figure` draws one
    measure. The browser draws one figure of six panels much sooner than six charts (a warm switch to the
    page at 100,000 patients: 489 ms with six, 341 with one; bench/RESULTS.md). Hidden rates read "hidden", rates
    over no recorded session "none recorded"; a measure the export lacks says so in its panel."""
    title = "Where sites meet each monitoring rule"
    if rems is None or rems.empty or not measures:
        return _empty(title, "No esketamine sessions in the clinic for this cohort")
    rows = math.ceil(len(measures) / columns)
    # room right of 100 % for "n = 10,888": a phone's one column is narrower than each of two on a desktop
    n_room = 0.35 if columns > 1 else 0.65
    ordered = rems.iloc[::-1]  # top to bottom: sites, then overall
    names = [rems_site_name(site) for site in ordered["site"]]
    panel_px = REMS_ROW_PX * len(ordered) + 30
    height = rows * (panel_px + REMS_PANEL_GAP_PX) + 40
    fig = _Draft(
        rows=rows, cols=columns, shared_yaxes=True, horizontal_spacing=0.05,
        vertical_spacing=REMS_PANEL_GAP_PX / height,
        subplot_titles=[rems_label(m) + (" (patients)" if m in spec.REMS_PATIENT_MEASURES else "") for m in measures])
    for i, measure in enumerate(measures):
        row, col = i // columns + 1, i % columns + 1
        if _rems_lacking(rems, measure):
            # the panel keeps its rows (an invisible point per site) and says why it has no dots
            fig.add_trace(_trace("scatter", x=[0.5] * len(names), y=names, mode="markers", marker=dict(opacity=0),
                                            showlegend=False, hoverinfo="skip"), row=row, col=col)
            fig.add_annotation(text="Not in the clinic export", x=0.5, y=names[len(names) // 2], showarrow=False,
                               font=dict(color=colors.NEUTRAL, size=13), row=row, col=col)
        else:
            values = floats(ordered[f"{measure}_rate"])
            lows, highs = floats(ordered[f"{measure}_ci_low"]), floats(ordered[f"{measure}_ci_high"])
            hover = [_rems_hover(name, measure, row) for name, (_, row) in zip(names, ordered.iterrows())]
            overall = (ordered["site"].astype(str) == spec.ALL).to_numpy()
            shown = ~np.isnan(values)
            # each shown rate's interval as (below, above) it, as every rate chart draws its whiskers
            whiskers = [_interval_arrays(float(v), lo, hi) if k else (0.0, 0.0)
                        for v, lo, hi, k in zip(values, lows, highs, shown)]
            for group, route in ((~overall, "IN"), (overall, spec.ALL)):  # the sites, then overall in black
                pick = group & shown
                if pick.any():
                    fig.add_trace(_trace("scatter",
                        x=values[pick], y=[n for n, k in zip(names, pick) if k], mode="markers",
                        marker=dict(color=colors.route_color(route), symbol=colors.route_symbol(route), size=12,
                                    line=dict(width=1, color="white")),
                        error_x=dict(type="data", symmetric=False,
                                     array=[w[1] for w, k in zip(whiskers, pick) if k],
                                     arrayminus=[w[0] for w, k in zip(whiskers, pick) if k],
                                     color=colors.route_color(route), thickness=2.5, width=5),
                        text=[h for h, k in zip(hover, pick) if k], hovertemplate="%{text}<extra></extra>",
                        showlegend=False), row=row, col=col)
            if (~shown).any():
                fig.add_trace(_trace("scatter",
                    x=[0.0] * int((~shown).sum()), y=[n for n, k in zip(names, shown) if not k], mode="text",
                    text=[rems_rate_word(r) for r, k in zip(ordered[f"{measure}_of"], shown) if not k],
                    textposition="middle right",
                    textfont=dict(color=colors.NEUTRAL), hovertext=[h for h, k in zip(hover, shown) if not k],
                    hoverinfo="text", showlegend=False), row=row, col=col)
            # the number each rate rests on, right of 100 %
            fig.add_trace(_trace("scatter",
                x=[REMS_N_AT] * len(names), y=names, mode="text", textposition="middle right",
                text=[f"n = {fmt_count(v)}" for v in ordered[f"{measure}_of"]],
                textfont=dict(color=colors.NEUTRAL, size=12), showlegend=False, hoverinfo="skip"), row=row, col=col)
    fig.update_xaxes(range=[0, REMS_N_AT + n_room], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%")
    fig.update_xaxes(title_text="Share meeting the rule (95 % interval); n: sessions (enrolment: patients)", row=rows)
    fig.update_yaxes(categoryorder="array", categoryarray=names)  # every panel: sites from the top, overall last
    return fig.figure(title, height=height, legend=False)


@_plain_inputs
def create_rems_distribution_figure(distribution: pd.DataFrame, measure: str, minimum: int | None = None) -> go.Figure:
    """Sessions per bin of one distribution of `rems.rems_distribution` (disclosure applied), as bars with
    a dashed line at the monitoring minimum (minutes measures). Hidden bins read "hidden"; the lowest and
    highest bins of the pressure rises and the top bin of the minutes pool everything beyond them."""
    title, unit = REMS_DISTRIBUTION_LABELS.get(measure, (measure, ""))
    sub = distribution[distribution["measure"].astype(str) == measure] if distribution is not None and not distribution.empty \
        else pd.DataFrame(columns=["measure", "bin", "sessions"])
    if sub.empty:
        return _empty(title, "Not recorded in the clinic export for these sessions")
    from dashboard.analysis.rems import BIN_WIDTH, BINS

    width = BIN_WIDTH.get(measure, 1)
    bins = [int(b) for b in sub["bin"]]
    top = {"monitoring_minutes": BINS["minute_top"], "ready_to_leave_minutes": BINS["minute_top"],
           "sbp_rise_40min": BINS["sbp_top"], "dbp_rise_40min": BINS["dbp_top"]}.get(measure)
    low = {"sbp_rise_40min": BINS["sbp_low"], "dbp_rise_40min": BINS["dbp_low"]}.get(measure)

    def bin_label(b: int) -> str:
        if top is not None and b >= top:
            return f"{b} or more"
        if low is not None and b <= low:
            return f"{b + width - 1} or less"
        return f"{b} to {b + width - 1}"

    values = floats(sub["sessions"])
    shown = np.where(np.isnan(values), 0.0, values)
    fig = _Draft()
    fig.add_trace(_trace("bar",
        x=[b + width / 2 for b in bins], y=shown, width=width * 0.9,
        marker=dict(color=colors.route_color("IN"), pattern_shape=colors.ROUTE_PATTERNS.get("IN", "")),
        text=["hidden" if np.isnan(v) else "" for v in values], textposition="outside",
        textfont=dict(color=colors.NEUTRAL),
        customdata=[[bin_label(b), fmt_count(v)] for b, v in zip(bins, values)],
        hovertemplate="%{customdata[0]} " + unit + ": %{customdata[1]} sessions<extra></extra>",
        showlegend=False,
    ))
    fig.update_xaxes(title_text=f"{title} ({unit})")
    fig.update_yaxes(title_text="Sessions", rangemode="tozero")
    figure = fig.figure(title, height=340, legend=False)
    # the lines on the finished figure: Plotly places a line and its label on the axes as they are
    if minimum is not None and measure in ("monitoring_minutes", "ready_to_leave_minutes"):
        figure.add_vline(x=minimum, line=dict(color="#000000", dash="dash", width=2),
                         annotation_text=f"minimum {minimum} min", annotation_position="top right")
    if measure in ("sbp_rise_40min", "dbp_rise_40min"):
        figure.add_vline(x=0, line=dict(color=colors.NEUTRAL, width=1))
    return figure

# --- fair comparisons (issue 15): adjusted response and the network benchmark ---------------------------


@_plain_inputs
def create_adjusted_figure(adjusted: pd.DataFrame) -> go.Figure:
    """Crude and case-mix-adjusted response rate per route (adjusted_response.csv after disclosure control):
    per route a hollow dot for the crude rate and a filled dot with its 95 % delta-method interval for the
    adjusted rate, in the route's colour; 'hidden' or 'no adjusted rate' where there is none."""
    title = "Response by route: crude and adjusted for case mix"
    if adjusted is None or adjusted.empty:
        return _empty(title, "No evaluable patients in this cohort.")
    fig = _Draft()
    for i, (_, row) in enumerate(adjusted.iterrows()):
        route = str(row["route"])
        label = colors.route_label(route)
        crude = _num(row.get("crude_rate"))
        adj = _num(row.get("adjusted_rate"))
        if crude is not None:
            fig.add_trace(_trace("scatter",
                x=[crude], y=[label], mode="markers", name="Crude rate", legendgroup="crude", showlegend=i == 0,
                marker=dict(color="white", size=12, symbol=colors.route_symbol(route),
                            line=dict(width=2, color=colors.route_color(route))),
                hovertemplate=(f"<b>{label}</b><br>Crude response rate: {fmt_pct(crude)}"
                               f"<br>{fmt_count(row.get('evaluable'))} evaluable patients<extra></extra>"),
            ))
        if adj is not None:
            minus, plus = _interval_arrays(adj, row.get("adjusted_ci_low"), row.get("adjusted_ci_high"))
            fig.add_trace(_trace("scatter",
                x=[adj], y=[label], mode="markers", name="Adjusted rate (95 % interval)", legendgroup="adjusted",
                showlegend=True if i == 0 else False,
                marker=dict(color=colors.route_color(route), size=13, symbol=colors.route_symbol(route),
                            line=dict(width=1, color="white")),
                error_x=dict(type="data", symmetric=False, array=[plus], arrayminus=[minus],
                             color=colors.route_color(route), thickness=2.5, width=6),
                hovertemplate=(f"<b>{label}</b><br>Adjusted response rate: {fmt_pct(adj)}<br>95 % interval: "
                               f"{fmt_pct(row.get('adjusted_ci_low'))} to {fmt_pct(row.get('adjusted_ci_high'))}"
                               "<extra></extra>"),
            ))
        else:
            fig.add_trace(_trace("scatter",
                x=[crude if crude is not None else 0.0], y=[label], mode="text", showlegend=False,
                text=["   hidden" if crude is None else "   no adjusted rate"], textposition="middle right",
                textfont=dict(color=colors.NEUTRAL), hoverinfo="skip",
            ))
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title_text="Responders (%) with 95 % interval")
    fig.update_yaxes(autorange="reversed", title_text="Route", categoryorder="array",
                     categoryarray=[colors.route_label(str(r)) for r in adjusted["route"]])
    return fig.figure(title, height=max(250, 120 + 44 * len(adjusted)))


def _flag(v: object) -> bool:
    """A true/false/hidden flag as a plain bool (hidden and undefined read as False: never a finding)."""
    return v is not None and not _isnan(v) and v is not pd.NA and bool(v)


@_plain_inputs
def create_benchmark_funnel_figure(table: pd.DataFrame, measure: str = "response", *,
                                   pooled: float | None = None, median: float | None = None,
                                   p75: float | None = None, max_patients: float | None = None) -> go.Figure:
    """Funnel plot of one measure of benchmark.csv (after disclosure control and the viewer's restriction):
    each site shown in the table as a dot at (evaluable patients, rate); the pooled network rate with its
    95 % and 99.8 % control limits as funnels over the number of patients; the network median and 75th
    percentile as lines. pooled/median/p75 default to the table's network columns (a viewer's table may
    hold only their own site, so the page passes the network's values); max_patients sets the x range."""
    what = "Response" if measure == "response" else "Remission"
    title = f"{what} rate by site against the network"
    rows = table[table["measure"] == measure] if table is not None and not table.empty else pd.DataFrame()
    if pooled is None and len(rows):
        pooled = _num(rows["network_pooled"].iloc[0])
    if median is None and len(rows):
        median = _num(rows["network_median"].iloc[0])
    if p75 is None and len(rows):
        p75 = _num(rows["network_p75"].iloc[0])
    if pooled is None and not len(rows):
        return _empty(title, "No site has evaluable patients in this cohort.")
    shown_n = floats(rows["evaluable"]) if len(rows) else np.array([])
    top = max([v for v in [max_patients, *(shown_n[~np.isnan(shown_n)] if len(shown_n) else [])] if v] or [100])
    fig = _Draft()
    if pooled is not None:
        n = np.linspace(5, top * 1.1, 200)
        for z, name, dash in ((3.090232, "99.8 % limits", "dot"), (1.959964, "95 % limits", "dash")):
            half = z * np.sqrt(pooled * (1 - pooled) / n)
            for k, y in enumerate((pooled - half, pooled + half)):
                fig.add_trace(_trace("scatter",
                    x=n, y=np.clip(y, 0, 1), mode="lines", name=name, legendgroup=name, showlegend=k == 0,
                    line=dict(color=colors.NEUTRAL, dash=dash, width=1.2), hoverinfo="skip"))
    # The network's lines are legend entries, not labels on the plot: their values are often a point or two
    # apart, and labels beside the lines ran into each other and into the sites' names.
    for value, name, style in ((pooled, "Network, all patients pooled", dict(color=colors.NEUTRAL, width=1.8)),
                               (median, "Median site", dict(color="#7F7F7F", width=1.2, dash="longdash")),
                               (p75, "75th percentile of sites", dict(color="#7F7F7F", width=1.2, dash="dashdot"))):
        if value is not None:
            fig.add_trace(_trace("scatter",
                x=[0, top * 1.1], y=[value, value], mode="lines", name=f"{name}: {fmt_pct(value)}", line=style,
                hovertemplate=f"{name}: {fmt_pct(value)}<extra></extra>"))
    hidden = []
    for _, row in rows.iterrows():
        rate, n_pat = _num(row.get("rate")), _num(row.get("evaluable"))
        if rate is None or n_pat is None:
            hidden.append(str(row["site"]))
            continue
        flag = "outside the 99.8 % limits" if _flag(row.get("outside_998")) else (
            "outside the 95 % limits" if _flag(row.get("outside_95")) else "within the limits")
        fig.add_trace(_trace("scatter",
            x=[n_pat], y=[rate], mode="markers+text", text=[str(row["site"])], textposition="top center",
            marker=dict(color="#1F77B4", size=11, line=dict(width=1, color="white")), showlegend=False,
            hovertemplate=(f"<b>Site {row['site']}</b><br>{what} rate {fmt_pct(rate)} "
                           f"({fmt_count(row.get('events'))} of {fmt_count(n_pat)} patients)<br>{flag}"
                           "<extra></extra>"),
        ))
    if hidden:
        fig.add_annotation(text=f"hidden (too few patients): {', '.join(hidden)}", x=0, y=-0.18, xref="paper",
                           yref="paper", showarrow=False, font=dict(color=colors.NEUTRAL))
    fig.update_xaxes(title_text="Evaluable patients at the site", range=[0, top * 1.1])
    fig.update_yaxes(title_text=f"{what} rate", tickformat=".0%", range=_funnel_rate_range(rows, pooled, shown_n))
    return fig.figure(title, height=460)


def _funnel_rate_range(rows: pd.DataFrame, pooled: float | None, shown_n: np.ndarray) -> list[float]:
    """The funnel plot's rate axis: the sites' rates and the 99.8 % limits at the smallest site shown, with a
    margin (0–100 % squeezed sites a few points apart into one band). Fractions 0–1."""
    values = [v for v in floats(rows["rate"])] if len(rows) else []
    n = shown_n[np.isfinite(shown_n) & (shown_n > 0)] if len(shown_n) else np.array([])
    if pooled is not None:
        half = 3.090232 * math.sqrt(pooled * (1 - pooled) / (float(n.min()) if len(n) else 30.0))
        values += [pooled - half, pooled + half]
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return [0.0, 1.0]
    lo, hi = min(values), max(values)
    pad = max(0.05, (hi - lo) * 0.1)
    return [max(0.0, lo - pad), min(1.0, hi + pad)]
