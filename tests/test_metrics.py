"""Exact expected values of every metric on one small hand-made data set where each definition's edge shows.

The patients (GAD-7, minimum baseline 10, window 7 unless a test says otherwise):

- A (IV): sessions on days 0, 3, 7 (L = 7). Baselines on day -3 (12) and two on day 0 (16 and 14: the
  highest counts, B = 16). A 4-hour post-dose questionnaire on day 0 scores 7 (relief at t = 1/6, never an
  endpoint). Day 14 = L + 7 scores 8 (the endpoint: improvement exactly 0.5, a responder); day 15 scores 2
  (a day outside the window). Session a1 has nausea twice (mild and severe) and dizziness.
- B: two sessions on day 0 (b1 IN, b2 IV: the lower session_id gives route IN) and b3 IM on day 2 (L = 2).
  B = 20; day 9 = L + 7 scores 4 (responder and remitter); day 10 scores 20 (relapse 8 days after L).
- C: never dosed (only a baseline).   D (IV): no baseline.   E (IV): baseline 9, below the minimum.
- F (IV): L = 4, B = 12, only a post-dose follow-up (day 4, 2 h, score 12): a follow-up but no endpoint.
- G (IV): L = 3, B = 10, day 11 = L + 8 scores 6 (one day past the window), maintenance on days 30, 44, 72.
- H (IN, site S2, home first session): L = 0, B = 18, day 7 scores 9 (improvement exactly 0.5), day 40
  scores 12, day 70 scores 14 (relapse at 70 days); maintenance on days 20 and 50.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dashboard.analysis import metrics
from dashboard.data import spec, store
from dashboard.analysis.settings import Settings, SettingsError
from metrics_data import build_db, hand_dataset as dataset

NAN = float("nan")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = build_db(tmp_path_factory.mktemp("metrics") / "m.duckdb", *dataset())
    c = duckdb.connect(str(path), read_only=True)
    yield c
    c.close()


def rows(df: pd.DataFrame, key: str = "route") -> dict:
    return {r[key]: r for r in df.to_dict("records")}


def close(a, b, tol=1e-12):
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return abs(a - b) <= tol


# --- funnel and response ---------------------------------------------------------------------------------


def test_cohort_funnel_exact(con):
    f = metrics.cohort_funnel(con, Settings())
    assert f["route"].tolist() == ["IV", "IN", "ALL"]
    cols = ["patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint"]
    assert f.set_index("route")[cols].loc["IV"].tolist() == [5, 5, 4, 3, 3, 1]
    assert f.set_index("route")[cols].loc["IN"].tolist() == [2, 2, 2, 2, 2, 2]
    # C (never dosed) counts only in ALL
    assert f.set_index("route")[cols].loc["ALL"].tolist() == [8, 7, 6, 5, 5, 3]


def test_response_observed_and_itt(con):
    r = rows(metrics.response_by_route(con, Settings()))
    assert [r["IV"][c] for c in ("patients", "evaluable", "responders", "remitters")] == [3, 1, 1, 0]
    assert [r["IN"][c] for c in ("patients", "evaluable", "responders", "remitters")] == [2, 2, 2, 1]
    assert [r["ALL"][c] for c in ("patients", "evaluable", "responders", "remitters")] == [5, 3, 3, 1]
    assert r["ALL"]["response_rate"] == 1.0 and r["ALL"]["remission_rate"] == pytest.approx(1 / 3, abs=1e-15)
    itt = rows(metrics.response_by_route(con, Settings(population="itt")))
    assert [itt[x]["evaluable"] for x in ("IV", "IN", "ALL")] == [3, 2, 5]
    assert itt["ALL"]["response_rate"] == pytest.approx(3 / 5, abs=1e-15)
    assert itt["IV"]["response_rate"] == pytest.approx(1 / 3, abs=1e-15)


def test_wilson_matches_closed_form(con):
    r = rows(metrics.response_by_route(con, Settings(population="itt")))
    for route, k, n in (("ALL", 3, 5), ("IV", 1, 3), ("IN", 2, 2)):
        z = 1.959963984540054
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert abs(r[route]["response_ci_low"] - (centre - half)) < 1e-9
        assert abs(r[route]["response_ci_high"] - (centre + half)) < 1e-9


def test_wilson_is_scipys_binomtest_interval():
    # wilson() builds SciPy's result object without the test's p-value; the interval must be binomtest's own.
    cases = [(0, 1), (1, 1), (0, 7), (7, 7), (1, 3), (3, 5), (2, 2), (17, 40), (3456, 10001), (1, 99999),
             (49999, 100000), (123456, 1000000)]
    for k, n in cases:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert metrics.wilson.__wrapped__(k, n) == (k / n, float(ci.low), float(ci.high))
    assert metrics.BinomTestResult is not None  # the fast path is the one taken with this SciPy
    assert math.isnan(metrics.wilson.__wrapped__(0, 0)[0])


def test_fisher_p_is_scipys_fisher_exact():
    # fisher_p runs fisher_exact's own algorithm on the hypergeometric ufuncs directly: bit-identical p-values
    rng = np.random.default_rng(16)
    tables = [[[0, 0], [0, 0]], [[5, 0], [0, 5]], [[0, 5], [5, 0]], [[1, 0], [0, 0]], [[3, 3], [3, 3]],
              [[0, 10], [0, 12]], [[10000, 20000], [10050, 19950]], [[1, 30000], [0, 29000]]]
    for scale in (4, 12, 60, 400, 5000, 40000):
        for _ in range(60):
            n1, n2 = (int(x) for x in rng.integers(0, scale, 2))
            p1, p2 = rng.random(2)
            a = int(rng.binomial(n1, p1)) if n1 else 0
            c = int(rng.binomial(n2, p1 if rng.random() < 0.3 else p2)) if n2 else 0
            tables.append([[a, n1 - a], [c, n2 - c]])
    for t in tables:
        expected = float(stats.fisher_exact(t).pvalue)
        assert metrics.fisher_p(t) == expected or (math.isnan(expected) and math.isnan(metrics.fisher_p(t))), t
    assert metrics._HYPERGEOM is not None  # the fast path is the one taken with this SciPy


def closed_form_wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_incidence_and_uptake_carry_wilson_intervals(con):
    side = metrics.side_effects(con, Settings())
    checked = 0
    for r in side.itertuples(index=False):
        if r.patients == 0:
            assert math.isnan(r.patient_ci_low) and math.isnan(r.patient_ci_high)
            continue
        lo, hi = closed_form_wilson(r.patients_with_event, r.patients)
        assert abs(r.patient_ci_low - lo) < 1e-9 and abs(r.patient_ci_high - hi) < 1e-9
        checked += 1
    assert checked >= len(spec.SUMMARY_EVENTS)
    for r in metrics.maintenance(con, Settings()).itertuples(index=False):
        if r.responders:
            lo, hi = closed_form_wilson(r.responders_in_maintenance, r.responders)
            assert abs(r.uptake_ci_low - lo) < 1e-9 and abs(r.uptake_ci_high - hi) < 1e-9
        else:
            assert math.isnan(r.uptake_ci_low)


def test_endpoint_window_edges(con):
    # window 8: G's day 11 (L + 8) becomes an endpoint (not a responder); A's endpoint moves to day 15 (score 2)
    f = rows(metrics.cohort_funnel(con, Settings(window=8)))
    assert f["ALL"]["with_endpoint"] == 4 and f["IV"]["with_endpoint"] == 2
    r = rows(metrics.response_by_route(con, Settings(window=8)))
    assert (r["IV"]["evaluable"], r["IV"]["responders"], r["IV"]["remitters"]) == (2, 1, 1)
    # window 6: A (day 14 = L + 7) and B (day 9 = L + 7) lose their endpoints; H's day 7 = L + 7 too
    f6 = rows(metrics.cohort_funnel(con, Settings(window=6)))
    assert f6["ALL"]["with_endpoint"] == 0


def test_minimum_baseline_and_instrument(con):
    # minimum 9 lets E in (baseline 9, but no follow-up); 17 leaves B (20) and H (18)
    assert rows(metrics.cohort_funnel(con, Settings(min_baseline=9)))["ALL"]["eligible"] == 6
    assert rows(metrics.cohort_funnel(con, Settings(min_baseline=17)))["ALL"]["eligible"] == 2
    phq = rows(metrics.response_by_route(con, Settings(instrument="PHQ9")))
    assert list(phq) == ["IN", "ALL"]
    assert (phq["ALL"]["patients"], phq["ALL"]["evaluable"], phq["ALL"]["responders"]) == (1, 1, 1)


def test_filters_combine(con):
    assert metrics.cohort_funnel(con, Settings(route=("IN",)))["patients"].tolist() == [2, 2]
    assert rows(metrics.cohort_funnel(con, Settings(site=("S2",))))["ALL"]["patients"] == 1
    assert rows(metrics.cohort_funnel(con, Settings(integration=True)))["ALL"]["patients"] == 1  # B (b3)
    assert rows(metrics.cohort_funnel(con, Settings(integration=False)))["ALL"]["patients"] == 7
    # severity bands of the GAD-7 baseline: F 12 and G 10 are moderate; D (no baseline) never matches
    assert rows(metrics.cohort_funnel(con, Settings(severity=("moderate",))))["ALL"]["patients"] == 2
    assert rows(metrics.cohort_funnel(con, Settings(severity=("mild", "severe"))))["ALL"]["patients"] == 5
    assert rows(metrics.cohort_funnel(con, Settings(setting=("home",))))["ALL"]["patients"] == 1
    assert rows(metrics.cohort_funnel(con, Settings(site=("S1",), route=("IN",))))["ALL"]["patients"] == 1
    for settings, expected in (
        (Settings(treatment_resistant=True), 0), (Settings(treatment_resistant=False), 8),
        (Settings(sex=("M", "X")), 0), (Settings(sex=("F",)), 8), (Settings(diagnosis=("GAD", "MDD")), 8),
        (Settings(diagnosis=("PTSD",)), 0), (Settings(age_band=("35-44",)), 8), (Settings(age_band=("75+",)), 0),
        (Settings(from_quarter="2025-Q1", to_quarter="2025-Q1"), 8), (Settings(to_quarter="2024-Q4"), 0),
    ):
        assert rows(metrics.cohort_funnel(con, settings))["ALL"]["patients"] == expected, settings
    empty = metrics.cohort_funnel(con, Settings(from_quarter="2026-Q1"))
    assert empty["route"].tolist() == ["ALL"] and empty["patients"].tolist() == [0]
    assert metrics.response_by_route(con, Settings(from_quarter="2026-Q1"))["route"].tolist() == ["ALL"]


def test_breakdown_by_site_and_severity(con):
    b = metrics.breakdown(con, Settings(), "site")
    assert b[["group", "route", "evaluable", "responders"]].values.tolist() == [
        ["S1", "IV", 1, 1], ["S1", "IN", 1, 1], ["S1", "ALL", 2, 2], ["S2", "IN", 1, 1], ["S2", "ALL", 1, 1],
    ]
    sev = metrics.breakdown(con, Settings(population="itt"), "severity")
    assert sev[sev["route"] == "ALL"][["group", "evaluable"]].values.tolist() == [["moderate", 2], ["severe", 3]]
    with pytest.raises(ValueError):
        metrics.breakdown(con, Settings(), "sex; DROP TABLE patients")


# --- route comparison -------------------------------------------------------------------------------------


def test_route_comparison_against_hand_computation(con):
    s = Settings(population="itt", window=8)
    rc = metrics.route_comparison(con, s)
    table = metrics.response_by_route(con, s)
    t = table[table["route"] != "ALL"]
    k = t["responders"].to_numpy(float)
    n = t["evaluable"].to_numpy(float)
    obs = np.column_stack([k, n - k])
    exp = np.outer(n, obs.sum(axis=0)) / n.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    assert abs(rc.chi2 - chi2) < 1e-9 and rc.dof == 1
    assert rc.pairwise[["route_a", "route_b", "n_a", "n_b"]].values.tolist() == [["IV", "IN", 3, 2]]
    # window 8: IV 1 of 3 (A), IN 1 of 2 (B's endpoint moves to day 10, score 20)
    assert rc.pairwise["difference"].iloc[0] == pytest.approx(1 / 3 - 1 / 2, abs=1e-15)


def test_newcombe_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    d, lo, hi = metrics.newcombe_difference(56, 70, 48, 80)
    assert d == pytest.approx(0.2, abs=1e-12)
    assert round(lo, 4) == 0.0524 and round(hi, 4) == 0.3339


# --- time to relief ---------------------------------------------------------------------------------------


def test_time_to_relief_exact(con):
    # minimum cell 0: the exact fit (with protection on, heights and tests come from the perturbed groups)
    res = metrics.time_to_relief(con, Settings(min_cell=0))
    s = rows(res.summary)
    assert res.summary["route"].tolist() == ["IV", "IN", "ALL"]
    assert (s["ALL"]["patients"], s["ALL"]["events"], s["ALL"]["censored"]) == (5, 3, 2)
    # IN: events at 7 (n 2) and 9: S(7) is exactly one half, so the median is 7
    assert s["IN"]["median_days"] == 7.0
    # IV: one event at t = 1/6 among 3, then censored: the curve never reaches one half
    assert math.isnan(s["IV"]["median_days"])
    assert s["IV"]["relieved_by_day_1"] == pytest.approx(1 / 3, abs=1e-15)
    # ALL: S = 0.8 after 1/6, 0.8 * 2/3 after 7 (F censored at 4 + 2/24), then * 1/2 after 9
    assert s["ALL"]["relieved_by_day_1"] == pytest.approx(0.2, abs=1e-15)
    assert s["ALL"]["relieved_by_day_7"] == pytest.approx(1 - 0.8 * 2 / 3, abs=1e-15)
    assert s["ALL"]["relieved_by_day_14"] == pytest.approx(1 - 0.8 * 2 / 3 / 2, abs=1e-15)
    assert s["ALL"]["median_days"] == 9.0
    curve = res.curve[res.curve["route"] == "ALL"]
    assert curve["day"].tolist() == pytest.approx([0, 1 / 6, 4 + 2 / 24, 7, 9, 11], abs=1e-12)
    assert curve["at_risk"].tolist() == [5, 5, 4, 3, 2, 1]
    assert curve["events"].tolist() == [0, 1, 0, 1, 1, 0]
    assert res.logrank[["route_a", "route_b", "n_a", "n_b"]].values.tolist() == [["IV", "IN", 3, 2]]
    # numbers at risk on weekly days: relief or censoring time at or after the day (IV 1/6, 4 + 2/24, 11;
    # IN 7, 9), through the first week past the last time
    assert res.at_risk[list(metrics.AT_RISK_COLUMNS)].values.tolist() == [  # without the cell keys
        ["IV", 0, 3], ["IV", 7, 1], ["IV", 14, 0],
        ["IN", 0, 2], ["IN", 7, 2], ["IN", 14, 0],
        ["ALL", 0, 5], ["ALL", 7, 3], ["ALL", 14, 0],
    ]


def test_time_to_relief_mcid(con):
    s = rows(metrics.time_to_relief(con, Settings(relief="mcid")).summary)
    # G's drop of 4 on day 11 is an MCID event (not a 50 % response)
    assert (s["IV"]["events"], s["IV"]["censored"]) == (2, 1)


def independent_km(times, events, z=1.959963984540054):
    """Product-limit with the exponential Greenwood band, written out (lifelines' formulas)."""
    t = np.asarray(times, float)
    e = np.asarray(events, bool)
    grid = np.unique(t)
    S, acc, surv, lo, hi, risk = 1.0, 0.0, [], [], [], []
    for u in grid:
        n = int((t >= u).sum())
        d = int(((t == u) & e).sum())
        S *= 1 - d / n
        if n > d:
            acc += d / (n * (n - d))
        surv.append(S)
        risk.append(n)
        if 0 < S < 1:
            v = math.log(S)
            sd = math.sqrt(acc / v ** 2)
            lo.append(math.exp(-math.exp(math.log(-v) + z * sd)))
            hi.append(math.exp(-math.exp(math.log(-v) - z * sd)))
        else:
            lo.append(S)
            hi.append(S)
    return grid, np.array(surv), np.array(lo), np.array(hi), np.array(risk)


def first_half(grid, values):
    for g, v in zip(grid, values):
        if v <= 0.5 + 1e-12:
            return float(g)
    return NAN


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kaplan_meier_against_independent_computation(seed):
    from dashboard.analysis import survival

    rng = np.random.default_rng(seed)
    times = rng.integers(1, 30, size=60) + rng.choice([0.0, 1 / 6, 0.5], size=60)
    events = rng.random(60) < 0.7
    km = survival.fit(times, events)
    grid, surv, lo, hi, risk = independent_km(times, events)
    assert np.allclose(km.times, grid, atol=0, rtol=0)
    assert np.max(np.abs(km.survival - surv)) < 1e-9
    assert np.max(np.abs(km.ci_low - lo)) < 1e-9
    assert np.max(np.abs(km.ci_high - hi)) < 1e-9
    assert km.at_risk.tolist() == risk.tolist()
    median, mlo, mhi = km.median()
    assert median == first_half(grid, surv)
    assert (mlo == first_half(grid, lo) or (math.isnan(mlo) and math.isnan(first_half(grid, lo))))
    assert (mhi == first_half(grid, hi) or (math.isnan(mhi) and math.isnan(first_half(grid, hi))))
    assert mlo <= median


def test_median_exactly_one_half_with_rounding():
    from dashboard.analysis import survival

    # 15 patients, times 1..15, events at 1-6, 10, 13, 15: exactly S(10) = 1/2, but the product is
    # 0.5000000000000001 in floating point. The median is 10 (without the tolerance it would be 13).
    times = np.arange(1, 16, dtype=float)
    events = np.isin(times, [1, 2, 3, 4, 5, 6, 10, 13, 15])
    km = survival.fit(times, events)
    assert km.survival[9] > 0.5  # the floating-point edge is really there
    assert km.median()[0] == 10.0
    # exactly one half without rounding error: 2 at risk, 1 event
    assert survival.fit([7, 9], [True, True]).median()[0] == 7.0
    # never reaches one half: 1 event among 3, then censored
    never = survival.fit([1, 2, 3], [True, False, False])
    assert never.survival.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3], abs=1e-15)
    assert all(math.isnan(x) for x in never.median()[:1])


