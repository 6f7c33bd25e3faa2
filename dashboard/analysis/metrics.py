"""The outcome metrics of docs/metrics.md, computed for one `Settings` (cohort filters + analysis settings).

DuckDB does the heavy lifting over the derived per-patient tables built at import (queries/derive_*.sql):
each function runs one or two named queries from queries/ with bound parameters and receives per-route
aggregates or per-patient rows; SciPy does the statistics (Wilson intervals, Kaplan–Meier, log-rank,
chi-square, Fisher, t intervals). Every function takes `(con, settings)` and returns DataFrames *before*
disclosure control (dashboard/analysis/disclosure.py): rows per route in the order of `spec.ROUTES` (routes without
patients left out), then `ALL`; rates are fractions 0–1; undefined values are NaN.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

try:  # the class scipy.stats.binomtest returns (documented under this name); see _binomial_result
    from scipy.stats._result_classes import BinomTestResult
except ImportError:
    BinomTestResult = None

from dashboard.data import spec, store
from dashboard.analysis import disclosure, survival
from dashboard.analysis.settings import Settings

NAN = float("nan")
KEY_SUFFIX = "__key"  # a count's cell key column (queries/derive_05_cell_keys.sql; disclosure.protect)

# --- recent results ----------------------------------------------------------------------------------------
# A page asks for the same query with the same parameters more than once (the funnel and the response table
# share outcome_counts), the relief page's loads share one set of Kaplan–Meier fits and the Maintenance
# page's summary and projection one maintenance table, so each connection keeps its last few results, keyed
# by query (or computation) name and the bound values. The key holds everything the result depends on; a new import means
# a new connection, so entries die with the old connection. Bounded by count and by size.
_MEMO_ENTRIES = 32  # a page's queries, fits and protected files (export.compute_summary) for a state or two
_MEMO_BYTES = 64 * 2**20
_memo: "weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, OrderedDict]" = weakref.WeakKeyDictionary()
_running: "weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict]" = weakref.WeakKeyDictionary()  # key -> Event
_memo_lock = threading.Lock()


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _frame_bytes(*frames: pd.DataFrame) -> int:
    return sum(int(df.memory_usage(index=False, deep=True).sum()) for df in frames)


def _remembered(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any], compute, size) -> Any:  # noqa: ANN001
    """compute() once per (connection, name, params) while it stays among the recent results.

    A result another thread is computing at the moment is waited for, not computed again (the Overview's
    headline computes its sources side by side, and two of them start with the same query). Callers get the
    stored object itself, so they must copy what they modify. An exception in compute() is raised to the
    caller that ran it; a thread that waited for it computes the value itself."""
    key = (name, tuple(sorted((k, _frozen(v)) for k, v in params.items())))
    while True:
        with _memo_lock:
            entries = _memo.get(con)
            if entries is not None and key in entries:
                entries.move_to_end(key)
                return entries[key][0]
            running = _running.setdefault(con, {})
            done = running.get(key)
            if done is None:
                done = running[key] = threading.Event()
                break
        done.wait()  # then look again: stored, or failed (and this thread tries)
    try:
        value = compute()
        with _memo_lock:
            entries = _memo.setdefault(con, OrderedDict())
            entries[key] = (value, size(value))
            while entries and (len(entries) > _MEMO_ENTRIES or sum(v[1] for v in entries.values()) > _MEMO_BYTES):
                entries.popitem(last=False)
        return value
    finally:
        with _memo_lock:
            _running.get(con, {}).pop(key, None)
        done.set()


def run_query(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pd.DataFrame:
    """store.run_query through the per-connection memo of recent results (a copy: callers may modify it)."""
    return _remembered(con, name, params, lambda: store.run_query(con, name, params), _frame_bytes).copy()


def protected(con: duckdb.DuckDBPyConnection, s: Settings, file: str, compute) -> pd.DataFrame:  # noqa: ANN001
    """The protected summary `file` (e.g. "response_by_route.csv", or a page's table such as
    "any_side_effect") for `s`: compute() (which applies
    disclosure.protect) once per connection and state while it stays among the recent results; a copy (the
    caller may change it; the hidden-cell record in attrs is shared, being read-only).

    The Overview's headline and its own tables, and the Response page's table and adjusted model, protect
    the same file for the same state (10-15 ms each at 100,000 patients). Settings' repr names every field,
    the scope included, so it keys the result exactly."""
    return _remembered(con, "protected", {"file": file, "settings": repr(s)}, compute, _frame_bytes).copy()


def clear_query_memo() -> None:
    """Forget every remembered query result (the benchmark's cold measurements start from nothing)."""
    with _memo_lock:
        _memo.clear()


BREAKDOWNS = ("site", "diagnosis", "severity")


# --- parameters and shaping -------------------------------------------------------------------------------


def _params(s: Settings, **extra: Any) -> dict[str, Any]:
    """Bound parameters for a metric query: the cohort filter plus the analysis settings it uses."""
    return {**s.cohort_params(), **extra}


def _outcome_params(s: Settings, **extra: Any) -> dict[str, Any]:
    return _params(
        s, min_baseline=s.baseline_minimum, window=s.window, remission_cut=s.remission_cut, **extra
    )


def _bp_params() -> dict[str, Any]:
    # session_facts' event masks hold bit i for spec.EVENTS[i]; bp_severe takes the next bit
    return {"sbp_severe": spec.BP_SEVERE_SBP, "dbp_severe": spec.BP_SEVERE_DBP,
            "bp_bit": spec.SUMMARY_EVENTS.index(spec.BP_SEVERE)}


def _label_routes(df: pd.DataFrame) -> pd.DataFrame:
    """Name the total rows ALL (they come from SQL with route NULL and is_total true)."""
    df = df.copy()
    df["route"] = np.where(df["is_total"].astype(bool), spec.ALL, df["route"].astype(object))
    return df.drop(columns="is_total")


def _route_rank(route: Any) -> int:
    return spec.ROUTES.index(route) if route in spec.ROUTES else len(spec.ROUTES)


def _order_routes(df: pd.DataFrame, then: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows by route in spec order, ALL last, then by the given columns; a fresh 0..n-1 index."""
    # np.lexsort is stable and sorts by its last key first; the keys are small integers (route and event
    # ranks, weeks, session numbers), so this is a few microseconds where DataFrame.sort_values takes ms
    rank = np.array([_route_rank(r) for r in df["route"].tolist()], dtype=np.int64)
    order = np.lexsort([df[c].to_numpy() for c in reversed(then)] + [rank])
    return df.iloc[order].reset_index(drop=True)


@functools.lru_cache(maxsize=4096)
def wilson(k: int, n: int) -> tuple[float, float, float]:
    """(rate, low, high) with the 95 % Wilson score interval; NaN when n = 0."""
    k, n = int(k), int(n)
    if n <= 0:
        return NAN, NAN, NAN
    ci = _binomial_result(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def _binomial_result(k: int, n: int) -> Any:
    """SciPy's binomial test result for k of n, on which `proportion_ci` computes the Wilson interval.

    The interval does not depend on a test, but `stats.binomtest` always computes its two-sided p-value
    (often a binary search over the pmf: milliseconds per call, the largest cost of a page's statistics).
    So the result object is built directly with no p-value; `binomtest` remains the fallback should SciPy
    ever change that class (tests/test_metrics.py checks both give the same interval)."""
    if BinomTestResult is not None:
        try:
            return BinomTestResult(k=k, n=n, alternative="two-sided", statistic=k / n, pvalue=NAN)
        except TypeError:
            pass
    return stats.binomtest(k, n)


def _keyed(df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """`df[columns]` plus the cell-key column (`<count>__key`, queries/derive_05_cell_keys.sql) of each count
    among them, last: disclosure.protect perturbs a count by its key, then drops every key column."""
    keys = [c + KEY_SUFFIX for c in columns if c + KEY_SUFFIX in df.columns]
    return df[list(columns) + keys]


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


def _add_rate(df: pd.DataFrame, k: str, n: str, rate: str, prefix: str) -> pd.DataFrame:
    """Set `rate` = k / n and its 95 % Wilson interval `{prefix}_ci_low/high` (NaN where n = 0)."""
    ci = [wilson(a, b) for a, b in zip(df[k], df[n])]
    return df.assign(**{rate: [c[0] for c in ci], f"{prefix}_ci_low": [c[1] for c in ci],
                        f"{prefix}_ci_high": [c[2] for c in ci]})


# --- cohort funnel and response -------------------------------------------------------------------------

FUNNEL_COLUMNS = ("patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint")


def outcome_counts(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """The raw per-route counts behind the funnel and response (for callers that need both)."""
    return _outcome_counts(con, s)


OUTCOME_COUNT_COLUMNS = (*FUNNEL_COLUMNS, "responders", "remitters", "responders_in_maintenance")
# groupings of queries/outcome_counts.sql ($by) that are sums of rows of outcome_counts_by_site_quarter.sql:
# $by -> the column of that query the rows are grouped by (None: no grouping)
_FROM_SITE_QUARTER = {None: None, "site": "site", "quarter": "start_quarter"}


def _outcome_counts(con: duckdb.DuckDBPyConnection, s: Settings, by: str | None = None) -> pd.DataFrame:
    """queries/outcome_counts.sql's rows for `by` (its columns, its order, counts as int64).

    The Overview needs them three ways (no grouping, by start quarter for the trend, by site over every
    site for the benchmark) and the Response page two (no grouping, by site): each is a full scan of the
    cohort's outcomes (~50 ms at 100,000 patients), so those groupings are added up from one scan per
    filter state, queries/outcome_counts_by_site_quarter.sql (a few hundred rows), instead."""
    if by in _FROM_SITE_QUARTER:
        df = counts_from_site_quarter(site_quarter_counts(con, s), s.effective_sites, _FROM_SITE_QUARTER[by])
    else:
        df = run_query(con, "outcome_counts", _outcome_params(s, by=by))
    count_cols = list(OUTCOME_COUNT_COLUMNS)
    df[count_cols] = df[count_cols].astype("int64")
    return df


def site_quarter_counts(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """queries/outcome_counts_by_site_quarter.sql for `s` with every site (the site filter and scope are
    left out: callers select the sites they may add up), remembered per connection. The stored frame itself:
    callers must not modify it."""
    params = _outcome_params(s.replace(site=(), scope=None))
    return _remembered(con, "outcome_counts_by_site_quarter", params,
                       lambda: store.run_query(con, "outcome_counts_by_site_quarter", params), _frame_bytes)


def counts_from_site_quarter(cube: pd.DataFrame, sites: Any, group: str | None,
                             columns: tuple[str, ...] = OUTCOME_COUNT_COLUMNS) -> pd.DataFrame:
    """Rows of queries/outcome_counts.sql added up from outcome_counts_by_site_quarter.sql's rows `cube`:
    the rows of `sites` (None: every site; an empty collection: none), grouped by the cube's column `group`
    (None: no grouping) as `grp`, per route (NULL: patients without a session) and in total (`is_total`),
    ordered as that query orders them (grp, is_total, route; NULLs last). `columns` are summed, their cell
    keys (`<count>__key`) summed modulo 2^32 — the key of the union of disjoint sets of patients — so every
    count and key equals the one outcome_counts.sql computes for the same patients. Groups without
    patients are absent, as in SQL."""
    if sites is not None:
        cube = cube[cube["site"].isin(list(sites))]
    keys = [c + KEY_SUFFIX for c in columns if c + KEY_SUFFIX in cube.columns]
    values = cube[list(columns) + keys].to_numpy(dtype=np.int64)
    grp = cube[group].to_numpy(dtype=object) if group is not None else np.full(len(cube), None, dtype=object)
    route = cube["route"].to_numpy(dtype=object, na_value=None)
    # each row adds to its (grp, route) line and to its group's total; the sums as whole arrays (np.add.at
    # over a few hundred rows), int64 throughout: keys < 2^32 times a few hundred rows cannot overflow
    lines = list(dict.fromkeys(zip(grp.tolist(), route.tolist(), [False] * len(route))))
    lines += list(dict.fromkeys((g, None, True) for g, _, _ in lines))
    where = {line: i for i, line in enumerate(lines)}
    sums = np.zeros((len(lines), len(columns) + len(keys)), dtype=np.int64)
    np.add.at(sums, [where[(g, r, False)] for g, r in zip(grp.tolist(), route.tolist())], values)
    np.add.at(sums, [where[(g, None, True)] for g in grp.tolist()], values)
    rank = sorted(range(len(lines)), key=lambda i: (lines[i][0] is None, lines[i][0] or "", lines[i][2],
                                                     lines[i][1] is None, lines[i][1] or ""))
    order = [lines[i] for i in rank]
    table = sums[rank] if rank else sums
    table[:, len(columns):] %= disclosure.CELL_KEY_MODULUS
    # one constructor call: inserting 20 columns one by one costs several milliseconds in pandas
    return pd.DataFrame({"grp": pd.array([t[0] for t in order], dtype=object),
                         "route": pd.array([t[1] for t in order], dtype="str"),
                         "is_total": np.array([t[2] for t in order], dtype=bool),
                         **{c: table[:, j] for j, c in enumerate([*columns, *keys])}})


def filter_options(con: duckdb.DuckDBPyConnection, s: Settings) -> dict[str, list[str]]:
    """The site and start-quarter filters' options: {"site": [...], "quarter": [...]}, sorted, among the
    patients of the person's scope (`s.scope`; None: every site). Only the scope matters, not the filters,
    so a director's list never names a site outside it."""
    df = store.run_query(con, "filter_options", {"sites": None if s.scope is None else list(s.scope)})
    return {
        "site": [str(v) for v in df.loc[df["kind"] == "site", "value"]],
        "quarter": [str(v) for v in df.loc[df["kind"] == "quarter", "value"]],
    }


def cohort_size(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Patients in the cohort as the funnel's `ALL` row holds them (route, patients): one cheap count for
    the cohort banner. Protected with the funnel's rule, it hides exactly what cohort.csv hides there."""
    r = run_query(con, "cohort_size", _params(s)).iloc[0]
    return pd.DataFrame({"route": [spec.ALL], "patients": [int(r["patients"])],
                         "patients" + KEY_SUFFIX: [int(r["patients" + KEY_SUFFIX])]})


def cohort_funnel(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """metrics.md "Cohort funnel": per patient route and ALL; never-dosed patients count only in ALL."""
    return funnel_from_counts(_outcome_counts(con, s))


def funnel_from_counts(df: pd.DataFrame) -> pd.DataFrame:
    """The funnel from queries/outcome_counts.sql's rows (shared with response_by_route by the export)."""
    routes = df[~df["is_total"] & df["route"].notna()]
    total = df[df["is_total"]]
    keys = [c + KEY_SUFFIX for c in FUNNEL_COLUMNS if c + KEY_SUFFIX in df.columns]
    rows = [{"route": r["route"], **{c: int(r[c]) for c in (*FUNNEL_COLUMNS, *keys)}} for _, r in routes.iterrows()]
    if len(total):
        rows.append({"route": spec.ALL, **{c: int(total.iloc[0][c]) for c in (*FUNNEL_COLUMNS, *keys)}})
    else:
        rows.append({"route": spec.ALL, **{c: 0 for c in (*FUNNEL_COLUMNS, *keys)}})
    return _order_routes(pd.DataFrame(rows, columns=["route", *FUNNEL_COLUMNS, *keys]))


RESPONSE_COLUMNS = (
    "route", "patients", "evaluable", "responders", "response_rate", "response_ci_low", "response_ci_high",
    "remitters", "remission_rate", "remission_ci_low", "remission_ci_high",
)


def _response_row(s: Settings, eligible: int, with_endpoint: int, responders: int, remitters: int) -> dict[str, Any]:
    evaluable = eligible if s.population == "itt" else with_endpoint
    rate, lo, hi = wilson(responders, evaluable)
    rrate, rlo, rhi = wilson(remitters, evaluable)
    return {
        "patients": eligible, "evaluable": evaluable,
        "responders": responders, "response_rate": rate, "response_ci_low": lo, "response_ci_high": hi,
        "remitters": remitters, "remission_rate": rrate, "remission_ci_low": rlo, "remission_ci_high": rhi,
    }


def _response_keys(s: Settings, r: Any) -> dict[str, int]:
    """The cell keys of a response row's counts, from an outcome_counts row (empty if it has none)."""
    if "eligible" + KEY_SUFFIX not in r:
        return {}
    evaluable = "eligible" if s.population == "itt" else "with_endpoint"
    return {"patients" + KEY_SUFFIX: int(r["eligible" + KEY_SUFFIX]),
            "evaluable" + KEY_SUFFIX: int(r[evaluable + KEY_SUFFIX]),
            "responders" + KEY_SUFFIX: int(r["responders" + KEY_SUFFIX]),
            "remitters" + KEY_SUFFIX: int(r["remitters" + KEY_SUFFIX])}


def response_by_route(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """metrics.md "Response by route": eligible patients, the evaluable denominator of the population,
    responders and remitters with 95 % Wilson intervals; routes without eligible patients left out."""
    return response_from_counts(s, _outcome_counts(con, s))


def response_from_counts(s: Settings, df: pd.DataFrame) -> pd.DataFrame:
    """Response by route from queries/outcome_counts.sql's rows."""
    rows = []
    for _, r in df.iterrows():
        if not r["is_total"] and (pd.isna(r["route"]) or r["eligible"] == 0):
            continue
        route = spec.ALL if r["is_total"] else r["route"]
        rows.append({"route": route, **_response_row(s, int(r["eligible"]), int(r["with_endpoint"]),
                                                      int(r["responders"]), int(r["remitters"])),
                     **_response_keys(s, r)})
    if not any(row["route"] == spec.ALL for row in rows):
        rows.append({"route": spec.ALL, **_response_row(s, 0, 0, 0, 0)})
    out = pd.DataFrame(rows)
    return _order_routes(_keyed(out.reindex(columns=list(dict.fromkeys([*RESPONSE_COLUMNS, *out.columns]))),
                                RESPONSE_COLUMNS).fillna({c: 0 for c in out.columns if c.endswith(KEY_SUFFIX)}))


def breakdown(con: duckdb.DuckDBPyConnection, s: Settings, by: str) -> pd.DataFrame:
    """Response by route within each site, primary diagnosis or baseline severity band (`by`)."""
    if by not in BREAKDOWNS:
        raise ValueError(f"breakdown by {by!r}: expected one of {', '.join(BREAKDOWNS)}")
    df = _outcome_counts(con, s, by=by)
    df = df[df["grp"].notna() & (df["eligible"] > 0)]
    rows = []
    for r in df.to_dict("records"):  # not iterrows: a Series per group x route
        if not r["is_total"] and pd.isna(r["route"]):
            continue
        row = _response_row(s, int(r["eligible"]), int(r["with_endpoint"]), int(r["responders"]), int(r["remitters"]))
        keys = _response_keys(s, r)
        rows.append({
            "group": r["grp"], "route": spec.ALL if r["is_total"] else r["route"],
            **{k: row[k] for k in ("evaluable", "responders", "response_rate", "response_ci_low", "response_ci_high")},
            **{k: v for k, v in keys.items() if k.removesuffix(KEY_SUFFIX) in ("evaluable", "responders")},
        })
    columns = ["group", "route", "evaluable", "responders", "response_rate", "response_ci_low", "response_ci_high"]
    if "eligible" + KEY_SUFFIX in df.columns:
        columns += ["evaluable" + KEY_SUFFIX, "responders" + KEY_SUFFIX]
    out = pd.DataFrame(rows, columns=columns)
    order = {"diagnosis": spec.DIAGNOSES, "severity": spec.SEVERITY_BANDS}.get(by)
    out["_g"] = out["group"].map(lambda g: order.index(g) if order and g in order else 0)
    out["_r"] = out["route"].map(_route_rank)
    sort_keys = ["_g", "group", "_r"] if order is None else ["_g", "_r"]
    return out.sort_values(sort_keys, kind="stable").drop(columns=["_g", "_r"]).reset_index(drop=True)


@dataclass(frozen=True)
class RouteComparison:
    """Routes compared on response or remission: chi-square across routes and every pair's difference."""

    outcome: str
    chi2: float
    dof: int
    p_value: float
    pairwise: pd.DataFrame


PAIRWISE_COLUMNS = ("route_a", "route_b", "n_a", "n_b", "rate_a", "rate_b", "difference", "ci_low", "ci_high",
                    "p_value", "p_adjusted")


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (1998, method 10) built from SciPy's Wilson limits."""
    p1, l1, u1 = wilson(k1, n1)
    p2, l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


try:  # the hypergeometric ufuncs behind scipy.stats.hypergeom (see fisher_p)
    from scipy.special import _ufuncs as _hypergeom_ufuncs

    _HYPERGEOM = (_hypergeom_ufuncs._hypergeom_pmf, _hypergeom_ufuncs._hypergeom_cdf,
                  _hypergeom_ufuncs._hypergeom_sf)
except (ImportError, AttributeError):
    _HYPERGEOM = None


def fisher_p(table: list[list[int]]) -> float:
    """The two-sided p-value of Fisher's exact test on the 2 × 2 table [[a, b], [c, d]], exactly as
    `stats.fisher_exact(table).pvalue` computes it.

    SciPy's algorithm (mode, the table's probability, a binary search for the other tail) evaluates the
    hypergeometric distribution 10-20 times per table through `stats.hypergeom`'s generic wrapper, whose
    argument checks cost far more than the values (about 3 ms a table, 50 ms for a page's pairs of routes).
    This is the same algorithm step for step, calling the same ufuncs with the wrapper's support and
    clipping rules, so every p-value is bit-identical; `stats.fisher_exact` remains the fallback should SciPy
    move those ufuncs (tests/test_metrics.py compares both on many tables)."""
    if _HYPERGEOM is None:
        return float(stats.fisher_exact(table).pvalue)
    pmf_u, cdf_u, sf_u = _HYPERGEOM
    c = np.asarray(table, dtype=np.int64)
    if 0 in c.sum(axis=0) or 0 in c.sum(axis=1):
        return 1.0
    n1 = c[0, 0] + c[0, 1]
    n2 = c[1, 0] + c[1, 1]
    n = c[0, 0] + c[1, 0]
    total = n1 + n2
    lo, hi = max(n - (total - n1), 0), min(n1, n)  # the support, as hypergeom._get_support

    # hypergeom.pmf / cdf / sf(x, total, n1, n) for integer x: 0 or 1 outside the support, else the ufunc
    # clipped to [0, 1]
    def pmf(x: Any) -> np.float64:
        return np.float64(np.clip(pmf_u(x, n1, n, total), 0, 1)) if lo <= x <= hi else np.float64(0.0)

    def cdf(x: Any) -> np.float64:
        if x >= hi:
            return np.float64(1.0)
        return np.float64(np.clip(cdf_u(x, n1, n, total), 0, 1)) if x >= lo else np.float64(0.0)

    def sf(x: Any) -> np.float64:
        if x < lo:
            return np.float64(1.0)
        return np.float64(np.clip(sf_u(x, n1, n, total), 0, 1)) if x < hi else np.float64(0.0)

    mode = int((n + 1) * (n1 + 1) / (n1 + n2 + 2))
    pexact = pmf(c[0, 0])
    pmode = pmf(mode)
    epsilon = 1e-14
    gamma = 1 + epsilon
    with np.errstate(divide="ignore", invalid="ignore"):
        same = np.abs(pexact - pmode) / np.maximum(pexact, pmode) <= epsilon
    if same:
        return 1.0
    if c[0, 0] < mode:
        plower = cdf(c[0, 0])
        if pmf(n) > pexact * gamma:
            return float(plower)
        guess = _binary_search(lambda x: -pmf(x), -pexact * gamma, mode, n)
        pvalue = plower + sf(guess)
    else:
        pupper = sf(c[0, 0] - 1)
        if pmf(0) > pexact * gamma:
            return float(pupper)
        guess = _binary_search(pmf, pexact * gamma, 0, mode)
        pvalue = pupper + cdf(guess)
    return float(min(pvalue, 1.0))


def _binary_search(a: Any, d: float, lo: int, hi: int) -> int:
    """SciPy's `_binary_search_for_binom_tst` (scipy/stats/_binomtest.py), which fisher_exact uses: the i
    between lo and hi with a(i) <= d < a(i + 1), a ascending."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        midval = a(mid)
        if midval < d:
            lo = mid + 1
        elif midval > d:
            hi = mid - 1
        else:
            return mid
    if a(lo) <= d:
        return lo
    return lo - 1


def route_comparison(con: duckdb.DuckDBPyConnection, s: Settings, outcome: str = "response") -> RouteComparison:
    """Pearson chi-square (no continuity correction) on the routes × outcome table, and for every pair of
    routes the difference in rates (Newcombe interval) with Fisher's exact p and Benjamini–Hochberg.

    Once per connection, state and outcome while it stays among the recent results (the Overview's headline
    and the Response page compare the same routes; 15-20 ms of tests at 100,000 patients); `pairwise` is the
    caller's own copy. Raises ValueError for an outcome other than "response" or "remission"."""
    if outcome not in ("response", "remission"):
        raise ValueError(f"outcome {outcome!r}: expected 'response' or 'remission'")
    result = _remembered(con, "route_comparison", {"settings": repr(s), "outcome": outcome},
                         lambda: _route_comparison(con, s, outcome), lambda r: _frame_bytes(r.pairwise))
    return replace(result, pairwise=result.pairwise.copy())


def _route_comparison(con: duckdb.DuckDBPyConnection, s: Settings, outcome: str) -> RouteComparison:
    count_col = "responders" if outcome == "response" else "remitters"
    table = response_by_route(con, s)
    table = table[(table["route"] != spec.ALL) & (table["evaluable"] > 0)]
    k = table[count_col].to_numpy(dtype=int)
    n = table["evaluable"].to_numpy(dtype=int)
    if s.min_cell > 0 and f"{count_col}__key" in table.columns and "evaluable__key" in table.columns:
        # Protection on: every figure (rates, differences, tests) from the counts response_by_route.csv
        # publishes (each perturbed by its cell key), so no rate or p-value gives exact counts back. Counts
        # under the minimum cell keep their exact value: response_by_route.csv hides them, and disclosure
        # (_protect_pairwise) recognises them and hides every comparison resting on them.
        shown = n >= s.min_cell
        n = np.where(shown, [disclosure.perturbed(int(v), int(c), s.min_cell)
                             for v, c in zip(n, table["evaluable__key"])], n)
        k = np.where(shown & (k >= s.min_cell), [disclosure.perturbed(int(v), int(c), s.min_cell)
                                                 for v, c in zip(k, table[f"{count_col}__key"])], k)
        k = np.minimum(k, n)
    chi2, dof, p = NAN, 0, NAN
    if len(table) >= 2 and 0 < k.sum() < n.sum():
        res = stats.chi2_contingency(np.column_stack([k, n - k]), correction=False)
        chi2, dof, p = float(res.statistic), int(res.dof), float(res.pvalue)
    rows = []
    routes = table["route"].tolist()
    for i, j in combinations(range(len(routes)), 2):
        d, lo, hi = newcombe_difference(k[i], n[i], k[j], n[j])
        p_value = fisher_p([[k[i], n[i] - k[i]], [k[j], n[j] - k[j]]])
        rows.append({
            "route_a": routes[i], "route_b": routes[j], "n_a": int(n[i]), "n_b": int(n[j]),
            "rate_a": k[i] / n[i], "rate_b": k[j] / n[j], "difference": d, "ci_low": lo, "ci_high": hi,
            "p_value": p_value,
        })
    pairwise = pd.DataFrame(rows, columns=list(PAIRWISE_COLUMNS[:-1]))
    pairwise["p_adjusted"] = survival.benjamini_hochberg(pairwise["p_value"].to_numpy(dtype=float))
    return RouteComparison(outcome, chi2, dof, p, pairwise)


# --- time to relief ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliefResult:
    """Time to symptom relief: per-route summary, the full step curves and the pairwise log-rank tests."""

    summary: pd.DataFrame
    curve: pd.DataFrame
    logrank: pd.DataFrame
    at_risk: pd.DataFrame  # route, day, at_risk: patients still followed and not yet relieved (at_risk_days)




AT_RISK_MAX_POINTS = 100  # 100 four-weekly steps is 7.7 years of follow-up; longer follow-up takes longer steps


def at_risk_days(last: float) -> np.ndarray:
    """The days of the numbers-at-risk table: 0, then weekly (fortnightly when follow-up runs past 12 weeks,
    four-weekly past 24, a multiple of four weeks keeping at most AT_RISK_MAX_POINTS steps past 2,800 days),
    through the first such day at or after `last`. The chart shows exactly these days,
    so disclosure control thins the same grid the reader sees."""
    if not last > 0:
        return np.array([0])
    step = 7 if last <= 84 else 14 if last <= 168 else 28
    # at most AT_RISK_MAX_POINTS steps, whatever the longest follow-up: the grid's size must follow the number
    # of rows, never a single value (one implausible day once built a grid of 300 million points)
    step *= max(1, math.ceil(last / (step * AT_RISK_MAX_POINTS)))
    return np.arange(0, int(math.ceil(last / step)) * step + 1, step)


RELIEF_COLUMNS = (
    "route", "patients", "events", "censored", "median_days", "median_ci_low", "median_ci_high",
    *(f"relieved_by_day_{d}" for d in spec.RELIEF_DAYS),
)
CURVE_COLUMNS = ("route", "day", "at_risk", "events", "relieved", "ci_low", "ci_high")
AT_RISK_COLUMNS = ("route", "day", "at_risk")


def _groups_by_route(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per route present (spec order) and ALL: one time and event flag per patient.

    The queries return how many patients share each (route, time, event), so a million patients arrive as
    a few thousand rows; the arrays SciPy receives hold every patient again (np.repeat)."""
    time = df["time"].to_numpy(dtype=float)
    event = df["event"].to_numpy(dtype=bool)
    count = df["patients"].to_numpy(dtype=np.int64)
    route = df["route"].to_numpy(dtype=object)
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for r in spec.ROUTES:
        mask = route == r
        if mask.any():
            groups[r] = (np.repeat(time[mask], count[mask]), np.repeat(event[mask], count[mask]))
    groups[spec.ALL] = (np.repeat(time, count), np.repeat(event, count))
    return groups


def _count_groups_by_route(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """As `_groups_by_route`, but the groups as they come, (times, events, patients), for
    `survival.fit_counts`: the same routes in the same order, without one value per patient."""
    time = df["time"].to_numpy(dtype=float)
    event = df["event"].to_numpy(dtype=bool)
    count = df["patients"].to_numpy(dtype=np.int64)
    route = df["route"].to_numpy(dtype=object)
    groups = {r: (time[route == r], event[route == r], count[route == r]) for r in spec.ROUTES if (route == r).any()}
    groups[spec.ALL] = (time, event, count)
    return groups


def _at_risk_counts(route: str, times: np.ndarray, counts: np.ndarray, days: np.ndarray) -> list[dict[str, Any]]:
    """The numbers-at-risk rows of one route from its (time, patients) groups: on day d, the patients whose
    relief (or censoring) time is at or after d, as in the Kaplan–Meier risk sets."""
    order = np.argsort(times, kind="stable")
    ordered, before = times[order], np.concatenate(([0], np.cumsum(counts[order])))
    total = int(before[-1])
    left = before[np.searchsorted(ordered, days, side="left")]  # patients with time before d
    return [{"route": route, "day": int(d), "at_risk": int(total - n)} for d, n in zip(days, left)]


def _curve_rows(route: str, km: survival.KaplanMeier, shown: survival.KaplanMeier,
                keys: "_GroupKeys") -> dict[str, np.ndarray]:
    """The step curve at the exact fit's times, as columns (CURVE_COLUMNS and the two keys): at_risk and
    events are exact counts, each with its cell key for `disclosure.protect` to perturb; the heights and band
    are read off `shown`, the fit to the perturbed groups (the exact fit itself when protection is off).

    Whole columns at once (a curve has a point per distinct time: thousands per route at 100,000 patients);
    every value is the one `shown.survival_at` / `shown.band_at` give at that time."""
    # The curve starts at day 0 with everyone at risk and nobody relieved (no follow-up has t = 0).
    times = np.asarray(km.times, dtype=float)
    if shown.n == 0:
        surv = low = high = np.full(times.size, NAN)
    else:
        # S and the band just after t (right-continuous); 1 before the first time, as survival_at / band_at
        i = np.searchsorted(shown.times, times, side="right")
        surv = np.concatenate([[1.0], shown.survival])[i]
        low = np.concatenate([[1.0], shown.ci_low])[i]
        high = np.concatenate([[1.0], shown.ci_high])[i]
    days = np.concatenate([[0.0], times])
    risk, events = keys.at_risk(days), keys.events_on(days)
    risk[0] = keys.total()  # day 0: everyone
    return {
        "route": [route] * days.size, "day": days,
        "at_risk": np.concatenate([[km.n], km.at_risk]).astype(np.int64),
        "events": np.concatenate([[0], km.events]).astype(np.int64),
        "relieved": np.concatenate([[0.0], 1.0 - surv]), "ci_low": np.concatenate([[0.0], 1.0 - high]),
        "ci_high": np.concatenate([[0.0], 1.0 - low]),
        "at_risk__key": np.asarray(risk, dtype=np.int64), "events__key": np.asarray(events, dtype=np.int64),
    }


@dataclass(frozen=True)
class _GroupKeys:
    """The (time, event, cell key) groups of one route's relief times: the cell key of any set of them is the sum
    of theirs modulo 2^32 (queries/relief_times.sql), so every count time to relief shows gets the key of
    exactly the patients it counts."""

    time: np.ndarray
    event: np.ndarray
    key: np.ndarray

    def total(self, mask: np.ndarray | None = None) -> int:
        return int(self.key[mask].sum() % disclosure.CELL_KEY_MODULUS) if mask is not None \
            else int(self.key.sum() % disclosure.CELL_KEY_MODULUS)

    def at_risk(self, days: np.ndarray) -> np.ndarray:
        """Keys of the patients at risk on each day (relief or censoring time at or after it)."""
        order = np.argsort(self.time, kind="stable")
        t, k = self.time[order], self.key[order]
        suffix = np.concatenate([np.cumsum(k[::-1])[::-1], [0]]) % disclosure.CELL_KEY_MODULUS
        return suffix[np.searchsorted(t, days, side="left")]

    def events_on(self, days: np.ndarray) -> np.ndarray:
        """Keys of the patients relieved on exactly each day (0 on a day without relief)."""
        # the keys of the relieved groups summed per distinct time (int64: a few thousand keys < 2^32 cannot
        # overflow), then looked up for every day at once
        times, where = np.unique(self.time[self.event], return_inverse=True)
        sums = np.zeros(times.size, dtype=np.int64)
        np.add.at(sums, where, self.key[self.event])
        days = np.asarray(days, dtype=float)
        if times.size == 0:
            return np.zeros(days.size, dtype=np.int64)
        pos = np.minimum(np.searchsorted(times, days), times.size - 1)
        return np.where(times[pos] == days, sums[pos] % disclosure.CELL_KEY_MODULUS, 0).astype(np.int64)


def _group_keys(df: pd.DataFrame) -> dict[str, _GroupKeys]:
    """Per route present and ALL, as `_groups_by_route`: the groups with their cell keys."""
    time = df["time"].to_numpy(dtype=float)
    event = df["event"].to_numpy(dtype=bool)
    key = df["patients__key"].to_numpy(dtype=np.int64) if "patients__key" in df.columns else np.zeros(len(df), np.int64)
    route = df["route"].to_numpy(dtype=object)
    out = {r: _GroupKeys(time[route == r], event[route == r], key[route == r]) for r in spec.ROUTES if (route == r).any()}
    out[spec.ALL] = _GroupKeys(time, event, key)
    return out


def perturbed_groups(df: pd.DataFrame) -> pd.DataFrame:
    """The relief times with each (route, time, event) group's count replaced by count + the noise its cell key
    selects (disclosure.noise), never below 0: the records the Kaplan–Meier heights, medians and log-rank tests
    are computed from when protection is on (docs/metrics.md "Protecting counts across filter states"). The
    same group of patients gets the same noise in every filter state, so no figure averages it away, and a
    curve height recovered as a fraction gives perturbed counts, never the exact ones."""
    out = df.copy()
    keys = out["patients__key"].to_numpy(dtype=np.int64)
    noise = disclosure.noise_array(keys)
    out["patients"] = np.maximum(out["patients"].to_numpy(dtype=np.int64) + noise, 0)
    return out[out["patients"] > 0].reset_index(drop=True)


def _relief_tables(con: duckdb.DuckDBPyConnection, s: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, curve, at_risk) of time to relief, remembered: the summary file, the curve file and the
    relief page's at-risk table all come from one set of fits.

    Counts (patients, events, censored; at risk and events on the curve and the at-risk table) are exact, each
    with its cell key (`<count>__key`) for `disclosure.protect` to perturb. With a minimum cell above 0 the
    heights (relieved by a day, the curve, its band) and the median come from a second fit, to
    `perturbed_groups`: an exact height is a fraction whose small denominator would give back exact counts."""
    params = _params(s, min_baseline=s.baseline_minimum, relief=s.relief)
    protected = s.min_cell > 0

    def compute() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        df = run_query(con, "relief_times", params)
        # Kaplan–Meier fits on the (time, event, patients) groups: survival.fit_counts gives fit's values
        groups = _count_groups_by_route(df)
        keys = _group_keys(df)
        shown_groups = _count_groups_by_route(perturbed_groups(df)) if protected else groups
        days = at_risk_days(float(df["time"].max()) if len(df) else 0.0)
        summary, curve, at_risk = [], [], []
        for route, (times, events, counts) in groups.items():
            km = survival.fit_counts(times, events, counts)
            if route != spec.ALL and km.n == 0:
                continue
            none = (np.array([]), np.array([], dtype=bool), np.array([], dtype=np.int64))
            shown = survival.fit_counts(*shown_groups.get(route, none)) if protected else km
            median, lo, hi = shown.median()
            g = keys[route]
            summary.append({
                "route": route, "patients": km.n, "events": km.n_events, "censored": km.n - km.n_events,
                "median_days": median, "median_ci_low": lo, "median_ci_high": hi,
                **{f"relieved_by_day_{d}": 1.0 - shown.survival_at(d) for d in spec.RELIEF_DAYS},
                "patients__key": g.total(), "events__key": g.total(g.event), "censored__key": g.total(~g.event),
            })
            if km.n:
                curve.append(_curve_rows(route, km, shown, g))
                at_risk.extend(dict(r, at_risk__key=int(c))
                               for r, c in zip(_at_risk_counts(route, times, counts, days), g.at_risk(days)))
        return (pd.DataFrame(summary, columns=[*RELIEF_COLUMNS, "patients__key", "events__key", "censored__key"]),
                pd.DataFrame({c: np.concatenate([part[c] for part in curve]) if c != "route"
                              else [r for part in curve for r in part[c]] for c in curve[0]})
                if curve else pd.DataFrame([], columns=[*CURVE_COLUMNS, "at_risk__key", "events__key"]),
                pd.DataFrame(at_risk, columns=[*AT_RISK_COLUMNS, "at_risk__key"]))

    # the memo's key names the fits: protected heights differ from exact ones for the same filters
    return _remembered(con, "relief_tables", {**params, "perturbed_heights": protected}, compute,
                       lambda v: _frame_bytes(*v))


def time_to_relief(con: duckdb.DuckDBPyConnection, s: Settings, *, logrank: bool = True) -> ReliefResult:
    """metrics.md "Time to symptom relief": Kaplan–Meier per route and ALL, log-rank between routes
    (`logrank=False` skips the tests, leaving `.logrank` empty, for callers that do not show them)."""
    summary, curve, at_risk = _relief_tables(con, s)
    groups = {}
    tests = survival.pairwise_logrank({})
    if logrank:
        df = run_query(con, "relief_times", _params(s, min_baseline=s.baseline_minimum, relief=s.relief))
        # With protection on, the tests run on the perturbed groups like the heights; each pair's n_a / n_b are
        # the exact route counts with the route's key, so protect shows them as time_to_relief.csv shows them.
        tested = perturbed_groups(df) if s.min_cell > 0 else df
        groups = {r: g for r, g in _groups_by_route(tested).items() if r != spec.ALL}
        tests = survival.pairwise_logrank(groups)
        exact = {r: len(g[0]) for r, g in _groups_by_route(df).items()}
        keys = {r: g.total() for r, g in _group_keys(df).items()}
        for side in ("a", "b"):
            tests[f"n_{side}"] = [exact.get(r, 0) for r in tests[f"route_{side}"]]
            tests[f"n_{side}__key"] = [keys.get(r, 0) for r in tests[f"route_{side}"]]
    return ReliefResult(summary.copy(), curve.copy(), tests, at_risk.copy())


# --- side effects -----------------------------------------------------------------------------------------

# Per-patient incidence gets a Wilson interval; per-session rates do not (sessions of one patient are not
# independent, so a binomial interval over sessions would be too narrow).
SIDE_EFFECT_COLUMNS = ("route", "event", "sessions", "sessions_with_event", "session_rate", "patients",
                       "patients_with_event", "patient_rate", "patient_ci_low", "patient_ci_high")


def _event_rank(event: str) -> int:
    return spec.SUMMARY_EVENTS.index(event) if event in spec.SUMMARY_EVENTS else len(spec.SUMMARY_EVENTS)


def side_effects(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """metrics.md "Side effects": per session route × event type (bp_severe included), zeros included."""
    df = run_query(con, "side_effect_counts", _params(s, events=list(spec.SUMMARY_EVENTS)))
    df = _label_routes(df)
    if df.empty:
        df = pd.DataFrame({"route": spec.ALL, "event": list(spec.SUMMARY_EVENTS), "sessions": 0,
                           "sessions_with_event": 0, "patients": 0, "patients_with_event": 0})
    for c in ("sessions", "sessions_with_event", "patients", "patients_with_event"):
        df[c] = df[c].astype("int64")
    df["session_rate"] = [_ratio(a, b) for a, b in zip(df["sessions_with_event"], df["sessions"])]
    df = _add_rate(df, "patients_with_event", "patients", "patient_rate", "patient")
    df = df.assign(_e=df["event"].map(_event_rank))
    return _keyed(_order_routes(df, then=("_e",)).drop(columns="_e"), SIDE_EFFECT_COLUMNS)


def side_effect_severity(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Sessions with each event type at each severity, per session route and ALL (zeros included)."""
    df = run_query(con, "side_effect_severity", _params(s, events=list(spec.EVENTS), severity_levels=list(spec.SEVERITIES)))
    df = _label_routes(df)
    df["sessions_with_event"] = df["sessions_with_event"].astype("int64")
    df = df.assign(_e=df["event"].map(_event_rank), _s=df["severity"].map(spec.SEVERITIES.index))
    keys = [c for c in ("sessions_with_event__key",) if c in df.columns]  # for disclosure.protect to perturb with
    return _order_routes(df, then=("_e", "_s")).drop(columns=["_e", "_s"])[
        ["route", "event", "severity", "sessions_with_event", *keys]]


def side_effect_by_session_number(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Side effects by session number (1 = first session; spec.LAST_SESSION_NUMBER pools that session and all
    later ones), per session route and ALL."""
    df = run_query(con, "side_effect_by_session_number", _params(
        s, events=list(spec.SUMMARY_EVENTS), last_session_number=spec.LAST_SESSION_NUMBER, **_bp_params()))
    df = _label_routes(df)
    for c in ("session_number", "sessions", "sessions_with_event"):
        df[c] = df[c].astype("int64")
    df["session_rate"] = [_ratio(a, b) for a, b in zip(df["sessions_with_event"], df["sessions"])]
    df = df.assign(_e=df["event"].map(_event_rank))
    keys = [c for c in ("sessions__key", "sessions_with_event__key") if c in df.columns]  # for disclosure.protect
    return _order_routes(df, then=("_e", "session_number")).drop(columns="_e")[
        ["route", "event", "session_number", "sessions", "sessions_with_event", "session_rate", *keys]]


BLOOD_PRESSURE_COLUMNS = ("route", "patients", "sessions_with_vitals", "sbp_peak_median", "dbp_peak_median",
                          "sbp_rise_median", "dbp_rise_median", "sessions_sbp_180", "sessions_dbp_110",
                          "sessions_bp_severe", "share_bp_severe")
_BP_KEYS = tuple(f"{c}__key" for c in ("patients", "sessions_with_vitals", "sessions_sbp_180", "sessions_dbp_110",
                                        "sessions_bp_severe"))


def median_of_counts(counts: dict | None) -> float:
    """The median of values given as {value: count}, exactly as quantile_cont(x, 0.5) (the mean of the two
    middle values when there is an even number); NaN when there are none. Queries send a distribution
    rather than a median where that lets the database count values instead of sorting millions of rows."""
    if not isinstance(counts, dict) or not counts:  # NULL (no values) arrives as None or NaN
        return NAN
    keys = sorted(counts)
    values = np.array(keys, dtype=float)
    cumulative = np.cumsum([counts[v] for v in keys])
    position = (int(cumulative[-1]) - 1) / 2
    lo = values[np.searchsorted(cumulative, math.floor(position) + 1)]
    hi = values[np.searchsorted(cumulative, math.ceil(position) + 1)]
    return float(lo + (position - math.floor(position)) * (hi - lo))


def blood_pressure(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Peak blood pressure and its rise over sessions with vitals, per session route and ALL.

    The query returns each route's counts and the distribution of each measure (value -> sessions); the
    medians are read off the distributions (ALL: the routes' distributions added up)."""
    df = run_query(con, "blood_pressure", _params(s))
    counts = df[df["measure"].isna()]
    dist = df[df["measure"].notna()]
    # {(route, measure): {value: sessions}}, and ALL's distributions as the routes' added up (plain Python
    # over a few thousand rows: far cheaper than pandas group-bys of that size)
    spread: dict[tuple[str, str], dict] = {}
    for route, measure, value, sessions in zip(dist["route"].tolist(), dist["measure"].tolist(),
                                               dist["value"].tolist(), dist["sessions"].tolist()):
        value, sessions = int(value), int(sessions)
        per_route = spread.setdefault((route, measure), {})
        per_route[value] = per_route.get(value, 0) + sessions
        overall = spread.setdefault((spec.ALL, measure), {})
        overall[value] = overall.get(value, 0) + sessions
    rows = []
    for _, r in counts.iterrows():
        route = spec.ALL if pd.isna(r["route"]) else r["route"]
        row = {"route": route, **{c: int(r[c]) for c in ("patients", "sessions_with_vitals", "sessions_sbp_180",
                                                           "sessions_dbp_110", "sessions_bp_severe")}}
        for measure in ("sbp_peak", "dbp_peak", "sbp_rise", "dbp_rise"):
            row[f"{measure}_median"] = median_of_counts(spread.get((route, measure)))
        row["share_bp_severe"] = _ratio(row["sessions_bp_severe"], row["sessions_with_vitals"])
        row.update({c: int(r[c]) for c in _BP_KEYS if c in r.index and pd.notna(r[c])})
        rows.append(row)
    if not any(row["route"] == spec.ALL for row in rows):  # no session with vitals: ALL holds zeros
        rows.append({"route": spec.ALL, "patients": 0, "sessions_with_vitals": 0, "sessions_sbp_180": 0,
                     "sessions_dbp_110": 0, "sessions_bp_severe": 0, "share_bp_severe": NAN,
                     **{f"{m}_median": NAN for m in ("sbp_peak", "dbp_peak", "sbp_rise", "dbp_rise")}})
    keys = [c for c in _BP_KEYS if c in df.columns]  # cell keys, for disclosure.protect to perturb with
    out = pd.DataFrame(rows, columns=[*BLOOD_PRESSURE_COLUMNS, *keys])
    for c in keys:
        out[c] = out[c].fillna(0).astype("int64")
    return _order_routes(out)[[*BLOOD_PRESSURE_COLUMNS, *keys]]


# --- maintenance ------------------------------------------------------------------------------------------

MAINTENANCE_COLUMNS = (
    "route", "responders", "responders_in_maintenance", "uptake_rate", "uptake_ci_low", "uptake_ci_high",
    "maintenance_patients",
    "maintenance_sessions", "median_days_to_first_maintenance", "median_interval_days",
    "sessions_per_patient_month", "sustained_patients", "sustained_response_8w", "sustained_ci_low",
    "sustained_ci_high",
)


def maintenance(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """metrics.md "Maintenance": uptake among responders (observed, whatever the population setting),
    timing and intensity over maintenance patients, and Kaplan–Meier sustained response at 8 weeks.

    Remembered like the relief tables: the Maintenance page's summary and projection share one computation."""
    params = _outcome_params(s)
    return _remembered(con, "maintenance", params, lambda: _maintenance(con, params), _frame_bytes).copy()


_INTENSITY_COLUMNS = ("responders", "responders_in_maintenance", "maintenance_patients", "maintenance_sessions",
                      "maintenance_span_days")


def maintenance_intensity(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """The rows and columns of `maintenance` the Overview's headline reads, with the same values and cell
    keys: counts, uptake, sessions per patient-month and sustained response; the two timing medians
    (`median_days_to_first_maintenance`, `median_interval_days`) are left out.

    The counts are added up from the filter state's outcome_counts_by_site_quarter.sql rows (the Overview
    scans those anyway), so the headline needs only the sustained-response times beyond them, not
    maintenance_counts.sql with its per-patient gaps (~60 ms at 100,000 patients). Patients without a session
    have no route and count nowhere here, as in maintenance_counts.sql (`WHERE n_sessions > 0`).
    Protected with the maintenance rule, these columns hide exactly what maintenance.csv hides: each count
    column's suppression depends on that column alone (and its base), never on the medians."""
    params = _outcome_params(s)
    cube = site_quarter_counts(con, s)
    counts = counts_from_site_quarter(cube[cube["route"].notna()], s.effective_sites, None, _INTENSITY_COLUMNS)
    counts = counts[counts["is_total"] | counts["route"].notna()]
    if not counts["is_total"].any():  # ROLLUP gives a total row even over no patients
        counts = pd.concat([counts, pd.DataFrame({"grp": [None], "route": pd.array([None], dtype="str"),
                                                  "is_total": [True],
                                                  **{c: [0] for c in counts.columns[3:]}})], ignore_index=True)
    counts = _label_routes(counts.drop(columns="grp"))
    counts["median_days_to_first_maintenance"] = NAN
    counts["interval_counts"] = None
    return _maintenance_table(counts, run_query(con, "sustained_times", params)).drop(
        columns=["median_days_to_first_maintenance", "median_interval_days"])


def _maintenance(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> pd.DataFrame:
    return _maintenance_table(_label_routes(run_query(con, "maintenance_counts", params)),
                              run_query(con, "sustained_times", params))


def maintenance_response(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """`response_by_route`'s table (the same rows and counts, without cell keys) from maintenance_counts.sql's
    rows, which `maintenance` reads anyway: the Maintenance page hides maintenance.csv's responders where
    response_by_route.csv hides them (export.protect_table) without scanning the outcome counts as well.
    Suppression decides on exact counts, so the keys, which only move shown values, are not needed."""
    df = run_query(con, "maintenance_counts", _outcome_params(s))
    count_cols = ["eligible", "with_endpoint", "responders", "remitters"]
    df[count_cols] = df[count_cols].astype("int64")
    return response_from_counts(s, df)


def _maintenance_table(counts: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    """`maintenance`'s table from maintenance_counts.sql's rows (routes labelled) and sustained_times.sql's."""
    sustained = {}
    for route, (t, e, c) in _count_groups_by_route(times).items():
        km = survival.fit_counts(t, e, c)
        lo, hi = km.band_at(spec.SUSTAINED_DAYS)
        sustained[route] = (km.n, km.survival_at(spec.SUSTAINED_DAYS), lo, hi)
    rows = []
    for _, r in counts.iterrows():
        span = r["maintenance_span_days"]
        months = float(span) / spec.DAYS_PER_MONTH if pd.notna(span) else 0.0
        rows.append({
            "route": r["route"],
            "responders": int(r["responders"]),
            "responders_in_maintenance": int(r["responders_in_maintenance"]),
            **dict(zip(("uptake_rate", "uptake_ci_low", "uptake_ci_high"),
                       wilson(r["responders_in_maintenance"], r["responders"]))),
            "maintenance_patients": int(r["maintenance_patients"]),
            "maintenance_sessions": int(r["maintenance_sessions"]),
            "median_days_to_first_maintenance": _float(r["median_days_to_first_maintenance"]),
            "median_interval_days": median_of_counts(r["interval_counts"]),
            "sessions_per_patient_month": int(r["maintenance_sessions"]) / months if months > 0 else NAN,
            **dict(zip(("sustained_patients", "sustained_response_8w", "sustained_ci_low", "sustained_ci_high"),
                       sustained.get(r["route"], (0, NAN, NAN, NAN)))),
            **{c: int(r[c]) for c in _MAINTENANCE_KEYS if c in r},
        })
    if not rows:
        rows.append({"route": spec.ALL, "responders": 0, "responders_in_maintenance": 0, "uptake_rate": NAN,
                     "maintenance_patients": 0, "maintenance_sessions": 0, "sustained_patients": 0})
    out = pd.DataFrame(rows)
    out = out.reindex(columns=list(dict.fromkeys([*MAINTENANCE_COLUMNS, *out.columns])))
    return _order_routes(_keyed(out, MAINTENANCE_COLUMNS).fillna({c: 0 for c in _MAINTENANCE_KEYS if c in out}))


_MAINTENANCE_KEYS = tuple(c + "__key" for c in ("responders", "responders_in_maintenance", "maintenance_patients",
                                                 "maintenance_sessions"))
UPTAKE_COLUMNS = ("route", "responders", "responders_in_maintenance", "uptake_rate", "uptake_ci_low",
                  "uptake_ci_high")


def maintenance_uptake(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """The uptake columns of `maintenance` (same rows, same values) from outcome_counts alone: the Overview's
    headline, without the timing, intensity and sustained-response work the Maintenance page needs."""
    df = _outcome_counts(con, s)
    rows = []
    for _, r in df.iterrows():
        if not r["is_total"] and (pd.isna(r["route"]) or r["with_sessions"] == 0):
            continue  # maintenance() counts patients with a session, per route and in total
        rate = wilson(int(r["responders_in_maintenance"]), int(r["responders"]))
        keys = {c + KEY_SUFFIX: int(r[c + KEY_SUFFIX]) for c in ("responders", "responders_in_maintenance")
                if c + KEY_SUFFIX in r}
        rows.append({"route": spec.ALL if r["is_total"] else r["route"], "responders": int(r["responders"]),
                     "responders_in_maintenance": int(r["responders_in_maintenance"]),
                     **dict(zip(("uptake_rate", "uptake_ci_low", "uptake_ci_high"), rate)), **keys})
    if not any(row["route"] == spec.ALL for row in rows):
        rows.append({"route": spec.ALL, "responders": 0, "responders_in_maintenance": 0, "uptake_rate": NAN,
                     "uptake_ci_low": NAN, "uptake_ci_high": NAN})
    out = pd.DataFrame(rows)
    out = out.reindex(columns=list(dict.fromkeys([*UPTAKE_COLUMNS, *out.columns])))
    return _order_routes(_keyed(out, UPTAKE_COLUMNS).fillna({c: 0 for c in out.columns if c.endswith(KEY_SUFFIX)}))


def maintenance_projection(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Projected monthly maintenance sessions for the current responders, per route:
    expected_in_maintenance = responders × uptake_rate, sessions_per_month = that × sessions_per_patient_month
    (the route's own observed rates; NaN where a rate is undefined). See docs/choices.md."""
    m = maintenance(con, s)
    out = pd.DataFrame({"route": m["route"], "current_responders": m["responders"]})
    # responders × uptake_rate, which is exactly the responders already in maintenance (no rounding noise)
    out["expected_in_maintenance"] = m["responders_in_maintenance"].astype(float).where(m["responders"] > 0)
    out["sessions_per_month"] = out["expected_in_maintenance"] * m["sessions_per_patient_month"]
    # the same patients as maintenance's counts, so the same cell keys: both tables show the same values
    for col, src in (("current_responders", "responders"), ("expected_in_maintenance", "responders_in_maintenance")):
        if src + KEY_SUFFIX in m.columns:
            out[col + KEY_SUFFIX] = m[src + KEY_SUFFIX]
    return out


def _float(v: Any) -> float:
    return NAN if v is None or pd.isna(v) else float(v)


# --- trajectory -------------------------------------------------------------------------------------------

TRAJECTORY_COLUMNS = ("route", "week", "patients", "mean_score", "ci_low", "ci_high", "responders", "responder_share")


def trajectory(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Mean score (95 % t interval) and the share with improvement >= 0.5, by week since the first session
    (week = floor(day / 7), baseline at week 0), over eligible patients, per route and ALL.

    Under `instrument=matched` scores of different questionnaires cannot be averaged, so `mean_score` (and its
    interval) is the mean improvement from baseline in percent, 100 * (B - score) / B (metrics.md "Matched
    instrument"); `patients` and `responders` stay the patients with a score that week."""
    df = _label_routes(run_query(con, "trajectory_counts", _params(s, min_baseline=s.baseline_minimum)))
    n = df["patients"].to_numpy(dtype=np.int64)
    if s.matched:
        # every eligible patient has B >= their questionnaire's default minimum (> 0), so m == n here
        m = df["improved_patients"].to_numpy(dtype=np.int64)
        total_f = df["improvement_sum"].to_numpy(dtype=float)
        squares_f = df["improvement_sum_squares"].to_numpy(dtype=float)
        with np.errstate(all="ignore"):
            mean = np.where(m > 0, total_f / np.maximum(m, 1), np.nan)
            var = np.where(m >= 2, (squares_f - m * mean * mean) / np.maximum(m - 1, 1), np.nan)
        # a constant improvement can come out a hair below zero in floating point
        var = np.where(np.isfinite(var), np.maximum(var, 0.0), np.nan)
        n_ci = m
    else:
        total = [int(x) for x in df["score_sum"]]
        squares = [int(x) for x in df["score_sum_squares"]]
        mean = np.array([t / c for t, c in zip(total, n)], dtype=float)
        # the variance from exact integer sums (no cancellation), then SciPy's t interval for every row at once
        var = np.array([(c * q - t * t) / (c * (c - 1)) if c >= 2 else np.nan
                        for c, t, q in zip(n, total, squares)])
        n_ci = n
    out = _trajectory_frame(df, n, n_ci, mean, var)
    return _order_routes(out, then=("week",))


def _trajectory_frame(df: pd.DataFrame, n: np.ndarray, n_ci: np.ndarray, mean: np.ndarray,
                      var: np.ndarray) -> pd.DataFrame:
    """The trajectory table from per-row means and variances over n_ci values (95 % t intervals)."""
    sem = np.sqrt(np.maximum(var, 0.0) / np.maximum(n_ci, 1))
    with np.errstate(all="ignore"):
        lo, hi = stats.t.interval(0.95, np.maximum(n_ci - 1, 1), loc=mean, scale=np.where(sem > 0, sem, 1.0))
    lo = np.where(n_ci >= 2, np.where(sem > 0, lo, mean), np.nan)
    hi = np.where(n_ci >= 2, np.where(sem > 0, hi, mean), np.nan)
    responders = df["responders"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "route": df["route"].to_numpy(dtype=object), "week": df["week"].to_numpy(dtype=np.int64), "patients": n,
        "mean_score": mean, "ci_low": lo, "ci_high": hi, "responders": responders, "responder_share": responders / n,
    }, columns=list(TRAJECTORY_COLUMNS))
    for c in ("patients__key", "responders__key"):  # cell keys, for disclosure.protect to perturb with
        if c in df.columns:
            out[c] = df[c].fillna(0).to_numpy(dtype=np.int64)
    return out


# --- data quality -----------------------------------------------------------------------------------------

# (measure, unit, numerator column, denominator column)
_QUALITY = (
    ("never_dosed", "patients", "never_dosed", "patients"),
    ("missing_baseline", "patients", "missing_baseline", "dosed"),
    ("below_min_baseline", "patients", "below_min_baseline", "dosed"),
    ("eligible_without_followup", "patients", "eligible_without_followup", "eligible"),
    ("eligible_without_endpoint", "patients", "eligible_without_endpoint", "eligible"),
    ("clinic_sessions_without_vitals", "sessions", "clinic_sessions_without_vitals", "clinic_sessions"),
    ("sessions_not_completed", "sessions", "sessions_not_completed", "sessions"),
    ("post_dose_questionnaires", "questionnaires", "post_dose_questionnaires", "questionnaires"),
)


def data_quality(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Gaps in the cohort's data: each measure with its unit, count, denominator and share."""
    r = run_query(con, "data_quality_counts", _outcome_params(s)).iloc[0]
    rows = []
    for measure, unit, num, den in _QUALITY:
        count, denominator = int(r[num] or 0), int(r[den] or 0)
        row = {"measure": measure, "patients_or_sessions": unit, "count": count,
               "denominator": denominator, "share": _ratio(count, denominator)}
        if f"{num}__key" in r.index:  # cell keys, for disclosure.protect to perturb with
            row["count__key"], row["denominator__key"] = int(r[f"{num}__key"] or 0), int(r[f"{den}__key"] or 0)
        rows.append(row)
    columns = ["measure", "patients_or_sessions", "count", "denominator", "share"]
    return pd.DataFrame(rows, columns=columns + [c for c in ("count__key", "denominator__key") if rows and c in rows[0]])


# --- any side effect (the Overview's headline) ---------------------------------------------------------------

ANY_EVENT = "any"


def any_side_effect(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Sessions and patients with any side effect (any event type or bp_severe), per session route and ALL.

    The columns of `side_effects` with event `any`, so `disclosure.protect("side_effects", …)` applies.
    """
    df = _label_routes(run_query(con, "any_side_effect_counts", _params(s)))
    if df.empty:
        df = pd.DataFrame({"route": [spec.ALL], "sessions": [0], "sessions_with_event": [0], "patients": [0],
                           "patients_with_event": [0]})
    for c in ("sessions", "sessions_with_event", "patients", "patients_with_event"):
        df[c] = df[c].astype("int64")
    df["event"] = ANY_EVENT
    df["session_rate"] = [_ratio(a, b) for a, b in zip(df["sessions_with_event"], df["sessions"])]
    df = _add_rate(df, "patients_with_event", "patients", "patient_rate", "patient")
    return _keyed(_order_routes(df), SIDE_EFFECT_COLUMNS)


# --- trend by start quarter --------------------------------------------------------------------------------

TREND_COLUMNS = ("start_quarter", "route", "patients", "evaluable", "responders", "response_rate",
                 "response_ci_low", "response_ci_high")


def trend(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """metrics.md "Trend by start quarter": per start quarter (ascending) the routes in spec order, then the
    quarter's `ALL` row. `patients` are cohort patients who started that quarter (never-dosed ones only in
    `ALL`, as in the funnel), `evaluable` the population's denominator, `responders` and the response rate
    with its 95 % Wilson interval (NaN when nobody is evaluable). Quarter × route cells without patients are
    left out. Same counts as `response_by_route`, split by quarter (queries/outcome_counts.sql, by quarter)."""
    df = _outcome_counts(con, s, by="quarter")
    df = df[df["grp"].notna()]
    rows = []
    for r in df.to_dict("records"):  # not iterrows: a Series per quarter x route cost 10-20 ms
        if not r["is_total"] and (pd.isna(r["route"]) or r["patients"] == 0):
            continue
        row = _response_row(s, int(r["eligible"]), int(r["with_endpoint"]), int(r["responders"]), int(r["remitters"]))
        evaluable_key = "eligible__key" if s.population == "itt" else "with_endpoint__key"
        rows.append({
            "start_quarter": str(r["grp"]), "route": spec.ALL if r["is_total"] else r["route"],
            "patients": int(r["patients"]),
            **{k: row[k] for k in ("evaluable", "responders", "response_rate", "response_ci_low", "response_ci_high")},
            # cell keys (disclosure.perturb_counts): trend.csv's counts are perturbed like every other file's,
            # so summing a cohort's quarters gives no exact count to difference against
            **({"patients__key": r["patients__key"], "evaluable__key": r[evaluable_key],
                "responders__key": r["responders__key"]} if "patients__key" in r else {}),
        })
    keys = ["patients__key", "evaluable__key", "responders__key"] if rows and "patients__key" in rows[0] else []
    out = pd.DataFrame(rows, columns=[*TREND_COLUMNS, *keys])
    out["_r"] = out["route"].map(_route_rank)
    return out.sort_values(["start_quarter", "_r"], kind="stable").drop(columns="_r").reset_index(drop=True)


# --- headline by route (the Overview's first table, headline.csv) ----------------------------------------

HEADLINE_COLUMNS = (
    "route", "patients", "response_rate", "response_ci_low", "response_ci_high", "remission_rate",
    "median_days", "median_ci_low", "median_ci_high", "any_side_effect_rate", "sessions_per_patient_month",
    "sustained_response_8w", "differs_from_best",
)
HEADLINE_ALPHA = 0.05


def headline_from(response: pd.DataFrame, relief: pd.DataFrame, any_effect: pd.DataFrame,
                  maintenance_table: pd.DataFrame, pairwise: pd.DataFrame) -> pd.DataFrame:
    """metrics.md "Headline by route" assembled from the tables the pages show, so every number is the one
    its own page and file show. Pass them protected (the export does, `disclosure.protect` with each table's
    own rule) to get headline.csv, or raw for the unprotected figures (`headline`).

    - response: `response_by_route` (its routes are the headline's rows: routes with eligible patients);
    - relief: `time_to_relief(...).summary`; any_effect: `any_side_effect`; maintenance_table: `maintenance`;
    - pairwise: `route_comparison(..., "response").pairwise` (Fisher p, Benjamini–Hochberg `p_adjusted`).

    Returns HEADLINE_COLUMNS, one row per route ranked by response rate (highest first; equal rates in the
    order IV, IM, SC, IN, SL, PO; a hidden or undefined rate after every shown one), `ALL` last. Rates are
    fractions 0–1, medians in days, NaN where undefined or hidden. `differs_from_best` is True/False per
    route (the top route False; no value when the comparison with the top route is hidden or undefined, and
    for `ALL`), as pandas' nullable "boolean"."""
    def by_route(df: pd.DataFrame, column: str) -> dict[str, Any]:
        return {str(r): v for r, v in zip(df["route"], df[column])} if len(df) else {}

    rows = []
    for _, r in response.iterrows():
        route = str(r["route"])
        rows.append({
            "route": route, "patients": r["patients"],
            **{c: r[c] for c in ("response_rate", "response_ci_low", "response_ci_high", "remission_rate")},
            **{c: by_route(relief, c).get(route, NAN) for c in ("median_days", "median_ci_low", "median_ci_high")},
            "any_side_effect_rate": by_route(any_effect, "patient_rate").get(route, NAN),
            "sessions_per_patient_month": by_route(maintenance_table, "sessions_per_patient_month").get(route, NAN),
            "sustained_response_8w": by_route(maintenance_table, "sustained_response_8w").get(route, NAN),
        })
    out = pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS[:-1]))
    for c in HEADLINE_COLUMNS[2:-1]:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    is_all = out["route"] == spec.ALL
    rate = out["response_rate"].to_numpy(dtype=float)
    order = sorted(range(len(out)), key=lambda i: (bool(is_all.iloc[i]), math.isnan(rate[i]),
                                                    -rate[i] if not math.isnan(rate[i]) else 0.0,
                                                    _route_rank(out["route"].iloc[i])))
    out = out.iloc[order].reset_index(drop=True)
    ranked = [r for r, v in zip(out["route"], out["response_rate"]) if r != spec.ALL and not pd.isna(v)]
    best = ranked[0] if ranked else None
    adjusted = {}
    for a, b, p in zip(pairwise.get("route_a", []), pairwise.get("route_b", []), pairwise.get("p_adjusted", [])):
        adjusted[(str(a), str(b))] = adjusted[(str(b), str(a))] = p
    differs: list[Any] = []
    for route in out["route"]:
        if route == spec.ALL or best is None:
            differs.append(pd.NA)
        elif route == best:
            differs.append(False)
        else:
            p = adjusted.get((best, route), NAN)
            differs.append(pd.NA if p is None or pd.isna(p) else bool(float(p) < HEADLINE_ALPHA))
    out["differs_from_best"] = pd.array(differs, dtype="boolean")
    out = out[list(HEADLINE_COLUMNS)]
    # carry what the sources' disclosure control says about their hidden cells (disclosure.WHY_HIDDEN),
    # so the Overview words a hidden headline number exactly as its own page does
    sources = [(response, c, c) for c in ("patients", "response_rate", "response_ci_low", "response_ci_high",
                                          "remission_rate")]
    sources += [(relief, c, c) for c in ("median_days", "median_ci_low", "median_ci_high")]
    sources += [(any_effect, "any_side_effect_rate", "patient_rate")]
    sources += [(maintenance_table, c, c) for c in ("sessions_per_patient_month", "sustained_response_8w")]
    from dashboard.analysis.disclosure import HiddenCells

    why = HiddenCells()
    for source, column, source_column in sources:
        record = (source.attrs.get("why_hidden") or {}).get(source_column, {})
        labels = {str(r): i for i, r in zip(source.index, source["route"])} if len(source) else {}
        for label, route in zip(out.index, out["route"]):
            if route in labels and labels[route] in record:
                why.setdefault(column, {})[label] = record[labels[route]]
    if any("why_hidden" in df.attrs for df in (response, relief, any_effect, maintenance_table)):
        out.attrs["why_hidden"] = why
    return out


def headline(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """The headline by route before disclosure control (see `headline_from`; headline.csv protects each
    source table with its own rule first: `export.compute_summary(con, s, "headline.csv")`)."""
    return headline_from(response_by_route(con, s), time_to_relief(con, s, logrank=False).summary,
                         any_side_effect(con, s), maintenance(con, s), route_comparison(con, s).pairwise)
