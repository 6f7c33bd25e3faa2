"""Case-mix-adjusted response (dashboard/analysis/adjusted.py, docs/metrics.md "Case-mix-adjusted response").

The checks are independent of the code under test: a synthetic cohort with confounding built in and a known
true route effect; statsmodels' formula interface on one row per patient with its own predictions (the
hand computation of the standardisation); a numerical gradient for the delta method; a 1,000-resample
bootstrap (slow); and a small database through the real query.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from dashboard.analysis import adjusted, disclosure, metrics
from dashboard.analysis.settings import Settings
from dashboard.data import store
from tests.metrics_data import assessment, build_db, patient, session

GROUP_KEYS = ["route", "baseline", "diagnosis", "treatment_resistant", "age_band"]
TRUE_BETA = {"intercept": 2.0, "IV": 0.6, "baseline": -0.18, "tr": -0.9, "MDD": 0.3}


def confounded_patients(n: int, seed: int) -> pd.DataFrame:
    """One row per patient: IV goes mostly to severe and treatment-resistant patients (who respond less);
    the true log-odds ratio of IV against IN is TRUE_BETA["IV"] whatever the case mix."""
    rng = np.random.default_rng(seed)
    baseline = rng.integers(10, 22, n)
    tr = rng.random(n) < 0.35
    diagnosis = rng.choice(["GAD", "MDD", "PTSD"], n, p=[0.5, 0.3, 0.2])
    age_band = rng.choice(["25-34", "35-44", "45-54"], n)
    p_iv = 1 / (1 + np.exp(-(-5.0 + 0.33 * baseline + 1.2 * tr)))
    route = np.where(rng.random(n) < p_iv, "IV", "IN")
    y = rng.random(n) < true_probability(route, baseline, tr, diagnosis)
    return pd.DataFrame({"route": route, "baseline": baseline, "diagnosis": diagnosis, "treatment_resistant": tr,
                         "age_band": age_band, "y": y})


def true_probability(route, baseline, tr, diagnosis) -> np.ndarray:  # noqa: ANN001
    b = TRUE_BETA
    lp = (b["intercept"] + b["IV"] * (np.asarray(route) == "IV") + b["baseline"] * np.asarray(baseline)
          + b["tr"] * np.asarray(tr) + b["MDD"] * (np.asarray(diagnosis) == "MDD"))
    return 1 / (1 + np.exp(-lp))


def grouped(df: pd.DataFrame) -> pd.DataFrame:
    return (df.groupby(GROUP_KEYS).agg(patients=("y", "size"), responders=("y", "sum")).reset_index())


def row(table: pd.DataFrame, route: str) -> pd.Series:
    return table.set_index("route").loc[route]


def test_confounding_crude_rates_mislead_and_adjusted_rates_recover_the_truth():
    df = confounded_patients(4000, seed=11)
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    assert res.fitted and res.reference_route == "IV"  # IV has more evaluable patients here
    t = res.table
    iv, inn = row(t, "IV"), row(t, "IN")
    # the truth: each route's response probability standardised over these patients, from the true model
    truth = {r: float(true_probability(np.full(len(df), r), df["baseline"], df["treatment_resistant"],
                                       df["diagnosis"]).mean()) for r in ("IV", "IN")}
    assert truth["IV"] - truth["IN"] > 0.08  # IV truly better...
    assert iv["crude_rate"] < inn["crude_rate"]  # ...but crude rates say the opposite (confounding)
    for r, x in (("IV", iv), ("IN", inn)):
        assert x["adjusted_ci_low"] <= truth[r] <= x["adjusted_ci_high"], r
    true_diff = truth["IN"] - truth["IV"]
    assert inn["difference_ci_low"] <= true_diff <= inn["difference_ci_high"]
    assert inn["difference_ci_high"] < 0  # the adjusted comparison finds IV better
    assert np.isnan(iv["difference"]) and iv["note"] == "reference route"
    assert iv["adjusted_for"] == "baseline score, primary diagnosis, treatment resistance, age band"
    assert list(t.columns) == list(adjusted.COLUMNS)


def test_adjusted_rates_equal_statsmodels_predictions_and_delta_method_equals_numerical_gradient():
    df = confounded_patients(1500, seed=5)
    # a third route with 8 patients: left out of the model but standardised over
    extra = df.sample(8, random_state=1).assign(route="SL")
    df = pd.concat([df, extra], ignore_index=True)
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    t = res.table
    assert np.isnan(row(t, "SL")["adjusted_rate"]) and "not in the model" in row(t, "SL")["note"]
    assert row(t, "SL")["evaluable"] == 8

    # the same model on one row per patient, through statsmodels' formula interface
    model_df = df[df["route"] != "SL"].assign(y=lambda d: d["y"].astype(int), frac=lambda d: d["baseline"] / 21)
    formula = ("y ~ C(route, Treatment('IV')) + frac + C(diagnosis) + C(treatment_resistant) + C(age_band)")
    fit = smf.glm(formula, model_df, family=sm.families.Binomial()).fit()
    population = df.assign(frac=df["baseline"] / 21)
    for r in ("IV", "IN"):
        hand = float(fit.predict(population.assign(route=r)).mean())
        assert row(t, r)["adjusted_rate"] == pytest.approx(hand, abs=1e-9)

    # delta method: gradient of the standardised mean by central differences, covariance from the fit
    beta = fit.params.to_numpy()
    cov = fit.cov_params().to_numpy()
    from patsy import build_design_matrices, dmatrix

    design = dmatrix(formula.split("~")[1], model_df).design_info
    assert design.column_names == list(fit.params.index)

    def standardised(b: np.ndarray, r: str) -> float:
        X = np.asarray(build_design_matrices([design], population.assign(route=r))[0])
        return float((1 / (1 + np.exp(-(X @ b)))).mean())

    def gradient(r: str) -> np.ndarray:
        h = 1e-6
        return np.array([(standardised(beta + h * e, r) - standardised(beta - h * e, r)) / (2 * h)
                         for e in np.eye(len(beta))])

    g_iv, g_in = gradient("IV"), gradient("IN")
    se_in = float(np.sqrt(g_in @ cov @ g_in))
    se_diff = float(np.sqrt((g_in - g_iv) @ cov @ (g_in - g_iv)))
    z = 1.959963984540054
    x = row(t, "IN")
    assert x["adjusted_ci_high"] - x["adjusted_rate"] == pytest.approx(z * se_in, rel=1e-5)
    assert x["difference"] == pytest.approx(standardised(beta, "IN") - standardised(beta, "IV"), abs=1e-9)
    assert x["difference_ci_high"] - x["difference"] == pytest.approx(z * se_diff, rel=1e-5)


@pytest.mark.slow
def test_delta_method_intervals_agree_with_a_bootstrap_of_1000_resamples():
    df = confounded_patients(2000, seed=21)
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    rng = np.random.default_rng(2026)
    keys = df[GROUP_KEYS].astype(str).agg("|".join, axis=1)
    codes, uniques = pd.factorize(keys)
    first = df.groupby(codes).head(1).set_index(pd.Index(codes[df.groupby(codes).head(1).index]))
    y = df["y"].to_numpy(int)
    stats: dict[str, list[float]] = {"IV": [], "IN": [], "diff": []}
    for _ in range(1000):
        idx = rng.integers(0, len(df), len(df))
        patients = np.bincount(codes[idx], minlength=len(uniques))
        responders = np.bincount(codes[idx], weights=y[idx], minlength=len(uniques))
        g = first.loc[np.arange(len(uniques)), GROUP_KEYS].assign(patients=patients, responders=responders.astype(int))
        b = adjusted.fit_adjusted(g[g["patients"] > 0], score_max=21)
        assert b.fitted
        stats["IV"].append(row(b.table, "IV")["adjusted_rate"])
        stats["IN"].append(row(b.table, "IN")["adjusted_rate"])
        stats["diff"].append(row(b.table, "IN")["difference"])
    for key, r, col in (("IV", "IV", "adjusted"), ("IN", "IN", "adjusted"), ("diff", "IN", "difference")):
        lo, hi = np.quantile(stats[key], [0.025, 0.975])
        x = row(res.table, r)
        assert abs(x[f"{col}_ci_low"] - lo) < 0.01, key
        assert abs(x[f"{col}_ci_high"] - hi) < 0.01, key


def test_no_model_with_fewer_than_50_patients_or_one_route_or_separation():
    small = grouped(confounded_patients(49, seed=3))
    res = adjusted.fit_adjusted(small, score_max=21)
    assert not res.fitted and "fewer than 50" in res.reason
    assert res.table["adjusted_rate"].isna().all() and res.table["note"].str.contains("fewer than 50").all()
    assert adjusted.fit_adjusted(grouped(confounded_patients(50, seed=3)), score_max=21).fitted

    one = grouped(confounded_patients(300, seed=3).assign(route="IV"))
    res = adjusted.fit_adjusted(one, score_max=21)
    assert not res.fitted and "two routes" in res.reason and len(res.table) == 1

    sep = confounded_patients(300, seed=3)
    sep["y"] = sep["route"] == "IV"  # every IV patient responds, no IN patient does
    res = adjusted.fit_adjusted(grouped(sep), score_max=21)
    assert not res.fitted and "separation" in res.reason
    assert res.table["crude_rate"].tolist() == [1.0, 0.0] or sorted(res.table["crude_rate"]) == [0.0, 1.0]


def test_rare_levels_merge_into_the_most_frequent_and_single_levels_drop():
    df = confounded_patients(600, seed=8)
    df.loc[df.index[:9], "diagnosis"] = "OCD"  # 9 patients: merged into GAD (the most frequent)
    df.loc[df.index[9:19], "diagnosis"] = "SAD"  # 10 patients: kept
    df["treatment_resistant"] = False  # one level: left out
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    assert res.fitted
    assert res.merges == {"diagnosis": {"OCD": "GAD"}}
    assert res.dropped == ("treatment_resistant",)
    assert res.variables == ("baseline", "diagnosis", "age_band")
    assert row(res.table, "IV")["adjusted_for"] == (
        "baseline score, primary diagnosis, age band; primary diagnosis OCD merged into GAD (fewer than 10 "
        "patients); treatment resistance left out (one level)")
    # the merge equals fitting with OCD relabelled GAD by hand
    by_hand = adjusted.fit_adjusted(grouped(df.replace({"diagnosis": {"OCD": "GAD"}})), score_max=21)
    pd.testing.assert_series_equal(res.table["adjusted_rate"], by_hand.table["adjusted_rate"])


def test_reference_is_the_route_with_most_evaluable_patients_ties_to_the_first_in_order():
    df = confounded_patients(400, seed=9)
    df["route"] = np.where(np.arange(len(df)) % 2 == 0, "SC", "IM")  # 200 each: IM comes first in the order
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    assert res.reference_route == "IM"
    assert list(res.table["route"]) == ["IM", "SC"]
    assert res.table["reference_route"].tolist() == ["IM", "IM"]


def test_protection_hides_adjusted_numbers_of_routes_whose_crude_counts_are_hidden():
    df = confounded_patients(400, seed=4)
    df.loc[df.index[:12], "route"] = "PO"  # 12 evaluable: in the model, but few responders
    df.loc[df.index[:12], "y"] = [True] * 3 + [False] * 9
    res = adjusted.fit_adjusted(grouped(df), score_max=21)
    assert res.fitted and not np.isnan(row(res.table, "PO")["adjusted_rate"])
    per_route = df.groupby("route")["y"].agg(["size", "sum"])
    response = pd.DataFrame([
        {"route": r, **metrics._response_row(Settings(), int(per_route.loc[r, "size"]), int(per_route.loc[r, "size"]),
                                            int(per_route.loc[r, "sum"]), 0)}
        for r in ("IV", "IN", "PO")
    ] + [{"route": "ALL", **metrics._response_row(Settings(), len(df), len(df), int(df["y"].sum()), 0)}])
    protected = disclosure.protect("response_by_route", response, 11)
    out = adjusted.protect_adjusted(res.table, protected)
    po = row(out, "PO")
    assert pd.isna(protected.set_index("route").loc["PO", "responders"])  # 3 responders: hidden
    assert all(pd.isna(po[c]) for c in ("crude_rate", "adjusted_rate", "adjusted_ci_low", "difference"))
    assert po["note"] == adjusted.NOTE_HIDDEN
    shown = protected.set_index("route")
    for r in ("IV", "IN"):
        visible = not pd.isna(shown.loc[r, "response_rate"])
        assert visible == (not pd.isna(row(out, r)["adjusted_rate"]))
    # with the minimum cell off nothing is hidden
    out0 = adjusted.protect_adjusted(res.table, disclosure.protect("response_by_route", response, 0))
    assert out0["adjusted_rate"].notna().all()


def test_through_the_database_the_model_uses_the_evaluable_patients_of_the_response_table(tmp_path):
    """A small export: 70 IV and 40 IN patients, baselines 12..20; the query's groups must add up to the
    response table's evaluable patients and responders, under both populations."""
    patients, sessions, assessments = [], [], []
    rng = np.random.default_rng(1)
    for i in range(110):
        pid = f"P{i:03d}"
        route = "IV" if i < 70 else "IN"
        b = int(rng.integers(12, 21))
        patients.append(patient(pid, site="S1" if i % 3 else "S2", treatment_resistant=bool(i % 4 == 0),
                                age_band="25-34" if i % 2 else "45-54",
                                primary_diagnosis="GAD" if i % 5 else "MDD"))
        sessions.append(session(f"s{i}", pid, 0, route=route))
        assessments.append(assessment(pid, 0, b))
        if i % 10 != 9:  # every tenth patient has no endpoint (observed: not evaluable; itt: a non-responder)
            assessments.append(assessment(pid, 3, b // 2 if rng.random() < 0.5 else b - 2))
    db = build_db(tmp_path / "a.duckdb", patients, sessions, assessments)
    con = store.open_database(db)
    try:
        for population in ("observed", "itt"):
            s = Settings(population=population)
            groups = adjusted.load_groups(con, s)
            response = metrics.response_by_route(con, s).set_index("route")
            per_route = groups.groupby("route")[["patients", "responders"]].sum()
            for r in ("IV", "IN"):
                assert per_route.loc[r, "patients"] == response.loc[r, "evaluable"]
                assert per_route.loc[r, "responders"] == response.loc[r, "responders"]
            table = adjusted.adjusted_response(con, s)
            assert table["crude_rate"].tolist() == pytest.approx(
                [response.loc[r, "response_rate"] for r in ("IV", "IN")])
            assert table["evaluable"].tolist() == [response.loc[r, "evaluable"] for r in ("IV", "IN")]
        assert adjusted.load_groups(con, Settings(site=("S2",)))["patients"].sum() == 37 - 4  # 37 at S2, of whom 4 (9, 39, 69, 99) without endpoint
    finally:
        con.close()


def test_a_hidden_reference_route_hides_every_difference():
    res = adjusted.fit_adjusted(grouped(confounded_patients(400, seed=4)), score_max=21)
    ref = res.reference_route
    other = next(r for r in res.table["route"] if r != ref)
    response = pd.DataFrame({"route": [ref, other], "evaluable": [pd.NA, 100], "responders": [pd.NA, 40],
                             "response_rate": [NAN, 0.4]})
    out = adjusted.protect_adjusted(res.table, response)
    assert out["difference"].isna().all() and out["difference_ci_low"].isna().all()
    assert row(out, other)["adjusted_rate"] == row(res.table, other)["adjusted_rate"]
    assert np.isnan(row(out, ref)["adjusted_rate"])


NAN = float("nan")