def test_logrank_against_hand_computation():
    from dashboard.analysis import survival
    from scipy import stats

    rng = np.random.default_rng(5)
    ta, tb = rng.integers(1, 20, 25).astype(float), rng.integers(3, 25, 30).astype(float)
    ea, eb = rng.random(25) < 0.8, rng.random(30) < 0.6
    t = np.concatenate([ta, tb])
    e = np.concatenate([ea, eb])
    g = np.concatenate([np.zeros(25, bool), np.ones(30, bool)])
    o_minus_e = var = 0.0
    for u in np.unique(t[e]):
        n = (t >= u).sum()
        n1 = ((t >= u) & ~g).sum()
        d = ((t == u) & e).sum()
        d1 = ((t == u) & e & ~g).sum()
        o_minus_e += d1 - d * n1 / n
        if n > 1:
            var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    z = o_minus_e / math.sqrt(var)
    p = 2 * stats.norm.sf(abs(z))
    out = survival.pairwise_logrank({"IV": (ta, ea), "IN": (tb, eb)})
    assert abs(abs(out["statistic"].iloc[0]) - abs(z)) < 1e-9
    assert abs(out["p_value"].iloc[0] - p) < 1e-9
    assert out["p_adjusted"].iloc[0] == pytest.approx(out["p_value"].iloc[0], abs=1e-15)


