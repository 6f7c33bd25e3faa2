"""Esketamine (SPRAVATO REMS) monitoring: the measures of docs/metrics.md "Esketamine monitoring" (rems.csv).

The SPRAVATO REMS asks clinics that give intranasal esketamine to monitor each patient for at least two
hours and until sedation, dissociation and respiratory depression have resolved, to take blood pressure
before dosing, at about 40 minutes and before discharge, to use pulse oximetry, and to submit a Patient
Monitoring Form after every session (within 7 days). These functions count, per site and overall, the
esketamine sessions held in the clinic by cohort patients that meet each rule, over the sessions where the
rule's columns were recorded, with 95 % Wilson intervals (SciPy, through `metrics.wilson`).

The columns are optional in the clinic export. A measure whose column the export lacked (recorded in the
store's `export_columns` at import) is empty in every row, never zero; `lacking_columns` names them so the
dashboard can say what the export lacks. Results are returned *before* disclosure control
(`disclosure.protect("rems", ...)`, `disclosure.protect("rems_distribution", ...)`).
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd

from dashboard.analysis import metrics
from dashboard.analysis.settings import Settings
from dashboard.data import spec, store

NAN = float("nan")
SUFFIXES = ("", "_of", "_rate", "_ci_low", "_ci_high")


def _five(measure: str) -> list[str]:
    return [measure + suffix for suffix in SUFFIXES]


# rems.csv's columns: the key, sessions, five per session measure, the ready-to-leave median and the
# sessions it rests on, the esketamine patients and the five columns of the patient measure.
REMS_COLUMNS = (
    "site", "sessions",
    *[c for m in spec.REMS_SESSION_MEASURES for c in _five(m)],
    "ready_to_leave_median", "ready_to_leave_sessions", "patients",
    *[c for m in spec.REMS_PATIENT_MEASURES for c in _five(m)],
)
# the counts of REMS_COLUMNS with a cell key (a lacking measure's key is dropped with its count)
_KEYS = tuple(f"{c}__key" for c in ("sessions", "patients", "ready_to_leave_sessions",
                                     *(x for m in spec.REMS_MEASURES for x in (m, m + "_of"))))
DISTRIBUTION_COLUMNS = ("measure", "bin", "sessions")
DISTRIBUTION_MEASURES = ("monitoring_minutes", "ready_to_leave_minutes", "sbp_rise_40min", "dbp_rise_40min")
# Histogram bins (lower bounds): minutes by 15 up to 300 ("300 or more"), systolic rise by 10 mmHg from
# "-30 or less" to "60 or more", diastolic by 5 from "-15 or less" to "40 or more": wide enough that most
# bins hold many sessions (small ones are hidden), narrow enough to show the 120-minute mark.
BINS = {"minute_bin": 15, "minute_top": 300, "sbp_bin": 10, "sbp_low": -30, "sbp_top": 60,
        "dbp_bin": 5, "dbp_low": -15, "dbp_top": 40}
BIN_WIDTH = {"monitoring_minutes": 15, "ready_to_leave_minutes": 15, "sbp_rise_40min": 10, "dbp_rise_40min": 5}
# The column a distribution's measure reads: empty when the export lacks it.
DISTRIBUTION_NEEDS = {
    "monitoring_minutes": "monitored_min",
    "ready_to_leave_minutes": "ready_to_leave",
    "sbp_rise_40min": (("sessions", "sbp_pre"), ("sessions", "sbp_40min")),
    "dbp_rise_40min": (("sessions", "dbp_pre"), ("sessions", "dbp_40min")),
}


def export_columns(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """The (table, column) pairs the imported export's files had. Raises StoreError for an older database."""
    with con.cursor() as cur:
        exists = cur.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'export_columns'").fetchone()[0]
        if not exists:
            raise store.StoreError(
                "this database was built by an older version (no record of the export's columns); import the "
                "clinic export again with this version of ketamine-outcomes.")
        return {(t, c) for t, c in cur.execute("SELECT table_name, column_name FROM export_columns").fetchall()}


def lacking_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """measure -> the columns (as "table.column") it needs that the export lacked; measures it had are left out.

    Keys are spec.REMS_MEASURES and "ready_to_leave" (the median)."""
    have = export_columns(con)
    out: dict[str, list[str]] = {}
    for measure, needs in spec.REMS_MEASURE_COLUMNS.items():
        missing = [f"{t}.{c}" for t, c in needs if (t, c) not in have]
        if missing:
            out[measure] = missing
    return out


def _params(s: Settings, **extra: Any) -> dict[str, Any]:
    return {**s.cohort_params(), **extra}


