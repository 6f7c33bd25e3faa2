"""Disclosure control (docs/metrics.md, last paragraph): one function, `protect`, for every summary table.

With a minimum cell k > 0 no table shows a count from 1 to k-1, nor a rate, interval, median or curve point
resting on fewer than k patients, nor lets a hidden count be recovered by subtracting the shown routes from
`ALL`. The export and the dashboard both call `protect` on the whole table (all routes and `ALL`) before
showing any of it. The rules per table are data (`TABLES`); docs/choices.md explains each choice:

- primary suppression: a count in 1..k-1, or a positive count describing fewer than k patients (e.g. the
  sessions of a route with 5 patients);
- complementary suppression, per line (the route cells of one column that add up to the `ALL` cell, e.g.
  one event type): when any cell of the line is hidden, at least two cells are hidden and together they
  hold at least k, adding the smallest shown non-zero cell (then zeros) until that holds;
- row identities (events + censored = patients): never exactly one hidden part; counts equal on every
  route row (a route's patients and its patients with sessions) hidden together;
- a zero beside its small hidden base (none responded of 3) hidden like a small count;
- a derived value (rate, interval, median, mean) is hidden when a count it is computed from is hidden or
  its base (the patients it rests on) is below k;
- tables in two directions (breakdown groups, start quarters, session numbers) are protected along both,
  against the totals other tables show;
- the Kaplan–Meier curve is thinned: a point is kept only where at least k are at risk and at least k
  events happened since the previous kept point, so steps cannot be turned back into small counts; the
  other points are left out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from dashboard.data import spec


@dataclass(frozen=True)
class Rule:
    """How one summary table is protected."""

    counts: Mapping[str, str | None]  # count column -> the count of patients it describes (or None)
    line_keys: tuple[str, ...] = ()  # columns besides route that identify a line (cells summing to ALL)
    hide_with: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # derived -> counts it reveals
    at_least_k: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # derived -> bases that must be >= k
    parts: tuple[tuple[str, str, str], ...] = ()  # (total, part, part) in one row
    # count -> the counts of patients it is a part of (a funnel step's earlier steps): its zero beside one of
    # them hidden as small is a share of a small group, as a rate's zero numerator is (_zeros_of_few)
    zero_bases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # pairs of counts equal on every route row (a route's patients all have sessions): hidden together there,
    # or one would give the other back beside it
    equal_on_routes: tuple[tuple[str, str], ...] = ()


def _rates(rate_cols: tuple[str, ...], num: str, den: str, base: str | None = None) -> tuple[dict, dict]:
    return ({c: (num, den) for c in rate_cols}, {c: (base or den,) for c in rate_cols})


def _merge(*pairs: tuple[dict, dict]) -> tuple[dict, dict]:
    hide, least = {}, {}
    for h, a in pairs:
        hide.update(h)
        least.update(a)
    return hide, least


_RESP = _merge(
    _rates(("response_rate", "response_ci_low", "response_ci_high"), "responders", "evaluable"),
    _rates(("remission_rate", "remission_ci_low", "remission_ci_high"), "remitters", "evaluable"),
)
_RELIEF_DERIVED = ("median_days", "median_ci_low", "median_ci_high", *(f"relieved_by_day_{d}" for d in spec.RELIEF_DAYS))
_MAINT = _merge(
    _rates(("uptake_rate", "uptake_ci_low", "uptake_ci_high"), "responders_in_maintenance", "responders"),
    _rates(("median_days_to_first_maintenance", "median_interval_days", "sessions_per_patient_month"),
           "maintenance_patients", "maintenance_sessions", "maintenance_patients"),
    ({c: ("responders", "sustained_patients") for c in ("sustained_response_8w", "sustained_ci_low", "sustained_ci_high")},
     {c: ("sustained_patients",) for c in ("sustained_response_8w", "sustained_ci_low", "sustained_ci_high")}),
)
_SIDE = _merge(
    _rates(("session_rate",), "sessions_with_event", "sessions", "patients"),
    _rates(("patient_rate", "patient_ci_low", "patient_ci_high"), "patients_with_event", "patients"),
)
_BP_MEDIANS = ("sbp_peak_median", "dbp_peak_median", "sbp_rise_median", "dbp_rise_median")
_BP = _merge(
    ({c: ("patients", "sessions_with_vitals") for c in _BP_MEDIANS}, {c: ("patients",) for c in _BP_MEDIANS}),
    _rates(("share_bp_severe",), "sessions_bp_severe", "sessions_with_vitals", "patients"),
)
_TRAJ = _merge(
    ({c: ("patients",) for c in ("mean_score", "ci_low", "ci_high")}, {c: ("patients",) for c in ("mean_score", "ci_low", "ci_high")}),
    _rates(("responder_share",), "responders", "patients"),
)
_BREAK = _rates(("response_rate", "response_ci_low", "response_ci_high"), "responders", "evaluable")
_TREND = _BREAK
# the funnel's steps, each a part of every earlier one (metrics.md "Cohort"; queries/outcome_counts.sql)
_FUNNEL = ("patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint")
_FUNNEL_ZEROS = {step: tuple(reversed(_FUNNEL[:i])) for i, step in enumerate(_FUNNEL) if i}
# response_by_route and trend: the evaluable patients, and so their responders, are a part of the patients
_OUTCOME_ZEROS = {"evaluable": ("patients",), "responders": ("patients",), "remitters": ("patients",)}

TABLES: dict[str, Rule] = {
    "cohort": Rule(
        # ALL's patients also hold the never-dosed, who have no route; they are ALL's patients minus ALL's
        # with_sessions, both in the row, so they cover no route cell (docs/choices.md)
        counts={c: None for c in _FUNNEL}, zero_bases=_FUNNEL_ZEROS, equal_on_routes=(("patients", "with_sessions"),),
    ),
    "response_by_route": Rule(
        counts={"patients": None, "evaluable": None, "responders": None, "remitters": None},
        hide_with=_RESP[0], at_least_k=_RESP[1], zero_bases=_OUTCOME_ZEROS,
    ),
    "time_to_relief": Rule(
        counts={"patients": None, "events": None, "censored": None},
        hide_with={c: ("patients", "events", "censored") for c in _RELIEF_DERIVED},
        at_least_k={c: ("patients",) for c in _RELIEF_DERIVED},
        parts=(("patients", "events", "censored"),),
    ),
    "side_effects": Rule(
        counts={"sessions": "patients", "sessions_with_event": "patients_with_event", "patients": None,
                "patients_with_event": None},
        line_keys=("event",), hide_with=_SIDE[0], at_least_k=_SIDE[1],
    ),
    "side_effect_severity": Rule(counts={"sessions_with_event": None}, line_keys=("event", "severity")),
    "side_effect_by_session_number": Rule(
        counts={"sessions": None, "sessions_with_event": None}, line_keys=("event", "session_number"),
        hide_with={"session_rate": ("sessions_with_event", "sessions")}, at_least_k={"session_rate": ("sessions",)},
    ),
    "blood_pressure": Rule(
        counts={"patients": None, "sessions_with_vitals": "patients", "sessions_sbp_180": None,
                "sessions_dbp_110": None, "sessions_bp_severe": None},
        hide_with=_BP[0], at_least_k=_BP[1],
    ),
    "maintenance": Rule(
        counts={"responders": None, "responders_in_maintenance": None, "maintenance_patients": None,
                "maintenance_sessions": "maintenance_patients", "sustained_patients": None},
        hide_with=_MAINT[0], at_least_k=_MAINT[1],
        # responders followed 8 weeks and responders in maintenance are parts of the responders
        zero_bases={"sustained_patients": ("responders",), "responders_in_maintenance": ("responders",)},
    ),
    "maintenance_projection": Rule(
        counts={"current_responders": None, "expected_in_maintenance": None},
        hide_with={"sessions_per_month": ("current_responders", "expected_in_maintenance")},
        at_least_k={"sessions_per_month": ("current_responders",)},
    ),
    "trajectory": Rule(
        counts={"patients": None, "responders": None}, line_keys=("week",),
        hide_with=_TRAJ[0], at_least_k=_TRAJ[1],
    ),
    "breakdown": Rule(
        counts={"evaluable": None, "responders": None}, line_keys=("group",),
        hide_with=_BREAK[0], at_least_k=_BREAK[1],
    ),
    # metrics.trend: quarters x routes, protected in both directions like the breakdown
    "trend": Rule(
        counts={"patients": None, "evaluable": None, "responders": None}, line_keys=("start_quarter",),
        hide_with=_TREND[0], at_least_k=_TREND[1], zero_bases=_OUTCOME_ZEROS,
    ),
}
SPECIAL_TABLES = ("time_to_relief_curve", "relief_at_risk", "route_comparison", "logrank", "data_quality",
                  "rems", "rems_distribution")
ALIASES = {"cohort_funnel": "cohort"}


def protect(name: str, df: pd.DataFrame, k: int, *,
            hidden_elsewhere: Mapping[str, Iterable[bool]] | None = None) -> pd.DataFrame:
    """The table with every cell hidden (NaN / <NA>) that metrics.md's minimum cell k forbids showing, and,
    when k > 0, every shown count perturbed by its cell key (see `perturb_counts`); rates and intervals
    computed from perturbed counts are recomputed from them. Key columns (`<count>__key`) never leave here.

    Suppression decides on the true counts (so exactly the cells it always hid are hidden); perturbation
    then changes only shown, non-zero counts that come with a key column. k = 0 gives exact numbers.

    `hidden_elsewhere` {count column: one bool per row}: cells another published table hides for the same
    count of the same patients (maintenance.csv's responders are response_by_route.csv's). They are hidden
    here too before the complementary step, so no file shows what another hides. Only for tables with a
    one-way rule (TABLES, not TWO_WAY); a mask of the wrong length raises ValueError."""
    name = ALIASES.get(name, name)
    if name not in TABLES and name not in SPECIAL_TABLES:
        raise KeyError(f"no disclosure rule for a table named {name!r}")
    if hidden_elsewhere and (name not in TABLES or name in TWO_WAY):
        raise ValueError(f"hidden_elsewhere is for one-way tables; {name!r} is not one")
    out = _suppress(name, df.copy().reset_index(drop=True), k, hidden_elsewhere)
    out = perturb_counts(name, out, k)
    if k > 0:
        for col, decimals in ROUNDED.get(name, {}).items():
            if col in out.columns:
                out[col] = out[col].astype(float).round(decimals)
    return out


# table -> {column: decimals}: means published rounded when k > 0. An exact mean is sum / n, and the fraction
# with the smallest denominator near it gives n back (a mean of 12.347826… is 284 / 23), whatever the perturbed
# count beside it says; rounded to 0.1 a mean of scores up to 80 fits too many (sum, n) pairs for that.
ROUNDED: dict[str, dict[str, int]] = {
    "trajectory": {"mean_score": 1, "ci_low": 1, "ci_high": 1},
}


def _suppress(name: str, out: pd.DataFrame, k: int,
              hidden_elsewhere: Mapping[str, Iterable[bool]] | None = None) -> pd.DataFrame:
    if name == "time_to_relief_curve":
        return _protect_curve(out, k)
    if name == "relief_at_risk":
        return _protect_at_risk(out, k)
    if name == "route_comparison":
        return _protect_pairwise(out, k)
    if name == "logrank":
        return _protect_logrank(out, k)
    if name == "data_quality":
        return _protect_quality(out, k)
    if name == "rems":
        return _protect_rems(out, k)
    if name == "rems_distribution":
        return _protect_rems_distribution(out, k)
    if name in TWO_WAY:
        return _protect_two_way(out, name, k)
    rule = TABLES[name]
    hidden = hidden_cells(out, rule, k, hidden_elsewhere)
    return _apply(out, rule, hidden, k)


# --- counts: primary, complementary and row identities ---------------------------------------------------


def hidden_cells(df: pd.DataFrame, rule: Rule, k: int,
                 hidden_elsewhere: Mapping[str, Iterable[bool]] | None = None) -> dict[str, np.ndarray]:
    """For each count column, which rows must be hidden (`hidden_elsewhere`: see `protect`)."""
    n = len(df)
    cols = [c for c in rule.counts if c in df.columns]
    values = {c: df[c].to_numpy(dtype=float, na_value=np.nan) for c in cols}
    hidden = {c: np.zeros(n, dtype=bool) for c in cols}
    if k <= 0 or n == 0:
        return hidden
    hidden = _primary(df, rule, k)
    for c, mask in (hidden_elsewhere or {}).items():
        elsewhere = np.asarray(list(mask), dtype=bool)
        if elsewhere.shape != (n,):
            raise ValueError(f"hidden_elsewhere[{c!r}] has {elsewhere.size} values for {n} rows")
        if c in hidden:
            hidden[c] = hidden[c] | elsewhere
    routes = df["route"].astype(object).to_numpy()
    rank = np.array([spec.ROUTES.index(r) if r in spec.ROUTES else len(spec.ROUTES) for r in routes])
    lines: list[tuple[list[int], int]] = []
    keys = [c for c in rule.line_keys if c in df.columns]
    grouped = df.groupby(keys, sort=False, dropna=False).indices.values() if keys else [np.arange(n)]
    for idx in grouped:
        idx = list(idx)
        total = [i for i in idx if routes[i] == spec.ALL]
        if total:
            lines.append(([i for i in idx if routes[i] != spec.ALL], total[0]))
    _zeros_of_few(rule, hidden, values, lines)
    changed = True
    while changed:
        changed = False
        for c in cols:
            for members, total in lines:
                if _complement(values[c], hidden[c], members, total, k, rank):
                    changed = True
        for total_col, *part_cols in rule.parts:
            if total_col not in hidden or any(p not in hidden for p in part_cols):
                continue
            for i in range(n):
                if hidden[total_col][i]:
                    continue
                shown = [p for p in part_cols if not hidden[p][i]]
                if len(shown) == len(part_cols) - 1 and shown:
                    pick = min(shown, key=lambda p: values[p][i])
                    hidden[pick][i] = True
                    changed = True
        for a, b in rule.equal_on_routes:
            if a in hidden and b in hidden:
                differ = (routes != spec.ALL) & (hidden[a] != hidden[b])
                if differ.any():
                    hidden[a] |= differ
                    hidden[b] |= differ
                    changed = True
    return hidden


def _primary(df: pd.DataFrame, rule: Rule, k: int) -> dict[str, np.ndarray]:
    """Counts 1..k-1, and positive counts describing fewer than k patients."""
    cols = [c for c in rule.counts if c in df.columns]
    values = {c: df[c].to_numpy(dtype=float, na_value=np.nan) for c in cols}
    hidden = {}
    for c in cols:
        v = values[c]
        h = (v >= 1) & (v < k)
        base = rule.counts[c]
        if base and base in values:
            h |= (v > 0) & (values[base] < k)
        hidden[c] = h
    return hidden


def _zeros_of_few(rule: Rule, hidden: dict[str, np.ndarray], values: Mapping[str, np.ndarray],
                  lines: list[tuple[list[int], int]]) -> None:
    """Hide (in place) a zero beside its hidden small base: a share of a small group. "0 responders" of fewer
    than k evaluable patients says none responded, "0 censored" of fewer than k that all were relieved: a
    rate from fewer than k patients (metrics.md). The parts are the counts a rate or median is computed from
    (hide_with) besides its base (at_least_k), and a funnel step's zero beside an earlier step (zero_bases):
    "0 with an endpoint" of 3 eligible says none of them had one. The bases are those hidden before this
    step (counts 1..k-1, and cells hidden elsewhere), so the order of the pairs does not matter.

    Where the line's ALL (`lines`: each line's route rows and its ALL row) shows zero beside a base of k or
    more, every route's zero is known from it (nobody in the cohort responded) and stays shown; ALL's own
    zero beside a small base is hidden. Of the tables protected in two directions (TWO_WAY) only those in
    ZEROS_AGREE take this step (docs/choices.md)."""
    small = {c: h.copy() for c, h in hidden.items()}
    pairs = {(part, base) for derived, bases in rule.at_least_k.items() for base in bases
             for part in rule.hide_with.get(derived, ()) if part != base}
    pairs |= {(part, base) for part, bases in rule.zero_bases.items() for base in bases}
    for part, base in sorted(pairs):
        if part not in hidden or base not in small:
            continue
        zero_of_few = (values[part] == 0) & small[base]
        if not zero_of_few.any():
            continue
        # a zero that follows from its line's ALL zero, itself shown beside a base of k or more: "nobody in
        # the cohort responded" is no finding about a small group. ALL's own zero beside its small base is
        # one (3 patients of a quarter, none responded), so it and its routes' zeros are hidden.
        excused = np.zeros(len(zero_of_few), dtype=bool)
        for members, total in lines:
            excused[[*members, total]] = values[part][total] == 0 and not small[base][total]
        hidden[part] |= zero_of_few & ~excused


def _complement(v: np.ndarray, hidden: np.ndarray, members: list[int], total: int, k: int,
                rank: np.ndarray, pinned: np.ndarray | None = None) -> bool:
    """Hide one more cell of a line if its hidden cells could be recovered from the ALL cell; True if so.

    `pinned` cells are known from another table whatever is hidden here, so they cannot cover a hidden cell;
    when no other cell is left, the line's total itself is hidden."""
    if hidden[total] or np.isnan(v[total]):
        return False
    known = pinned if pinned is not None else np.zeros(len(v), dtype=bool)
    hidden_members = [i for i in members if hidden[i] and not known[i]]
    if not hidden_members:
        return False
    if len(hidden_members) >= 2 and float(np.nansum(v[hidden_members])) >= k:
        return False
    shown = [i for i in members if not hidden[i] and not known[i] and not np.isnan(v[i])]
    if not shown:
        if pinned is not None:
            hidden[total] = True
            return True
        return False
    pick = min(shown, key=lambda i: (v[i] == 0, v[i], rank[i], i))
    hidden[pick] = True
    return True