def test_benjamini_hochberg_by_hand():
    from dashboard.analysis import survival

    p = np.array([0.01, 0.04, 0.03, np.nan, 0.2])
    adj = survival.benjamini_hochberg(p)
    # sorted 0.01, 0.03, 0.04, 0.2 (m = 4): 0.04, 0.0533.., 0.0533.., 0.2
    assert adj[0] == pytest.approx(0.04, abs=1e-12)
    assert adj[2] == pytest.approx(0.04 * 4 / 3, abs=1e-12) and adj[1] == pytest.approx(0.04 * 4 / 3, abs=1e-12)
    assert math.isnan(adj[3]) and adj[4] == pytest.approx(0.2, abs=1e-12)


# --- side effects and blood pressure ----------------------------------------------------------------------


def test_side_effects_exact(con):
    se = metrics.side_effects(con, Settings())
    assert se["route"].drop_duplicates().tolist() == ["IV", "IM", "IN", "ALL"]
    assert len(se) == 4 * len(spec.SUMMARY_EVENTS)  # zeros included
    by = {(r["route"], r["event"]): r for r in se.to_dict("records")}
    # the session's route: B's b2 is an IV session, b3 an IM one
    assert (by["IV", "nausea"]["sessions"], by["IV", "nausea"]["patients"]) == (14, 6)
    # a1's two nausea rows count once
    assert (by["IV", "nausea"]["sessions_with_event"], by["IV", "nausea"]["patients_with_event"]) == (2, 2)
    assert by["IV", "nausea"]["session_rate"] == pytest.approx(2 / 14, abs=1e-15)
    assert (by["IN", "nausea"]["sessions"], by["IN", "nausea"]["sessions_with_event"]) == (4, 1)
    assert (by["IM", "nausea"]["sessions"], by["IM", "nausea"]["sessions_with_event"]) == (1, 0)
    assert (by["ALL", "nausea"]["sessions"], by["ALL", "nausea"]["sessions_with_event"]) == (19, 3)
    assert by["ALL", "nausea"]["patients"] == 7
    # bp_severe from vitals: a2 (sbp 185) and b2 (dbp 112)
    assert (by["IV", "bp_severe"]["sessions_with_event"], by["IV", "bp_severe"]["patients_with_event"]) == (2, 2)
    assert by["ALL", "dizziness"]["sessions_with_event"] == 1 and by["ALL", "vomiting"]["sessions_with_event"] == 0


