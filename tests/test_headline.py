"""The Overview's headline by route (headline.csv) and the trend by start quarter (trend.csv): hand-made
cohorts whose numbers are worked out by hand (Fisher's exact test and Benjamini–Hochberg through SciPy
directly), and the rule that every headline number equals the one its own page's file shows."""

from __future__ import annotations

import io

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dashboard.analysis import disclosure, metrics
from dashboard.analysis.settings import Settings
from dashboard.data import spec
from dashboard.reports import export
from metrics_data import assessment, build_db, event, patient, session

# route -> (patients, responders, patients with nausea, start quarters cycled over the patients)
PLAN = {"IV": (20, 18, 5), "IN": (20, 4, 0), "SL": (20, 17, 10)}


def _dataset():
    patients, sessions, assessments, events = [], [], [], []
    for route, (n, responders, nausea) in PLAN.items():
        for i in range(n):
            pid = f"{route}{i:02d}"
            quarter = "2025-Q1" if i % 2 == 0 else "2025-Q2"
            patients.append(patient(pid, start_quarter=quarter))
            sessions += [session(f"{pid}a", pid, 0, route=route), session(f"{pid}b", pid, 3, route=route)]
            # baseline 20; day 7 (inside L + 7 = 10): 8 is a 60 % improvement (responder), 18 is 10 %
            assessments += [assessment(pid, 0, 20), assessment(pid, 7, 8 if i < responders else 18)]
            if i < nausea:
                events.append(event(f"{pid}a", "nausea"))
    # two IV responders with maintenance on days 33 and 63: 4 sessions over (60 + 60) / 30.4375 months
    for pid in ("IV00", "IV01"):
        sessions += [session(f"{pid}m1", pid, 33, phase="maintenance"), session(f"{pid}m2", pid, 63, phase="maintenance")]
    patients.append(patient("NODOSE", start_quarter="2025-Q2"))  # never dosed: counts only in ALL
    return patients, sessions, assessments, events


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = build_db(tmp_path_factory.mktemp("headline") / "h.duckdb", *_dataset())
    c = duckdb.connect(str(path), read_only=True)
    yield c
    c.close()


def test_headline_ranks_routes_and_flags_those_that_differ_from_the_best(con):
    got = export.compute_headline(con, Settings(min_cell=0))
    assert list(got.columns) == list(metrics.HEADLINE_COLUMNS)
    assert list(got["route"]) == ["IV", "SL", "IN", "ALL"]
    assert list(got["patients"]) == [20, 20, 20, 60]
    assert got["response_rate"].tolist() == pytest.approx([0.9, 0.85, 0.2, 39 / 60])
    lo, hi = stats.binomtest(18, 20).proportion_ci(method="wilson")
    assert got.loc[0, ["response_ci_low", "response_ci_high"]].tolist() == pytest.approx([lo, hi])
    # median relief: responders relieved on day 7; IN's curve stays at 0.8 (not reached: undefined)
    assert got.loc[0, "median_days"] == 7 and got.loc[1, "median_days"] == 7 and np.isnan(got.loc[2, "median_days"])
    assert got["any_side_effect_rate"].tolist() == pytest.approx([5 / 20, 10 / 20, 0.0, 15 / 60])
    assert got.loc[0, "sessions_per_patient_month"] == pytest.approx(4 / (120 / 30.4375))
    assert np.isnan(got.loc[1, "sessions_per_patient_month"])
    # the Response page's comparisons: Fisher's exact p per pair, Benjamini–Hochberg over all three pairs
    counts = {r: (k, n) for r, (n, k, _) in PLAN.items()}
    pairs = [("IV", "IN"), ("IV", "SL"), ("IN", "SL")]
    p = [stats.fisher_exact([[counts[a][0], counts[a][1] - counts[a][0]], [counts[b][0], counts[b][1] - counts[b][0]]]).pvalue
         for a, b in pairs]
    adjusted = dict(zip(pairs, stats.false_discovery_control(p)))
    assert adjusted[("IV", "IN")] < 0.05 <= adjusted[("IV", "SL")]
    assert got["differs_from_best"].tolist()[:3] == [False, False, True]
    assert got["differs_from_best"].isna().tolist()[3]
    text = export.summary_csv_bytes(got).decode()
    assert text.splitlines()[0] == ",".join(metrics.HEADLINE_COLUMNS)
    assert text.splitlines()[1].endswith(",false") and text.splitlines()[3].endswith(",true")
    assert text.splitlines()[4].endswith(",")  # ALL: no comparison


