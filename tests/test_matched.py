"""The matched instrument (`instrument=matched`, metrics.md "Matched instrument", issue 11): each patient is
evaluated on the questionnaire of their primary diagnosis, with that questionnaire's minimum baseline,
remission cut, MCID and severity bands.

The hand-made cohort (every patient has a GAD-7 and, where it matters, another questionnaire, so a patient
evaluated on the wrong one would change the numbers):

| patient | diagnosis | route | matched on | B  | follow-ups (day: score)  | L | band     | eligible | responder | remitter | MCID relief |
|---------|-----------|-------|------------|----|--------------------------|---|----------|----------|-----------|----------|-------------|
| M1      | MDD       | IV    | PHQ-9      | 20 | 10: 9                    | 3 | severe   | yes      | yes (.55) | no       | t = 10      |
| M2      | MDD       | IV    | PHQ-9      | 8  | 7: 2                     | 0 | mild     | no (<10) |           |          |             |
| G1      | GAD       | IV    | GAD-7      | 14 | 7: 3                     | 0 | moderate | yes      | yes       | yes (≤4) | t = 7       |
| G2      | SAD       | IN    | GAD-7      | 10 | 5: 6                     | 0 | moderate | yes      | no (.4)   | no       | t = 5 (4)   |
| P1      | PTSD      | IV    | PCL-5      | 40 | 7: 30                    | 0 | moderate | yes      | no (.25)  | yes (≤32)| t = 7 (10)  |
| P2      | PTSD      | IN    | PCL-5      | 55 | 7: 20                    | 0 | severe   | yes      | yes (.64) | yes      | t = 7       |
| P3      | PTSD      | IV    | PCL-5      | 30 | 7: 10                    | 0 | mild     | no (<33) |           |          |             |
| O1      | OTHER     | IV    | PHQ-9      | 12 | 7: 8                     | 0 | moderate | yes      | no        | no       | censored (4 < 5) |

Their GAD-7 scores (also in the data) would give other answers: M1 15 -> 12 (no response), M2 12 -> 11
(eligible), P1 16 -> 4 and P3 18 -> 2 (response and remission), O1 9 (not eligible).
"""

from __future__ import annotations

import argparse
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard import cli
from dashboard.analysis import adjusted, metrics
from dashboard.analysis.settings import Settings, SettingsError
from dashboard.data import spec, store
from metrics_data import assessment, build_db, patient, session

MATCHED = Settings(instrument="matched", min_cell=0)


def matched_dataset():
    patients = [
        patient("M1", primary_diagnosis="MDD"), patient("M2", primary_diagnosis="MDD"),
        patient("G1", primary_diagnosis="GAD"), patient("G2", primary_diagnosis="SAD"),
        patient("P1", primary_diagnosis="PTSD"), patient("P2", primary_diagnosis="PTSD"),
        patient("P3", primary_diagnosis="PTSD"), patient("O1", primary_diagnosis="OTHER"),
    ]
    sessions = [
        session("m1a", "M1", 0), session("m1b", "M1", 3), session("m2a", "M2", 0), session("g1a", "G1", 0),
        session("g2a", "G2", 0, route="IN"), session("p1a", "P1", 0), session("p2a", "P2", 0, route="IN"),
        session("p3a", "P3", 0), session("o1a", "O1", 0),
    ]
    a = assessment
    assessments = [
        a("M1", 0, 20, instrument="PHQ9"), a("M1", 10, 9, instrument="PHQ9"), a("M1", 0, 15), a("M1", 10, 12),
        a("M2", 0, 8, instrument="PHQ9"), a("M2", 7, 2, instrument="PHQ9"), a("M2", 0, 12), a("M2", 7, 11),
        a("G1", 0, 14), a("G1", 7, 3), a("G1", 0, 5, instrument="PHQ9"), a("G1", 7, 5, instrument="PHQ9"),
        a("G2", 0, 10), a("G2", 5, 6),
        a("P1", 0, 40, instrument="PCL5"), a("P1", 7, 30, instrument="PCL5"), a("P1", 0, 16), a("P1", 7, 4),
        a("P2", 0, 55, instrument="PCL5"), a("P2", 7, 20, instrument="PCL5"),
        a("P3", 0, 30, instrument="PCL5"), a("P3", 7, 10, instrument="PCL5"), a("P3", 0, 18), a("P3", 7, 2),
        a("O1", 0, 12, instrument="PHQ9"), a("O1", 7, 8, instrument="PHQ9"), a("O1", 0, 9), a("O1", 7, 1),
    ]
    return patients, sessions, assessments, []


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_db(tmp_path_factory.mktemp("matched") / "m.duckdb", *matched_dataset())