def test_side_effect_severity_and_session_number(con):
    sev = metrics.side_effect_severity(con, Settings())
    nausea = sev[(sev["route"] == "ALL") & (sev["event"] == "nausea")]
    assert nausea[["severity", "sessions_with_event"]].values.tolist() == [["mild", 2], ["moderate", 1], ["severe", 1]]
    num = metrics.side_effect_by_session_number(con, Settings())
    first = num[(num["route"] == "ALL") & (num["event"] == "nausea") & (num["session_number"] == 1)].iloc[0]
    # first sessions: a1, b1, d1, e1, f1, g1, h1 (b2 is B's second, by session_id)
    assert (first["sessions"], first["sessions_with_event"]) == (7, 1)
    second_iv = num[(num["route"] == "IV") & (num["event"] == "bp_severe") & (num["session_number"] == 2)].iloc[0]
    assert (second_iv["sessions"], second_iv["sessions_with_event"]) == (5, 2)  # a2, b2, d2, f2, g2


def test_blood_pressure(con):
    bp = rows(metrics.blood_pressure(con, Settings()))
    assert bp["IV"]["sessions_with_vitals"] == 13  # d2 has no vitals
    assert bp["IN"]["sessions_with_vitals"] == 3  # h1 has none
    assert (bp["ALL"]["sessions_sbp_180"], bp["ALL"]["sessions_dbp_110"], bp["ALL"]["sessions_bp_severe"]) == (1, 1, 2)
    assert bp["ALL"]["share_bp_severe"] == pytest.approx(2 / 17, abs=1e-15)
    assert bp["ALL"]["sbp_peak_median"] == 135.0


