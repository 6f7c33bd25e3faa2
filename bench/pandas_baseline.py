"""The benchmark's baseline: the six CSV summaries computed the straightforward way, with pandas.

This is what a competent analyst would write without our store layout: load the four base tables from the
DuckDB file into pandas (`con.sql(...).df()`), derive each patient's route, baseline, last induction day and
endpoint with sort/groupby/merge, and compute the summaries of docs/metrics.md with SciPy for the Wilson
intervals and Kaplan–Meier curves (the same SciPy calls the core makes). Disclosure control reuses the
core's `dashboard.analysis.disclosure.protect`, so both sides do the same cheap post-processing.

It reads only the base tables, never the derived per-patient tables the importer builds: those are part of
what the benchmark measures. `bench/run.py` times `load_tables` + `summaries` and checks the numbers
against the core (tests/test_bench.py does too), so the baseline stays honest.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from dashboard.data import spec
from dashboard.analysis.settings import Settings

SUMMARY_FILES = (
    "cohort.csv", "response_by_route.csv", "time_to_relief.csv", "time_to_relief_curve.csv",
    "side_effects.csv", "maintenance.csv",
)
ROUTE_ORDER = {r: i for i, r in enumerate(spec.ROUTES)}
# Medians must count S(t) = 0.5 exactly; products of fractions land a few ulps either side of it.
_HALF = 0.5 + 1e-9


# --- loading ------------------------------------------------------------------------------------------


def load_tables(db_path: str | Path) -> dict[str, pd.DataFrame]:
    """The four base tables, the columns the summaries need, as pandas DataFrames."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {
            "patients": con.sql(
                "SELECT patient_id, site, start_quarter, age_band, sex, primary_diagnosis, treatment_resistant "
                "FROM patients"
            ).df(),
            "sessions": con.sql(
                "SELECT session_id, patient_id, day, route, setting, phase, integration_therapy, sbp_peak, dbp_peak "
                "FROM sessions"
            ).df(),
            "assessments": con.sql("SELECT patient_id, day, hours_post_dose, instrument, score, t FROM assessments").df(),
            "adverse_events": con.sql("SELECT session_id, event FROM adverse_events").df(),
        }
    finally:
        con.close()


# --- per patient --------------------------------------------------------------------------------------


def patient_table(tables: dict[str, pd.DataFrame], s: Settings) -> pd.DataFrame:
    """One row per cohort patient: route, L, baseline B, eligibility, endpoint score (metrics.md, 'Per patient')."""
    patients = tables["patients"].copy()
    sessions = tables["sessions"]
    a = tables["assessments"]
    a = a[a["instrument"].astype(str) == s.instrument]

    first = sessions.sort_values(["patient_id", "day", "session_id"]).drop_duplicates("patient_id")
    first = first[["patient_id", "route", "setting"]].copy()
    first["route"] = first["route"].astype(str)
    first["setting"] = first["setting"].astype(str)
    stats_ = sessions.groupby("patient_id").agg(
        sessions=("session_id", "size"), integration=("integration_therapy", "any")
    )
    induction = sessions[sessions["phase"].astype(str) == "induction"]
    last_induction = induction.groupby("patient_id")["day"].max().rename("L")
    first_day = sessions.groupby("patient_id")["day"].min()

    pre = a[(a["day"] <= 0) & a["hours_post_dose"].isna()]
    base = pre.sort_values(["patient_id", "day", "score"]).drop_duplicates("patient_id", keep="last")
    base = base.set_index("patient_id")["score"].rename("B")

    p = patients.merge(first, on="patient_id", how="left")
    p = p.join(stats_, on="patient_id").join(last_induction, on="patient_id").join(base, on="patient_id")
    p["sessions"] = p["sessions"].fillna(0).astype(int)
    # A patient whose sessions are all maintenance: L is the first session's day (docs/choices.md).
    p["L"] = p["L"].fillna(p["patient_id"].map(first_day))
    p["integration"] = p["integration"].astype("boolean").fillna(False).astype(bool)
    floors = spec.SEVERITY_BAND_FLOORS[s.instrument]
    band = pd.Series(pd.NA, index=p.index, dtype="object")
    for name in spec.SEVERITY_BANDS:
        band = band.mask(p["B"] >= floors[name], name)
    p["severity"] = band

    keep = pd.Series(True, index=p.index)
    for column, values in (
        ("route", s.route), ("site", s.site), ("primary_diagnosis", s.diagnosis), ("sex", s.sex),
        ("age_band", s.age_band), ("setting", s.setting), ("severity", s.severity),
    ):
        if values:
            keep &= p[column].astype("object").isin(list(values))
    if s.from_quarter:
        keep &= p["start_quarter"].astype(str) >= s.from_quarter
    if s.to_quarter:
        keep &= p["start_quarter"].astype(str) <= s.to_quarter
    if s.treatment_resistant is not None:
        keep &= p["treatment_resistant"] == s.treatment_resistant
    if s.integration is not None:
        keep &= p["integration"] == s.integration
    p = p[keep].copy()
    p["eligible"] = (p["sessions"] > 0) & (p["B"] >= s.baseline_minimum)

    fu = a[(a["day"] > 0) | a["hours_post_dose"].notna()]
    fu = fu[fu["patient_id"].isin(p.loc[p["eligible"], "patient_id"])]
    p["has_followup"] = p["patient_id"].isin(fu["patient_id"])
    ends = fu[fu["hours_post_dose"].isna()].merge(p[["patient_id", "L"]], on="patient_id")
    ends = ends[(ends["day"] > 0) & (ends["day"] <= ends["L"] + s.window)]
    # Several questionnaires on the endpoint day: the highest score, as for the baseline.
    end = ends.sort_values(["patient_id", "day", "score"]).drop_duplicates("patient_id", keep="last")
    p = p.join(end.set_index("patient_id")["score"].rename("end_score"), on="patient_id")
    p["has_endpoint"] = p["eligible"] & p["end_score"].notna()
    # Improvement >= 0.5, in integers: 2 (B - score) >= B, and a baseline of 0 cannot improve.
    p["responder"] = p["has_endpoint"] & (p["B"] > 0) & (2 * (p["B"] - p["end_score"]) >= p["B"])
    p["remitter"] = p["has_endpoint"] & (p["end_score"] <= s.remission_cut)
    p.attrs["followups"] = fu
    return p