@pytest.fixture(scope="module")
def con(db):
    c = duckdb.connect(str(db), read_only=True)
    yield c
    c.close()


def per_patient(con, s: Settings) -> pd.DataFrame:
    """The cohort macro's per-patient outcome rows, by patient id (what every metric counts)."""
    params = {**s.cohort_params(), "min_baseline": s.baseline_minimum, "window": s.window,
              "remission_cut": s.remission_cut}
    sql = ("SELECT patient_id, scale, baseline, severity, eligible, responder, remitter FROM cohort_outcomes("
           "$routes, $sites, $diagnoses, $sexes, $age_bands, $from_quarter, $to_quarter, $treatment_resistant, "
           "$settings, $integration, $severities, $instrument, $mild_floor, $moderate_floor, $severe_floor, "
           "$min_baseline, $window, $remission_cut) ORDER BY patient_id")
    return con.execute(sql, params).df().set_index("patient_id")


def expected_from_raw() -> pd.DataFrame:
    """The same per-patient facts computed independently with pandas from the raw rows and spec's cut-offs."""
    patients, sessions, assessments, _ = matched_dataset()
    p = pd.DataFrame(patients).set_index("patient_id")
    a = pd.DataFrame(assessments)
    s = pd.DataFrame(sessions)
    rows = {}
    for pid, d in p["primary_diagnosis"].items():
        inst = spec.DIAGNOSIS_INSTRUMENT[d]
        mine = a[(a["patient_id"] == pid) & (a["instrument"] == inst)]
        b = int(mine[mine["day"] <= 0]["score"].max())
        last_induction = int(s[s["patient_id"] == pid]["day"].max())
        ep = mine[(mine["day"] > 0) & (mine["day"] <= last_induction + 7)].sort_values("day")
        score = int(ep["score"].iloc[-1])
        eligible = b >= spec.DEFAULT_MIN_BASELINE[inst]
        rows[pid] = {
            "scale": inst, "baseline": b, "severity": spec.severity_band(inst, b), "eligible": eligible,
            "responder": eligible and (b - score) / b >= 0.5,
            "remitter": eligible and score <= spec.REMISSION_CUT[inst],
        }
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def test_each_patient_on_their_own_questionnaire(con):
    got = per_patient(con, MATCHED)
    hand = {  # the module docstring's table
        "G1": ("GAD7", 14, "moderate", True, True, True), "G2": ("GAD7", 10, "moderate", True, False, False),
        "M1": ("PHQ9", 20, "severe", True, True, False), "M2": ("PHQ9", 8, "mild", False, False, False),
        "O1": ("PHQ9", 12, "moderate", True, False, False), "P1": ("PCL5", 40, "moderate", True, False, True),
        "P2": ("PCL5", 55, "severe", True, True, True), "P3": ("PCL5", 30, "mild", False, False, False),
    }
    cols = ["scale", "baseline", "severity", "eligible", "responder", "remitter"]
    assert {pid: tuple(r[c] for c in cols) for pid, r in got[cols].iterrows()} == hand
    independent = expected_from_raw()
    assert got[cols].astype(object).to_dict("index") == independent[cols].astype(object).to_dict("index")


def test_response_and_funnel_counts(con):
    r = metrics.response_by_route(con, MATCHED).set_index("route")
    assert r.loc["ALL", ["patients", "evaluable", "responders", "remitters"]].tolist() == [6, 6, 3, 3]
    assert r.loc["IV", ["patients", "evaluable", "responders", "remitters"]].tolist() == [4, 4, 2, 2]  # M1 G1 P1 O1: G1 and P1 remit
    assert r.loc["IN", ["patients", "evaluable", "responders", "remitters"]].tolist() == [2, 2, 1, 1]  # G2 P2
    f = metrics.cohort_funnel(con, MATCHED).set_index("route")
    assert f.loc["ALL", ["patients", "with_sessions", "with_baseline", "eligible", "with_endpoint"]].tolist() == [
        8, 8, 8, 6, 6]
    # on GAD-7 alone the same patients give other answers: eligible M1 (15), M2 (12), G1, G2, P1 (16), P3 (18);
    # responders and remitters G1 (3), P1 (4), P3 (2); M1 (15 -> 12) does not respond
    g = metrics.response_by_route(con, Settings(instrument="GAD7", min_cell=0)).set_index("route")
    assert g.loc["ALL", ["patients", "responders", "remitters"]].tolist() == [6, 3, 3]