# --- maintenance ------------------------------------------------------------------------------------------


def test_maintenance_exact(con):
    m = rows(metrics.maintenance(con, Settings()))
    iv, inn, al = m["IV"], m["IN"], m["ALL"]
    assert (iv["responders"], iv["responders_in_maintenance"], iv["maintenance_patients"], iv["maintenance_sessions"]) == (1, 0, 1, 3)
    assert iv["uptake_rate"] == 0.0
    assert iv["median_days_to_first_maintenance"] == 27.0 and iv["median_interval_days"] == 21.0
    assert iv["sessions_per_patient_month"] == pytest.approx(3 * 30.4375 / 69, abs=1e-12)
    assert (inn["responders"], inn["responders_in_maintenance"], inn["uptake_rate"]) == (2, 1, 0.5)
    assert inn["median_interval_days"] == 30.0
    assert inn["sessions_per_patient_month"] == pytest.approx(2 * 30.4375 / 50, abs=1e-12)
    assert (al["responders"], al["responders_in_maintenance"], al["maintenance_patients"], al["maintenance_sessions"]) == (3, 1, 2, 5)
    assert al["median_days_to_first_maintenance"] == 23.5 and al["median_interval_days"] == 28.0
    assert al["sessions_per_patient_month"] == pytest.approx(5 * 30.4375 / 119, abs=1e-12)
    # sustained: A censored 8 days after L, B relapses at 8, H at 70 (> 56)
    assert iv["sustained_response_8w"] == 1.0 and iv["sustained_patients"] == 1
    assert inn["sustained_response_8w"] == 0.5
    assert al["sustained_response_8w"] == pytest.approx(2 / 3, abs=1e-15) and al["sustained_patients"] == 3
    # responders are the observed ones whatever the population setting
    assert rows(metrics.maintenance(con, Settings(population="itt")))["ALL"]["responders"] == 3


