"""Case-mix-adjusted response by route (docs/metrics.md "Case-mix-adjusted response", `adjusted_response.csv`).

Crude response rates mislead when routes are given to different patients (a route kept for severe or
treatment-resistant patients looks worse than it is). So, among the evaluable patients, a logistic
regression of responder on route, baseline score (as a fraction of the instrument's maximum), primary
diagnosis, treatment resistance and age band is fitted with statsmodels (`GLM`, binomial family, on binomial
groups: the same estimates and covariance as one row per patient), and each route's adjusted rate is the
mean predicted probability over every evaluable patient with the route set to that route (marginal
standardisation; Muller & MacLehose 2014, Int J Epidemiol 43:962). Its 95 % interval, and that of the
difference from the reference route, come from the delta method over the model's covariance matrix: for
the standardised mean m_r = Σ w_i expit(x_i(r)·β) / N the gradient is Σ w_i p_i (1 − p_i) x_i(r) / N and
Var(m_r) = gᵀ V g (statsmodels' own `get_prediction(average=True)` gave intervals about twice too wide
here, docs/choices.md). Intervals are on the probability scale and not clipped.

`fit_adjusted(groups, …)` is the statistics on a table of groups (no database: tests build their own);
`adjusted_response(con, settings)` runs queries/adjusted_response_groups.sql and returns the file's table
before disclosure control; `protect_adjusted(table, protected_response)` applies the minimum-cell rule (a
route whose crude counts are hidden shows no adjusted numbers).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning
from threadpoolctl import threadpool_limits

from dashboard.analysis import metrics
from dashboard.analysis.settings import Settings
from dashboard.data import spec

NAN = float("nan")
Z95 = 1.959963984540054  # standard normal 97.5 % quantile (scipy.stats.norm.ppf(0.975))
MIN_ROUTE_PATIENTS = 10  # a route with fewer evaluable patients is left out of the model
MIN_LEVEL_PATIENTS = 10  # a diagnosis or age-band level with fewer patients in the model is merged
MIN_MODEL_PATIENTS = 50  # fewer evaluable patients in the model: no model
# A fitted probability this close to 0 or 1 for a group of patients means the likelihood has no finite
# maximum in some direction (quasi-complete separation) even when statsmodels does not warn.
SEPARATION_EPS = 1e-8

COLUMNS = (
    "route", "evaluable", "crude_rate", "adjusted_rate", "adjusted_ci_low", "adjusted_ci_high", "difference",
    "difference_ci_low", "difference_ci_high", "reference_route", "adjusted_for", "note",
)
ADJUSTED_COLUMNS = ("adjusted_rate", "adjusted_ci_low", "adjusted_ci_high", "difference", "difference_ci_low",
                    "difference_ci_high", "reference_route", "adjusted_for")
GROUP_COLUMNS = ("route", "baseline", "diagnosis", "treatment_resistant", "age_band", "patients", "responders")

# the adjustment variables in plain words, in the order they are named
VARIABLE_LABELS = {
    "baseline": "baseline score",
    "diagnosis": "primary diagnosis",
    "treatment_resistant": "treatment resistance",
    "age_band": "age band",
}
NOTE_SMALL_ROUTE = f"fewer than {MIN_ROUTE_PATIENTS} evaluable patients: not in the model, no adjusted rate"
NOTE_REFERENCE = "reference route"
NOTE_HIDDEN = "crude counts hidden (fewer patients than the minimum cell): no adjusted numbers shown"


@dataclass(frozen=True)
class AdjustedResult:
    """The table of adjusted_response.csv (columns `COLUMNS`, one row per route with evaluable patients,
    in the order of spec.ROUTES) and what the page needs to explain it.

    `fitted` is False when no model could be fitted (`reason` says why, in plain words); `variables` names the
    adjustment variables kept (keys of VARIABLE_LABELS), `merges` maps a variable to {merged level: level
    merged into}, `dropped` lists variables left with one level; `model` is statsmodels' fitted GLM result
    (None without a model), `patients_in_model` the evaluable patients of the routes in the model."""

    table: pd.DataFrame
    fitted: bool
    reason: str = ""
    reference_route: str | None = None
    variables: tuple[str, ...] = ()
    merges: dict[str, dict[str, str]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    patients_in_model: int = 0
    model: Any = None


BASELINE_PER_MAXIMUM = "baseline score (as a fraction of each patient's questionnaire maximum)"


def describe_adjustment(variables: tuple[str, ...], merges: dict[str, dict[str, str]],
                        dropped: tuple[str, ...], *, per_patient_maximum: bool = False) -> str:
    """The `adjusted_for` text: the variables in plain words, then each merge and each dropped variable.
    `per_patient_maximum`: baseline entered as a fraction of each patient's own questionnaire maximum
    (instrument=matched), which the text then says."""
    words = {**VARIABLE_LABELS, **({"baseline": BASELINE_PER_MAXIMUM} if per_patient_maximum else {})}
    parts = [", ".join(words[v] for v in variables)]
    for var in ("diagnosis", "age_band"):
        into: dict[str, list[str]] = {}
        for level, target in merges.get(var, {}).items():
            into.setdefault(target, []).append(level)
        for target, levels in into.items():
            parts.append(f"{VARIABLE_LABELS[var]} {', '.join(levels)} merged into {target} "
                         f"(fewer than {MIN_LEVEL_PATIENTS} patients)")
    for var in dropped:
        parts.append(f"{VARIABLE_LABELS[var]} left out (one level)")
    return "; ".join(p for p in parts if p)


def _merge_levels(counts: pd.Series, order: tuple[Any, ...]) -> dict[Any, Any]:
    """{level: level it is merged into} for levels with fewer than MIN_LEVEL_PATIENTS patients in the model
    (counts: patients per level present in the model or the standardisation population), merged into the
    most frequent level in the model (a tie: the first in the format's order)."""
    ranked = sorted(counts.index, key=lambda lv: (-int(counts[lv]), order.index(lv) if lv in order else len(order)))
    top = ranked[0]
    return {lv: top for lv in counts.index if lv != top and counts[lv] < MIN_LEVEL_PATIENTS}


def _empty_result(base: pd.DataFrame, reason: str, note_for: dict[str, str]) -> AdjustedResult:
    table = base.copy()
    for col in ADJUSTED_COLUMNS:
        table[col] = None if col in ("reference_route", "adjusted_for") else NAN
    table["note"] = [note_for.get(r, f"no model: {reason}") for r in table["route"]]
    return AdjustedResult(table=table[list(COLUMNS)], fitted=False, reason=reason)


def _dummies(values: Any, wanted: list[Any]) -> list[np.ndarray]:
    """One 0/1 column per wanted level. Compares integer codes (pd.factorize), not strings: with pandas'
    Arrow-backed strings, string comparisons over thousands of groups cost more than the fit itself."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    index = {u: i for i, u in enumerate(uniques)}
    return [(codes == index[lv]).astype(float) if lv in index else np.zeros(len(codes)) for lv in wanted]


def _design(df: pd.DataFrame, routes: list[str], reference: str, levels: dict[str, list[Any]],
            score_max: np.ndarray, route_override: str | None = None) -> np.ndarray:
    """The model matrix: intercept, route dummies (reference left out), baseline / scale maximum, then a
    dummy per non-first level of each categorical variable kept (levels[var], first = its reference).
    With route_override every row gets that route (its dummy all ones, the others zeros)."""
    n = len(df)
    others = [r for r in routes if r != reference]
    if route_override:
        route_cols = [np.full(n, 1.0 if r == route_override else 0.0) for r in others]
    else:
        route_cols = _dummies(df["route"], others)
    cols = [np.ones(n), *route_cols]
    if "baseline" in levels:
        cols.append(df["baseline"].to_numpy(dtype=float) / score_max)
    for var in ("diagnosis", "treatment_resistant", "age_band"):
        if var in levels:
            cols.extend(_dummies(df[var], levels[var][1:]))
    return np.column_stack(cols)


def fit_adjusted(groups: pd.DataFrame, *, score_max: float | pd.Series = 21.0) -> AdjustedResult:
    """Marginally standardised adjusted response rates from evaluable patients grouped by covariates.

    groups: one row per combination with columns GROUP_COLUMNS (route code, baseline score, diagnosis code,
    treatment_resistant bool, age band code, patients ≥ 1, responders ≤ patients). score_max: the
    instrument's maximum score (one number, or per row for a mix of instruments) — baseline enters the
    model as baseline / score_max. Returns an AdjustedResult whose table has rates as fractions 0–1 and
    differences in fractions (route minus reference); nothing is raised for data that cannot be modelled:
    the table says why in `note`. Method: module docstring (statsmodels GLM, delta method by hand).

    The linear algebra runs on one BLAS thread: the matrices are small (groups × about 20 columns), and on a
    busy machine OpenBLAS's threads made the fit some 30 times slower (bench/README.md)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_adjusted(groups, score_max=score_max)


def _fit_adjusted(groups: pd.DataFrame, *, score_max: float | pd.Series = 21.0) -> AdjustedResult:
    g = groups.loc[groups["patients"] > 0, list(GROUP_COLUMNS)].copy()
    g["patients"] = g["patients"].astype("int64")
    g["responders"] = g["responders"].astype("int64")
    g["route"] = g["route"].astype(object)
    smax = (np.asarray(score_max.loc[g.index], dtype=float) if isinstance(score_max, pd.Series)
            else np.full(len(g), float(score_max)))
    per_route = g.groupby("route", sort=False)[["patients", "responders"]].sum()
    present = [r for r in spec.ROUTES if r in per_route.index]
    base = pd.DataFrame({
        "route": present,
        "evaluable": [int(per_route.loc[r, "patients"]) for r in present],
        "crude_rate": [per_route.loc[r, "responders"] / per_route.loc[r, "patients"] for r in present],
    })
    small = {r: NOTE_SMALL_ROUTE for r in present if per_route.loc[r, "patients"] < MIN_ROUTE_PATIENTS}
    routes = [r for r in present if r not in small]
    if not present:
        return _empty_result(base, "no evaluable patients", small)
    if len(routes) < 2:
        return _empty_result(base, "fewer than two routes with 10 or more evaluable patients to compare", small)
    in_model = g[g["route"].isin(routes)]
    n_model = int(in_model["patients"].sum())
    if n_model < MIN_MODEL_PATIENTS:
        return _empty_result(base, f"fewer than {MIN_MODEL_PATIENTS} evaluable patients in the model", small)
    # reference: the route with most evaluable patients, a tie to the first in the order of spec.ROUTES
    reference = max(routes, key=lambda r: (int(per_route.loc[r, "patients"]), -spec.ROUTES.index(r)))

    # merge rare levels (counted in the model) and drop variables left with one level
    merges: dict[str, dict[str, str]] = {}
    g = g.copy()
    for var, order in (("diagnosis", spec.DIAGNOSES), ("age_band", spec.AGE_BANDS)):
        counts = in_model.groupby(var)["patients"].sum()
        for lv in g[var].unique():  # levels only the standardisation population has count as 0 in the model
            if lv not in counts.index:
                counts[lv] = 0
        mapping = _merge_levels(counts, order)
        if mapping:
            merges[var] = {lv: mapping[lv] for lv in sorted(mapping, key=lambda x: order.index(x) if x in order else 99)}
            g[var] = g[var].map(lambda v: mapping.get(v, v))
    in_model = g[g["route"].isin(routes)]
    levels: dict[str, list[Any]] = {}
    dropped: list[str] = []
    if (in_model["baseline"].to_numpy(dtype=float) / smax[g["route"].isin(routes).to_numpy()]).std() > 0:
        levels["baseline"] = []
    else:
        dropped.append("baseline")
    for var, order in (("diagnosis", spec.DIAGNOSES), ("treatment_resistant", (False, True)),
                       ("age_band", spec.AGE_BANDS)):
        present_levels = sorted(in_model[var].unique(), key=lambda x: order.index(x) if x in order else 99)
        if len(present_levels) > 1:
            levels[var] = present_levels
        else:
            dropped.append(var)
    variables = tuple(v for v in VARIABLE_LABELS if v in levels)
    adjusted_for = describe_adjustment(variables, merges, tuple(dropped),
                                       per_patient_maximum=isinstance(score_max, pd.Series))

    def no_model(reason: str) -> AdjustedResult:
        res = _empty_result(base, reason, small)
        return AdjustedResult(table=res.table, fitted=False, reason=reason, variables=variables, merges=merges,
                              dropped=tuple(dropped), patients_in_model=n_model)

    # (quasi-)complete separation along a categorical variable: a level whose patients all respond or
    # none does has no finite coefficient (checked before fitting; statsmodels' warning covers the rest)
    for var in ("route", *(v for v in ("diagnosis", "treatment_resistant", "age_band") if v in levels)):
        sums = in_model.groupby(var)[["patients", "responders"]].sum()
        if ((sums["responders"] == 0) | (sums["responders"] == sums["patients"])).any():
            return no_model("(quasi-)complete separation: in some group every patient responded or none did")

    model_mask = g["route"].isin(routes).to_numpy()
    X = _design(in_model, routes, reference, levels, smax[model_mask])
    endog = np.column_stack([in_model["responders"].to_numpy(float),
                             (in_model["patients"] - in_model["responders"]).to_numpy(float)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            glm = sm.GLM(endog, X, family=sm.families.Binomial())
            # statsmodels computes the rank of X (df_model = rank − constant) from its pseudo-inverse
            if glm.df_model + glm.k_constant < X.shape[1]:
                return no_model("the adjustment variables are collinear in this cohort")
            fit = glm.fit()
        except PerfectSeparationError:
            return no_model("(quasi-)complete separation")
        except (np.linalg.LinAlgError, ValueError) as exc:
            return no_model(f"the model could not be fitted ({exc})")
    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
        return no_model("(quasi-)complete separation")
    if any(issubclass(w.category, ConvergenceWarning) for w in caught) or not getattr(fit, "converged", True):
        return no_model("the model did not converge")
    mu = np.asarray(fit.fittedvalues, dtype=float)
    beta = np.asarray(fit.params, dtype=float)
    cov = np.asarray(fit.cov_params(), dtype=float)
    if (not np.all(np.isfinite(beta)) or not np.all(np.isfinite(cov))
            or np.any(mu < SEPARATION_EPS) or np.any(mu > 1 - SEPARATION_EPS)):
        return no_model("(quasi-)complete separation")

    # marginal standardisation over every evaluable patient (routes outside the model included)
    w = g["patients"].to_numpy(dtype=float)
    n_all = w.sum()
    est: dict[str, tuple[float, np.ndarray]] = {}
    # every patient on the reference route (all route dummies 0); route r adds its own coefficient, and its
    # dummy column, all ones, contributes Σ w p (1 − p) to the gradient
    X_ref = _design(g, routes, reference, levels, smax, route_override=reference)
    lp_ref = X_ref @ beta
    others = [r for r in routes if r != reference]
    for r in routes:
        col = 1 + others.index(r) if r != reference else None
        p = 1.0 / (1.0 + np.exp(-(lp_ref + (beta[col] if col is not None else 0.0))))
        s_w = w * p * (1 - p)
        grad = s_w @ X_ref
        if col is not None:
            grad[col] = s_w.sum()
        est[r] = (float(w @ p / n_all), grad / n_all)
    rows = []
    for r in present:
        row = {"route": r}
        if r in est:
            m, grad = est[r]
            se = float(np.sqrt(grad @ cov @ grad))
            row.update(adjusted_rate=m, adjusted_ci_low=m - Z95 * se, adjusted_ci_high=m + Z95 * se)
            if r == reference:
                row.update(difference=NAN, difference_ci_low=NAN, difference_ci_high=NAN, note=NOTE_REFERENCE)
            else:
                m0, g0 = est[reference]
                dg = grad - g0
                dse = float(np.sqrt(dg @ cov @ dg))
                d = m - m0
                row.update(difference=d, difference_ci_low=d - Z95 * dse, difference_ci_high=d + Z95 * dse, note="")
            row.update(reference_route=reference, adjusted_for=adjusted_for)
        else:
            row.update({c: NAN for c in ADJUSTED_COLUMNS if c not in ("reference_route", "adjusted_for")},
                       reference_route=None, adjusted_for=None, note=small.get(r, ""))
        rows.append(row)
    table = base.merge(pd.DataFrame(rows), on="route", how="left")[list(COLUMNS)]
    return AdjustedResult(table=table, fitted=True, reference_route=reference, variables=variables,
                          merges=merges, dropped=tuple(dropped), patients_in_model=n_model, model=fit)


def load_groups(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """The evaluable patients grouped by the model's variables (queries/adjusted_response_groups.sql)."""
    df = metrics.run_query(con, "adjusted_response_groups", metrics._outcome_params(s, itt=s.population == "itt"))
    df["treatment_resistant"] = df["treatment_resistant"].astype(bool)
    return df


def adjusted_fit(con: duckdb.DuckDBPyConnection, s: Settings) -> AdjustedResult:
    """fit_adjusted for the cohort of these settings; baseline as a fraction of the instrument's maximum
    (under `instrument=matched`, of each patient's own questionnaire's maximum: the groups' scale_max)."""
    params = metrics._outcome_params(s, itt=s.population == "itt")

    def fit() -> AdjustedResult:
        groups = load_groups(con, s)
        if s.matched:
            return fit_adjusted(groups, score_max=groups["scale_max"].astype(float))
        return fit_adjusted(groups, score_max=float(spec.SCORE_RANGE[s.instrument][1]))

    # one fit per connection and settings: the file, the page's explanation and the export share it
    return metrics._remembered(con, "adjusted_fit", params, fit, lambda r: metrics._frame_bytes(r.table))


def adjusted_response(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """adjusted_response.csv before disclosure control (columns COLUMNS, one row per route)."""
    return adjusted_fit(con, s).table.copy()


def protect_adjusted(table: pd.DataFrame, protected_response: pd.DataFrame) -> pd.DataFrame:
    """adjusted_response.csv under the minimum-cell rule: `evaluable` and `crude_rate` are taken from the
    protected response_by_route table (so they hide exactly what response_by_route.csv hides), and a route
    whose evaluable count, responders or response rate is hidden there shows no adjusted numbers."""
    out = table.copy()
    resp = protected_response.set_index("route")
    hidden = []
    evaluable, crude = [], []
    for r in out["route"]:
        if r in resp.index:
            ev, k, rate = resp.loc[r, "evaluable"], resp.loc[r, "responders"], resp.loc[r, "response_rate"]
        else:
            ev = k = rate = pd.NA
        evaluable.append(ev)
        crude.append(NAN if pd.isna(rate) else float(rate))
        hidden.append(pd.isna(ev) or pd.isna(k) or pd.isna(rate))
    hidden = np.array(hidden, dtype=bool)
    # a difference is the route's adjusted rate minus the reference's: with the reference hidden, every
    # difference would give its adjusted rate away, so they go too
    refs = out["reference_route"].dropna().unique() if "reference_route" in out else []
    ref_hidden = any(bool(hidden[out["route"].to_numpy() == r].any()) for r in refs)
    out["evaluable"] = pd.array(evaluable, dtype="Int64")
    out["crude_rate"] = crude
    for col in ADJUSTED_COLUMNS:
        if col in ("reference_route", "adjusted_for"):
            out[col] = out[col].astype(object).where(~hidden, None)
        else:
            out[col] = out[col].astype(float).mask(hidden)
    if ref_hidden:
        for col in ("difference", "difference_ci_low", "difference_ci_high"):
            out[col] = NAN
    out["note"] = np.where(hidden, NOTE_HIDDEN, out["note"].fillna("").astype(object))
    return out[list(COLUMNS)]


def protected_adjusted_response(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """adjusted_response.csv as the export writes it (disclosure applied with s.min_cell)."""
    from dashboard.analysis.disclosure import protect

    response = metrics.protected(con, s, "response_by_route.csv",
                                 lambda: protect("response_by_route", metrics.response_by_route(con, s), s.min_cell))
    return protect_adjusted(adjusted_response(con, s), response)