def _route_groups(df: pd.DataFrame, column: str = "route") -> list[tuple[str, pd.DataFrame]]:
    """(route, rows) per route present in the spec's order, then ("ALL", every row)."""
    present = [r for r in spec.ROUTES if (df[column].astype("object") == r).any()]
    return [(r, df[df[column].astype("object") == r]) for r in present] + [(spec.ALL, df)]


def _wilson(k: int, n: int) -> tuple[float, float, float]:
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return k / n, float(ci.low), float(ci.high)


# --- the summaries ------------------------------------------------------------------------------------


def cohort_funnel(p: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for route, g in _route_groups(p):
        rows.append({
            "route": route,
            "patients": len(g),
            "with_sessions": int((g["sessions"] > 0).sum()),
            "with_baseline": int(((g["sessions"] > 0) & g["B"].notna()).sum()),
            "eligible": int(g["eligible"].sum()),
            "with_followup": int((g["eligible"] & g["has_followup"]).sum()),
            "with_endpoint": int(g["has_endpoint"].sum()),
        })
    return pd.DataFrame(rows)


def response_by_route(p: pd.DataFrame, s: Settings) -> pd.DataFrame:
    rows = []
    for route, g in _route_groups(p[p["eligible"]]):
        evaluable = int(g["has_endpoint"].sum()) if s.population == "observed" else len(g)
        k, m = int(g["responder"].sum()), int(g["remitter"].sum())
        rate, lo, hi = _wilson(k, evaluable)
        rrate, rlo, rhi = _wilson(m, evaluable)
        rows.append({
            "route": route, "patients": len(g), "evaluable": evaluable,
            "responders": k, "response_rate": rate, "response_ci_low": lo, "response_ci_high": hi,
            "remitters": m, "remission_rate": rrate, "remission_ci_low": rlo, "remission_ci_high": rhi,
        })
    return pd.DataFrame(rows)


def _km(times: np.ndarray, events: np.ndarray):
    data = stats.CensoredData.right_censored(times, ~events)
    sf = stats.ecdf(data).sf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns where the band is undefined (S = 0 or 1)
        band = sf.confidence_interval(0.95, method="log-log")
    lo = np.asarray(band.low.probabilities, dtype=float)
    hi = np.asarray(band.high.probabilities, dtype=float)
    prob = np.asarray(sf.probabilities, dtype=float)
    # The band is undefined where S is 0 or 1: the point itself.
    lo = np.where(np.isnan(lo), prob, lo)
    hi = np.where(np.isnan(hi), prob, hi)
    return np.asarray(sf.quantiles, dtype=float), prob, lo, hi


def _first_at_or_below(x: np.ndarray, y: np.ndarray) -> float:
    hit = np.nonzero(y <= _HALF)[0]
    return float(x[hit[0]]) if len(hit) else math.nan


def _s_at(x: np.ndarray, y: np.ndarray, t: float) -> float:
    i = np.searchsorted(x, t, side="right") - 1
    return 1.0 if i < 0 else float(y[i])


def relief_times(p: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Per eligible patient with a follow-up: time (t of first relief or last follow-up) and event flag."""
    fu = p.attrs["followups"].merge(p.loc[p["eligible"], ["patient_id", "route", "B"]], on="patient_id")
    if s.relief == "response":
        fu["met"] = (fu["B"] > 0) & (2 * (fu["B"] - fu["score"]) >= fu["B"])
    else:
        fu["met"] = (fu["B"] - fu["score"]) >= s.mcid
    last = fu.groupby("patient_id").agg(route=("route", "first"), last_t=("t", "max"))
    first_met = fu[fu["met"]].groupby("patient_id")["t"].min().rename("event_t")
    out = last.join(first_met)
    out["event"] = out["event_t"].notna()
    out["time"] = out["event_t"].fillna(out["last_t"])
    return out.reset_index()


def time_to_relief(p: pd.DataFrame, s: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    rt = relief_times(p, s)
    summary, curves = [], []
    for route, g in _route_groups(rt):
        times, events = g["time"].to_numpy(float), g["event"].to_numpy(bool)
        row: dict[str, Any] = {"route": route, "patients": len(g), "events": int(events.sum()),
                               "censored": int((~events).sum())}
        x, y, lo, hi = _km(times, events)
        row["median_days"] = _first_at_or_below(x, y)
        row["median_ci_low"] = _first_at_or_below(x, lo)
        row["median_ci_high"] = _first_at_or_below(x, hi)
        for d in spec.RELIEF_DAYS:
            row[f"relieved_by_day_{d}"] = 1.0 - _s_at(x, y, d)
        summary.append(row)
        counts = g.groupby("time").agg(events=("event", "sum"), leaving=("event", "size"))
        at_risk = len(g) - counts["leaving"].cumsum().shift(fill_value=0)
        # The curve starts at day 0 with everyone at risk (no follow-up has t = 0), as the core's does.
        curves.append(pd.DataFrame({"route": [route], "day": [0.0], "at_risk": [len(g)], "events": [0],
                                    "relieved": [0.0], "ci_low": [0.0], "ci_high": [0.0]}))
        curves.append(pd.DataFrame({
            "route": route, "day": x, "at_risk": at_risk.to_numpy(int), "events": counts["events"].to_numpy(int),
            "relieved": 1.0 - y, "ci_low": 1.0 - hi, "ci_high": 1.0 - lo,
        }))
    return pd.DataFrame(summary), pd.concat(curves, ignore_index=True)


def side_effects(p: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    sessions = tables["sessions"]
    ss = sessions[sessions["patient_id"].isin(p["patient_id"])][["session_id", "patient_id", "route", "sbp_peak", "dbp_peak"]]
    ss = ss.assign(route=ss["route"].astype(str))
    ev = tables["adverse_events"][["session_id", "event"]].assign(event=lambda d: d["event"].astype(str))
    ev = ev.merge(ss[["session_id", "patient_id", "route"]], on="session_id").drop_duplicates(["session_id", "event"])
    severe = ss[(ss["sbp_peak"] >= spec.BP_SEVERE_SBP) | (ss["dbp_peak"] >= spec.BP_SEVERE_DBP)]
    ev = pd.concat([ev, severe[["session_id", "patient_id", "route"]].assign(event=spec.BP_SEVERE)], ignore_index=True)
    rows = []
    for route, g in _route_groups(ss):
        e = ev if route == spec.ALL else ev[ev["route"] == route]
        n_sessions, n_patients = len(g), g["patient_id"].nunique()
        by_event = e.groupby("event").agg(sessions_with_event=("session_id", "size"), patients_with_event=("patient_id", "nunique"))
        for event in spec.SUMMARY_EVENTS:
            k = int(by_event["sessions_with_event"].get(event, 0))
            kp = int(by_event["patients_with_event"].get(event, 0))
            rate, lo, hi = _wilson(kp, n_patients)
            rows.append({
                "route": route, "event": event, "sessions": n_sessions, "sessions_with_event": k,
                "session_rate": k / n_sessions if n_sessions else math.nan,
                "patients": n_patients, "patients_with_event": kp,
                "patient_rate": rate, "patient_ci_low": lo, "patient_ci_high": hi,
            })
    return pd.DataFrame(rows)


def maintenance(p: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    sessions = tables["sessions"]
    ms = sessions[(sessions["phase"].astype(str) == "maintenance") & sessions["patient_id"].isin(p["patient_id"])]
    ms = ms[["patient_id", "day"]].merge(p[["patient_id", "route", "L"]], on="patient_id").sort_values(["patient_id", "day"])
    ms["gap"] = ms.groupby("patient_id")["day"].diff()
    per = ms.groupby("patient_id").agg(
        route=("route", "first"), n=("day", "size"), first=("day", "min"), last=("day", "max"), L=("L", "first")
    )
    per["to_first"] = per["first"] - per["L"]
    per["months"] = (per["last"] - per["L"]) / spec.DAYS_PER_MONTH
    relapse = _relapse_times(p, tables)
    rows = []
    for route, g in _route_groups(p):
        resp = g[g["responder"]]
        in_m = int(resp["patient_id"].isin(per.index).sum())
        mp = per if route == spec.ALL else per[per["route"] == route]
        gaps = ms["gap"] if route == spec.ALL else ms.loc[ms["route"] == route, "gap"]
        gaps = gaps.dropna()
        months = mp["months"].sum()
        rr = relapse if route == spec.ALL else relapse[relapse["route"] == route]
        sustained = lo = hi = math.nan
        if len(rr):
            x, y, blo, bhi = _km(rr["time"].to_numpy(float), rr["event"].to_numpy(bool))
            sustained = _s_at(x, y, spec.SUSTAINED_DAYS)
            lo = _s_at(x, blo, spec.SUSTAINED_DAYS)
            hi = _s_at(x, bhi, spec.SUSTAINED_DAYS)
        uptake, uptake_lo, uptake_hi = _wilson(in_m, len(resp))
        rows.append({
            "route": route, "responders": len(resp), "responders_in_maintenance": in_m,
            "uptake_rate": uptake, "uptake_ci_low": uptake_lo, "uptake_ci_high": uptake_hi,
            "maintenance_patients": len(mp), "maintenance_sessions": int(mp["n"].sum()),
            "median_days_to_first_maintenance": float(mp["to_first"].median()) if len(mp) else math.nan,
            "median_interval_days": float(gaps.median()) if len(gaps) else math.nan,
            "sessions_per_patient_month": mp["n"].sum() / months if months > 0 else math.nan,
            "sustained_patients": len(rr), "sustained_response_8w": sustained, "sustained_ci_low": lo, "sustained_ci_high": hi,
        })
    return pd.DataFrame(rows)


def _relapse_times(p: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    a = tables["assessments"]
    resp = p.loc[p["responder"], ["patient_id", "route", "B", "L"]]
    q = a[a["hours_post_dose"].isna()].merge(resp, on="patient_id")
    q = q[q["day"] > q["L"]]
    q["relapse"] = 4 * (q["B"] - q["score"]) <= q["B"]  # improvement <= 0.25
    q["time"] = q["day"] - q["L"]
    last = q.groupby("patient_id").agg(route=("route", "first"), last=("time", "max"))
    first = q[q["relapse"]].groupby("patient_id")["time"].min().rename("first")
    out = last.join(first)
    out["event"] = out["first"].notna()
    out["time"] = out["first"].fillna(out["last"]).astype(float)
    return out.reset_index()


# --- everything ---------------------------------------------------------------------------------------


def raw_summaries(tables: dict[str, pd.DataFrame], s: Settings) -> dict[str, pd.DataFrame]:
    """The six summaries before disclosure control, keyed by file name."""
    inst = tables["assessments"]
    tables = dict(tables, assessments=inst[inst["instrument"].astype(str) == s.instrument])
    p = patient_table(tables, s)
    summary, curve = time_to_relief(p, s)
    return {
        "cohort.csv": cohort_funnel(p),
        "response_by_route.csv": response_by_route(p, s),
        "time_to_relief.csv": summary,
        "time_to_relief_curve.csv": curve,
        "side_effects.csv": side_effects(p, tables),
        "maintenance.csv": maintenance(p, tables),
    }


def summaries(tables: dict[str, pd.DataFrame], s: Settings, protect: Callable | None = None) -> dict[str, pd.DataFrame]:
    """The six summaries with disclosure control (`protect(name, df, k)`, the core's) applied; maintenance.csv's
    responders also hidden where response_by_route.csv hides them, as the export does (export.protect_table)."""
    raw = raw_summaries(tables, s)
    if protect is None:
        from dashboard.analysis.disclosure import protect
    out = {}
    for name, df in raw.items():  # response_by_route.csv comes before maintenance.csv
        if name == "maintenance.csv" and s.min_cell > 0:
            response = out["response_by_route.csv"]
            hidden = set(response.loc[response["responders"].isna(), "route"].astype(str))
            out[name] = protect("maintenance", df, s.min_cell,
                                hidden_elsewhere={"responders": df["route"].astype(str).isin(hidden).to_numpy()})
        else:
            out[name] = protect(name.removesuffix(".csv"), df, s.min_cell)
    return out


def write_csvs(frames: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in frames.items():
        path = out / name
        df.to_csv(path, index=False)
        paths.append(path)
    return paths


def run_baseline(db_path: str | Path, out_dir: str | Path, s: Settings | None = None) -> dict[str, pd.DataFrame]:
    """Load, compute and write the six files: what the benchmark times as the baseline."""
    s = s or Settings()
    frames = summaries(load_tables(db_path), s)
    write_csvs(frames, out_dir)
    return frames