def rems(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """rems.csv before disclosure control: one row per site with esketamine clinic sessions (by site code),
    then `ALL`; columns REMS_COLUMNS.

    Units: counts of sessions (`patients` and `enrolled_before_first_dose*` count patients), rates as
    fractions 0–1 with 95 % Wilson intervals, `ready_to_leave_median` in minutes (`quantile_cont` 0.5).
    A measure the export lacked is NaN in all five of its columns (see `lacking_columns`); an undefined
    rate (nothing recorded) is NaN. Raises StoreError for a database imported by an older version.
    """
    lacking = lacking_columns(con)
    df = metrics.run_query(con, "rems_sessions", _params(
        s, rems_minutes=s.rems_minutes, form_days=spec.REMS_FORM_DAYS,
        sbp_high=spec.REMS_BP_HIGH_SBP, dbp_high=spec.REMS_BP_HIGH_DBP))
    rows = []
    for _, r in df.iterrows():
        row: dict[str, Any] = {"site": spec.ALL if bool(r["is_total"]) else str(r["site"]),
                               "sessions": int(r["sessions"]), "patients": int(r["patients"])}
        for m in spec.REMS_MEASURES:
            if m in lacking:
                row.update({c: NAN for c in _five(m)})
                continue
            k, n = int(r[m]), int(r[m + "_of"])
            rate, low, high = metrics.wilson(k, n)
            row.update({m: k, m + "_of": n, m + "_rate": rate, m + "_ci_low": low, m + "_ci_high": high})
        recorded = int(r["ready_to_leave_sessions"])
        if "ready_to_leave" in lacking:
            row["ready_to_leave_median"] = row["ready_to_leave_sessions"] = NAN
        else:
            row["ready_to_leave_sessions"] = recorded
            row["ready_to_leave_median"] = float(r["ready_to_leave_median"]) if recorded else NAN
        # cell keys of the counts shown (queries/rems_sessions.sql), for disclosure.protect to perturb with
        row.update({c: int(r[c]) for c in _KEYS if c in r.index and pd.notna(r[c]) and c[:-len("__key")] in row})
        rows.append(row)
    keys = [c for c in _KEYS if c in df.columns]
    out = pd.DataFrame(rows, columns=[*REMS_COLUMNS, *keys])
    if not (out["site"] == spec.ALL).any():  # no esketamine clinic session in the cohort: ALL holds zeros
        zero: dict[str, Any] = {"site": spec.ALL, "sessions": 0, "patients": 0,
                                "ready_to_leave_median": NAN,
                                "ready_to_leave_sessions": NAN if "ready_to_leave" in lacking else 0}
        for m in spec.REMS_MEASURES:
            zero.update({c: NAN for c in _five(m)} if m in lacking else
                        {m: 0, m + "_of": 0, m + "_rate": NAN, m + "_ci_low": NAN, m + "_ci_high": NAN})
        out = pd.DataFrame([zero], columns=list(REMS_COLUMNS))
    # count columns stay whole numbers where present (a lacking measure's NaN makes pandas use floats)
    return out.reset_index(drop=True)


def rems_distribution(con: duckdb.DuckDBPyConnection, s: Settings) -> pd.DataFrame:
    """Sessions per bin (DISTRIBUTION_COLUMNS) of monitoring minutes, ready-to-leave minutes (bins of 15,
    300 = "300 or more") and the rise of systolic / diastolic pressure from before dosing to 40 minutes
    (mmHg; bins of 10 and 5, the lowest and highest bins pooled), over esketamine clinic sessions of cohort
    patients, all sites together. Measures whose columns the export lacked have no rows; every bin from the
    lowest to the highest present is listed, empty ones with 0 sessions. Before disclosure control."""
    lacking = lacking_columns(con)
    have = export_columns(con)
    df = metrics.run_query(con, "rems_distribution", _params(s, **BINS))
    parts = []
    for measure in DISTRIBUTION_MEASURES:
        needs = DISTRIBUTION_NEEDS[measure]
        if isinstance(needs, str):
            absent = needs in lacking
        else:
            absent = any(n not in have for n in needs)
        sub = df[df["measure"] == measure]
        if absent or sub.empty:
            continue
        width = BIN_WIDTH[measure]
        bins = np.arange(int(sub["bin"].min()), int(sub["bin"].max()) + width, width)
        counts = dict(zip(sub["bin"].astype(int), sub["sessions"].astype(int)))
        part = pd.DataFrame({"measure": measure, "bin": bins, "sessions": [counts.get(int(b), 0) for b in bins]})
        if "sessions__key" in sub.columns:  # cell keys, for disclosure.protect to perturb with (empty bins: 0)
            keys = dict(zip(sub["bin"].astype(int), sub["sessions__key"].astype("int64")))
            part["sessions__key"] = [int(keys.get(int(b), 0)) for b in bins]
        parts.append(part)
    if not parts:
        return pd.DataFrame({"measure": pd.Series(dtype=object), "bin": pd.Series(dtype="int64"),
                             "sessions": pd.Series(dtype="int64")})
    out = pd.concat(parts, ignore_index=True)
    return out[[*DISTRIBUTION_COLUMNS, *(["sessions__key"] if "sessions__key" in out.columns else [])]]