def _apply(df: pd.DataFrame, rule: Rule, hidden: Mapping[str, np.ndarray], k: int) -> pd.DataFrame:
    needed = {*rule.counts, *rule.hide_with, *rule.at_least_k,
              *(c for deps in (*rule.hide_with.values(), *rule.at_least_k.values()) for c in deps)}
    values = _float_columns(df, [c for c in df.columns if c in needed])
    derived_hidden: dict[str, np.ndarray] = {}
    for col in set(rule.hide_with) | set(rule.at_least_k):
        if col not in values:
            continue
        h = np.zeros(len(df), dtype=bool)
        if k > 0:
            for dep in rule.hide_with.get(col, ()):
                if dep in hidden:
                    h |= hidden[dep]
            for base in rule.at_least_k.get(col, ()):
                if base in values:
                    h |= ~(values[base] >= k)
        derived_hidden[col] = h
    why = _why_hidden(df, rule, hidden, derived_hidden, k, values)
    new: dict[str, Any] = {col: _masked_count(df[col], h) for col, h in hidden.items()}
    new.update({col: np.where(h, np.nan, values[col]) for col, h in derived_hidden.items()})
    out = _replace_columns(df, new)
    out.attrs[WHY_HIDDEN] = why
    return out


def _float_columns(df: pd.DataFrame, columns: Iterable[str]) -> dict[str, np.ndarray]:
    """Each column as a float64 array (missing values NaN), read once for all the rules' steps."""
    return {c: df[c].to_numpy(dtype=float, na_value=np.nan) for c in columns}


