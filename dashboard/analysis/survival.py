"""Kaplan–Meier fits for the metrics: SciPy's product-limit estimate, its log-log band, the median and its
interval, and the pairwise log-rank tests between routes.

SciPy does the statistics (`stats.ecdf` on right-censored data, the exponential Greenwood "log-log" band,
`stats.logrank`, `stats.false_discovery_control`); this module only counts the patients at risk at each
time, reads the median off the step curve and fills the band where SciPy leaves it undefined.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

# S(t) <= 0.5 is tested with this tolerance: a product like (1 - 1/2) or (1 - 1/4)(1 - 1/3) must count as
# exactly one half even when floating-point error leaves it a hair above.
HALF_TOLERANCE = 1e-12
CONFIDENCE = 0.95


@dataclass(frozen=True)
class KaplanMeier:
    """A fitted curve: one entry per distinct time (event or censoring), in increasing order."""

    n: int
    n_events: int
    times: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray  # of S, the band filled with S itself where undefined (S = 1 or S = 0)
    ci_high: np.ndarray

    def survival_at(self, t: float) -> float:
        """S(t): right-continuous, so events at exactly t count."""
        if self.n == 0:
            return float("nan")
        i = int(np.searchsorted(self.times, t, side="right"))
        return 1.0 if i == 0 else float(self.survival[i - 1])

    def band_at(self, t: float) -> tuple[float, float]:
        if self.n == 0:
            return float("nan"), float("nan")
        i = int(np.searchsorted(self.times, t, side="right"))
        if i == 0:
            return 1.0, 1.0
        return float(self.ci_low[i - 1]), float(self.ci_high[i - 1])

    def median(self) -> tuple[float, float, float]:
        """(median, ci_low, ci_high): the first times S, the band's lower limit and its upper limit reach one
        half (the band inverted as lifelines does: the lower limit crosses first, giving the lower bound)."""
        return (
            _first_at_or_below_half(self.times, self.survival),
            _first_at_or_below_half(self.times, self.ci_low),
            _first_at_or_below_half(self.times, self.ci_high),
        )


def _first_at_or_below_half(times: np.ndarray, values: np.ndarray) -> float:
    hits = np.flatnonzero(values <= 0.5 + HALF_TOLERANCE)
    return float(times[hits[0]]) if hits.size else float("nan")


def fit(times: Sequence[float] | np.ndarray, events: Sequence[bool] | np.ndarray) -> KaplanMeier:
    """Kaplan–Meier of right-censored times (`events` False = censored) with the 95 % log-log band."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=bool)
    n = int(t.size)
    if n == 0:
        empty = np.array([], dtype=float)
        return KaplanMeier(0, 0, empty, np.array([], dtype=int), np.array([], dtype=int), empty, empty, empty)
    result = stats.ecdf(stats.CensoredData.right_censored(t, ~e))
    sf = result.sf
    grid = np.asarray(sf.quantiles, dtype=float)
    surv = np.asarray(sf.probabilities, dtype=float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # SciPy warns and returns NaN where the band is undefined (S = 1 or S = 0): we use the point there.
        warnings.simplefilter("ignore", RuntimeWarning)
        band = sf.confidence_interval(CONFIDENCE, method="log-log")
        low = np.asarray(band.low.probabilities, dtype=float)
        high = np.asarray(band.high.probabilities, dtype=float)
    low = np.where(np.isnan(low), surv, low)
    high = np.where(np.isnan(high), surv, high)
    sorted_all = np.sort(t)
    sorted_events = np.sort(t[e])
    at_risk = n - np.searchsorted(sorted_all, grid, side="left")
    n_events = np.searchsorted(sorted_events, grid, side="right") - np.searchsorted(sorted_events, grid, side="left")
    return KaplanMeier(n, int(e.sum()), grid, at_risk.astype(int), n_events.astype(int), surv, low, high)


def fit_counts(times: np.ndarray, events: np.ndarray, counts: np.ndarray) -> KaplanMeier:
    """`fit` of the patients given as groups: `counts[i]` patients with time `times[i]` and event flag
    `events[i]` (groups may repeat a time). The same curve, band and counts, bit for bit, without expanding
    the groups into one value per patient.

    The queries send relief and sustained-response times as (route, time, event, patients), a few thousand
    groups for 100,000 patients; `fit` needs one value per patient, and SciPy's `ecdf` builds a Python list
    and sorts that many values (most of a page's Kaplan–Meier cost). Here the number at risk and the events
    at each distinct time are added up from the groups, then SciPy's own arithmetic follows step for step:
    `_ecdf_right_censored` (the product of (n - d) / n) when anyone is censored, `_ecdf_uncensored`
    (1 - events / n) when nobody is, and the exponential Greenwood "log-log" band of
    `EmpiricalDistributionFunction._loglog_ci`, clipped to [0, 1] as `confidence_interval` does
    (tests/test_metrics.py compares this with `fit` on many samples)."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=bool)
    c = np.asarray(counts, dtype=np.int64)
    keep = c > 0
    t, e, c = t[keep], e[keep], c[keep]
    total = int(c.sum())
    if total == 0:
        empty = np.array([], dtype=float)
        return KaplanMeier(0, 0, empty, np.array([], dtype=int), np.array([], dtype=int), empty, empty, empty)
    grid = np.unique(t)
    where = np.searchsorted(grid, t)
    d = np.zeros(grid.size, dtype=np.int64)  # events at each distinct time
    np.add.at(d, where[e], c[e])
    at_time = np.zeros(grid.size, dtype=np.int64)  # everyone whose time it is
    np.add.at(at_time, where, c)
    gone = np.cumsum(at_time)  # relieved or censored at or before each time
    n = total - np.concatenate(([0], gone[:-1]))  # at risk: time at or after each distinct time
    n_events = int(d.sum())
    if n_events == total:  # nobody censored: SciPy's _ecdf_uncensored
        cdf = gone / total
        surv = 1 - cdf
        d = at_time
    else:  # SciPy's _ecdf_right_censored
        surv = np.cumprod((n - d) / n)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        # EmpiricalDistributionFunction._loglog_ci, kind "sf"
        var = 1 / np.log(surv) ** 2 * np.cumsum(d / (n * (n - d)))
        se = np.sqrt(var)
        z = special.ndtri(1 / 2 + np.asarray(CONFIDENCE)[()] / 2)
        lnl_points = np.log(-np.log(surv))
        z_se = z * se
        low = np.exp(-np.exp(lnl_points + z_se))
        high = np.exp(-np.exp(lnl_points - z_se))
    low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    low = np.where(np.isnan(low), surv, low)
    high = np.where(np.isnan(high), surv, high)
    return KaplanMeier(total, n_events, grid, n.astype(int), d.astype(int), surv, low, high)


def pairwise_logrank(groups: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Two-sample log-rank between every pair of groups (times, events), with Benjamini–Hochberg p-values.

    Pairs where the test is undefined (no event in either group) get NaN and take no part in the correction.
    """
    rows = []
    for a, b in combinations(groups, 2):
        (ta, ea), (tb, eb) = groups[a], groups[b]
        statistic = p_value = float("nan")
        if len(ta) and len(tb) and (np.any(ea) or np.any(eb)):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                res = stats.logrank(
                    stats.CensoredData.right_censored(np.asarray(ta, float), ~np.asarray(ea, bool)),
                    stats.CensoredData.right_censored(np.asarray(tb, float), ~np.asarray(eb, bool)),
                )
            statistic, p_value = float(res.statistic), float(res.pvalue)
        rows.append({"route_a": a, "route_b": b, "n_a": len(ta), "n_b": len(tb), "statistic": statistic,
                     "p_value": p_value})
    out = pd.DataFrame(rows, columns=["route_a", "route_b", "n_a", "n_b", "statistic", "p_value"])
    out["p_adjusted"] = benjamini_hochberg(out["p_value"].to_numpy(dtype=float))
    return out


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (SciPy's false_discovery_control) over the defined ones; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out