def test_severity_band_filter_follows_each_questionnaire(con):
    s = MATCHED.replace(severity=("moderate",))
    assert sorted(per_patient(con, s).index) == ["G1", "G2", "O1", "P1"]
    assert metrics.cohort_size(con, s)["patients"].iloc[0] == 4
    severe = MATCHED.replace(severity=("severe",))
    assert sorted(per_patient(con, severe).index) == ["M1", "P2"]
    # the session-level tables filter the same patients (side effects count their sessions)
    se = metrics.side_effects(con, severe).set_index(["route", "event"])
    assert se.loc[("ALL", "nausea"), "patients"] == 2


def test_mcid_relief_uses_each_questionnaires_mcid(con):
    relief = MATCHED.replace(relief="mcid")
    times = store.run_query(con, "relief_times", {**relief.cohort_params(), "min_baseline": None, "relief": "mcid"})
    got = sorted((float(t), bool(e), int(n)) for t, e, n in zip(times["time"], times["event"], times["patients"]))
    # M1 at 10 (drop 11 >= 5), G2 at 5 (4 >= 4), G1 P1 P2 at 7 (11 >= 4, 10 >= 10, 35 >= 10); O1 censored at 7
    # (drop 4 < PHQ-9's 5); times counted per route
    expected = sorted([(10.0, True, 1), (5.0, True, 1), (7.0, True, 2), (7.0, False, 1), (7.0, True, 1)])
    assert got == expected
    r = metrics.time_to_relief(con, relief).summary.set_index("route")
    # ALL: 6 patients; G2 at 5 (S = 5/6); at 7 five at risk, three events (G1 P1 P2) and O1 censored
    # (S = 5/6 * 2/5); M1 at 10 is the last one at risk (S = 0)
    assert math.isclose(r.loc["ALL", "relieved_by_day_7"], 1 - (5 / 6) * (2 / 5), abs_tol=1e-12)
    assert math.isclose(r.loc["ALL", "relieved_by_day_14"], 1.0, abs_tol=1e-12)
    # under GAD7 the IN route holds G2 alone (P2 has no GAD-7), relieved at 5 by GAD-7's MCID of 4
    g = metrics.time_to_relief(con, Settings(instrument="GAD7", relief="mcid", min_cell=0, route=("IN",)))
    assert g.summary.set_index("route").loc["IN", "relieved_by_day_7"] == 1.0


def test_one_diagnosis_matched_equals_its_questionnaire(db, tmp_path):
    for diagnosis, instrument in (("PTSD", "PCL5"), ("MDD", "PHQ9"), ("GAD", "GAD7")):
        outs = {}
        for inst in (instrument, "matched"):
            out = tmp_path / f"{diagnosis}-{inst}"
            assert cli.main(["export", "--db", str(db), "--out", str(out), "--min-cell", "0",
                             "--diagnosis", diagnosis, "--instrument", inst]) == 0
            outs[inst] = out
        csvs = sorted(p.name for p in outs[instrument].glob("*.csv"))
        assert "response_by_route.csv" in csvs
        for name in csvs:
            assert (outs["matched"] / name).read_bytes() == (outs[instrument] / name).read_bytes(), (diagnosis, name)


def test_provenance_names_matched(db, tmp_path):
    import json

    out = tmp_path / "m"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--instrument", "matched", "--min-cell", "0"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["settings"]["instrument"] == "matched"
    assert prov["settings"]["min_baseline"] == {"GAD7": 10, "PHQ9": 10, "PCL5": 33}
    assert prov["query_string"] == "instrument=matched&min_cell=0"