def test_maintenance_projection(con):
    p = rows(metrics.maintenance_projection(con, Settings()))
    assert p["IN"]["current_responders"] == 2 and p["IN"]["expected_in_maintenance"] == 1.0
    assert p["IN"]["sessions_per_month"] == pytest.approx(2 * 30.4375 / 50, abs=1e-12)
    assert p["IV"]["sessions_per_month"] == 0.0


# --- trajectory and data quality --------------------------------------------------------------------------


def test_trajectory(con):
    from scipy import stats

    t = metrics.trajectory(con, Settings())
    al = t[t["route"] == "ALL"].set_index("week")
    assert al.index.tolist() == [0, 1, 2, 5, 10]
    week0 = [16, 20, 12, 10, 18]  # baselines of A, B, F, G, H
    assert al.loc[0, "patients"] == 5 and al.loc[0, "mean_score"] == pytest.approx(np.mean(week0), abs=1e-12)
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(week0), scale=stats.sem(week0))
    assert abs(al.loc[0, "ci_low"] - lo) < 1e-9 and abs(al.loc[0, "ci_high"] - hi) < 1e-9
    # week 1: B's last (day 10: 20), G day 11 (6), H day 7 (9); only H improved by half
    assert al.loc[1, "patients"] == 3 and al.loc[1, "mean_score"] == pytest.approx(35 / 3, abs=1e-12)
    assert (al.loc[1, "responders"], al.loc[1, "responder_share"]) == (1, pytest.approx(1 / 3, abs=1e-15))
    assert al.loc[2, "patients"] == 1 and math.isnan(al.loc[2, "ci_low"])
    assert t["route"].drop_duplicates().tolist() == ["IV", "IN", "ALL"]


def test_data_quality(con):
    q = metrics.data_quality(con, Settings()).set_index("measure")
    assert (q.loc["never_dosed", "count"], q.loc["never_dosed", "denominator"]) == (1, 8)
    assert (q.loc["missing_baseline", "count"], q.loc["missing_baseline", "denominator"]) == (1, 7)
    assert q.loc["below_min_baseline", "count"] == 1
    assert (q.loc["eligible_without_endpoint", "count"], q.loc["eligible_without_endpoint", "denominator"]) == (2, 5)
    assert q.loc["eligible_without_followup", "count"] == 0
    assert (q.loc["clinic_sessions_without_vitals", "count"], q.loc["clinic_sessions_without_vitals", "denominator"]) == (1, 18)
    assert (q.loc["post_dose_questionnaires", "count"], q.loc["post_dose_questionnaires", "denominator"]) == (2, 20)
    assert q.loc["never_dosed", "share"] == pytest.approx(1 / 8, abs=1e-15)