def _replace_columns(df: pd.DataFrame, new: Mapping[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """A copy of `df` (its `columns`, by default all, in order; its index and attrs) with the columns in `new`
    replaced by those arrays: one frame built at once, as a column assignment per cell or per column costs
    far more than the rules themselves on tables of a few rows (bench/RESULTS.md)."""
    columns = list(df.columns) if columns is None else columns
    if not new:
        return df[columns].copy() if len(columns) != len(df.columns) else df.copy()
    out = pd.DataFrame({c: new[c] if c in new else df[c].array for c in columns}, index=df.index.copy())
    out.attrs = copy.deepcopy(df.attrs)
    return out


# The protected table's attrs[WHY_HIDDEN] says, for hidden cells, what a reader may be told about them
# without learning more than the rule allows: {column: {row label: (kind, value)}} with kind
#   "fewer_than": a count from 1 to value-1 (value = k);
#   "rate_below": a rate whose numerator is such a count over a shown denominator: below value (= k / n, n
#   the denominator as published, perturbed);
#   "too_few": a rate, median or interval resting on fewer than value (= k) patients;
#   "rests_on_few": a derived value computed from a count from 1 to k-1 (e.g. a median when fewer than
#   k patients were relieved);
#   "hidden": hidden to protect another cell (complementary suppression) or with a hidden count: it
#   may rest on k or more patients, so nothing more is said than that it is hidden.
# Every hidden cell is listed, so an empty cell that is not listed is undefined (a median never reached,
# a rate over nobody), never hidden. Row labels are the protected table's index (0..n-1), which row
# filters keep. See docs/choices.md (issue 11) and `hidden_reason`.
WHY_HIDDEN = "why_hidden"


class HiddenCells(dict):
    """The WHY_HIDDEN record: {column: {row label: (kind, value)}}, never changed once made.

    pandas deep-copies a frame's attrs on every operation that returns a new frame or column (even `df[col]`);
    copying this record each time made drawing a page's figures take seconds. Being read-only, it is shared
    instead of copied."""

    def __deepcopy__(self, memo: dict) -> "HiddenCells":
        return self

    def __copy__(self) -> "HiddenCells":
        return self


def _why_hidden(df: pd.DataFrame, rule: Rule, hidden: Mapping[str, np.ndarray],
                derived_hidden: Mapping[str, np.ndarray], k: int, columns: Mapping[str, np.ndarray]) -> "HiddenCells":
    why: HiddenCells = HiddenCells()
    if k <= 0:
        return why
    labels = list(df.index)
    values = {c: v for c, v in columns.items()
              if c in rule.counts or any(c in deps for deps in (*rule.hide_with.values(), *rule.at_least_k.values()))}
    below = {c: hidden[c] & (values[c] >= 1) & (values[c] < k) for c in hidden}
    published: dict[str, np.ndarray] = {}  # denominator -> its counts as published, for the rates' bounds
    for c, mask in below.items():
        cells = {labels[i]: ("fewer_than" if mask[i] else "hidden", float(k)) for i in np.flatnonzero(hidden[c])}
        if cells:
            why[c] = cells
    for col, h in derived_hidden.items():
        reasons: dict[Any, tuple[str, float]] = {}
        bases = [b for b in rule.at_least_k.get(col, ()) if b in values]
        deps = [d for d in rule.hide_with.get(col, ()) if d in values]
        for i in np.flatnonzero(h):
            if any(values[b][i] < k for b in bases):
                reasons[labels[i]] = ("too_few", float(k))
            elif len(deps) == 2 and deps[0] in below and below[deps[0]][i] and not hidden[deps[1]][i] \
                    and values[deps[1]][i] > 0 and not col.endswith(("_ci_low", "_ci_high")):
                # over the denominator as published, as a shown rate is: over the true one, the bound (11 / 40,
                # "< 28 %" beside a shown 39) gave back the count the perturbation had changed
                if deps[1] not in published:  # the rates over one denominator share it
                    published[deps[1]] = _published_counts(df, deps[1], values[deps[1]], k)
                reasons[labels[i]] = ("rate_below", float(k / published[deps[1]][i]))
            elif any(d in below and below[d][i] for d in deps):
                reasons[labels[i]] = ("rests_on_few", float(k))
            else:
                reasons[labels[i]] = ("hidden", float(k))
        if reasons:
            why[col] = reasons
    return why


def _published_counts(df: pd.DataFrame, column: str, values: np.ndarray, k: int) -> np.ndarray:
    """A count column as `perturb_counts` publishes it: `perturbed` for the whole column at once (whole
    tables, e.g. the trajectory's hundreds of rows): n <= 0 stays n, a count n >= 1 becomes max(n + noise, k),
    a hidden (NaN) count stays hidden; the count itself when it has no key column or k = 0."""
    key_column = column + KEY_SUFFIX
    if k <= 0 or key_column not in df.columns:
        return values
    with np.errstate(invalid="ignore"):
        return np.where(values > 0, np.maximum(np.trunc(values) + noise_array(_cell_keys(df[key_column])), k),
                        values)


def hidden_reason(df: pd.DataFrame, label: Any, column: str) -> tuple[str, float] | None:
    """What may be said about a hidden cell of a protected table (see WHY_HIDDEN): ("fewer_than", k),
    ("rate_below", bound), ("too_few", k), ("rests_on_few", k), ("hidden", k), or None when the cell is not hidden (an empty
    cell with None is undefined). Tables protected before this was recorded give None everywhere."""
    return (df.attrs.get(WHY_HIDDEN) or {}).get(column, {}).get(label)


def _masked_count(s: pd.Series, hidden: np.ndarray) -> Any:
    """`_as_nullable_int(s).mask(hidden)` as an array: a count column as nullable integers (or floats when
    it holds fractions) with the hidden cells missing, without the pandas operations per step."""
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return pd.arrays.IntegerArray(s.to_numpy(dtype="int64", na_value=0), s.isna().to_numpy() | hidden)
    values = s.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    if np.all(missing | (values == np.round(values))):
        if np.isinf(values).any():  # as before: no integer for an infinite count (pandas raises)
            return _as_nullable_int(s).mask(hidden).array
        return pd.arrays.IntegerArray(np.where(missing, 0, values).astype("int64"), missing | hidden)
    return np.where(hidden, np.nan, values)


def _as_nullable_int(s: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype("Int64")
    values = s.to_numpy(dtype=float, na_value=np.nan)
    if np.all(np.isnan(values) | (values == np.round(values))):
        return s.astype("Float64").round().astype("Int64")
    return s.astype(float)


# --- tables in two directions ----------------------------------------------------------------------------

# name -> the column whose values add up, per route, to a total another table shows: breakdown groups and
# start quarters add up to response_by_route, session numbers to side_effects' sessions and sessions with
# the event.
TWO_WAY = {"breakdown": "group", "side_effect_by_session_number": "session_number", "trend": "start_quarter"}
# Two-way tables whose totals' table hides a zero beside a small base by this table's own rule (response_by_route
# hides "0 responders" of fewer than k evaluable, as breakdown and trend do), so the totals' hidden cells can be
# computed here exactly and these tables hide such zeros too. side_effects rests its zeros on patients, which
# the session-number table does not have: it does not take that step (docs/choices.md).
ZEROS_AGREE = frozenset({"breakdown", "trend"})


def _protect_two_way(df: pd.DataFrame, name: str, k: int) -> pd.DataFrame:
    """Protect lines in both directions until neither lets a hidden cell be recovered: the routes of a line
    against its ALL row, and, per route, the cells along `TWO_WAY[name]` against their sum, which another
    table shows unless its own rule (counts 1..k-1 and complements) hides it."""
    rule = TABLES[name]
    across = TWO_WAY[name]
    cols = [c for c in rule.counts if c in df.columns]
    n = len(df)
    if k <= 0 or n == 0:
        return _apply(df, rule, {c: np.zeros(n, dtype=bool) for c in cols}, k)
    hidden = _primary(df, rule, k)
    values = {c: df[c].to_numpy(dtype=float, na_value=np.nan) for c in cols}
    routes = df["route"].astype(object).to_numpy()
    rank = np.array([_sort_key(r) for r in routes])
    others = [c for c in rule.line_keys if c != across and c in df.columns]
    within: list[tuple[list[int], int]] = []
    for idx in df.groupby([c for c in rule.line_keys if c in df.columns], sort=False).indices.values():
        total = [i for i in idx if routes[i] == spec.ALL]
        if total:
            within.append(([i for i in idx if routes[i] != spec.ALL], total[0]))
    zeros = name in ZEROS_AGREE
    if zeros:
        _zeros_of_few(rule, hidden, values, within)
    # The totals along the second direction, protected as the other table protects them: its counts rule, and
    # its zeros beside a small base where it hides them as this table does (ZEROS_AGREE). A total the other
    # table hides lets nothing be recovered; one it shows must not give back a hidden cell here.
    groups = df.groupby(["route", *others], sort=False)
    along: list[list[int]] = [list(idx) for idx in groups.indices.values()]
    sums = groups[cols].sum().reset_index()
    totals_rule = Rule(counts={c: None for c in cols}, line_keys=tuple(others),
                       hide_with=rule.hide_with if zeros else {}, at_least_k=rule.at_least_k if zeros else {},
                       zero_bases=rule.zero_bases if zeros else {})
    totals_hidden = hidden_cells(sums, totals_rule, k)
    changed = True
    while changed:
        changed = False
        for c in cols:
            # a route with a single cell along the line shows that cell as its total in the other table
            pinned = np.zeros(n, dtype=bool)
            for j, members in enumerate(along):
                if len(members) == 1 and values[c][members[0]] >= k and not totals_hidden[c][j]:
                    pinned[members[0]] = True
            for members, total in within:
                if _complement(values[c], hidden[c], members, total, k, rank, pinned):
                    changed = True
            for j, members in enumerate(along):
                if not totals_hidden[c][j] and _complement_shown_total(values[c], hidden[c], members, k, rank):
                    changed = True
    return _apply(df, rule, hidden, k)


def _complement_shown_total(v: np.ndarray, hidden: np.ndarray, members: list[int], k: int, rank: np.ndarray) -> bool:
    """As _complement for a line whose total (their sum) is shown in another table."""
    held_cells = [i for i in members if hidden[i]]
    if not held_cells:
        return False
    if len(held_cells) >= 2 and float(np.nansum(v[held_cells])) >= k:
        return False
    shown = [i for i in members if not hidden[i] and not np.isnan(v[i])]
    if not shown:
        return False
    pick = min(shown, key=lambda i: (v[i] == 0, v[i], rank[i], i))
    hidden[pick] = True
    return True


# --- the Kaplan–Meier curve -------------------------------------------------------------------------------

_CURVE_VALUES = ("at_risk", "events", "relieved", "ci_low", "ci_high")


def _protect_curve(df: pd.DataFrame, k: int) -> pd.DataFrame:
    out = df.copy()
    out["at_risk"] = _as_nullable_int(out["at_risk"])
    out["events"] = _as_nullable_int(out["events"])
    if k <= 0 or out.empty:
        return out
    out = out.sort_values(["route", "day"], key=lambda s: s.map(_sort_key) if s.name == "route" else s,
                          kind="stable").reset_index(drop=True)
    day = out["day"].to_numpy(dtype=float)
    at_risk = out["at_risk"].to_numpy(dtype=float, na_value=np.nan)
    events = out["events"].to_numpy(dtype=float, na_value=np.nan)
    routes = out["route"].astype(object).to_numpy()
    keep = np.zeros(len(out), dtype=bool)
    for route in dict.fromkeys(routes):
        idx = np.flatnonzero(routes == route)
        since = 0.0
        for j, i in enumerate(idx):
            if j == 0:
                keep[i] = at_risk[i] >= k  # the start (day 0, everyone at risk, nothing relieved)
                continue
            since += events[i]
            if at_risk[i] >= k and since >= k:
                keep[i] = True
                since = 0.0
    # The route totals (at risk at the start, events, censored) are protected as time_to_relief protects them,
    # so a route whose count is hidden there shows no count here either.
    starts = {r: np.flatnonzero(routes == r)[0] for r in dict.fromkeys(routes)}
    totals = pd.DataFrame({
        "route": list(starts),
        "patients": [at_risk[i] for i in starts.values()],
        "events": [float(np.nansum(events[routes == r])) for r in starts],
    })
    totals["censored"] = totals["patients"] - totals["events"]
    th = hidden_cells(totals, TABLES["time_to_relief"], k)
    count_hidden_route = {r: bool(th["patients"][j] or th["events"][j] or th["censored"][j]) for j, r in enumerate(starts)}
    show_risk = keep & ~np.array([count_hidden_route[r] for r in routes])
    show_events = show_risk & ((events >= k) | (events == 0))
    # ALL's counts at a day must not reveal, by subtraction, the routes' counts hidden at that day.
    per_route = {r: np.flatnonzero(routes == r) for r in starts if r != spec.ALL}
    for i in np.flatnonzero((routes == spec.ALL) & show_risk):
        d = day[i]
        unknown_risk = unknown_events = 0.0
        for r, idx in per_route.items():
            later = idx[day[idx] >= d]
            if later.size and not show_risk[later[0]]:
                unknown_risk += at_risk[later[0]]
            exact = idx[day[idx] == d]
            if exact.size and not show_events[exact[0]]:
                unknown_events += events[exact[0]]
        if 0 < unknown_risk < k:
            show_risk[i] = False
            show_events[i] = False
        if 0 < unknown_events < k:
            show_events[i] = False
    out["at_risk"] = out["at_risk"].mask(~show_risk)
    out["events"] = out["events"].mask(~show_events)
    # Points not shown are left out altogether: even their days (an individual's follow-up time in the
    # tail, how many distinct times a small route has) say something about fewer than k patients.
    return out[keep].reset_index(drop=True)


def _protect_at_risk(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Numbers at risk on weekly days (route, day, at_risk), thinned like the curve: a route's number is shown
    only when it is at least k (or 0) and fell by 0 or at least k since the route's last shown number, so no
    week's departures (relieved or no longer followed) are a small count. A route whose patient count
    time_to_relief hides shows none. ALL's number is shown only when the hidden routes' part of it obeys
    the same rule, so subtracting the shown routes recovers no small count either."""
    out = df.copy()
    out["at_risk"] = _as_nullable_int(out["at_risk"])
    if k <= 0 or out.empty:
        return out
    out = out.sort_values(["route", "day"], key=lambda s: s.map(_sort_key) if s.name == "route" else s,
                          kind="stable").reset_index(drop=True)
    routes = out["route"].astype(object).to_numpy()
    day = out["day"].to_numpy(dtype=float)
    value = out["at_risk"].to_numpy(dtype=float, na_value=np.nan)
    rows = {r: np.flatnonzero(routes == r) for r in dict.fromkeys(routes)}
    # Day 0 holds every patient of the route: its count is hidden as time_to_relief hides `patients`.
    starts = pd.DataFrame({"route": list(rows), "patients": [value[idx[0]] for idx in rows.values()]})
    route_hidden = dict(zip(rows, hidden_cells(starts, Rule(counts={"patients": None}), k)["patients"]))

    def allowed(v: float, last: float | None) -> bool:
        if v == 0:
            return True
        return v >= k and (last is None or last - v == 0 or last - v >= k)

    show = np.zeros(len(out), dtype=bool)
    for route, idx in rows.items():
        if route == spec.ALL or route_hidden[route]:
            continue
        last = None
        for i in idx:
            if allowed(value[i], last):
                show[i] = True
                last = value[i]
    if spec.ALL in rows and not route_hidden[spec.ALL]:
        by_day = {r: dict(zip(day[idx], idx)) for r, idx in rows.items() if r != spec.ALL}
        last = last_day = None
        for i in rows[spec.ALL]:
            hidden_parts = [j for r, days in by_day.items() if (j := days.get(day[i])) is not None and not show[j]]
            unknown = float(sum(value[j] for j in hidden_parts))
            before = None
            if last_day is not None:
                before = float(sum(value[by_day[routes[j]][last_day]] for j in hidden_parts))
            if allowed(value[i], last) and (unknown == 0 or allowed(unknown, before)):
                show[i] = True
                last, last_day = value[i], day[i]
    out["at_risk"] = out["at_risk"].mask(~show)
    return out


def _sort_key(route: object) -> int:
    return spec.ROUTES.index(route) if route in spec.ROUTES else len(spec.ROUTES)


# --- tables between pairs of routes ----------------------------------------------------------------------


def _route_totals(df: pd.DataFrame, n_cols: tuple[str, str], rate_cols: tuple[str, str] | None) -> pd.DataFrame:
    rows: dict[str, dict[str, float]] = {}
    for _, r in df.iterrows():
        for side, n_col in zip(("a", "b"), n_cols):
            route = r[f"route_{side}"]
            n = float(r[n_col])
            count = float(round(r[rate_cols[0 if side == "a" else 1]] * n)) if rate_cols else 0.0
            rows[route] = {"route": route, "evaluable": n, "responders": count, "remitters": count}
    table = pd.DataFrame(sorted(rows.values(), key=lambda x: _sort_key(x["route"])),
                         columns=["route", "evaluable", "responders", "remitters"])
    total = {"route": spec.ALL, **{c: float(table[c].sum()) for c in ("evaluable", "responders", "remitters")}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _protect_pairwise(df: pd.DataFrame, k: int) -> pd.DataFrame:
    out = df.copy()
    out["n_a"] = _as_nullable_int(out["n_a"])
    out["n_b"] = _as_nullable_int(out["n_b"])
    if k <= 0 or out.empty:
        return out
    totals = _route_totals(out, ("n_a", "n_b"), ("rate_a", "rate_b"))
    rule = Rule(counts={"evaluable": None, "responders": None})
    h = hidden_cells(totals, rule, k)
    bad = {r for j, r in enumerate(totals["route"]) if h["evaluable"][j] or h["responders"][j]}
    small = {r for j, r in enumerate(totals["route"]) if totals["evaluable"][j] < k}
    row_bad = out["route_a"].isin(bad | small) | out["route_b"].isin(bad | small)
    out["n_a"] = out["n_a"].mask(out["route_a"].isin(bad))
    out["n_b"] = out["n_b"].mask(out["route_b"].isin(bad))
    for col in ("rate_a", "rate_b", "difference", "ci_low", "ci_high", "p_value", "p_adjusted"):
        out[col] = out[col].astype(float).mask(row_bad)
    return out


def _protect_logrank(df: pd.DataFrame, k: int) -> pd.DataFrame:
    out = df.copy()
    out["n_a"] = _as_nullable_int(out["n_a"])
    out["n_b"] = _as_nullable_int(out["n_b"])
    if k <= 0 or out.empty:
        return out
    totals = _route_totals(out, ("n_a", "n_b"), None)
    h = hidden_cells(totals, Rule(counts={"evaluable": None}), k)
    bad = {r for j, r in enumerate(totals["route"]) if h["evaluable"][j]}
    small = {r for j, r in enumerate(totals["route"]) if totals["evaluable"][j] < k}
    out["n_a"] = out["n_a"].mask(out["route_a"].isin(bad))
    out["n_b"] = out["n_b"].mask(out["route_b"].isin(bad))
    row_small = out["route_a"].isin(small) | out["route_b"].isin(small)
    for col in ("statistic", "p_value", "p_adjusted"):
        out[col] = out[col].astype(float).mask(row_small)
    return out


# --- data quality -----------------------------------------------------------------------------------------

# Quantities that add up: a total and its parts, as measure names / denominators of data_quality.
_QUALITY_IDENTITIES = (
    ("patients", ("never_dosed", "dosed")),
    ("dosed", ("missing_baseline", "below_min_baseline", "eligible")),
)
_QUALITY_DENOMINATOR = {
    "never_dosed": "patients", "missing_baseline": "dosed", "below_min_baseline": "dosed",
    "eligible_without_followup": "eligible", "eligible_without_endpoint": "eligible",
    "clinic_sessions_without_vitals": "clinic_sessions", "sessions_not_completed": "sessions",
    "post_dose_questionnaires": "questionnaires",
}


def _protect_quality(df: pd.DataFrame, k: int) -> pd.DataFrame:
    out = df.copy()
    out["count"] = _as_nullable_int(out["count"])
    out["denominator"] = _as_nullable_int(out["denominator"])
    if k <= 0 or out.empty:
        return out
    value: dict[str, float] = {}
    for _, r in out.iterrows():
        value[r["measure"]] = float(r["count"])
        value[_QUALITY_DENOMINATOR.get(r["measure"], r["measure"] + "_denominator")] = float(r["denominator"])
    hidden = {q: 1 <= v < k for q, v in value.items()}
    changed = True
    while changed:
        changed = False
        for total, parts in _QUALITY_IDENTITIES:
            members = [q for q in (total, *parts) if q in value]
            if len(members) < 1 + len(parts):
                continue
            if sum(hidden[q] for q in members) == 1:
                shown = [q for q in parts if not hidden[q]] or [total]
                pick = min(shown, key=lambda q: (value[q] == 0, value[q]))
                hidden[pick] = True
                changed = True
    count_hidden = out["measure"].map(lambda m: hidden.get(m, False)).to_numpy(dtype=bool)
    den_names = out["measure"].map(lambda m: _QUALITY_DENOMINATOR.get(m, m + "_denominator"))
    den_hidden = den_names.map(lambda q: hidden.get(q, False)).to_numpy(dtype=bool)
    den = out["denominator"].to_numpy(dtype=float, na_value=np.nan)
    out["count"] = out["count"].mask(count_hidden)
    out["denominator"] = out["denominator"].mask(den_hidden)
    out["share"] = out["share"].astype(float).mask(count_hidden | den_hidden | ~(den >= k))
    return out


# --- esketamine monitoring (rems.csv) -----------------------------------------------------------------------


def _rems_rule() -> Rule:
    """rems.csv's rule: rows are sites (the `route` role) and ALL. Session counts describe the site's
    esketamine patients; each measure's count, its sessions recorded and the sessions missing it (met +
    missed = recorded, a row identity) are protected as parts of one another; rates and intervals need the
    recorded sessions and the patients to be at least k."""
    counts: dict[str, str | None] = {"patients": None, "sessions": "patients", "ready_to_leave_sessions": "patients"}
    hide: dict[str, tuple[str, ...]] = {}
    least: dict[str, tuple[str, ...]] = {}
    parts: list[tuple[str, str, str]] = []
    for m in spec.REMS_MEASURES:
        of, missed = m + "_of", m + "_missed"
        base = None if m in spec.REMS_PATIENT_MEASURES else "patients"
        counts.update({m: base, of: base, missed: base})
        for c in (m + "_rate", m + "_ci_low", m + "_ci_high"):
            hide[c] = (m, of, missed)
            least[c] = (of, "patients")
        # with any two of the three shown the third follows: never exactly one of them hidden
        parts += [(of, m, missed), (m, of, missed)]
    hide["ready_to_leave_median"] = ("ready_to_leave_sessions", "patients")
    least["ready_to_leave_median"] = ("ready_to_leave_sessions", "patients")
    return Rule(counts=counts, hide_with=hide, at_least_k=least, parts=tuple(parts))


def _protect_rems(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """rems.csv: sites take the place of routes (complementary suppression of each column against ALL);
    the missed counts (recorded − met) are protected with the others and then dropped (the page shows
    recorded − met only where both are shown, which this protection makes safe)."""
    renamed = df.rename(columns={"site": "route"})
    missed = {m + "_missed": renamed[m + "_of"].to_numpy(dtype=float, na_value=np.nan)
              - renamed[m].to_numpy(dtype=float, na_value=np.nan)
              for m in spec.REMS_MEASURES if m in renamed.columns and m + "_of" in renamed.columns}
    out = _replace_columns(renamed, missed, [*renamed.columns, *missed])
    rule = _rems_rule()
    hidden = hidden_cells(out, rule, k)
    out = _apply(out, rule, hidden, k)
    return out.drop(columns=list(missed)).rename(columns={"route": "site"})[list(df.columns)]


def _protect_rems_distribution(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Histogram bins (measure, bin, sessions): within each measure the bins add up to a total the page and
    rems.csv show (sessions with the value recorded), so a bin of 1..k-1 sessions is hidden together with
    enough other bins that the hidden ones hold at least k (complementary suppression against that total)."""
    out = df.copy()
    out["sessions"] = _as_nullable_int(out["sessions"])
    if k <= 0 or out.empty:
        return out
    hidden = np.zeros(len(out), dtype=bool)
    for measure, idx in out.groupby("measure", sort=False).indices.items():
        idx = list(idx)
        values = out.loc[idx, "sessions"].to_numpy(dtype=float, na_value=np.nan)
        table = pd.DataFrame({
            "route": [str(b) for b in out.loc[idx, "bin"]] + [spec.ALL],
            "sessions": np.append(values, np.nansum(values)),
        })
        h = hidden_cells(table, Rule(counts={"sessions": None}), k)["sessions"]
        if h[-1]:  # the total itself is small: hide every bin
            h[:] = True
        hidden[idx] = h[:-1]
    out["sessions"] = out["sessions"].mask(hidden)
    return out


# --- cell-key perturbation (docs/metrics.md "Protecting counts across filter states") -----------------------

KEY_SUFFIX = "__key"  # a count's cell-key column: sum of its records' keys mod 2^32 (queries/derive_05_cell_keys.sql)
CELL_KEY_MODULUS = 2 ** 32
# The perturbation table (the ABS "p-table", one row: counts under k are suppressed, not perturbed): noise d
# with the two-sided geometric (discrete Laplace) law P(d) = (1 - a) / (1 + a) * a^|d|, a = NOISE_RATIO:
# zero mean, variance 2a / (1 - a)^2 = 2.22 (standard deviation 1.49); P(0) = 0.43, P(±1) = 0.17 each,
# P(±2) = 0.07 each, P(|d| >= 3) = 0.09. The cell key, uniform on 0 .. 2^32-1, picks d by inverse CDF. The
# law has no edge a difference could run into: every d with probability above 2^-32 (|d| <= NOISE_REACH)
# occurs, so whatever two published counts show, every small value of the count between them stays possible.
NOISE_RATIO = 0.4
NOISE_REACH = 24  # P(|d| > 24) = 2 a^25 / (1 + a) < 2^-32: no cell key reaches beyond
NOISE = tuple((d, (1 - NOISE_RATIO) / (1 + NOISE_RATIO) * NOISE_RATIO ** abs(d))
              for d in range(-NOISE_REACH, NOISE_REACH + 1))
_THRESHOLDS = np.minimum(np.cumsum([p for _, p in NOISE]) / sum(p for _, p in NOISE), 1.0) * CELL_KEY_MODULUS

# table -> (derived columns, numerator count, denominator count): recomputed from the perturbed counts, as
# (rate, Wilson low, Wilson high) for three columns or a plain ratio for one, so a rate never gives back the
# exact counts the perturbation changed.
RECOMPUTE: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "response_by_route": ((("response_rate", "response_ci_low", "response_ci_high"), "responders", "evaluable"),
                          (("remission_rate", "remission_ci_low", "remission_ci_high"), "remitters", "evaluable")),
    "breakdown": ((("response_rate", "response_ci_low", "response_ci_high"), "responders", "evaluable"),),
    "side_effects": ((("patient_rate", "patient_ci_low", "patient_ci_high"), "patients_with_event", "patients"),
                     (("session_rate",), "sessions_with_event", "sessions")),
    "side_effect_by_session_number": ((("session_rate",), "sessions_with_event", "sessions"),),
    "maintenance": ((("uptake_rate", "uptake_ci_low", "uptake_ci_high"), "responders_in_maintenance", "responders"),),
    "trajectory": ((("responder_share",), "responders", "patients"),),
    "trend": ((("response_rate", "response_ci_low", "response_ci_high"), "responders", "evaluable"),),
    "blood_pressure": ((("share_bp_severe",), "sessions_bp_severe", "sessions_with_vitals"),),
    "data_quality": ((("share",), "count", "denominator"),),
    "rems": tuple(((f"{m}_rate", f"{m}_ci_low", f"{m}_ci_high"), m, f"{m}_of") for m in spec.REMS_MEASURES),
}


def noise(cell_key: int) -> int:
    """The perturbation a cell key selects from NOISE (deterministic: the same key, the same noise)."""
    u = int(cell_key) % CELL_KEY_MODULUS
    return NOISE[min(int(np.searchsorted(_THRESHOLDS, u, side="right")), len(NOISE) - 1)][0]


_NOISE_VALUES = np.array([d for d, _ in NOISE], dtype=np.int64)


def noise_array(cell_keys: np.ndarray) -> np.ndarray:
    """`noise` of every cell key of an integer array at once (int64): the same inverse CDF, one searchsorted
    instead of a Python call per key (tables of relief times have thousands of groups)."""
    u = np.asarray(cell_keys, dtype=np.int64) % CELL_KEY_MODULUS
    return _NOISE_VALUES[np.minimum(np.searchsorted(_THRESHOLDS, u, side="right"), len(NOISE) - 1)]


def perturbed(n: int, cell_key: int, k: int) -> int:
    """A shown count n ≥ 1 as published under minimum cell k > 0: n + noise(cell_key), never below k (a shown
    count is never a small count). 0 stays 0 (an empty cell is empty for every set of records); k = 0: n."""
    if k <= 0 or n <= 0:
        return int(n)
    return max(int(n) + noise(cell_key), k)


def perturb_counts(name: str, df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Perturb every shown count of `df` that has a key column `<count>__key`, recompute the rates of
    RECOMPUTE[name] that rest on a perturbed count, and drop every key column (also when k = 0).

    How a new summary table plugs in: return, beside each count column, `<count>__key` =
    `cell_key(sum(record_key(pk)) FILTER (WHERE <the count's condition>))` from its SQL (for a count of
    sessions: `cell_key(sum(record_key(pk) * <sessions of the patient>))`), list its rates in RECOMPUTE, and
    call `protect`. A count without a key column is only suppressed, not perturbed."""
    keys = [c for c in df.columns if str(c).endswith(KEY_SUFFIX)]
    if not keys:
        return df
    kept = [c for c in df.columns if c not in set(keys)]
    if k <= 0 or df.empty:
        return _replace_columns(df, {}, kept)
    n = len(df)
    new: dict[str, Any] = {}
    current: dict[str, np.ndarray] = {}  # the counts after perturbation, as floats (hidden: NaN)
    changed: dict[str, np.ndarray] = {}
    for key_col in keys:
        col = key_col[: -len(KEY_SUFFIX)]
        if col not in kept:
            continue
        raw = np.trunc(df[col].to_numpy(dtype=float, na_value=np.nan))
        new_arr = _published_counts(df, col, raw, k)
        changed[col] = ~np.isnan(raw) & (new_arr != raw)
        missing = np.isnan(new_arr)
        new[col] = pd.arrays.IntegerArray(np.where(missing, 0, new_arr).astype("int64"), missing)
        current[col] = new_arr
    late: list[tuple[str, np.ndarray, np.ndarray]] = []  # rates in a column that is not float64

    def floats(col: str) -> np.ndarray:
        return current[col] if col in current else df[col].to_numpy(dtype=float, na_value=np.nan)

    for cols, num, den in RECOMPUTE.get(name, ()):
        if num not in kept or den not in kept or any(c not in kept for c in cols):
            continue
        rows = changed.get(num, np.zeros(n, bool)) | changed.get(den, np.zeros(n, bool))
        nums, dens, first = floats(num), floats(den), floats(cols[0])
        rows &= ~np.isnan(nums) & ~np.isnan(dens) & ~np.isnan(first)  # a hidden count or rate stays hidden
        if not rows.any():
            continue
        # perturbed independently, a part may exceed its whole
        x, d = np.minimum(nums, dens), dens
        if len(cols) == 3:
            from dashboard.analysis.metrics import wilson

            updates = [wilson(int(a), int(b)) for a, b in zip(x[rows], d[rows])]
            rates = [np.array([u[j] for u in updates], dtype=float) for j in range(3)]
        else:
            # integer counts below 2^53: the float division is the correctly rounded x / n, as in Python
            with np.errstate(divide="ignore", invalid="ignore"):
                rates = [np.where(d[rows] != 0, x[rows] / d[rows], np.nan)]
        for c, v in zip(cols, rates):
            if df[c].dtype == np.float64:
                column = df[c].to_numpy(dtype=float, copy=True)
                column[rows] = v
                new[c] = column
            else:
                late.append((c, rows, v))
    out = _replace_columns(df, new, kept)
    for c, rows, v in late:
        _set_rows(out, c, rows, v)
    return out


def _cell_keys(column: pd.Series) -> np.ndarray:
    """A cell-key column as int64 (missing: 0)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)  # keys are below 2^32: exact as floats
        return np.where(np.isnan(values), 0, values).astype("int64")
    return pd.to_numeric(column, errors="coerce").fillna(0).astype("int64").to_numpy()


def _set_rows(out: pd.DataFrame, col: str, rows: np.ndarray, values: np.ndarray) -> None:
    """out.loc[rows, col] = values for a boolean row mask, one column assignment instead of a write per cell
    (a float64 column stays float64; any other dtype is written cell by cell, as before)."""
    if out[col].dtype == np.float64:
        column = out[col].to_numpy(dtype=float, copy=True)
        column[rows] = values
        out[col] = column
    else:
        for i, v in zip(np.flatnonzero(rows), values):
            out.at[i, col] = v