def test_numeric_minimum_baseline_is_refused_with_matched(db, tmp_path, capsys):
    with pytest.raises(SettingsError) as e:
        Settings(instrument="matched", min_baseline=12)
    assert e.value.problems == [
        "min_baseline: 12 cannot be used with instrument=matched, where each patient's own questionnaire's "
        "default applies (GAD-7 10, PHQ-9 10, PCL-5 33); leave min_baseline out, or choose instrument=GAD7, "
        "instrument=PHQ9 or instrument=PCL5"]
    with pytest.raises(SettingsError) as e:
        Settings.from_query_params({"instrument": "matched", "min_baseline": "12"})
    assert e.value.problems[0].startswith("min_baseline: 12 cannot be used with instrument=matched")
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    with pytest.raises(SettingsError) as e:
        Settings.from_args(parser.parse_args(["--instrument", "matched", "--min-baseline", "12"]))
    assert e.value.problems == [
        "--min-baseline: 12 cannot be used with --instrument matched, where each patient's own questionnaire's "
        "default applies (GAD-7 10, PHQ-9 10, PCL-5 33); leave --min-baseline out, or choose --instrument GAD7, "
        "--instrument PHQ9 or --instrument PCL5"]
    capsys.readouterr()
    out = tmp_path / "refused"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--instrument", "matched",
                     "--min-baseline", "12"]) == 2
    err = capsys.readouterr().err
    assert "--min-baseline: 12 cannot be used with --instrument matched" in err
    assert not out.exists()
    # the instrument's default alone, or a numeric minimum on one questionnaire, is fine
    assert Settings(instrument="matched").baseline_minimum is None
    assert Settings(instrument="PCL5", min_baseline=40).baseline_minimum == 40


def test_url_and_flags_round_trip():
    s = Settings(instrument="matched", diagnosis=("PTSD", "MDD"), severity=("severe",))
    assert s.to_query_string() == "diagnosis=MDD&diagnosis=PTSD&severity=severe&instrument=matched"
    assert Settings.from_query_params({"diagnosis": ["MDD", "PTSD"], "severity": "severe",
                                       "instrument": "matched"}) == s
    assert Settings.from_query_params({"instrument": "Matched"}).instrument == "matched"
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    assert Settings.from_args(parser.parse_args(s.to_args())) == s
    assert s.to_args()[-2:] == ["--instrument", "matched"]
    assert Settings().instrument == "GAD7"  # the command line's default stays GAD-7 (the spec's table)
    assert s.cohort_params()["mild_floor"] is None and s.remission_cut is None and s.mcid is None
    assert s.instrument_label == "Matched to diagnosis"
    assert "each patient's questionnaire" in s.describe_filters()


def test_dashboard_default_instrument():
    assert spec.default_instrument(()) == "matched"
    assert spec.default_instrument(("PTSD",)) == "PCL5"
    assert spec.default_instrument(("MDD", "OTHER")) == "PHQ9"
    assert spec.default_instrument(("GAD", "SAD", "PANIC", "OCD")) == "GAD7"
    assert spec.default_instrument(("MDD", "GAD")) == "matched"


def test_trajectory_in_percent_under_matched(con):
    t = metrics.trajectory(con, MATCHED.replace(route=("IN",)))
    rows = {(r["route"], r["week"]): r for r in t.to_dict("records")}
    # G2: week 0 holds its day-5 score 6 of B 10 (40 %); P2: baseline 55 at week 0 (0 %), 20 at week 1 (63.6 %)
    assert rows[("IN", 0)]["patients"] == 2
    assert math.isclose(rows[("IN", 0)]["mean_score"], 20.0, abs_tol=1e-9)
    # two values 40 and 0: sd 28.28, t(1) interval 20 ± 12.706 * 20
    assert math.isclose(rows[("IN", 0)]["ci_low"], 20 - 12.706204736174698 * 20, rel_tol=1e-9)
    assert math.isclose(rows[("IN", 1)]["mean_score"], 100 * 35 / 55, abs_tol=1e-9)
    assert rows[("IN", 1)]["patients"] == 1 and rows[("IN", 1)]["responders"] == 1
    # under one questionnaire the trajectory stays in points
    p = metrics.trajectory(con, Settings(instrument="PCL5", min_cell=0, route=("IN",)))
    assert {(r["week"], r["mean_score"]) for r in p.to_dict("records") if r["route"] == "IN"} == {(0, 55.0), (1, 20.0)}


def test_trajectory_figure_says_percent(con):
    from dashboard.charts import figures

    t = metrics.trajectory(con, MATCHED)
    fig = figures.create_trajectory_figure(t, "Matched to diagnosis", percent=True)
    assert "improvement" in fig.layout.title.text.lower()
    assert "%" in fig.layout.yaxis.title.text
    assert "% improvement" in fig.data[-1].hovertemplate


