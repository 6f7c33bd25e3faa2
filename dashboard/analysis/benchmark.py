"""The network benchmark (docs/metrics.md "Network benchmark", `benchmark.csv`): each site against the network.

With every filter but `site` applied, each site's response and remission rates over its evaluable patients
(Wilson 95 % intervals, metrics.wilson). A site with at least 30 evaluable patients is benchmarked; with at
least 5 benchmarked sites, the network median and 75th percentile of their rates (linear interpolation,
as DuckDB's `quantile_cont` and NumPy's default `np.quantile`); `network_pooled` is the rate over all
sites' evaluable patients. `outside_95` / `outside_998` flag a rate outside the funnel-plot control limits
pooled ± z·√(pooled·(1 − pooled)/evaluable) (Spiegelhalter 2005, Stat Med 24:1185; z = 1.959964, 3.090232).

Who may see which site is the caller's to say (`named_sites`, docs/access.md): None means every site by
name; a set restricts the output to those sites' rows, and the rest of the network stays only a
distribution (median, 75th percentile, pooled rate, limits), never another site's name or numbers.

`benchmark_from_counts` is the arithmetic on per-site counts (tests build their own), `protect_benchmark`
applies the minimum-cell rule, `restrict_benchmark` the viewer's sites, and `network_benchmark(con, s,
named_sites=…)` all three for a database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from dashboard.analysis import metrics
from dashboard.analysis.disclosure import CELL_KEY_MODULUS, noise, perturbed, protect
from dashboard.analysis.settings import Settings
from dashboard.data import spec

NAN = float("nan")
MIN_SITE_PATIENTS = 30  # evaluable patients for a site to be benchmarked
MIN_SITES = 5  # benchmarked sites for the network median and 75th percentile
Z95 = 1.959964
Z998 = 3.090232
MEASURES = ("response", "remission")
COLUMNS = (
    "site", "measure", "evaluable", "events", "rate", "ci_low", "ci_high", "benchmarked", "network_median",
    "network_p75", "network_pooled", "position", "outside_95", "outside_998",
)
NETWORK_COLUMNS = ("network_median", "network_p75", "network_pooled")
# A viewer restricted to some sites sees the pooled rate only when at least this many other sites
# contribute to it: with one other site, the pooled rate and the viewer's own counts would come close to
# giving that site's rate away (docs/choices.md).
MIN_OTHER_SITES_FOR_POOLED = 2


@dataclass(frozen=True)
class Network:
    """The network distribution of one measure: what a viewer restricted to their own sites may see."""

    measure: str
    sites_with_patients: int
    sites_benchmarked: int
    median: float
    p75: float
    pooled: float


def control_limits(pooled: float, evaluable: np.ndarray | float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Funnel-plot limits pooled ± z·√(pooled(1 − pooled)/n) for n evaluable patients (NaN for n = 0)."""
    n = np.asarray(evaluable, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = z * np.sqrt(pooled * (1 - pooled) / n)
    half = np.where(n > 0, half, np.nan)
    return pooled - half, pooled + half


def benchmark_from_counts(counts: pd.DataFrame, published: dict[str, float] | None = None) -> pd.DataFrame:
    """benchmark.csv before disclosure control, from per-site counts.

    counts: one row per site with columns site, evaluable, responders, remitters (integers). Sites
    without evaluable patients are left out. Returns COLUMNS, rows by site code then measure (response
    first); rates and limits are fractions 0–1, `benchmarked`, `outside_95`, `outside_998` booleans,
    `position` text or None. `published` {measure: rate} replaces the pooled rates computed from `counts`
    (and the control limits around them): the network's rates as published (`published_pooled`)."""
    keep = counts["evaluable"].to_numpy() > 0
    sites = [str(x) for x in counts["site"].to_numpy(dtype=object)[keep]]
    order = sorted(range(len(sites)), key=sites.__getitem__)  # by site code (stable, as sort_values)
    site_order = [sites[i] for i in order]
    rows = []
    for measure, col in (("response", "responders"), ("remission", "remitters")):
        n = counts["evaluable"].to_numpy(dtype=np.int64)[keep][order]
        k = counts[col].to_numpy(dtype=np.int64)[keep][order]
        rates = np.array([k_ / n_ for k_, n_ in zip(k, n)], dtype=float)
        benchmarked = n >= MIN_SITE_PATIENTS
        if benchmarked.sum() >= MIN_SITES:
            median, p75 = (float(v) for v in np.quantile(rates[benchmarked], [0.5, 0.75], method="linear"))
        else:
            median = p75 = NAN
        if published is not None:
            pooled = published[measure]
        else:
            pooled = float(k.sum() / n.sum()) if n.sum() else NAN
        lo95, hi95 = control_limits(pooled, n, Z95)
        lo998, hi998 = control_limits(pooled, n, Z998)
        for i, site in enumerate(site_order):
            rate, ci_lo, ci_hi = metrics.wilson(int(k[i]), int(n[i]))
            if benchmarked[i] and not math.isnan(median):
                position = "top quartile" if rate >= p75 else "above median" if rate >= median else "below median"
            else:
                position = None
            rows.append({
                "site": site, "measure": measure, "evaluable": int(n[i]), "events": int(k[i]), "rate": rate,
                "ci_low": ci_lo, "ci_high": ci_hi, "benchmarked": bool(benchmarked[i]),
                "network_median": median, "network_p75": p75, "network_pooled": pooled, "position": position,
                "outside_95": bool(rate < lo95[i] or rate > hi95[i]),
                "outside_998": bool(rate < lo998[i] or rate > hi998[i]),
            })
    if not rows:
        return pd.DataFrame(rows, columns=list(COLUMNS))
    # rows by site, then measure in MEASURES' order: the rows above are response then remission, each by
    # site, so site i's rows are i and i + sites (one DataFrame built in that order instead of a sort)
    per = len(site_order)
    rows = [rows[i + m * per] for i in range(per) for m in range(len(MEASURES))]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def network_summary(table: pd.DataFrame) -> dict[str, Network]:
    """Per measure, the network's distribution as the (unrestricted) table holds it."""
    out = {}
    for measure in MEASURES:
        m = table[table["measure"] == measure]
        first = m.iloc[0] if len(m) else None
        out[measure] = Network(
            measure=measure,
            sites_with_patients=int(len(m)),
            sites_benchmarked=int(m["benchmarked"].astype(bool).sum()) if len(m) else 0,
            median=float(first["network_median"]) if first is not None else NAN,
            p75=float(first["network_p75"]) if first is not None else NAN,
            pooled=float(first["network_pooled"]) if first is not None else NAN,
        )
    return out


def protect_benchmark(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """benchmark.csv under the minimum cell k: the sites are protected as the routes of response_by_route
    are (disclosure.protect, with the network as the `ALL` row: counts 1..k−1 hidden, rates and intervals
    resting on fewer than k patients hidden, complementary suppression against the network total). A
    hidden rate also hides its position and control-limit flags (a hidden value never reads as a finding);
    the pooled rate is hidden when the whole network has fewer than k evaluable patients."""
    out = table.copy().reset_index(drop=True)
    if out.empty:
        return out.astype({"evaluable": "Int64", "events": "Int64"})
    resp = out[out["measure"] == "response"].set_index("site")
    rem = out[out["measure"] == "remission"].set_index("site")
    frame = pd.DataFrame({
        "route": list(resp.index) + [spec.ALL],
        "patients": list(resp["evaluable"]) + [int(resp["evaluable"].sum())],
        "evaluable": list(resp["evaluable"]) + [int(resp["evaluable"].sum())],
        "responders": list(resp["events"]) + [int(resp["events"].sum())],
        "response_rate": list(resp["rate"]) + [resp["events"].sum() / resp["evaluable"].sum()],
        "response_ci_low": list(resp["ci_low"]) + [NAN],
        "response_ci_high": list(resp["ci_high"]) + [NAN],
        "remitters": list(rem.loc[resp.index, "events"]) + [int(rem["events"].sum())],
        "remission_rate": list(rem.loc[resp.index, "rate"]) + [rem["events"].sum() / rem["evaluable"].sum()],
        "remission_ci_low": list(rem.loc[resp.index, "ci_low"]) + [NAN],
        "remission_ci_high": list(rem.loc[resp.index, "ci_high"]) + [NAN],
    })
    p = protect("response_by_route", frame, k).set_index("route")
    network = p.loc[spec.ALL]
    names = {"response": ("responders", "response_rate", "response_ci_low", "response_ci_high"),
             "remission": ("remitters", "remission_rate", "remission_ci_low", "remission_ci_high")}
    cells: dict[str, list] = {c: [] for c in ("evaluable", "events", "rate", "ci_low", "ci_high", "network_pooled")}
    # the protected frame's columns as plain lists, looked up by site (p.loc[site] per row builds a Series
    # each time: most of this function's cost)
    at = {site: i for i, site in enumerate(p.index)}
    column = {c: p[c].tolist() for c in ("evaluable", *names["response"], *names["remission"])}
    for site, measure, pooled in zip(out["site"], out["measure"], out["network_pooled"]):
        count, rate, lo, hi = names[measure]
        i = at[site]
        cells["evaluable"].append(column["evaluable"][i])
        cells["events"].append(column[count][i])
        cells["rate"].append(column[rate][i])
        cells["ci_low"].append(column[lo][i])
        cells["ci_high"].append(column[hi][i])
        cells["network_pooled"].append(NAN if pd.isna(network[rate]) else pooled)
    for col in ("evaluable", "events"):
        out[col] = pd.array([None if pd.isna(v) else int(v) for v in cells[col]], dtype="Int64")
    for col in ("rate", "ci_low", "ci_high", "network_pooled"):
        out[col] = np.array([NAN if pd.isna(v) else float(v) for v in cells[col]], dtype=float)
    for col in ("network_median", "network_p75"):
        out[col] = out[col].astype(float)
    hidden = out["rate"].isna().to_numpy()
    out["position"] = out["position"].astype(object).where(~hidden, None)
    for col in ("outside_95", "outside_998"):
        out[col] = pd.array([None if h else bool(v) for h, v in zip(hidden, out[col])], dtype="boolean")
    return out


def restrict_benchmark(table: pd.DataFrame, named_sites: frozenset[str] | None) -> pd.DataFrame:
    """The rows a viewer may see: every site when named_sites is None, else only the named sites' rows (the
    network columns stay: they describe the distribution, not any one site). With fewer than
    MIN_OTHER_SITES_FOR_POOLED other sites having patients, the pooled rate is left out as well."""
    if named_sites is None:
        return table.reset_index(drop=True)
    named = {str(x) for x in named_sites}
    out = table[table["site"].astype(str).isin(named)].reset_index(drop=True).copy()
    others = set(table["site"].astype(str)) - named
    if len(others) < MIN_OTHER_SITES_FOR_POOLED:
        out["network_pooled"] = NAN
    return out


def site_counts(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Per site (every filter but `site` applied): site, evaluable, responders, remitters.

    Over every site of the network, whatever the viewer's scope: the benchmark places the viewer's sites on
    the network's distribution. Callers restrict what is named with `named_sites` (network_benchmark and
    network_distribution do so from the scope by themselves), so no other site's name or numbers leave."""
    df = metrics._outcome_counts(con, s.replace(site=(), scope=None), by="site")
    df = df[df["is_total"] & df["grp"].notna()]
    evaluable = "eligible" if s.population == "itt" else "with_endpoint"
    out = pd.DataFrame({
        "site": df["grp"].astype(str).to_numpy(),
        "evaluable": df[evaluable].to_numpy(dtype=np.int64),
        "responders": df["responders"].to_numpy(dtype=np.int64),
        "remitters": df["remitters"].to_numpy(dtype=np.int64),
    })
    # cell keys (queries/outcome_counts.sql): a site's counts are those of response_by_route's ALL row for
    # that site, so both show the same perturbed value
    for col, source in (("evaluable", evaluable), ("responders", "responders"), ("remitters", "remitters")):
        if f"{source}__key" in df.columns:
            out[f"{col}__key"] = df[f"{source}__key"].fillna(0).to_numpy(dtype=np.int64)
    return out


_COUNT_KEYS = ("evaluable__key", "responders__key", "remitters__key")


def perturbed_site_counts(counts: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per-site counts as published under minimum cell k > 0 (disclosure.perturbed with each count's cell
    key); counts under k, which the table hides, get their noise too (never below 0), since they still
    enter the network's pooled rate, median and percentile. Key columns are dropped."""
    out = counts.drop(columns=[c for c in _COUNT_KEYS if c in counts.columns])
    if k <= 0:
        return out
    for col in ("evaluable", "responders", "remitters"):
        if f"{col}__key" not in counts.columns:
            continue
        # a site with patients keeps at least one (the table's rows, decided on the exact counts, stay the same)
        floor = 1 if col == "evaluable" else 0
        out[col] = [perturbed(int(n), int(key), k) if n >= k else int(n) if n <= 0
                    else max(int(n) + noise(int(key)), floor)
                    for n, key in zip(counts[col], counts[f"{col}__key"])]
    # perturbed independently, a part may exceed its whole: the rate is then 1, as in disclosure.RECOMPUTE
    out["responders"] = np.minimum(out["responders"], out["evaluable"])
    out["remitters"] = np.minimum(out["remitters"], out["evaluable"])
    return out


def published_pooled(counts: pd.DataFrame, k: int) -> dict[str, float] | None:
    """The network's pooled response and remission rates as published under minimum cell k > 0: its total
    counts, each perturbed once with the key of all its patients (the sum of the sites' keys modulo 2^32,
    disclosure.CELL_KEY_MODULUS), exactly as response_by_route.csv's `ALL` row publishes the same patients'
    counts when no site is chosen. Summing every site's perturbed count instead added up each site's noise
    (a newcomer saw a pooled 37 % beside the same cohort's 54 %). None when k = 0 or the keys are missing."""
    if k <= 0 or any(f"{c}__key" not in counts.columns for c in ("evaluable", "responders", "remitters")):
        return None

    def published(col: str) -> int:
        key = int(counts[f"{col}__key"].astype("int64").sum()) % CELL_KEY_MODULUS
        return perturbed(int(counts[col].sum()), key, k)

    n = published("evaluable")
    # perturbed independently, a part may exceed its whole: the rate is then 1, as in disclosure.RECOMPUTE
    return {measure: (min(published(col), n) / n if n > 0 else NAN)
            for measure, col in (("response", "responders"), ("remission", "remitters"))}


def protected_benchmark(counts: pd.DataFrame, k: int) -> pd.DataFrame:
    """benchmark.csv's rows under minimum cell k: which cells are hidden is decided on the exact counts
    (`protect_benchmark`, as every table's suppression); the values shown, and the network's median, 75th
    percentile and the funnel flags, are computed from the perturbed site counts, and the pooled rate from
    the network's perturbed totals (`published_pooled`), so no rate is an exact fraction that would give a
    site's or the network's counts back."""
    exact = protect_benchmark(benchmark_from_counts(perturbed_site_counts(counts, 0)), k)
    if k <= 0:
        return exact
    shown = benchmark_from_counts(perturbed_site_counts(counts, k), published_pooled(counts, k))
    # the same rows in the same order (site, then measure): both come from the same sites with patients
    if list(zip(shown["site"], shown["measure"])) != list(zip(exact["site"], exact["measure"])):
        shown = shown.set_index(["site", "measure"]).loc[list(zip(exact["site"], exact["measure"]))].reset_index()
    out = exact.copy()
    for col in ("evaluable", "events", "rate", "ci_low", "ci_high", "network_pooled", "position", "outside_95",
                "outside_998"):
        keep = exact[col].notna().to_numpy()
        values = shown[col].astype(object).to_numpy()
        out[col] = pd.array([values[i] if keep[i] else None for i in range(len(out))], dtype=exact[col].dtype) \
            if col in ("evaluable", "events", "outside_95", "outside_998") else \
            pd.Series([values[i] if keep[i] else (None if col == "position" else NAN) for i in range(len(out))],
                      dtype=exact[col].dtype)
    for col in ("benchmarked", "network_median", "network_p75"):
        out[col] = shown[col].to_numpy()
    return out


def protected_site_table(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """`protected_benchmark(site_counts(con, s), s.min_cell)`: every site's rows, before any restriction to
    the viewer's sites, computed once per connection and state while it stays among metrics' recent results
    (the Overview's network line, the Network benchmark page's table and lines all start from it; 15-20 ms at
    100,000 patients). The state is every filter but site, so states differing only in sites share it."""
    base = s.replace(site=(), scope=None)
    return metrics.protected(con, base, "benchmark_sites",
                             lambda: protected_benchmark(site_counts(con, base), base.min_cell))


def _named(s: Settings, named_sites: frozenset[str] | None) -> frozenset[str] | None:
    """The sites that may be named: those given, within the person's scope (access.md)."""
    if s.scope is None:
        return named_sites
    scope = frozenset(s.scope)
    return scope if named_sites is None else frozenset(named_sites) & scope


def network_benchmark(con: duckdb.DuckDBPyConnection, s: Settings, *,
                      named_sites: frozenset[str] | None = None) -> pd.DataFrame:
    """benchmark.csv for a viewer who may see `named_sites` by name (None: every site), minimum cell
    s.min_cell applied before restricting (the protection needs every site). A scoped Settings (a signed-in
    site director's) restricts to its scope even when `named_sites` is not given."""
    named_sites = _named(s, named_sites)
    return restrict_benchmark(protected_site_table(con, s), named_sites)


def network_distribution(con: duckdb.DuckDBPyConnection, s: Settings, *,
                         named_sites: frozenset[str] | None = None) -> dict[str, Network]:
    """The network's distribution per measure (for the page's lines and counts of sites), protected as
    network_benchmark's columns are; a restricted viewer gets no pooled rate when network_benchmark
    leaves it out."""
    named_sites = _named(s, named_sites)
    table = protected_site_table(con, s)
    summary = network_summary(table)
    if named_sites is not None:
        others = set(table["site"].astype(str)) - {str(x) for x in named_sites}
        if len(others) < MIN_OTHER_SITES_FOR_POOLED:
            summary = {m: Network(n.measure, n.sites_with_patients, n.sites_benchmarked, n.median, n.p75, NAN)
                       for m, n in summary.items()}
    return summary