def test_every_headline_number_is_the_one_its_own_file_shows(con):
    for k in (0, 11):
        s = Settings(min_cell=k)
        got = export.compute_headline(con, s).set_index("route")
        files = export.compute_summaries(con, s)
        resp = files["response_by_route.csv"].set_index("route")
        relief = files["time_to_relief.csv"].set_index("route")
        maint = files["maintenance.csv"].set_index("route")
        anyse = disclosure.protect("side_effects", metrics.any_side_effect(con, s), k).set_index("route")
        for route in got.index:
            for col, src, src_col in [("patients", resp, "patients"), ("response_rate", resp, "response_rate"),
                                      ("remission_rate", resp, "remission_rate"),
                                      ("median_days", relief, "median_days"),
                                      ("any_side_effect_rate", anyse, "patient_rate"),
                                      ("sessions_per_patient_month", maint, "sessions_per_patient_month"),
                                      ("sustained_response_8w", maint, "sustained_response_8w")]:
                a, b = got.loc[route, col], src.loc[route, src_col]
                assert (pd.isna(a) and pd.isna(b)) or float(a) == float(b), (k, route, col)
        assert files["headline.csv"].equals(export.compute_headline(con, s))


def test_a_hidden_response_rate_ranks_last_and_is_not_compared(con):
    # min_cell 5: IN's 4 responders are a hidden count, so its rate is hidden; it goes after the shown ones
    s = Settings(min_cell=5)
    got = export.compute_headline(con, s)
    resp = export.compute_summary(con, s, "response_by_route.csv").set_index("route")
    hidden = [r for r in PLAN if pd.isna(resp.loc[r, "response_rate"])]
    assert "IN" in hidden
    shown = [r for r in got["route"] if r not in hidden and r != "ALL"]
    assert list(got["route"]) == [*shown, *[r for r in got["route"] if r in hidden], "ALL"]
    assert got.set_index("route").loc["IN", "differs_from_best"] is pd.NA


def test_trend_by_start_quarter(con):
    got = metrics.trend(con, Settings(min_cell=0))
    # the counts' cell keys ride along for disclosure control, which drops them (protect)
    assert [c for c in got.columns if not c.endswith("__key")] == list(metrics.TREND_COLUMNS)
    assert list(zip(got["start_quarter"], got["route"])) == [
        ("2025-Q1", "IV"), ("2025-Q1", "IN"), ("2025-Q1", "SL"), ("2025-Q1", "ALL"),
        ("2025-Q2", "IV"), ("2025-Q2", "IN"), ("2025-Q2", "SL"), ("2025-Q2", "ALL"),
    ]
    # even-numbered patients started in Q1: IV responders are patients 0..17, so 9 of 10 in each quarter;
    # IN responders 0..3: two in each; SL responders 0..16: Q1 holds 0,2,..,16 (9), Q2 1,3,..,15 (8)
    assert got["patients"].tolist() == [10, 10, 10, 30, 10, 10, 10, 31]
    assert got["evaluable"].tolist() == [10, 10, 10, 30, 10, 10, 10, 30]
    assert got["responders"].tolist() == [9, 2, 9, 20, 9, 2, 8, 19]
    lo, hi = stats.binomtest(19, 30).proportion_ci(method="wilson")
    assert got.iloc[-1][["response_rate", "response_ci_low", "response_ci_high"]].tolist() == pytest.approx([19 / 30, lo, hi])
    csv = export.summary_csv_bytes(export.compute_summary(con, Settings(min_cell=0), "trend.csv")).decode()
    assert csv.splitlines()[0] == "start_quarter,route,patients,evaluable,responders,response_rate,response_ci_low,response_ci_high"
    assert csv.splitlines()[1].startswith("2025-Q1,IV,10,10,9,0.9,")


def test_trend_is_protected_in_both_directions(con):
    s = Settings(min_cell=3)
    raw = metrics.trend(con, Settings(min_cell=0))
    got = export.compute_summary(con, s, "trend.csv")
    assert got.equals(disclosure.protect("trend", raw, 3))
    # IN's 2 responders per quarter are hidden; within each route the quarters add up to the route's total
    # that response_by_route.csv shows, so hiding one quarter's count hides the other's too
    inn = got[got["route"] == "IN"]
    assert inn["responders"].isna().all() and inn["response_rate"].isna().all()