def test_adjusted_model_under_matched_uses_fraction_of_each_maximum(con):
    groups = adjusted.load_groups(con, MATCHED)
    by_max = dict(zip(groups["baseline"], groups["scale_max"]))
    assert by_max == {14: 21, 10: 21, 20: 27, 12: 27, 40: 80, 55: 80}
    result = adjusted.adjusted_fit(con, MATCHED)
    assert not result.fitted  # 6 patients: too few for a model, and it says so rather than failing
    assert result.table["route"].tolist() == ["IV", "IN"]


def test_adjusted_model_fits_under_matched_on_the_sample(sample_db):
    con = store.open_database(sample_db)
    try:
        s = Settings(instrument="matched", min_cell=0)
        groups = adjusted.load_groups(con, s)
        assert set(groups["scale_max"]) == {21, 27, 80}
        result = adjusted.adjusted_fit(con, s)
        assert result.fitted
        # the model's baseline column is baseline / each patient's own maximum: refit by hand and compare
        by_hand = adjusted.fit_adjusted(groups, score_max=groups["scale_max"].astype(float))
        pd.testing.assert_frame_equal(result.table, by_hand.table)
        wrong = adjusted.fit_adjusted(groups, score_max=21.0)
        assert not np.allclose(wrong.model.params, result.model.params)
        # and the table says so (issue 11): the baseline is each patient's own questionnaire's fraction
        said = set(result.table["adjusted_for"].dropna())
        assert said and all(t.startswith("baseline score (as a fraction of each patient's questionnaire maximum), "
                                         "primary diagnosis") for t in said)
        assert all("fraction" not in t for t in wrong.table["adjusted_for"].dropna())
    finally:
        con.close()


def test_derived_cut_offs_agree_with_spec(con):
    rules = con.execute(
        "SELECT DISTINCT scale, scale_min_baseline, scale_remission_cut, scale_mcid, scale_mild_floor, "
        "scale_moderate_floor, scale_severe_floor, scale_max FROM cohort_base ORDER BY scale").fetchall()
    expected = sorted(
        (i, spec.DEFAULT_MIN_BASELINE[i], spec.REMISSION_CUT[i], spec.MCID[i], spec.SEVERITY_BAND_FLOORS[i]["mild"],
         spec.SEVERITY_BAND_FLOORS[i]["moderate"], spec.SEVERITY_BAND_FLOORS[i]["severe"], spec.SCORE_RANGE[i][1])
        for i in spec.INSTRUMENTS)
    assert rules == expected
    assert spec.SEVERITY_BAND_FLOORS["PCL5"] == {"minimal": 0, "mild": 20, "moderate": 33, "severe": 50}
    # every patient has exactly one matched row, on their diagnosis' questionnaire, with the same pk
    m = con.execute("SELECT c.patient_id, c.scale, c.pk, p.pk FROM cohort_base c JOIN patient_summary p "
                    "USING (patient_id) WHERE c.instrument = 'matched' ORDER BY 1").fetchall()
    assert [(pid, scale) for pid, scale, *_ in m] == [
        ("G1", "GAD7"), ("G2", "GAD7"), ("M1", "PHQ9"), ("M2", "PHQ9"), ("O1", "PHQ9"), ("P1", "PCL5"),
        ("P2", "PCL5"), ("P3", "PCL5")]
    assert all(a == b for *_, a, b in m)
    for diagnosis in spec.DIAGNOSES:  # the SQL mapping is spec's
        assert spec.DIAGNOSIS_INSTRUMENT[diagnosis] in spec.INSTRUMENTS


def test_cell_keys_are_the_patients_keys_under_matched(con):
    """A count's cell key is keyed on its set of patients: the same patients under matched and under their
    questionnaire give the same key (so the perturbation cannot tell the instrument settings apart)."""
    s_m = Settings(instrument="matched", diagnosis=("PTSD",), min_cell=0)
    s_p = Settings(instrument="PCL5", diagnosis=("PTSD",), min_cell=0)
    a = metrics.outcome_counts(con, s_m)
    b = metrics.outcome_counts(con, s_p)
    pd.testing.assert_frame_equal(a, b)
    assert (a.filter(like="__key") != 0).any().any()