# --- injection: filter values bind, never format ----------------------------------------------------------

HOSTILE = ["S1' OR '1'='1", "x'; DROP TABLE patients; --", "S1\" OR 1=1 --", "'); DELETE FROM sessions; --",
           "IV' UNION SELECT * FROM patients --"]


def test_filter_values_are_bound_not_formatted(con, tmp_path):
    path = build_db(tmp_path / "w.duckdb", *dataset())
    rw = duckdb.connect(str(path))  # read-write: a DROP would succeed if any value reached the SQL text
    try:
        params = {**Settings().cohort_params(), "min_baseline": 10, "window": 7, "remission_cut": 4, "by": None}
        for value in HOSTILE:
            for key in ("sites", "routes", "diagnoses", "sexes", "age_bands", "settings", "severities"):
                out = store.run_query(rw, "outcome_counts", {**params, key: [value]})
                assert out["patients"].sum() == 0
            for key in ("from_quarter",):
                store.run_query(rw, "outcome_counts", {**params, key: value})
            out = store.run_query(rw, "outcome_counts", {**params, "by": value})
            assert out["patients"].max() == 8
            out = store.run_query(rw, "outcome_counts", {**params, "instrument": value})
            assert out["eligible"].sum() == 0  # an instrument that does not exist has no cohort rows
        assert rw.execute("SELECT count(*) FROM patients").fetchone()[0] == 8
        assert rw.execute("SELECT count(*) FROM sessions").fetchone()[0] == 19
    finally:
        rw.close()


def test_hostile_values_refused_by_settings():
    for value in HOSTILE:
        with pytest.raises(SettingsError) as exc:
            Settings(site=(value,))
        assert exc.value.problems[0].startswith("site:") and repr(value) in exc.value.problems[0]
        with pytest.raises(SettingsError) as exc:
            Settings.from_query_params({"route": [value]})
        assert exc.value.problems[0].startswith("route:")


def test_any_side_effect(con):
    a = rows(metrics.any_side_effect(con, Settings()))
    # a1 (nausea, dizziness), a2 (sbp 185) and b2 (nausea, dbp 112) are IV sessions; h2 (nausea) is IN
    assert [a["IV"][c] for c in ("sessions", "sessions_with_event", "patients", "patients_with_event")] == [14, 3, 6, 2]
    assert [a["IN"][c] for c in ("sessions", "sessions_with_event", "patients", "patients_with_event")] == [4, 1, 2, 1]
    assert [a["IM"][c] for c in ("sessions", "sessions_with_event")] == [1, 0]
    assert [a["ALL"][c] for c in ("sessions", "sessions_with_event", "patients", "patients_with_event")] == [19, 4, 7, 3]
    assert set(a["ALL"]) >= {"event", "session_rate", "patient_rate"} and a["ALL"]["event"] == "any"


def test_choices_maintenance_only_zero_baseline_endpoint_tie(tmp_path):
    from metrics_data import assessment, patient, session

    path = build_db(
        tmp_path / "edges.duckdb",
        [patient("M"), patient("Z"), patient("T")],
        [
            # M: only maintenance sessions, so L is the first session's day (0)
            session("m1", "M", 0, phase="maintenance"), session("m2", "M", 10, phase="maintenance"),
            session("z1", "Z", 0, route="IN"),
            session("t1", "T", 0, route="SL"),
        ],
        [
            assessment("M", 0, 12), assessment("M", 7, 6), assessment("M", 8, 2),
            # Z: baseline 0 cannot improve (not a responder, not relieved) but remits
            assessment("Z", 0, 0), assessment("Z", 3, 0),
            # T: two questionnaires on the endpoint day: the highest (12) counts
            assessment("T", 0, 20), assessment("T", 5, 8), assessment("T", 5, 12),
        ],
    )
    c = duckdb.connect(str(path), read_only=True)
    try:
        s = Settings(min_baseline=0)
        r = rows(metrics.response_by_route(c, s))
        assert (r["IV"]["evaluable"], r["IV"]["responders"]) == (1, 1)  # M: day 7 = L + 7 with L = 0
        assert (r["IN"]["evaluable"], r["IN"]["responders"], r["IN"]["remitters"]) == (1, 0, 1)
        assert (r["SL"]["evaluable"], r["SL"]["responders"]) == (1, 0)
        relief = rows(metrics.time_to_relief(c, s).summary)
        assert (relief["IN"]["events"], relief["IN"]["censored"]) == (0, 1)
        m = rows(metrics.maintenance(c, s))
        assert m["IV"]["median_days_to_first_maintenance"] == 0.0 and m["IV"]["median_interval_days"] == 10.0
    finally:
        c.close()


