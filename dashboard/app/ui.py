"""The dashboard's shared Streamlit parts: the sidebar kept in the URL, cached data access, common blocks.

- `render_sidebar` draws every filter and analysis setting once, in the entry script, so all pages share
  them. Each widget's key is the query-parameter name of `Settings` (`route=IV&route=IN&site=S2`): the
  link sets the widgets when a session opens (`seed_widgets_from_link`) and every run writes them back
  (`sync_link`), so a link reopens the same view, with codes in the URL and words on screen. Values in a
  link that cannot be used are named in a visible notice (`url_problems`) rather than dropped silently.
- `load_*` functions are the only way pages reach data. Results are cached with `st.cache_data` keyed by the
  database signature (it changes when an import swaps in a new file) and the frozen `Settings`; the DuckDB
  connection is cached per signature with `st.cache_resource`, and every query takes its own cursor
  (DuckDB 2.0 connections are not shared across threads; cursors are).
- Everything drawn comes through disclosure control (`export.compute_summaries`, `disclosure.protect`).
- `render_*` blocks: the cohort banner, the disclosure note, downloads, the error screens.
- Sign-in and access (docs/access.md): `current_person` (Streamlit's `st.login`/`st.user` when
  `.streamlit/secrets.toml` has `[auth]`, else the local person), `render_sign_in`, `record_view` and the
  audited downloads; the person's scope goes into `Settings.scope`, so every cached load is keyed by it.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import math
import os
import re
import shlex
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import streamlit as st

from dashboard.data import spec, store
from dashboard.analysis.settings import (
    FILTER_NAMES, MATCHED_MIN_BASELINE_PROBLEM, SETTING_NAMES, Settings, SettingsError, iter_defaults, parse_problems,
    quoted, shortened,
)

LOG = logging.getLogger("ketamine_outcomes.dashboard")

DB_ENV = "KETAMINE_OUTCOMES_DB"
CONTEXT_KEY = "_ko_context"
NOTICE_KEY = "_ko_url_notice"
SEEN_KEY = "_ko_url_seen"
SEEDED_KEY = "_ko_link_read"  # the link has set the sidebar (once per session)
LAST_VALUES_KEY = "_ko_sidebar_values"  # the sidebar's values as last drawn
# Streamlit's own query parameters (embedding); never ours, never a problem.
_STREAMLIT_PARAMS = {"embed", "embed_options"}
_CACHE_TTL = 3600
_CACHE_ENTRIES = 256

YES_NO = ("yes", "no")
POPULATION_HELP = {
    "observed": "patients with an endpoint score",
    "itt": "every eligible patient; a missing endpoint counts as no response",
}
RELIEF_HELP = {
    "response": "50 % improvement or more",
    "mcid": "a drop of at least the minimal important change (GAD-7 4, PHQ-9 5, PCL-5 10 points)",
}


# --- context handed from the entry script to the pages ---------------------------------------------------


@dataclass(frozen=True)
class PageContext:
    """What every page needs: the database (path and signature) and the validated settings."""

    db_path: Path
    signature: tuple[str, int, int, int]
    settings: Settings
    person: Any = None  # access.Person: who is looking (their scope is settings.scope)
    audit_log: Path | None = None  # where views and downloads are recorded
    page: str = ""  # the page's URL path ("overview" for the home page), for the audit log
    view: str | None = None  # the code of the part of the page shown (PAGE_VIEWS), None for a whole page

    @property
    def min_cell(self) -> int:
        return self.settings.min_cell


def set_context(ctx: PageContext) -> None:
    st.session_state[CONTEXT_KEY] = ctx


def current_context() -> PageContext:
    """The context the entry script set for this run (pages are only run from dashboard/app/main.py)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    if ctx is None:
        st.error("Open the dashboard through its main address (ketamine-outcomes serve), not a page file.")
        st.stop()
    return ctx


# --- database --------------------------------------------------------------------------------------------


def database_path() -> Path | None:
    """The database the dashboard shows: $KETAMINE_OUTCOMES_DB (set by `ketamine-outcomes serve`)."""
    raw = os.environ.get(DB_ENV, "").strip()
    return Path(raw) if raw else None


def _close(con: Any) -> None:
    try:
        con.close()
    except Exception:  # noqa: BLE001 - closing a connection that is already gone is fine
        pass


_LAST_SIGNATURE: dict[str, tuple[str, int, int, int]] = {}
# per database path, the last signature found to have every derived table (one entry a path, however many
# imports replace the file while the server runs)
_CHECKED_SIGNATURE: dict[str, tuple[str, int, int, int]] = {}
_SIGNATURE_LOCK = threading.Lock()


@st.cache_resource(max_entries=4, on_release=_close, show_spinner=False)
def load_connection(signature: tuple[str, int, int, int]):  # noqa: ANN201 - duckdb connection
    """A read-only connection per database signature; a new import (new file) opens a new one."""
    return store.open_database(signature[0], read_only=True)


def open_current_database() -> tuple[Path, tuple[str, int, int, int]]:
    """Resolve and open the configured database; raises StoreError with a message for the reader."""
    path = database_path()
    if path is None:
        raise store.StoreError(
            f"No database is configured. Start the dashboard with `ketamine-outcomes serve --db PATH` "
            f"(or set {DB_ENV})."
        )
    store.check_database_file(path)  # missing or unreadable (permission): named, not a traceback
    from dashboard.reports import export

    signature = store.database_signature(path)
    with _SIGNATURE_LOCK:
        previous = _LAST_SIGNATURE.get(signature[0])
        if previous is not None and previous != signature:
            # An import swapped in a new file. DuckDB keeps one database instance per open path, so while the
            # old file's connection is open, or a query on it runs, a new connect() would still see the old
            # data: stop the background warming and close the old connection first.
            stop_every_prefetch()
            load_connection.clear()
        _LAST_SIGNATURE[signature[0]] = signature
    con = load_connection(signature)  # open now so a corrupt file is reported here, once
    if _CHECKED_SIGNATURE.get(signature[0]) != signature:  # a file's tables do not change under the same signature
        export.require_derived_tables(con, path)
        _CHECKED_SIGNATURE[signature[0]] = signature
    if previous is not None and previous != signature and SERVED:
        start_warming_default_view()  # the new data's default view, before the next person opens it
    return path, signature


# --- cached data access -------------------------------------------------------------------------------------


def _cached(fn: Callable) -> Callable:
    # Settings is a frozen dataclass of plain values whose repr names every field: hashing that string is
    # exact and much cheaper than Streamlit's generic walk over the object.
    return st.cache_data(ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES, show_spinner=False,
                         hash_funcs={Settings: repr})(fn)


@_cached
def load_filter_options(signature: tuple, scope: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """Sites and start quarters present in the database among the sites of `scope` (None: every site):
    the site and quarter filters' options (metrics.filter_options)."""
    from dashboard.analysis import metrics

    return metrics.filter_options(load_connection(signature), Settings(scope=scope))


@_cached
def load_summary(signature: tuple, settings: Settings, file: str) -> pd.DataFrame:
    """One CSV summary (disclosure applied), exactly as the command-line export computes it."""
    from dashboard.reports import export

    return export.compute_summary(load_connection(signature), settings, file)


# --- charts -----------------------------------------------------------------------------------------------------

_FIGURES: "OrderedDict[tuple, Any]" = OrderedDict()
_FIGURES_LOCK = threading.Lock()
_FIGURES_MAX = 256
# id(desktop figure) -> (that figure, its phone layout): the phone copy made once per shared figure; keeping
# the figure itself in the entry keeps its id from being reused while the entry lives
_PHONE_FIGURES: "OrderedDict[int, tuple[Any, Any]]" = OrderedDict()


def _fingerprint(value: Any) -> Any:
    """A hashable stand-in for a figure builder's argument: a DataFrame by its columns, dtypes and the hash of
    its values (the summaries are small, so hashing costs far less than building the figure again)."""
    if isinstance(value, pd.DataFrame):
        return ("frame", tuple(map(str, value.columns)), tuple(map(str, value.dtypes)),
                pd.util.hash_pandas_object(value, index=True).values.tobytes())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_fingerprint(v) for v in value))
    return ("value", repr(value))