def test_side_effects_by_session_number_pool_late_sessions_and_add_up(sample_db):
    con = store.open_database(sample_db)
    try:
        by_number = metrics.side_effect_by_session_number(con, Settings())
        totals = metrics.side_effects(con, Settings())
    finally:
        con.close()
    assert by_number["session_number"].max() == spec.LAST_SESSION_NUMBER  # the sample has longer courses
    summed = by_number.groupby(["route", "event"])[["sessions", "sessions_with_event"]].sum()
    expected = totals.set_index(["route", "event"])[["sessions", "sessions_with_event"]]
    assert summed.sort_index().equals(expected.sort_index())


@pytest.mark.parametrize("last, expected", [
    (0, [0]), (7, [0, 7]), (20, [0, 7, 14, 21]), (84, list(range(0, 85, 7))),
    (90, [0, 14, 28, 42, 56, 70, 84, 98]), (200, [0, 28, 56, 84, 112, 140, 168, 196, 224]),
    # past 100 four-weekly steps the step grows (issue 10: the grid follows the rows, never one value)
    (2800, list(range(0, 2801, 28))), (2801, list(range(0, 2857, 56))),
])
def test_at_risk_days_follow_the_length_of_follow_up(last, expected):
    assert metrics.at_risk_days(last).tolist() == expected


def test_at_risk_days_stay_few_for_an_absurd_day():
    # 2,147,483,647 days once built a 300-million-point grid (MemoryError); the step is 28 × ceil(last / 2800)
    days = metrics.at_risk_days(2147483647.0)
    step = 28 * 766959
    assert (len(days), days[1], days[-1]) == (101, step, 100 * step)


def test_fit_counts_is_fit_on_the_expanded_groups():
    # survival.fit_counts follows SciPy's ecdf and log-log band step for step on grouped data: bit-identical
    from dashboard.analysis import survival

    rng = np.random.default_rng(16)
    for trial in range(300):
        g = int(rng.integers(1, 40))
        t = rng.integers(0, int(rng.choice([3, 30, 400])), g).astype(float)
        e = rng.random(g) < (0.5, 1.0, 0.0, 0.9)[trial % 4]  # censored and not, nobody censored, nobody relieved
        c = rng.integers(0 if trial % 5 == 0 else 1, int(rng.choice([2, 10, 500])), g)
        a, b = survival.fit(np.repeat(t, c), np.repeat(e, c)), survival.fit_counts(t, e, c)
        assert (a.n, a.n_events) == (b.n, b.n_events)
        for f in ("times", "at_risk", "events", "survival", "ci_low", "ci_high"):
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), (trial, f)


@pytest.mark.parametrize("s", [
    Settings(), Settings(instrument="matched"), Settings(route=("IV", "SL"), site=("S2", "S4")),
    Settings(diagnosis=("MDD",), population="itt", window=14), Settings(site=("S1",), scope=("S1", "S3")),
    Settings(from_quarter="2024-Q2", to_quarter="2025-Q3", sex=("F",)),
], ids=lambda s: s.to_query_string() or "default")
@pytest.mark.parametrize("by", [None, "site", "quarter"])
def test_counts_added_up_from_the_site_quarter_cube_equal_the_grouping_query(sample_db, s, by):
    """The Overview and Response pages add their groupings up from outcome_counts_by_site_quarter.sql's
    rows (metrics._outcome_counts); every count and cell key must equal outcome_counts.sql's own grouping."""
    con = store.open_database(sample_db)
    try:
        expected = store.run_query(con, "outcome_counts", metrics._outcome_params(s, by=by))
        group = {None: None, "site": "site", "quarter": "start_quarter"}[by]
        added = metrics.counts_from_site_quarter(metrics.site_quarter_counts(con, s), s.effective_sites, group)
    finally:
        con.close()
    assert len(expected) > 1
    for col in expected.columns:
        a, b = added[col].tolist(), expected[col].tolist()
        if col in ("grp", "route"):
            a, b = [None if pd.isna(v) else str(v) for v in a], [None if pd.isna(v) else str(v) for v in b]
        else:
            a, b = [int(v) if not isinstance(v, (bool, np.bool_)) else bool(v) for v in a], \
                   [int(v) if not isinstance(v, (bool, np.bool_)) else bool(v) for v in b]
        assert a == b, col