def build_figure(builder: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`builder(*args, **kwargs)` (a `figures.create_*_figure`), built once for the same inputs.

    Building a Plotly figure (validation of every property) costs far more than drawing the finished one, and
    a page switch or a revisit asks for the same figures of the same protected tables again. Figures are
    kept by builder and content of the inputs (LRU, 256 figures), shared by every session: the inputs are
    already disclosure-protected tables of that session's scope, so equal inputs mean an equal figure.
    The result must not be changed by the caller (st.plotly_chart only reads it).
    """
    try:
        key = (builder.__module__, builder.__qualname__, _fingerprint(args),
               tuple(sorted((k, _fingerprint(v)) for k, v in kwargs.items())))
        hash(key)
    except TypeError:  # an argument that cannot be fingerprinted: build it every time
        return builder(*args, **kwargs)
    return _remembered_figure(_FIGURES, key, lambda: builder(*args, **kwargs))


def _remembered_figure(cache: "OrderedDict[Any, Any]", key: Any, make: Callable[[], Any]) -> Any:
    """`cache[key]`, made by `make()` the first time: least recently used out beyond _FIGURES_MAX entries,
    shared by every session."""
    with _FIGURES_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _FIGURES_LOCK:
        cache[key] = value
        while len(cache) > _FIGURES_MAX:
            cache.popitem(last=False)
    return value


def render_chart(builder: Callable[..., Any], *args: Any, key: str, **kwargs: Any) -> Any:
    """Draw the figure `builder(*args, **kwargs)` (built once per content, see build_figure) under the element
    key `key`; returns what the builder returned (a figure, or a figure and notes)."""
    result = build_figure(builder, *args, **kwargs)
    fig = result[0] if isinstance(result, tuple) else result
    if is_phone():
        fig = phone_figure(fig)
    st.plotly_chart(fig, key=key)
    return result


def phone_figure(fig: Any) -> Any:
    """`figures.fit_for_phone(fig)` for a figure from `build_figure`, made once per figure and shared like it
    (a phone's every rerun copied and re-laid out each chart). The result must not be changed either."""
    from dashboard.charts import figures

    return _remembered_figure(_PHONE_FIGURES, id(fig), lambda: (fig, figures.fit_for_phone(fig)))[1]


def is_phone() -> bool:
    """Whether the browser says it is a phone: "Mobi" in its User-Agent, the test MDN recommends (Streamlit
    tells the script nothing of the screen's width). Charts are then laid out for a narrow screen."""
    try:
        agent = st.context.headers.get("User-Agent") or ""
    except Exception:  # noqa: BLE001 - no request (bare mode, AppTest): not a phone
        return False
    return "Mobi" in agent


def _csv_builder(formatter: Callable[[pd.DataFrame], bytes], load: Callable[[], pd.DataFrame]) -> Callable[[], bytes]:
    """A download's data callable: the table loaded (`load()`) and put in the export's own CSV format only when
    the reader clicks. A page offers the files of all its parts: one not shown is computed then, not on
    every new filter state (the Response page computed the adjusted model for a button)."""
    return lambda: formatter(load())


def _protect(name: str, df: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import disclosure

    return disclosure.protect(name, df, settings.min_cell)


@_cached
def load_route_comparison(signature: tuple, settings: Settings, outcome: str):  # noqa: ANN201
    """The route comparison (chi-square across routes and pairwise differences), disclosure applied."""
    from dashboard.reports import export

    return export.protected_route_comparison(load_connection(signature), settings, outcome)


@_cached
def load_trajectory(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("trajectory", metrics.trajectory(load_connection(signature), settings), settings)


@_cached
def load_breakdown(signature: tuple, settings: Settings, by: str) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("breakdown", metrics.breakdown(load_connection(signature), settings, by), settings)


# The relief page's loads (its two files, the numbers at risk, the log-rank tests) share one set of
# Kaplan–Meier fits through the metrics' memo of recent results, not through a cache of their own.
@_cached
def load_logrank(signature: tuple, settings: Settings) -> pd.DataFrame:
    """Pairwise log-rank tests between routes, disclosure applied."""
    from dashboard.analysis import metrics

    return _protect("logrank", metrics.time_to_relief(load_connection(signature), settings).logrank, settings)


@_cached
def load_relief_at_risk(signature: tuple, settings: Settings) -> pd.DataFrame:
    """Numbers at risk on weekly days per route (for the table under the relief curves), disclosure applied."""
    from dashboard.analysis import metrics

    result = metrics.time_to_relief(load_connection(signature), settings, logrank=False)
    return _protect("relief_at_risk", result.at_risk, settings)


@_cached
def load_severity(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("side_effect_severity", metrics.side_effect_severity(load_connection(signature), settings),
                    settings)


@_cached
def load_side_effects_by_session(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("side_effect_by_session_number",
                    metrics.side_effect_by_session_number(load_connection(signature), settings), settings)


@_cached
def load_blood_pressure(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("blood_pressure", metrics.blood_pressure(load_connection(signature), settings), settings)


@_cached
def load_projection(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("maintenance_projection", metrics.maintenance_projection(load_connection(signature), settings),
                    settings)


@_cached
def load_data_quality(signature: tuple, settings: Settings) -> pd.DataFrame:
    from dashboard.analysis import metrics

    return _protect("data_quality", metrics.data_quality(load_connection(signature), settings), settings)


@_cached
def load_cohort_size(signature: tuple, settings: Settings) -> float:
    """The cohort banner's count, as cohort.csv's `ALL` row shows it: NaN when hidden (1..k-1)."""
    from dashboard.analysis import metrics

    patients = _protect("cohort", metrics.cohort_size(load_connection(signature), settings), settings)["patients"]
    return float("nan") if pd.isna(patients.iloc[0]) else float(patients.iloc[0])


@_cached
def load_maintenance_uptake(signature: tuple, settings: Settings) -> pd.DataFrame:
    """Maintenance uptake per route and ALL (the Overview's headline): maintenance.csv's uptake columns."""
    from dashboard.analysis import metrics
    from dashboard.reports import export

    con = load_connection(signature)
    return export.protect_table(con, settings, "maintenance", metrics.maintenance_uptake(con, settings))


@_cached
def load_import_history(signature: tuple) -> pd.DataFrame:
    return store.run_query(load_connection(signature), "import_history")


@_cached
def load_import_notes(signature: tuple) -> pd.DataFrame:
    """What the latest import tolerated in reading each file (file, note); empty for a database imported
    before the importer kept these notes (it has no import_notes table)."""
    import duckdb

    try:
        return store.run_query(load_connection(signature), "import_notes")
    except duckdb.CatalogException:
        return pd.DataFrame({"file": [], "note": []})


def zip_bytes_builder(ctx: PageContext) -> Callable[[], bytes]:
    """A callable for the 'all summaries' download: built only when the reader clicks."""
    from dashboard.reports import export

    con = load_connection(ctx.signature)
    settings = ctx.settings
    named_sites = viewer_named_sites(ctx)  # benchmark.csv in the zip names only the viewer's sites
    return lambda: export.summaries_zip_bytes(con, settings, named_sites=named_sites)


# --- reading summaries ---------------------------------------------------------------------------------


def all_row(df: pd.DataFrame) -> pd.Series | None:
    """The `ALL` row of a summary (None when the table is empty)."""
    if df is None or df.empty:
        return None
    rows = df[df["route"].astype(str) == spec.ALL]
    return rows.iloc[0] if len(rows) else None


# --- plain text in Markdown -------------------------------------------------------------------------------

# Every ASCII punctuation character may be backslash-escaped in CommonMark and then stands for itself, so an
# escaped text can hold no link, image, emphasis, HTML, autolink (www. / https: lose their "." and ":"),
# Streamlit directive (:red[…], :material/…:) or LaTeX ($). Line breaks would start new blocks: spaces.
_AUTOLINK = re.compile(r"(?i)(\b(?:https?|ftp|mailto|file|www)(?=[:.])|@)")
_MD_SPECIAL = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def plain(text: object) -> str:
    """`text` (from a URL, a file or a user) escaped for st.markdown / st.warning / st.caption: shown exactly
    as written, never as a link, image or formatting (issue 12)."""
    text = " ".join(str(text).split())
    # Streamlit's renderer links bare URLs and e-mail addresses even when their punctuation is escaped; an
    # invisible word joiner after the scheme, "www" or "@" keeps them text (checked in a real browser).
    text = _AUTOLINK.sub("\\1\u2060", text)
    return _MD_SPECIAL.sub(r"\\\1", text)


# --- URL parameters -------------------------------------------------------------------------------------


def raw_query_params() -> dict[str, list[str]]:
    """The link's query parameters, every value of a repeated key; a hand-typed `age_band=75+` (whose `+`
    arrives as a space) is read as 75+."""
    from dashboard.analysis.settings import repair_age_band

    qp = st.query_params
    params = {key: list(qp.get_all(key)) for key in qp.keys()}
    if params.get("age_band"):
        params["age_band"] = [repair_age_band(v) for v in params["age_band"]]
    return params


QUARTERS = ("from_quarter", "to_quarter")


def reversed_quarters(params: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """(start, end) when a link's start quarter is after its end quarter (each given once, each a quarter
    like 2025-Q3), else None. Neither can be used alone without changing the cohort the link describes in a
    way nobody asked for, so the dashboard uses neither."""
    given = [[v for v in params.get(k, ()) if v.strip() != ""] for k in QUARTERS]
    if any(len(v) != 1 or not spec.QUARTER_PATTERN.match(v[0]) for v in given):
        return None
    start, end = given[0][0], given[1][0]
    return (start, end) if start > end else None


def quarter_order_words(start: str, end: str) -> str:
    """The problem of a start quarter after the end quarter, in the sidebar's words (not the link's names)."""
    return f"The start quarter {start} is after the end quarter {end}"


def url_problems(params: Mapping[str, Sequence[str]], options: Mapping[str, Sequence[str]], *,
                 scoped: bool = False, min_cell_floor: int = 0) -> list[str]:
    """Plain-language problems with a link's query parameters, one per parameter and value.

    Checks what `Settings.from_query_params` checks, and also what the widgets would silently drop:
    a site or start quarter that is not in this database, and a value not spelled as the widget offers it.
    `scoped`: the options are one person's sites, so a site outside them is named as outside their access
    (whether or not it exists, which is not theirs to learn). `min_cell_floor`: the smallest minimum cell
    the person may use (access.Person.min_cell_floor); a lower one is named and raised to it.
    """
    problems: list[str] = []
    known: dict[str, list[str]] = {}
    for key, values in params.items():
        if key in _STREAMLIT_PARAMS:
            continue
        if key == VIEW_PARAM:
            problems.extend(view_problems(values))
            continue
        if key in DISPLAY_CHOICES:
            problems.extend(display_problems(key, values))
            continue
        if key not in FILTER_NAMES + SETTING_NAMES:
            shown = ", ".join(quoted(v) for v in values)
            problems.append(f"{shortened(key)}: not a setting of this dashboard (value {shown}); ignored")
            continue
        known[key] = list(values)
    order = reversed_quarters(known)
    # quarters in the wrong order are both ignored (link_widget_values) and said once, in words
    checked = {k: v for k, v in known.items() if not (order and k in QUARTERS)}
    try:
        # checked as the dashboard reads it: a link without an instrument gets the dashboard's default
        # (matched unless the diagnoses share one questionnaire), so a minimum baseline with it is refused
        Settings.from_query_params(with_default_instrument(checked))
    except SettingsError as exc:
        problems.extend(exc.problems)
    if order:
        problems.append(f"{quarter_order_words(*order)}: both quarters were ignored, so patients of every start "
                        "quarter are shown")
    mentioned = {p.split(":", 1)[0] for p in problems} | (set(QUARTERS) if order else set())
    below = _below_min_cell_floor(known.get("min_cell"), min_cell_floor) if "min_cell" not in mentioned else None
    if below is not None:
        problems.append(f"min_cell: {below} is below {min_cell_floor}, the smallest minimum cell your role may "
                        f"use; {min_cell_floor} is used")
    spelled = widget_options(options)
    for key, values in known.items():
        if key in mentioned or key not in spelled:
            continue
        allowed = spelled[key]
        for value in values:
            if value.strip() == "":
                continue
            if value not in allowed:
                if key == "site" and scoped:
                    problems.append(f"site: {quoted(value)} is not among the sites you may see; dropped")
                elif key == "site":
                    problems.append(f"site: {quoted(value)} is not a site in this database")
                elif key in ("from_quarter", "to_quarter"):
                    problems.append(f"{key}: no patient in this database started in {quoted(value)}")
                else:
                    problems.append(f"{key}: {quoted(value)} should be written as one of {', '.join(allowed)}")
    return problems


def _below_min_cell_floor(given: Sequence[str] | None, floor: int) -> int | None:
    """A link's single, well-formed minimum cell when it is below `floor`, else None."""
    values = [v for v in (given or []) if v.strip() != ""]
    if len(values) != 1 or parse_problems("min_cell", values):
        return None
    value = int(values[0].strip())
    return value if value < floor else None


def dashboard_instrument(instrument: str | None, diagnoses: Sequence[str]) -> str:
    """The instrument the dashboard computes with: the chosen one, or when none is chosen (the link names
    none) the diagnoses' one questionnaire, or `matched` for no diagnosis filter or a mix (docs/choices.md
    "Matched instrument"). The command line's default stays spec.DEFAULT_INSTRUMENT."""
    return instrument or spec.default_instrument(tuple(diagnoses or ()))


def with_default_instrument(params: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A link's parameters with the dashboard's default instrument filled in when it names none."""
    out = {k: list(v) for k, v in params.items()}
    if not out.get("instrument"):
        out["instrument"] = [dashboard_instrument(None, [d.strip() for d in out.get("diagnosis", [])])]
    return out


def refused_with_matched(problems: Iterable[str]) -> bool:
    """Whether the link's minimum baseline was refused because the instrument is matched."""
    prefix = MATCHED_MIN_BASELINE_PROBLEM.split("{value}")[0]
    tail = MATCHED_MIN_BASELINE_PROBLEM.split("{value}")[1][:40]
    return any(p.startswith(prefix) and tail in p for p in problems)


def widget_options(options: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """The exact values each option widget accepts in the URL (codes, as `Settings` spells them)."""
    return {
        "route": spec.ROUTES,
        "site": tuple(options.get("site", ())),
        "diagnosis": spec.DIAGNOSES,
        "sex": spec.SEXES,
        "age_band": spec.AGE_BANDS,
        "from_quarter": tuple(options.get("quarter", ())),
        "to_quarter": tuple(options.get("quarter", ())),
        "treatment_resistant": YES_NO,
        "setting": spec.SETTINGS,
        "integration": YES_NO,
        "severity": spec.SEVERITY_BANDS,
        "instrument": spec.INSTRUMENT_SETTINGS,
        "population": spec.POPULATIONS,
        "relief": spec.RELIEF_THRESHOLDS,
    }


def note_url_problems(problems: list[str]) -> None:
    """Remember a link's problems for this session, so the notice stays until dismissed (the link itself is
    rewritten to the settings in force by `sync_link`). A problem already shown (and perhaps dismissed) is
    not raised again in the same session."""
    seen: set[str] = st.session_state.setdefault(SEEN_KEY, set())
    new = [p for p in problems if p not in seen]
    if new:
        st.session_state[NOTICE_KEY] = list(st.session_state.get(NOTICE_KEY) or []) + new
        seen.update(new)


def link_widget_values(params: Mapping[str, Sequence[str]], options: Mapping[str, Sequence[str]],
                       problems: Sequence[str]) -> dict[str, Any]:
    """The sidebar's widget values a link asks for, by parameter name: only what can be used, exactly as
    `url_problems` describes (the rest is named in the notice and its default applies).

    A multi-valued filter keeps its usable values (`route=IV&route=XX` -> ["IV"]); a single-valued setting
    is taken only when it parses on its own and is spelled as the sidebar offers it (a repeated `min_cell`,
    `window=inf` or `instrument=phq9` leave the default); a numeric minimum baseline is not taken when it
    was refused with the matched instrument. Sites and start quarters are limited to `options` (the
    person's own sites), so a link never reaches outside them. A start quarter after the end quarter takes
    neither (the notice says so), as any other value that cannot be used: the page still shows the rest.
    (A minimum cell below the person's floor is raised by `seed_widgets_from_link`.)
    """
    allowed = widget_options(options)
    values: dict[str, Any] = {}
    order = reversed_quarters(params)
    for key in WIDGET_DEFAULTS:  # the sidebar's order: the diagnoses and instrument before the baseline
        if key not in params or (order and key in QUARTERS):  # reversed quarters: neither (url_problems)
            continue
        given = [v for v in params[key] if v.strip() != ""]
        if isinstance(WIDGET_DEFAULTS[key], list):
            values[key] = [v for v in dict.fromkeys(given) if v in allowed[key]]
            continue
        if not given or parse_problems(key, given):
            continue
        if key == "min_baseline" and refused_with_matched(problems):
            continue
        if key in allowed:
            if given[0] in allowed[key]:
                values[key] = given[0]
            continue
        context = {}
        if key == "min_baseline":  # its range is the questionnaire's
            context["instrument"] = [dashboard_instrument(values.get("instrument"), values.get("diagnosis", []))]
        try:
            parsed = Settings.from_query_params({**context, key: given})
        except SettingsError:  # out of range: named in the notice, the default applies
            continue
        values[key] = getattr(parsed, key)
    return values


def seed_widgets_from_link(params: Mapping[str, Sequence[str]], options: Mapping[str, Sequence[str]],
                           problems: Sequence[str], min_cell_floor: int = 0) -> None:
    """Set the sidebar's widgets from the link, once per session (a shared link opens a new session); on
    every run give a widget without a value its last value (or default), and drop a site or start quarter
    that the database no longer has (after an import), which the widget would refuse.

    The widgets are not bound to the URL (Streamlit 1.67 would write their on-screen words into it):
    the link is read here and written back by `sync_link`, so the URL keeps the codes of `Settings`
    (`route=IV`) while the sidebar shows words (IV infusion). Streamlit forgets a widget's value after a
    run that did not draw it (an error screen before the sidebar), so the last values drawn are kept
    aside and put back; a number box without a value would read 0, for the minimum cell hiding turned off.
    A minimum cell below the person's `min_cell_floor` is raised to it (the number box refuses less).
    """
    if not st.session_state.get(SEEDED_KEY):
        for key, value in link_widget_values(params, options, problems).items():
            st.session_state[key] = value
        st.session_state[SEEDED_KEY] = True
    last = st.session_state.get(LAST_VALUES_KEY) or WIDGET_DEFAULTS
    for key, default in WIDGET_DEFAULTS.items():
        if key not in st.session_state:
            value = last.get(key, default)
            st.session_state[key] = list(value) if isinstance(value, list) else value
    offered = widget_options(options)
    if any(s not in offered["site"] for s in st.session_state["site"]):
        st.session_state["site"] = [s for s in st.session_state["site"] if s in offered["site"]]
    for key in ("from_quarter", "to_quarter"):
        if st.session_state[key] is not None and st.session_state[key] not in offered[key]:
            st.session_state[key] = None
    if st.session_state["min_cell"] < min_cell_floor:
        st.session_state["min_cell"] = min_cell_floor


def link_params(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """The query parameters that describe the sidebar's values: every setting that differs from its
    default, in codes, in the sidebar's order (`{"route": ["IV", "IN"], "min_cell": ["5"]}`). No
    `instrument` when none is chosen: the link then keeps the dashboard's default for its diagnoses."""
    out: dict[str, list[str]] = {}
    for key, default in WIDGET_DEFAULTS.items():
        value = values.get(key)
        if value is None or value == [] or value == default:
            continue
        out[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def sync_link(values: Mapping[str, Any], view: str | None = None, display: Mapping[str, str] | None = None) -> None:
    """Write the sidebar's values into the URL (codes, `link_params`) when it says anything else: after a
    change in the sidebar, a page switch (Streamlit empties the query string) or a link with values that
    could not be used; then the part of the page shown (`view=trajectory`), unless it is the page's first,
    and its display choices that are not their default (`display_choices`: `days=all`).
    Streamlit's own parameters (embed) are kept."""
    st.session_state[LAST_VALUES_KEY] = dict(values)
    wanted = link_params(values)
    if view is not None:
        wanted[VIEW_PARAM] = [view]
    for param, code in (display or {}).items():
        if code != DISPLAY_CHOICES[param].default:
            wanted[param] = [code]
    current = {k: list(st.query_params.get_all(k)) for k in st.query_params.keys() if k not in _STREAMLIT_PARAMS}
    if current != wanted:
        st.query_params.from_dict(wanted)


def render_url_notice() -> None:
    problems = st.session_state.get(NOTICE_KEY)
    if not problems:
        return
    with st.container(border=True):
        st.warning(
            "**Part of this link could not be used.** These settings were ignored and the rest of the link "
            "was applied:\n\n" + "\n".join(f"- {plain(p)}" for p in problems),
            icon=":material/warning:",
        )
        st.button("Dismiss", key="_ko_dismiss_notice", on_click=lambda: st.session_state.pop(NOTICE_KEY, None))


# --- a page's parts ----------------------------------------------------------------------------------------

# A page with several figures shows one part at a time, chosen by tabs: only the chosen part is computed,
# sent and drawn (what a page switch waits for), and `view=<code>` in the link opens it. Codes in the URL,
# words on the tabs; the first part is the page's answer and needs no parameter.
VIEW_PARAM = "view"
PAGE_VIEWS: dict[str, dict[str, str]] = {
    "response": {
        "rates": "Response and remission", "adjusted": "Adjusted for case mix", "comparison": "Route comparison",
        "trajectory": "Weekly trajectory", "breakdown": "Breakdown",
    },
    "side-effects": {
        "by-route": "By route and effect", "patients": "Patients affected", "severity": "Severity and fading",
        "blood-pressure": "Blood pressure",
    },
    "maintenance": {
        "uptake": "Uptake and sustained response", "timing": "Timing of sessions", "projection": "Projected load",
    },
    "esketamine-monitoring": {
        "rules": "Where sites fall short", "observed": "What was observed", "monitoring-time": "Monitoring time",
        "blood-pressure": "Blood pressure at 40 minutes",
    },
}


# --- a page's display choices ----------------------------------------------------------------------------------

# What a page shows besides its part: the span of the relief curves, the weeks of the trajectory, the outcome the
# routes are compared on, the breakdown's grouping, the benchmark's measure. Each is in the link as a code
# (`days=all`), written back by `sync_link` like the part, so a shared link shows what its sender saw; the
# page's default needs no parameter. Choices whose options depend on the data (the side effects' and the
# monitoring's pickers) are not in the link.
@dataclass(frozen=True)
class DisplayChoice:
    """One display choice of a page: its link parameter's codes (the first the default) and the widget's key,
    and how a code becomes the widget's value (`value`) and back (`str`)."""

    page: str
    key: str
    codes: tuple[str, ...]
    value: Callable[[str], Any] = str

    @property
    def default(self) -> str:
        return self.codes[0]


DISPLAY_CHOICES: dict[str, DisplayChoice] = {
    "days": DisplayChoice("relief", "_ko_relief_span", ("8w", "all")),
    "compare": DisplayChoice("response", "_ko_compare_outcome", ("response", "remission")),
    "weeks": DisplayChoice("response", "_ko_trajectory_weeks", ("12", "8", "26", "52"), int),
    "by": DisplayChoice("response", "_ko_breakdown_by", ("site", "diagnosis", "severity")),
    "measure": DisplayChoice("benchmark", "_ko_benchmark_measure", ("response", "remission")),
}


def display_problems(key: str, values: Sequence[str]) -> list[str]:
    """Plain-language problems with a link's display choice `key` (one of DISPLAY_CHOICES): one value, one of
    its codes. A choice of another page is not a problem: it is simply not shown there."""
    choice = DISPLAY_CHOICES[key]
    given = [v for v in values if v.strip() != ""]
    if len(given) > 1:
        return [f"{key}: given {len(given)} times ({', '.join(quoted(v) for v in given)}); the page shows its "
                f"default ({choice.default})"]
    if given and given[0] not in choice.codes:
        # numbers in their order (weeks 8, 12, 26, 52), whatever order the widget offers them in
        listed = sorted(choice.codes, key=int) if all(c.isdigit() for c in choice.codes) else choice.codes
        return [f"{key}: {quoted(given[0])} is not one of {', '.join(listed)}; the page shows its default "
                f"({choice.default})"]
    return []


def display_choices(page: str, params: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The display choices of `page` as codes, each the reader's choice in this session while the page stays
    open, else the link's (when it is one of the codes), else the default; and each widget's value set from
    it before the page draws the widget (its first run: a page switch forgets it, as it forgets a tab)."""
    out: dict[str, str] = {}
    for param, choice in DISPLAY_CHOICES.items():
        if choice.page != page:
            continue
        chosen = st.session_state.get(choice.key)
        code = None if chosen is None else str(chosen)
        if code not in choice.codes:
            given = [v for v in params.get(param, []) if v.strip() != ""]
            code = given[0] if len(given) == 1 and given[0] in choice.codes else choice.default
            st.session_state[choice.key] = choice.value(code)
        out[param] = code
    return out


# --- sections drawn on demand ----------------------------------------------------------------------------------

# A closed expander of Streamlit's still draws its content in the browser (hidden): a "(table)" section of a
# page cost the static table's every cell on every rerun (about 45 ms for 90 cells, bench/RESULTS.md), and
# the Esketamine monitoring page's table of every measure 171 cells. These sections are Streamlit's lazy
# expanders instead: their content is computed and drawn only while open. Keys name the section on its page;
# a filter change keeps a section open, a page switch closes it (as it forgets a tab).
LOGRANK_SECTION_KEY = "_ko_section_logrank"  # the Time to relief page's pairwise log-rank tests
# every page's sections, by key (the pages name theirs; tests open them all)
SECTION_KEYS = frozenset({
    LOGRANK_SECTION_KEY, "_ko_section_funnel", "_ko_section_response_table", "_ko_section_adjusted_table",
    "_ko_section_bp_table", "_ko_section_rems_measures", "_ko_section_benchmark_sites",
})


def render_lazy_section(label: str, key: str, draw: Callable[[], Any]) -> bool:
    """A section of the page, closed until the reader opens it, whose content `draw()` makes only while it is
    open (`on_change="rerun"`: opening it reruns the script). `key` is one of SECTION_KEYS. Returns whether
    it is open."""
    if key not in SECTION_KEYS:
        raise ValueError(f"{key!r} is not one of ui.SECTION_KEYS")
    return _lazy_expander(st, label, key, draw)


def _lazy_expander(where: Any, label: str, key: str, draw: Callable[[], Any]) -> bool:
    """Streamlit's lazy expander in `where` (st or st.sidebar), `draw()` run inside it only while it is open;
    returns whether it is open. `expanded` stays False: one that changed between runs would open the header
    without drawing under it."""
    box = where.expander(label, expanded=False, key=key, on_change="rerun")
    if box.open:
        with box:
            draw()
    return bool(box.open)


def view_problems(values: Sequence[str]) -> list[str]:
    """Plain-language problems with a link's `view` values: one value, naming a part of some page. A part
    of another page is not a problem (the page's links keep the query string when the reader moves on);
    it is simply not shown there."""
    known = {code for views in PAGE_VIEWS.values() for code in views}
    given = [v for v in values if v.strip() != ""]
    if len(given) > 1:
        return [f"view: given {len(given)} times ({', '.join(quoted(v) for v in given)}); the page opens at its "
                "first part"]
    if given and given[0] not in known:
        parts = "; ".join(f"{page}: {', '.join(views)}" for page, views in PAGE_VIEWS.items())
        return [f"view: {quoted(given[0])} is not a part of any page ({parts}); the page opens at its first part"]
    return []


def _view_key(page: str) -> str:
    return f"_ko_view_{page}"


def current_view(page: str, params: Mapping[str, Sequence[str]]) -> str | None:
    """The code of the part of `page` to show, or None for a page shown whole: the tab chosen in this
    session while the page stays open, else the link's `view` when it names one of this page's parts,
    else the first part."""
    views = PAGE_VIEWS.get(page)
    if not views:
        return None
    chosen = st.session_state.get(_view_key(page))
    for code, label in views.items():
        if chosen == label:
            return code
    given = [v for v in params.get(VIEW_PARAM, []) if v.strip() != ""]
    if len(given) == 1 and given[0] in views:
        return given[0]
    return next(iter(views))


def link_view(page: str, view: str | None) -> str | None:
    """What the link says of the part shown: its code, or None for the page's first part (no parameter)."""
    return None if view is None or view == next(iter(PAGE_VIEWS[page])) else view


def render_view_tabs(ctx: PageContext) -> Any:
    """The page's parts as tabs, `ctx.view` open; returns the open tab's container, into which the page
    draws that part alone. Choosing another tab reruns the script (Streamlit's lazy tabs,
    `on_change="rerun"`), and the entry script reads the choice back with `current_view`.
    On a phone the parts are a segmented control whose options wrap onto as many rows as they need, in the
    same session state: Streamlit's tab bar scrolls sideways on a narrow screen without bringing the open tab
    into view, so a link to a later part ("Breakdown") opened with no tab marked in sight."""
    views = PAGE_VIEWS[ctx.page]
    key = _view_key(ctx.page)
    if st.session_state.get(key) != views[ctx.view]:  # the link's part, on the page's first run
        st.session_state[key] = views[ctx.view]
    if is_phone():
        st.segmented_control("Part of the page", list(views.values()), key=key, required=True, wrap=True,
                             label_visibility="collapsed")
        return st.container()
    tabs = st.tabs(list(views.values()), key=key, on_change="rerun")
    return next(tab for tab, code in zip(tabs, views) if code == ctx.view)


# --- the sidebar --------------------------------------------------------------------------------------------


WIDGET_DEFAULTS: dict[str, Any] = {
    "route": [], "site": [], "diagnosis": [], "sex": [], "age_band": [], "from_quarter": None,
    "to_quarter": None, "treatment_resistant": None, "setting": [], "integration": None, "severity": [],
    # None: the dashboard's default instrument (dashboard_instrument), decided by the diagnosis filter
    "instrument": None, "min_baseline": None, "population": spec.DEFAULT_POPULATION,
    "relief": spec.DEFAULT_RELIEF, "window": spec.DEFAULT_WINDOW, "min_cell": spec.DEFAULT_MIN_CELL,
    "rems_minutes": spec.DEFAULT_REMS_MINUTES,
}
assert set(WIDGET_DEFAULTS) == {name for name, _ in iter_defaults()}
# the sidebar's two closed-by-default sections and their settings
MORE_FILTERS = ("sex", "age_band", "from_quarter", "to_quarter", "treatment_resistant", "setting", "integration",
                "severity")
ANALYSIS_SETTINGS = ("instrument", "min_baseline", "population", "relief", "window", "min_cell", "rems_minutes")
MORE_FILTERS_KEY, ANALYSIS_SETTINGS_KEY = "_ko_more_filters", "_ko_analysis_settings"
OPEN_SECTIONS_KEY = "_ko_open_sections"  # {section key: open}, as the reader last left each section


def reset_settings() -> None:
    """Back to every default (the URL loses every parameter)."""
    for key, value in WIDGET_DEFAULTS.items():
        st.session_state[key] = list(value) if isinstance(value, list) else value
    st.session_state.pop(NOTICE_KEY, None)


def _active(url_keys: Iterable[str], *keys: str) -> bool:
    """Whether any of these settings is set: in the link (first run) or in the widgets' state."""
    in_url = set(url_keys)
    return any(k in in_url or st.session_state.get(k) not in (None, [], WIDGET_DEFAULTS[k]) for k in keys)


def _words(labels: Mapping[str, str]) -> Callable[[str], str]:
    """A format_func showing an option's words with a capital first letter ('Major depression')."""
    def shown(code: str) -> str:
        words = labels.get(code, code)
        return words[:1].upper() + words[1:]

    return shown


def render_sidebar(options: Mapping[str, Sequence[str]], url_keys: Iterable[str] = (),
                   min_cell_floor: int = 0) -> dict[str, Any]:
    """Every filter and setting; returns the widget values by parameter name (codes, as `Settings` spells
    them). The options are shown in words (IV infusion, Major depression); the link keeps the codes
    (`seed_widgets_from_link` reads it, `sync_link` writes it).

    `url_keys` are the parameters of the link being opened: their sections open so the reader sees them.
    `min_cell_floor`: the smallest minimum cell the person may set (access.Person.min_cell_floor).
    """
    url_keys = tuple(url_keys)
    sb = st.sidebar
    v: dict[str, Any] = {}
    sb.markdown("### Cohort filters")
    v["route"] = sb.multiselect("Route (of the first session)", spec.ROUTES, key="route", placeholder="All routes",
                                format_func=spec.ROUTE_LABELS.get)
    v["site"] = sb.multiselect("Site", list(options.get("site", ())), key="site", placeholder="All sites")
    v["diagnosis"] = sb.multiselect("Primary diagnosis", spec.DIAGNOSES, key="diagnosis",
                                    placeholder="All diagnoses", format_func=_words(spec.DIAGNOSIS_LABELS))
    # The two sections are drawn only while open (Streamlit's lazy expanders): every widget costs the browser
    # 15-25 ms on every rerun (bench/RESULTS.md), and a closed section's settings keep their values.
    _render_section("More filters", MORE_FILTERS_KEY, MORE_FILTERS, url_keys, v,
                    lambda: _render_more_filters(v, options))
    _render_section("Analysis settings", ANALYSIS_SETTINGS_KEY, ANALYSIS_SETTINGS, url_keys, v,
                    lambda: _render_analysis_settings(v, min_cell_floor))
    sb.button("Reset all filters and settings", on_click=reset_settings, key="_ko_reset", icon=":material/restart_alt:",
              width="stretch")
    return v


def _render_section(label: str, key: str, settings: tuple[str, ...], url_keys: Iterable[str], v: dict[str, Any],
                    draw: Callable[[], None]) -> None:
    """One closed-by-default section of the sidebar, its widgets drawn by `draw` only while it is open
    (Streamlit's lazy expander); closed, its settings' values go into `v` as they stand."""
    _restore_section_state(key, url_keys, settings)
    is_open = _lazy_expander(st.sidebar, label, key, draw)
    _remember_section(key, is_open)
    if not is_open:
        v.update(_undrawn_values(settings))


def _render_more_filters(v: dict[str, Any], options: Mapping[str, Sequence[str]]) -> None:
    """The "More filters" section's widgets, their values into `v`."""
    v["sex"] = st.multiselect("Sex", spec.SEXES, key="sex", placeholder="Any", format_func=SEX_CHOICES.get)
    v["age_band"] = st.multiselect("Age band", spec.AGE_BANDS, key="age_band", placeholder="Any age")
    quarters = list(options.get("quarter", ()))
    c1, c2 = st.columns(2)
    v["from_quarter"] = c1.selectbox("Started from", quarters, index=None, key="from_quarter",
                                     placeholder="Earliest")
    v["to_quarter"] = c2.selectbox("Started until", quarters, index=None, key="to_quarter",
                                   placeholder="Latest")
    v["treatment_resistant"] = st.selectbox("Treatment-resistant", YES_NO, index=None,
                                            key="treatment_resistant", placeholder="Either",
                                            format_func=YES_NO_LABELS.get)
    v["setting"] = st.multiselect("Setting (of the first session)", spec.SETTINGS, key="setting",
                                  placeholder="Clinic and home", format_func=SETTING_LABELS.get)
    v["integration"] = st.selectbox("Integration therapy", YES_NO, index=None, key="integration",
                                    placeholder="Either", format_func=YES_NO_LABELS.get)
    v["severity"] = st.multiselect("Baseline severity", spec.SEVERITY_BANDS, key="severity",
                                   placeholder="Any severity", format_func=SEVERITY_LABELS.get,
                                   help="Band of the baseline score on the chosen questionnaire")


def _render_analysis_settings(v: dict[str, Any], min_cell_floor: int = 0) -> None:
    """The "Analysis settings" section's widgets, their values into `v` (the diagnoses already in it); the
    minimum cell cannot be set below `min_cell_floor`."""
    # Empty (no instrument in the link) means the dashboard's default, which the placeholder says in
    # words: the selected diagnoses' one questionnaire, or matched to each patient's diagnosis.
    default = dashboard_instrument(None, v["diagnosis"])
    v["instrument"] = st.selectbox(
        "Questionnaire", spec.INSTRUMENT_SETTINGS, index=None, key="instrument",
        placeholder=INSTRUMENT_DEFAULT_WORDS[default], format_func=INSTRUMENT_WORDS.get,
        help="Matched to each patient's diagnosis: major depression and other diagnoses on PHQ-9, PTSD on "
             "PCL-5, generalised anxiety, social anxiety, panic disorder and OCD on GAD-7 — the default "
             "when the cohort mixes diagnoses.",
    )
    instrument = dashboard_instrument(v["instrument"], v["diagnosis"])
    v["min_baseline"] = st.number_input(
        "Minimum baseline score", min_value=0, max_value=max(hi for _, hi in spec.SCORE_RANGE.values()),
        value=None, step=1, key="min_baseline",
        placeholder=(f"Each questionnaire's default: {matched_minimums()}" if instrument == spec.MATCHED
                     else f"Default for {spec.INSTRUMENT_LABELS[instrument]}: "
                          f"{spec.DEFAULT_MIN_BASELINE[instrument]}"),
        help="Patients with a lower baseline are not eligible. Empty: the questionnaire's default "
             "(with the questionnaire matched to each diagnosis, always each questionnaire's own).",
    )
    v["population"] = st.radio(
        "Population", spec.POPULATIONS, key="population", horizontal=True, format_func=POPULATION_LABELS.get,
        captions=[POPULATION_HELP[p] for p in spec.POPULATIONS],
    )
    v["relief"] = st.radio(
        "Relief threshold", spec.RELIEF_THRESHOLDS, key="relief", horizontal=True,
        format_func=RELIEF_LABELS.get, captions=[RELIEF_HELP[r] for r in spec.RELIEF_THRESHOLDS],
        help="What counts as relief on the Time to relief page",
    )
    # No `value=` on the number boxes: seed_widgets_from_link has put the link's value or the default
    # into the session state, and a widget given both would log a warning.
    v["window"] = st.number_input(
        "Endpoint window (days after the last induction session)", min_value=0, max_value=spec.MAX_WINDOW,
        step=1, key="window",
    )
    v["min_cell"] = st.number_input(
        "Minimum cell (smallest count shown; 0 turns hiding off)" if min_cell_floor == 0 else
        f"Minimum cell (smallest count shown; {min_cell_floor} or more for your role)",
        min_value=min_cell_floor, max_value=spec.MAX_MIN_CELL, step=1, key="min_cell",
        help="Counts below this, and rates resting on fewer patients, are hidden to protect privacy."
             + ("" if min_cell_floor == 0 else " Only a network administrator may set it lower."),
    )
    v["rems_minutes"] = st.number_input(
        "Esketamine monitoring minimum (minutes)", min_value=0, max_value=spec.MAX_REMS_MINUTES,
        step=5, key="rems_minutes",
        help="The SPRAVATO REMS asks for at least two hours of monitoring after esketamine; "
             "used on the Esketamine monitoring page.",
    )


def _restore_section_state(key: str, url_keys: Iterable[str], settings: Iterable[str]) -> None:
    """Give a sidebar section its open state when Streamlit has none (a new session; a page switch forgets
    it): as the reader last left it in this session, or, the first time, open when one of its settings is
    set (a link's sections open so the reader sees them)."""
    if key not in st.session_state:
        left = st.session_state.get(OPEN_SECTIONS_KEY, {})
        st.session_state[key] = left[key] if key in left else _active(url_keys, *settings)


def _remember_section(key: str, is_open: bool) -> None:
    st.session_state[OPEN_SECTIONS_KEY] = {**st.session_state.get(OPEN_SECTIONS_KEY, {}), key: is_open}


def _undrawn_values(keys: Iterable[str]) -> dict[str, Any]:
    """The values of settings whose section is closed (not drawn this run): as they stand in the session,
    which `seed_widgets_from_link` filled from the link or the last values drawn. Each is written back as
    the session's own value: Streamlit resets the state of a widget not drawn in a run, which would lose
    the setting on the next run."""
    out = {}
    for key in keys:
        value = st.session_state.get(key, WIDGET_DEFAULTS[key])
        out[key] = list(value) if isinstance(value, list) else value
        st.session_state[key] = out[key]
    return out


def settings_from_widgets(values: Mapping[str, Any]) -> Settings:
    """Build the Settings the pages compute from. Raises SettingsError (e.g. a start after the end)."""
    def tup(x: Any) -> tuple[str, ...]:
        return tuple(x or ())

    def yes_no(x: Any) -> bool | None:
        return None if x is None else x == "yes"

    start, end = values["from_quarter"], values["to_quarter"]
    if start and end and start > end:  # chosen in the sidebar: said in its words, not Settings' (the flags')
        raise SettingsError([f"{quarter_order_words(start, end)}: choose a start on or before the end."])
    return Settings(
        route=tup(values["route"]), site=tup(values["site"]), diagnosis=tup(values["diagnosis"]),
        sex=tup(values["sex"]), age_band=tup(values["age_band"]), from_quarter=values["from_quarter"],
        to_quarter=values["to_quarter"], treatment_resistant=yes_no(values["treatment_resistant"]),
        setting=tup(values["setting"]), integration=yes_no(values["integration"]), severity=tup(values["severity"]),
        instrument=dashboard_instrument(values["instrument"], tup(values["diagnosis"])),
        min_baseline=None if values["min_baseline"] is None else int(values["min_baseline"]),
        population=values["population"] or spec.DEFAULT_POPULATION,
        relief=values["relief"] or spec.DEFAULT_RELIEF,
        window=spec.DEFAULT_WINDOW if values["window"] is None else int(values["window"]),
        min_cell=spec.DEFAULT_MIN_CELL if values["min_cell"] is None else int(values["min_cell"]),
        rems_minutes=(spec.DEFAULT_REMS_MINUTES if values.get("rems_minutes") is None
                      else int(values["rems_minutes"])),
    )


# --- shared blocks ------------------------------------------------------------------------------------------


def cohort_size(ctx: PageContext) -> float:
    """Patients in the cohort after disclosure control: NaN when the count is hidden (1..k-1)."""
    return load_cohort_size(ctx.signature, ctx.settings)


def describe_size(n: float, k: int) -> str:
    if pd.isna(n):
        return f"fewer than {k} patients"
    return spec.counted(n, "patient")


def render_cohort_banner(ctx: PageContext) -> None:
    """The active cohort and its size (drawn at the top of the sidebar, so visible on every page)."""
    s = ctx.settings
    n = cohort_size(ctx)
    with st.container(border=True):
        st.markdown(f"**Cohort:** {describe_size(n, s.min_cell)}")
        st.caption(
            f"{plain(s.describe_filters())} · {instrument_phrase(s)}, "
            f"{'patients with an endpoint' if s.population == 'observed' else 'intention to treat'}"
        )


def render_page_header(title: str, intro: str, ctx: PageContext) -> None:
    """The page's title and what it answers, the cohort in words, and (for the one page that opens on an
    empty or too-small cohort: Data and definitions) why no figure of the cohort can be shown."""
    st.title(title)
    s = ctx.settings
    size = cohort_size(ctx)
    st.caption(f"{intro}  \n**Cohort:** {plain(s.describe_filters())} — {describe_size(size, s.min_cell)}.")
    if size == 0 or math.isnan(size):
        render_cohort_notice(ctx)


def render_cohort_notice(ctx: PageContext) -> None:
    """Why nothing of this cohort is shown, and what to do: no patient matches the filters, or fewer than the
    minimum cell do (the cohort's size is then hidden, NaN). Draws nothing for a cohort that can be shown."""
    s = ctx.settings
    size = cohort_size(ctx)
    if size == 0:
        st.info(
            f"**No patients match these filters** ({plain(s.describe_filters())}).\n\n"
            "Remove a filter in the sidebar, or press *Reset all filters and settings*.",
            icon=":material/search_off:",
        )
    elif math.isnan(size):
        st.warning(
            f"**This cohort is too small to show** ({plain(s.describe_filters())}): it has fewer than "
            f"{s.min_cell} patients, so every figure would be hidden to protect patients' privacy."
            "\n\nWiden the filters in the sidebar, or — if your data governance allows it — lower the "
            "minimum cell under *Analysis settings*.",
            icon=":material/lock:",
        )


def render_disclosure_note(ctx: PageContext, hidden: Iterable[str] = ()) -> None:
    """Say visibly what disclosure control hid on this chart or table, and how to change it."""
    k = ctx.min_cell
    hidden = [h for h in hidden if h]
    if k <= 0:
        if hidden:
            st.caption("Not available: " + ", ".join(hidden) + ".")
        return
    if hidden:
        st.info(
            f"**Hidden to protect privacy:** {', '.join(hidden)}. Cells resting on fewer than {k} patients "
            f"(or that would let such a count be worked out) are not shown. To see more, widen the filters or "
            f"change the minimum cell under *Analysis settings*.",
            icon=":material/lock:",
        )
    else:
        st.caption(f":material/lock: Counts under {k} patients, and rates or medians resting on them, are hidden "
                   "wherever they occur. Shown counts are moved by one or two to protect privacy, so a count may "
                   "read slightly above the count it is part of (*Privacy* under Data and definitions).")


def render_downloads(ctx: PageContext, files: Sequence[str], *, key: str) -> None:
    """This page's summaries as CSV (the command-line export's bytes) plus a zip of all summaries."""
    st.subheader("Download these summaries")
    if ctx.person is not None and not ctx.person.may_download:
        st.caption("Downloads are for site directors and network administrators.")
        return
    from dashboard.reports import export

    # the exact command: the dashboard's analysis defaults (the matched questionnaire) are not the command
    # line's (GAD-7), so "these filters" alone would give other numbers
    command = " ".join(["ketamine-outcomes export --db DATABASE --out FOLDER",
                        *(shlex.quote(flag) for flag in export.command_line_flags(ctx.settings))])
    st.caption(f"The files are what `{command}` writes, with the same privacy protection.")

    # one row that wraps on a narrow screen: a flex container is one element for the browser to draw, where
    # columns were one per button and one around them (each element costs a rerun's drawing about a millisecond)
    row = st.container(horizontal=True, gap="small")
    for name in files:
        # a cache hit when the part shown has loaded the file (the cache serves any thread); benchmark.csv is
        # the page's own table, naming only the sites the reader may see (as in the zip)
        load = (functools.partial(load_benchmark, ctx.signature, ctx.settings, viewer_named_sites(ctx))
                if name == "benchmark.csv" else functools.partial(load_summary, ctx.signature, ctx.settings, name))
        row.download_button(
            f"{name}", data=audited(ctx, [name], _csv_builder(export.summary_csv_bytes, load)),
            file_name=export.download_name(name, ctx.settings),
            mime="text/csv", on_click="ignore", key=f"_ko_dl_{key}_{name}", icon=":material/download:",
        )
    zip_files = [*export.SUMMARY_FILES, export.PROVENANCE_FILE]
    row.download_button(
        "All summaries (zip)", data=audited(ctx, zip_files, zip_bytes_builder(ctx)),
        file_name=export.download_name(export.ZIP_NAME, ctx.settings),
        mime="application/zip", on_click="ignore", key=f"_ko_dl_{key}_zip", icon=":material/folder_zip:",
    )


def format_p(p: object) -> str:
    """A p-value as a reader expects it: '< 0.0001', '0.003', '0.42'; empty when hidden or undefined."""
    if p is None or pd.isna(p):
        return ""
    p = float(p)
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def render_table(df: pd.DataFrame, columns: Mapping[str, str], *, percent: Iterable[str] = (),
                 decimals: Mapping[str, int] | None = None, pvalues: Iterable[str] = (),
                 height: int | str = "auto", undefined: Mapping[str, str] | None = None) -> None:
    """A read-only table with friendly column names, every cell as text in one format per kind: counts
    `1,985`, rates `42.5 %`, p-values `0.003`, other numbers with `decimals`. A hidden cell reads as
    `figures.hidden_text` says ("fewer than 11", "< 1.3 %", "hidden"), an undefined one "–" (or the
    column's `undefined` text, e.g. "not reached"), never None, nan or a blank.

    Without a `height` the table is static (st.table: every row, wrapping cells, no sorting); with one
    (a long list such as the audit log) it is Streamlit's interactive grid, scrolling within that height."""
    static = height == "auto"
    if df is None or df.empty:
        st.caption("No rows.")
        return
    from dashboard.charts import figures
    from dashboard.charts.colors import route_label

    percent, pvalues, decimals, undefined = set(percent), set(pvalues), dict(decimals or {}), dict(undefined or {})
    shown = pd.DataFrame(index=df.index)
    for col in columns:
        if col not in df.columns:
            continue
        values = df[col]
        if col == "route":
            shown[col] = [route_label(str(r)) for r in values]
        elif col in pvalues:
            shown[col] = [format_p(v) or undefined.get(col, "–") for v in values]
        elif pd.api.types.is_datetime64_any_dtype(values):
            shown[col] = [pd.Timestamp(v).strftime("%d %b %Y, %H:%M") if pd.notna(v) else "–" for v in values]
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            kind = "pct" if col in percent else f"decimal{decimals[col]}" if col in decimals else "count"
            shown[col] = figures.column_text(df, col, kind, undefined=undefined.get(col, "–"))
        else:
            # text from the data (sites, file names of the import history): shown as written, never as Markdown
            shown[col] = ["–" if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v))
                          else plain(v) if static else str(v) for v in values]
    if static:
        # A static table: every row visible, headers and cells wrap so a wide table fits the screen, and it
        # draws far faster than the interactive grid (page switches, bench/RESULTS.md).
        headers, seen = [], {}
        for col in shown.columns:
            label = columns[col]
            seen[label] = seen.get(label, -1) + 1
            headers.append(label + "\u200b" * seen[label])  # a repeated header ("of", "share") made unique, unseen
        st.table(shown.set_axis(headers, axis=1).reset_index(drop=True), hide_index=True)
        return
    config = {col: st.column_config.TextColumn(columns[col]) for col in shown.columns}
    st.dataframe(shown.reset_index(drop=True), column_config=config, hide_index=True, width="stretch", height=height)


def render_error_screen(title: str, message: str, what_to_do: str) -> None:
    st.title("Ketamine Outcomes")
    st.error(f"**{title}**\n\n{plain(message)}", icon=":material/error:")
    st.markdown(what_to_do)


def render_import_without_data(page: Any, person: Any, view: str | None, problem: Exception) -> None:
    """The Import page when the current database cannot be opened: what is wrong with it, then the page, with
    a context of the configured path alone (the page writes the new file there and records the import in its
    audit log; no filter, setting or data of the old file is read)."""
    from dashboard.reports import audit

    path = database_path()
    set_context(PageContext(db_path=path, signature=(str(path), 0, 0, 0), settings=Settings(), person=person,
                            audit_log=audit.audit_path(path), page="import", view=view))
    st.warning(f"**The current data cannot be shown:** {plain(str(problem))}\n\nImport an export here to replace "
               "it.", icon=":material/warning:")
    page.run()


def render_installation_error(exc: BaseException) -> None:
    """A part of Ketamine Outcomes itself is missing (a dependency or a packaged file): say so, not "the
    database is damaged", and say how to mend it."""
    missing = getattr(exc, "name", None)
    what = f"The Python package `{missing}` is not installed." if missing else str(exc)
    render_error_screen(
        "Ketamine Outcomes is installed incompletely",
        what,
        f"**What to do:** {store.REINSTALL} Then restart `ketamine-outcomes serve` and reload this page. "
        "Your data are not affected.",
    )


@_cached
def load_any_side_effect(signature: tuple, settings: Settings) -> pd.DataFrame:
    """Patients and sessions with any side effect per route and ALL (with Wilson intervals), disclosure applied:
    the table the Overview's headline takes its column from (`export.protected_any_side_effect`)."""
    from dashboard.reports import export

    return export.protected_any_side_effect(load_connection(signature), settings)


def source_words(source: object) -> str:
    """An import's source as the screen says it: the built-in sample's label carries its seed and code hash
    (for rebuilding it; they stay in the database and the files), which read as codes on screen."""
    text = str(source)
    return BUILTIN_SAMPLE_WORDS if text.startswith("built-in sample") else text


BUILTIN_SAMPLE_WORDS = "Built-in sample data (made-up patients for trying the dashboard)"


def render_dataset(ctx: PageContext) -> None:
    """Which data set this is and when it was imported."""
    history = load_import_history(ctx.signature)
    if history.empty:
        st.caption(f"Database {ctx.db_path} (no import recorded).")
        return
    last = history.iloc[0]
    when = pd.Timestamp(last["imported_at"]).strftime("%d %B %Y, %H:%M UTC")
    name = plain(source_words(last["source"]))
    text = (f"**{name}** ({plain(last['source_format'])}), imported on **{when}** "
            f"(import number {int(last['import_id'])}, program version {last['program_version']}).")
    if ctx.settings.scope is None:  # the whole data set's totals include every site
        text += (f"  \nThe whole data set holds {int(last['patients']):,} patients, {int(last['sessions']):,} "
                 f"sessions, {int(last['assessments']):,} questionnaires and {int(last['adverse_events']):,} "
                 "recorded side effects.")
        if ctx.min_cell > 0:
            text += (" These totals are exact; the counts on the pages are protected for privacy and may differ "
                     "from them by a patient or two (*Privacy* under Data and definitions).")
    st.markdown(text)


# --- sign-in, access and the audit log (docs/access.md) -------------------------------------------------------

ACCESS_ENV = "KETAMINE_OUTCOMES_ACCESS"
LAST_VIEW_KEY = "_ko_last_audited_view"


def sign_in_configured() -> bool:
    """Whether `.streamlit/secrets.toml` has an `[auth]` section (then nothing is shown before sign-in)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all: st.secrets raises; that is local mode
        return False


@st.cache_data(ttl=60, max_entries=4, show_spinner=False)
def load_access_table(path: str, mtime_ns: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The access file (email -> role, sites), re-read when it changes; raises access.AccessFileError."""
    from dashboard.analysis import access

    return access.load_access_file(path)


def current_person():  # noqa: ANN201 - access.Person | None
    """Who is using this session: the local person without sign-in configured; with it, the signed-in
    person (None when nobody is signed in yet). Raises access.AccessFileError for a broken access file."""
    from dashboard.analysis import access

    if not sign_in_configured():
        return access.local_person()
    if not st.user.get("is_logged_in"):
        return None
    table = None
    raw = os.environ.get(ACCESS_ENV, "").strip()
    if raw:
        path = Path(raw)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = -1  # load_access_file says the file is missing, with the path
        table = load_access_table(str(path), mtime)
    return access.person_from_claims(st.user.to_dict(), table)


def sign_out() -> None:
    """End the session: forget everything this person's session holds, then sign out at the provider."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.logout()


def render_sign_in() -> None:
    """The only screen before sign-in: no data, a sign-in button."""
    st.title("Ketamine Outcomes")
    st.info("**Sign in to see the dashboard.** Each person sees the sites they are responsible for; every view "
            "and download is recorded.", icon=":material/lock:")
    if st.button("Log in", key="_ko_login", type="primary", icon=":material/login:"):
        st.login()


def render_no_access(person) -> None:  # noqa: ANN001 - access.Person
    """A signed-in person without a role or sites: say so, nothing else."""
    st.title("Ketamine Outcomes")
    st.warning(f"**You are signed in as {person.email or person.subject}, but have no access to any data.** "
               f"{person.why_no_access()}\n\nAsk your network administrator to give your account a role and "
               "sites.", icon=":material/block:")
    st.button("Log out", key="_ko_logout_noaccess", on_click=sign_out, icon=":material/logout:")


def render_person(person) -> None:  # noqa: ANN001 - access.Person
    """Who is signed in, in the sidebar, with the sign-out button (signed-in mode only)."""
    if person.source == "local":
        return
    with st.sidebar.container(border=True):
        st.caption(f":material/person: {person.describe()}")
        st.button("Log out", key="_ko_logout", on_click=sign_out, icon=":material/logout:", width="stretch")


@_cached
def current_import_id(signature: tuple) -> int | None:
    """The latest import's id (the audit log names it). Cached on its own: every download button asks for it,
    and the import history it comes from is a whole table to unpickle on each cache hit."""
    history = load_import_history(signature)
    return None if history.empty else int(history["import_id"].iloc[0])


def record_view(ctx: PageContext) -> None:
    """Record this page view with its filter state, once per distinct (page, filters, data set) in a
    session (reruns that change nothing, such as opening an expander, are the same view). Raises
    audit.AuditError when the log cannot be written: the caller shows nothing."""
    from dashboard.reports import audit

    query = ctx.settings.to_query_string()
    key = (ctx.page, query, ctx.signature, ctx.person.subject if ctx.person else "")
    if st.session_state.get(LAST_VIEW_KEY) == key:
        return
    audit.record(ctx.audit_log, audit.make_entry(
        person=ctx.person, action="view", page=ctx.page, query=query, import_id=current_import_id(ctx.signature),
        sites=ctx.settings.effective_sites))
    st.session_state[LAST_VIEW_KEY] = key


def audited(ctx: PageContext, files: Sequence[str], builder: Callable[[], bytes], *,
            action: str = "download") -> Callable[[], bytes]:
    """A download's data callable that records the download (file names, filters) before building the
    bytes; when the log cannot be written it raises, so the file is not delivered."""
    from dashboard.reports import audit

    person, log, page, query = ctx.person, ctx.audit_log, ctx.page, ctx.settings.to_query_string()
    import_id, scope = current_import_id(ctx.signature), ctx.settings.effective_sites

    def build() -> bytes:
        if person is None or log is None:
            raise audit.AuditError("No audit log is configured for this session; nothing was downloaded.")
        audit.record(log, audit.make_entry(person=person, action=action, page=page, query=query, files=files,
                                           import_id=import_id, sites=scope))
        return builder()

    return build


# --- the Import page (issue 14) ------------------------------------------------------------------------------

KEY_ENV = "KETAMINE_OUTCOMES_KEY"


def may_import() -> bool:
    """Whether this reader may see the Import page and replace the data set: network admins only
    (access.md); in local mode (no sign-in) the one person on this machine is one."""
    person = current_person()
    return person is not None and person.may_import


def import_key_path(db_path: Path) -> Path:
    """The clinic's pseudonym key used by the Import page: $KETAMINE_OUTCOMES_KEY, else
    `ketamine-outcomes.key` beside the database (created owner-only on first use; never uploaded or shown)."""
    raw = os.environ.get(KEY_ENV, "").strip()
    return Path(raw) if raw else db_path.parent / "ketamine-outcomes.key"


# --- the PDF report -------------------------------------------------------------------------------------

REPORT_LABEL = "Download report (PDF)"


@st.cache_resource(show_spinner=False)
def load_report_problems() -> tuple[str, ...]:
    """What the PDF report needs and this machine lacks (checked once per process: installing a system
    package needs a restart of the dashboard anyway)."""
    from dashboard.reports import report

    return tuple(report.missing_parts())


def report_bytes_builder(ctx: PageContext) -> Callable[[], bytes]:
    """The report download's data: built only when the reader clicks, by the command line's own function
    (same numbers, charts and layout as `ketamine-outcomes report` for these settings). The charts' Chromium
    is kept running between reports."""
    from dashboard.reports import report

    con = load_connection(ctx.signature)
    settings = ctx.settings
    return lambda: report.report_pdf_bytes(con, settings, keep_browser=True)


def render_report_download(ctx: PageContext) -> None:
    """The 'Download report (PDF)' button, in the sidebar of every page; when a system part is missing, the
    button is off and says exactly what to install (everything else keeps working)."""
    if ctx.person is not None and not ctx.person.may_download:
        return  # viewers take nothing away (access.md): no report either
    problems = load_report_problems()
    size = cohort_size(ctx)
    if problems:
        st.download_button(REPORT_LABEL, data=b"", disabled=True, key="_ko_dl_report", icon=":material/picture_as_pdf:",
                           width="stretch")
        st.caption("The PDF report is not available on this server: " + "; ".join(problems) + ". Then restart "
                   "the dashboard.")
        return
    if size == 0 or pd.isna(size):
        st.download_button(REPORT_LABEL, data=b"", disabled=True, key="_ko_dl_report", icon=":material/picture_as_pdf:",
                           width="stretch", help="No report for an empty or too small cohort: widen the filters.")
        return
    st.download_button(
        REPORT_LABEL, data=audited(ctx, ["ketamine-outcomes-report.pdf"], report_bytes_builder(ctx), action="report"),
        file_name="ketamine-outcomes-report.pdf",
        mime="application/pdf", on_click="ignore", key="_ko_dl_report", icon=":material/picture_as_pdf:",
        width="stretch",
        help="A PDF of this cohort for a board or payer: every page's charts and key tables, the definitions, "
             "what was hidden to protect privacy, and how to reproduce it. Takes a few seconds.",
    )


# --- esketamine (SPRAVATO REMS) monitoring ------------------------------------------------------------------


@_cached
def load_rems_distribution(signature: tuple, settings: Settings) -> pd.DataFrame:
    """Monitoring minutes, ready-to-leave minutes and the 40-minute pressure rises, binned (disclosure applied)."""
    from dashboard.analysis import rems

    return _protect("rems_distribution", rems.rems_distribution(load_connection(signature), settings), settings)


@_cached
def load_rems_lacking(signature: tuple) -> dict[str, list[str]]:
    """Esketamine monitoring measure -> the export columns it needs that this data set's export lacked."""
    from dashboard.analysis import rems

    return rems.lacking_columns(load_connection(signature))

# --- fair comparisons (issue 15) ------------------------------------------------------------------------


def viewer_named_sites(ctx: PageContext) -> frozenset[str] | None:
    """The sites the current viewer may see by name in the network benchmark (None: every site): the
    person's scope (docs/access.md). Local mode and network admins have no scope and see every site."""
    return None if ctx.settings.scope is None else frozenset(ctx.settings.scope)


@_cached
def load_benchmark(signature: tuple, settings: Settings, named_sites: frozenset[str] | None) -> pd.DataFrame:
    """benchmark.csv for a viewer who may see `named_sites` by name (None: all), disclosure applied."""
    from dashboard.reports import export

    return export.compute_summary(load_connection(signature), settings, "benchmark.csv", named_sites=named_sites)


@_cached
def load_network(signature: tuple, settings: Settings, named_sites: frozenset[str] | None) -> dict:
    """The network's distribution per measure (benchmark.Network: sites, median, P75, pooled rate)."""
    from dashboard.analysis import benchmark

    return benchmark.network_distribution(load_connection(signature), settings, named_sites=named_sites)


@_cached
def load_adjusted_details(signature: tuple, settings: Settings) -> dict:
    """What the Response page says about the adjusted model: fitted, reason, reference route, variables
    (plain words), merges and dropped variables (no patient numbers: those are in adjusted_response.csv)."""
    from dashboard.analysis import adjusted

    res = adjusted.adjusted_fit(load_connection(signature), settings)
    return {"fitted": res.fitted, "reason": res.reason, "reference_route": res.reference_route,
            "variables": [adjusted.VARIABLE_LABELS[v] for v in res.variables], "merges": res.merges,
            "dropped": [adjusted.VARIABLE_LABELS[v] for v in res.dropped]}


# --- unknown pages --------------------------------------------------------------------------------------------


def requested_page_name() -> str | None:
    """The page path the browser asked for ("RESPONSE", "views/overview.py"), or None on the main address.

    Streamlit 1.67 falls back to the default page for an unknown path; its request is only kept on the
    script run's pages manager (no public call), read here so the reader is told instead."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    manager = getattr(ctx, "pages_manager", None)
    name = getattr(manager, "intended_page_name", None)
    return str(name) if name else None


def is_unknown_page(name: str | None, pages: Sequence[Any]) -> bool:
    """True when `name` (a requested path) is none of the pages' URL paths (exact, case-sensitive)."""
    if not name:
        return False
    known = {str(getattr(p, "url_path", "")) for p in pages}
    return name.strip("/") not in known


def render_page_not_found(name: str, pages: Sequence[Any]) -> None:
    """A "page not found" screen naming the path asked for (as plain text) with a link to every page."""
    st.title("Page not found")
    st.error(f"**There is no page at “/{plain(shortened(name))}”.** The link may be mistyped or out of date.",
             icon=":material/search_off:")
    st.markdown("**Go to one of the dashboard's pages:**")
    for p in pages:
        st.page_link(p, label=p.title, icon=p.icon)


# --- plain words (issue 11): codes stay in URLs and files, words on screen ------------------------------------

PAGE_TITLES = {
    "views/overview.py": "Overview", "views/response.py": "Response by route", "views/relief.py": "Time to relief",
    "views/side_effects.py": "Side effects", "views/maintenance.py": "Maintenance",
    "views/data.py": "Data and definitions",
}
SEX_LABELS = spec.SEX_LABELS
DIAGNOSIS_LABELS = spec.DIAGNOSIS_LABELS
INSTRUMENT_WORDS = {"GAD7": "GAD-7 (anxiety)", "PHQ9": "PHQ-9 (depression)", "PCL5": "PCL-5 (PTSD)",
                    spec.MATCHED: "Matched to each patient's diagnosis"}
# The questionnaire box's placeholder: the default in force when the link names no instrument
INSTRUMENT_DEFAULT_WORDS = {**{i: f"{w}, the diagnoses' questionnaire" for i, w in INSTRUMENT_WORDS.items()},
                            spec.MATCHED: "Matched to each patient's diagnosis"}
POPULATION_LABELS = {"observed": "Patients with an endpoint", "itt": "Intention to treat"}
RELIEF_LABELS = {"response": "50 % improvement", "mcid": "Minimal important change"}
SETTING_LABELS = {"clinic": "Clinic", "home": "Home"}
SEVERITY_LABELS = {"minimal": "Minimal", "mild": "Mild", "moderate": "Moderate", "severe": "Severe"}
YES_NO_LABELS = {"yes": "Yes", "no": "No"}
SEX_CHOICES = {"F": "Female", "M": "Male", "X": "Another sex", "U": "Not recorded"}  # the sidebar's words


def instrument_label(s: Settings) -> str:
    """The questionnaire in words ('GAD-7', 'Matched to diagnosis'), as every page names it."""
    return spec.INSTRUMENT_SETTING_LABELS.get(s.instrument, s.instrument)


def matched_minimums() -> str:
    """Each questionnaire's default minimum baseline: 'GAD-7 10, PHQ-9 10, PCL-5 33'."""
    return ", ".join(f"{spec.INSTRUMENT_LABELS[i]} {spec.DEFAULT_MIN_BASELINE[i]}" for i in spec.INSTRUMENTS)


def baseline_label(s: Settings) -> str:
    """The minimum baseline in force, as a number of points (under matched, each questionnaire's)."""
    if s.matched:
        return f"each questionnaire's default ({matched_minimums()})"
    return f"{s.baseline_minimum}"


def instrument_phrase(s: Settings) -> str:
    """The instrument and minimum baseline for the cohort line: 'GAD-7, baseline ≥ 10' or 'Matched to
    diagnosis (MDD, other: PHQ-9; PTSD: PCL-5; the rest: GAD-7), baseline ≥ each questionnaire's default'."""
    if s.matched:
        return (f"{spec.MATCHED_LABEL} (major depression and other diagnoses on PHQ-9, PTSD on PCL-5, "
                f"the rest on GAD-7), baseline ≥ each questionnaire's default")
    return f"{spec.INSTRUMENT_LABELS[s.instrument]}, baseline ≥ {s.baseline_minimum}"


# --- warming the other pages ----------------------------------------------------------------------------------

LoadPlan = dict[str, list[tuple[str, Callable[[tuple, Settings], Any]]]]


def page_loads(named_sites: frozenset[str] | None = None) -> LoadPlan:
    """Per page (by URL path; "overview" is the home page, as in PageContext.page), the cached loads its view makes for one filter state with its
    widgets at their defaults, in the order it makes them: `[(name, load(signature, settings))]`.

    The single list of what each page computes: the dashboard warms the other pages with it
    (`prefetch_other_pages`) and bench/run.py times it. `named_sites` is the viewer's own sites
    (`viewer_named_sites`), which the benchmark and the Overview's network line name.
    """

    def summary(file: str) -> tuple[str, Callable[[tuple, Settings], Any]]:
        return (f"load_summary[{file}]", lambda sig, s: load_summary(sig, s, file))

    return {
        "overview": [
            summary("headline.csv"), summary("cohort.csv"), summary("response_by_route.csv"),
            summary("time_to_relief.csv"), summary("trend.csv"),
            ("load_maintenance_uptake", lambda sig, s: load_maintenance_uptake(sig, s)),
            ("load_any_side_effect", lambda sig, s: load_any_side_effect(sig, s)),
            ("load_network", lambda sig, s: load_network(sig, s, named_sites)),
        ],
        "response": [
            summary("response_by_route.csv"), summary("adjusted_response.csv"),
            ("load_adjusted_details", lambda sig, s: load_adjusted_details(sig, s)),
            ("load_route_comparison", lambda sig, s: load_route_comparison(sig, s, "response")),
            ("load_trajectory", lambda sig, s: load_trajectory(sig, s)),
            ("load_breakdown", lambda sig, s: load_breakdown(sig, s, "site")),
        ],
        "relief": [
            summary("time_to_relief.csv"), summary("time_to_relief_curve.csv"),
            ("load_relief_at_risk", lambda sig, s: load_relief_at_risk(sig, s)),
            ("load_logrank", lambda sig, s: load_logrank(sig, s)),
        ],
        "side-effects": [
            summary("side_effects.csv"),
            ("load_severity", lambda sig, s: load_severity(sig, s)),
            ("load_side_effects_by_session", lambda sig, s: load_side_effects_by_session(sig, s)),
            ("load_blood_pressure", lambda sig, s: load_blood_pressure(sig, s)),
        ],
        "maintenance": [
            summary("maintenance.csv"),
            ("load_projection", lambda sig, s: load_projection(sig, s)),
        ],
        "esketamine-monitoring": [
            summary("rems.csv"),
            ("load_rems_distribution", lambda sig, s: load_rems_distribution(sig, s)),
        ],
        "benchmark": [
            ("load_benchmark", lambda sig, s: load_benchmark(sig, s, named_sites)),
            ("load_network", lambda sig, s: load_network(sig, s, named_sites)),
        ],
        "data": [
            ("load_import_history", lambda sig, s: load_import_history(sig)),
            ("load_data_quality", lambda sig, s: load_data_quality(sig, s)),
        ],
    }


# The loads of page_loads a page does not make when it opens: those of its other parts (PAGE_VIEWS) and of its
# sections closed until opened (render_lazy_section). A page switch or a new filter state computes the rest
# while the person waits; these wait for their part's choice or for the warming (tests/test_app.py checks
# both lists against what each page makes when opened).
LATER_LOADS: dict[str, frozenset[str]] = {
    "response": frozenset({"load_summary[adjusted_response.csv]", "load_adjusted_details", "load_route_comparison",
                           "load_trajectory", "load_breakdown"}),
    "relief": frozenset({"load_logrank"}),
    "side-effects": frozenset({"load_severity", "load_side_effects_by_session", "load_blood_pressure"}),
    "maintenance": frozenset({"load_projection"}),
    "esketamine-monitoring": frozenset({"load_rems_distribution"}),
}


def opening_loads(plan: LoadPlan) -> LoadPlan:
    """Per page, the loads of `plan` (page_loads) it makes when opened at its first part with its sections
    closed: what a person waits for on a page switch to a new filter state (bench/run.py times them apart)."""
    return {page: [(name, load) for name, load in loads if name not in LATER_LOADS.get(page, frozenset())]
            for page, loads in plan.items()}


_PREFETCH_LOCK = threading.Lock()
_PREFETCH_RUN: dict[str, object] = {}  # session id -> token of the run whose prefetch may go on
_PREFETCH_THREADS: set[threading.Thread] = set()  # every warming thread still running
# Warming starts this long after the page's script has finished: meanwhile the browser is still drawing the
# page (on two cores, warming's queries and pandas competed with Chromium and with a quick next click, which
# abandons it anyway); a reader who looks at the page for a second or more still finds the other pages ready.
PREFETCH_DELAY_S = 1.0


def stop_every_prefetch(timeout: float = 60.0) -> None:
    """Stop every session's warming and wait for the threads to finish their current load.

    Called before the connection to a replaced database file is closed: DuckDB keeps one database instance
    per path while any query on it runs, so a new connection opened meanwhile would still read the old
    file (seen: an import's new sites not showing, the old ones still offered)."""
    with _PREFETCH_LOCK:
        _PREFETCH_RUN.clear()
        threads = [t for t in _PREFETCH_THREADS if t is not threading.current_thread()]
    for thread in threads:
        thread.join(timeout)


# The interpreter's exit waits for warming's current load too: a daemon thread stopped at exit inside DuckDB's
# C++ code aborted the process ("terminate called…", exit status 134), seen at the end of a test run; the
# server's shutdown would do the same.
atexit.register(stop_every_prefetch)


def cancel_prefetch() -> None:
    """Stop this session's warming of other pages (at the start of every rerun: the person asked for something
    new, and the old filter state's pages would only compete with it for the two cores)."""
    session = _session_id()
    if session is not None:
        with _PREFETCH_LOCK:
            _PREFETCH_RUN.pop(session, None)


def warm_pages(signature: tuple, settings: Settings, plan: LoadPlan, first: str = "",
               go_on: Callable[[], bool] = lambda: True) -> int:
    """Run every load of `plan` for this filter state, stopping as soon as `go_on()` is false; returns how
    many loads ran. In the order a reader is likeliest to need them: page `first`'s (the parts of the page
    on screen that its tabs do not show yet), then what every other page computes when it opens (a page
    switch), then the other pages' other parts (`LATER_LOADS`: tabs and closed sections), each group in
    the plan's order. Each load is `st.cache_data`, so a load already computed is a hit, and one computing
    in the script thread at the same moment is waited for, not repeated (Streamlit holds a lock per
    cached value)."""
    others = [page for page in plan if page != first]
    later = {page: LATER_LOADS.get(page, frozenset()) for page in others}
    order = list(plan.get(first, []))
    order += [(name, load) for page in others for name, load in plan[page] if name not in later[page]]
    order += [(name, load) for page in others for name, load in plan[page] if name in later[page]]
    done = 0
    seen: set[str] = set()
    for name, load in order:
        if name in seen:
            continue
        if not go_on():
            return done
        seen.add(name)
        load(signature, settings)
        done += 1
    return done


def prefetch_other_pages(ctx: PageContext) -> None:
    """After a page has drawn, compute the data of its other parts (tabs) and then of the other pages for the
    same filter state in the background, so choosing a tab or switching page shows cached results instead of
    computing them while the person waits.

    Only in a served dashboard (not in AppTest or bare mode, where tests count computations); one thread per
    session, abandoned when the session reruns (`cancel_prefetch`) or its browser disconnects. Failures are
    logged, never shown: the page itself reports them when it is opened.
    """
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    script_ctx = get_script_run_ctx()
    if not runtime.exists() or script_ctx is None:
        return
    session = script_ctx.session_id

    def work(mine: Callable[[], bool]) -> None:
        def go_on() -> bool:
            return mine() and _session_connected(session)

        try:
            start = time.monotonic() + PREFETCH_DELAY_S
            while time.monotonic() < start:
                if not go_on():
                    return
                time.sleep(0.05)
            warm_pages(ctx.signature, ctx.settings, page_loads(viewer_named_sites(ctx)), first=ctx.page,
                       go_on=go_on)
        except Exception:  # noqa: BLE001 - the page reports its own failure when opened
            LOG.debug("warming the other pages failed", exc_info=True)

    # the cached loads expect a script context
    _start_warming(session, "ko-prefetch", work, prepare=lambda thread: add_script_run_ctx(thread, script_ctx))


def _start_warming(key: str, name: str, work: Callable[[Callable[[], bool]], None],
                   prepare: Callable[[threading.Thread], Any] | None = None) -> threading.Thread:
    """Run `work(mine)` in a daemon thread named `name`, registered under `key` (a session's id, or
    _DEFAULT_VIEW) in _PREFETCH_RUN and in _PREFETCH_THREADS: `mine()` is true until a later start under the
    same key, `cancel_prefetch` or `stop_every_prefetch` replaces or removes the registration, and the thread
    unregisters itself when done. `prepare(thread)` runs before it starts. Returns the thread."""
    token = object()
    with _PREFETCH_LOCK:
        _PREFETCH_RUN[key] = token

    def mine() -> bool:
        with _PREFETCH_LOCK:
            return _PREFETCH_RUN.get(key) is token

    def run() -> None:
        try:
            work(mine)
        finally:
            with _PREFETCH_LOCK:
                if _PREFETCH_RUN.get(key) is token:
                    del _PREFETCH_RUN[key]
                _PREFETCH_THREADS.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=name, daemon=True)
    if prepare is not None:
        prepare(thread)
    with _PREFETCH_LOCK:
        _PREFETCH_THREADS.add(thread)
    thread.start()
    return thread


# What every page imports before it can compute anything (statsmodels, through the export module's adjusted
# model, is about 0.9 s of it). With the PDF library the report button's check loads (another 0.9 s) and the
# default filters' computation, the first person to open a freshly started dashboard waited 4.7 s for the
# Overview where the next waited 2.6 s (bench/RESULTS.md, 2026-12-01).
STARTUP_MODULES = ("dashboard.reports.export", "dashboard.charts.figures", "dashboard.analysis.benchmark",
                   "dashboard.analysis.rems")
_DEFAULT_VIEW = "(default view)"  # the default view's warming in _PREFETCH_RUN, beside the sessions' ids


def default_settings() -> Settings:
    """The Settings of a link that names nothing (the sidebar at its defaults), for a person who may see every
    site: what the dashboard computes when it is opened at its address."""
    return settings_from_widgets(WIDGET_DEFAULTS)


def warm_default_view(go_on: Callable[[], bool] = lambda: True) -> int:
    """Do, before anyone opens the dashboard, what its first visitor after the server starts (or after an
    import replaces the database) would otherwise wait for: import what every page imports (STARTUP_MODULES),
    check what the PDF report needs (`load_report_problems`, which loads the PDF library), open and check the
    configured database, compute what every page computes when it opens for the default filters
    (`opening_loads` of `page_loads()` for `default_settings()`, the Overview first) and build the Overview's
    charts, stopping as soon as `go_on()` is false. Returns how many of the pages' loads ran.

    The default filters of a person who may see every site (local mode, network admins); a person whose access
    is scoped to some sites computes their own, but finds everything imported and the database open. A
    database that cannot be opened is named in a warning (the server's terminal) and left for the pages to
    report: nothing is computed."""
    import importlib

    for name in STARTUP_MODULES:
        if not go_on():
            return 0
        importlib.import_module(name)
    if not go_on():
        return 0
    load_report_problems()
    try:
        _, signature = open_current_database()
    except store.StoreError as exc:
        # `serve` checks that the file is there and readable before it starts; what only opening it tells (a
        # database built by an older version, a damaged one) is said at once in the server's terminal too, as
        # each page says it to whoever opens it, with what to do
        LOG.warning("%s", exc)
        return 0
    except Exception:  # noqa: BLE001 - damaged beyond what StoreError names: the page says so, its log has it
        LOG.warning("The database %s cannot be read; the dashboard's pages say so.", database_path())
        return 0
    settings = default_settings()
    # what the entry script loads on every page (main.py: the filters' options, the import the audit log names,
    # the cohort banner), as main.py calls them: a cached value is found by the arguments as given
    load_filter_options(signature, None)
    current_import_id(signature)
    load_cohort_size(signature, settings)
    done = warm_pages(signature, settings, opening_loads(page_loads(None)), first="overview", go_on=go_on)
    if go_on():
        build_opening_figures(signature, settings)
    return done


def build_opening_figures(signature: tuple, settings: Settings) -> None:
    """Build the home page's charts for `settings` as the Overview builds them (`build_figure`, the same
    builders and inputs: the Overview then finds them built), and with them Plotly's validators, which the
    first figure of a process loads (about 0.1 s)."""
    from dashboard.charts import figures

    build_figure(figures.create_trend_figure, load_summary(signature, settings, "trend.csv"))
    build_figure(figures.create_funnel_figure, load_summary(signature, settings, "cohort.csv"))


def _check_for_repl_now() -> None:
    """Streamlit asks once per process, as the first page sends its first element, whether it runs in a Python
    REPL, by `inspect.stack()` over the script runner's frames: 0.15-0.3 s of that first page (profiled). Asked
    here, in a thread whose stack is short, it costs milliseconds and the page does not ask again. A private
    function of Streamlit: if a later version moves it, nothing is done."""
    from streamlit import delta_generator

    check = getattr(delta_generator, "_maybe_print_use_warning", None)
    if callable(check):
        check()


def start_warming_default_view() -> threading.Thread:
    """Run `warm_default_view` in a background thread: when serving starts (dashboard/app/server.py) and when a
    page finds the database replaced by an import (`open_current_database`). Stopped, like the sessions'
    warming, by `stop_every_prefetch` (another import, the process's exit) and replaced by a later start.
    Returns the thread."""

    def work(go_on: Callable[[], bool]) -> None:
        started = time.monotonic()
        try:
            _check_for_repl_now()
            done = warm_default_view(go_on)
            LOG.info("warmed the default view: %d loads in %.1f s", done, time.monotonic() - started)
            settle_startup_heap()  # what is frozen now needs no collecting during the first visitor's page
        except Exception:  # noqa: BLE001 - a page reports its own failure when opened
            LOG.warning("warming the default view failed", exc_info=True)

    return _start_warming(_DEFAULT_VIEW, "ko-default-view", work)


# True while dashboard/app/server.py's app serves (its lifespan): AppTest and `streamlit run main.py` run main.py
# without it (AppTest inside the test process, which must not be changed for later tests).
SERVED = False
_HEAP_LOCK = threading.Lock()
_HEAP_SETTLED = False


def settle_startup_heap() -> None:
    """Once per served process (`SERVED`), when the default view has been warmed (`start_warming_default_view`)
    or its first page has run, whichever comes first: collect garbage and freeze every object left
    (`gc.freeze`) — the imported modules, Plotly's validators, pandas' and SciPy's tables — so Python's full
    collections stop walking them.

    With them, each full collection took 85-150 ms, at a moment no one chooses (the collector runs on whichever
    thread allocates): a walk over every page three times at 100,000 patients met four, one inside a page
    switch (bench/RESULTS.md); after the freeze a full collection took 6-7 ms. Frozen objects are still freed
    when nothing refers to them; only reference cycles among them stay until the process ends — those of that
    moment's caches (a few figures) and of the first session and page run, once.
    """
    global _HEAP_SETTLED
    with _HEAP_LOCK:
        if not SERVED or _HEAP_SETTLED:
            return
        _HEAP_SETTLED = True
        gc.collect()
        frozen_before = gc.get_freeze_count()
        gc.freeze()
    LOG.info("froze %d objects of the served process's startup", gc.get_freeze_count() - frozen_before)


def _session_connected(session: str) -> bool:
    """Whether the session's browser is still connected: warming for a closed tab would only take the two
    cores from the people still looking (and, in bench/browser.py, from the next link opened)."""
    from streamlit.runtime import Runtime

    try:
        return Runtime.instance().is_active_session(session)
    except RuntimeError:  # no Streamlit runtime in this process (a test's stand-in session): keep going
        return True


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    script_ctx = get_script_run_ctx(suppress_warning=True)
    return None if script_ctx is None else script_ctx.session_id
