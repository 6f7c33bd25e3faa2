"""Disclosure control: exact cases for each rule, and property tests (hypothesis) that no protected table
shows a hidden value, directly or by subtracting the shown routes from ALL, for random tables and for
random cohorts run through the whole export."""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from dashboard.analysis import disclosure
from dashboard.charts import figures
from dashboard.reports import export

from dashboard.data import spec
from dashboard.analysis.settings import Settings
from metrics_data import assessment, build_db, event, patient, relief_summary, session


def is_hidden(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def cohort_table(values: dict[str, int], all_patients: int | None = None) -> pd.DataFrame:
    rows = [{"route": r, **{c: v for c in ("patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint")}}
            for r, v in values.items()]
    total = sum(values.values())
    rows.append({"route": "ALL", "patients": all_patients if all_patients is not None else total,
                 **{c: total for c in ("with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint")}})
    return pd.DataFrame(rows)


# --- exact cases ------------------------------------------------------------------------------------------


def test_k_zero_hides_nothing():
    df = cohort_table({"IV": 3, "IN": 50})
    out = disclosure.protect("cohort", df, 0)
    assert out["patients"].tolist() == [3, 50, 53]


def test_small_count_and_its_complement():
    out = disclosure.protect("cohort", cohort_table({"IV": 40, "IM": 3, "IN": 25, "SL": 60}), 11)
    # IM (3) is hidden, and so is the smallest other route (IN, 25): ALL - shown leaves 28 for two routes
    assert [is_hidden(v) for v in out["eligible"]] == [False, True, True, False, False]
    assert out["eligible"].iloc[-1] == 128


def test_complement_reaches_k():
    # IM 1 and SC 2 hidden together hold 3 < 11: a third cell (the smallest shown, IN 12) joins them
    out = disclosure.protect("cohort", cohort_table({"IV": 40, "IM": 1, "SC": 2, "IN": 12}), 11)
    assert [is_hidden(v) for v in out["eligible"]] == [False, True, True, True, False]


def test_zero_is_shown_and_not_chosen_first():
    out = disclosure.protect("cohort", cohort_table({"IV": 40, "IM": 0, "SC": 5, "IN": 30}), 11)
    assert out["eligible"].tolist()[:2] == [40, 0]
    assert is_hidden(out["eligible"].iloc[2]) and is_hidden(out["eligible"].iloc[3])


def test_never_dosed_patients_cover_no_route():
    # ALL's never-dosed patients are ALL's patients minus ALL's with_sessions, both in the row: hiding a route
    # for them hid nothing (its with_sessions beside it gave it back), so no route is hidden for them
    out = disclosure.protect("cohort", cohort_table({"IV": 40, "IN": 30}, all_patients=74), 11)
    assert out["patients"].tolist() == [40, 30, 74] and out["with_sessions"].tolist() == [40, 30, 70]
    # nor do 20 of them cover a small route: IM's 5 is covered by IN's 30 in both equal columns (a reviewer
    # read a hidden 10 as ALL's with_sessions minus the shown routes' patients)
    out = disclosure.protect("cohort", cohort_table({"IV": 40, "IM": 5, "IN": 30}, all_patients=95), 11)
    for col in ("patients", "with_sessions"):
        assert [is_hidden(v) for v in out[col]] == [False, True, True, False], col


def test_all_below_k_hides_everything():
    out = disclosure.protect("cohort", cohort_table({"IV": 4, "IN": 5}), 11)
    assert all(is_hidden(v) for v in out["eligible"])


def test_rates_hidden_with_counts_and_small_denominators():
    df = pd.DataFrame([
        {"route": "IV", "patients": 50, "evaluable": 40, "responders": 20, "remitters": 0},
        {"route": "IN", "patients": 12, "evaluable": 9, "responders": 9, "remitters": 0},
        {"route": "ALL", "patients": 62, "evaluable": 49, "responders": 29, "remitters": 0},
    ])
    for c in ("response_rate", "response_ci_low", "response_ci_high", "remission_rate", "remission_ci_low", "remission_ci_high"):
        df[c] = 0.5
    out = disclosure.protect("response_by_route", df, 11)
    # IN: evaluable 9 hidden, its responders 9 too, and IV's as complements; the rate rests on 9 < 11
    assert is_hidden(out["evaluable"].iloc[1]) and is_hidden(out["response_rate"].iloc[1])
    assert is_hidden(out["evaluable"].iloc[0]) and is_hidden(out["response_rate"].iloc[0])
    # a zero count may show, and a rate over 49 evaluable patients too
    assert out["remitters"].tolist() == [0, 0, 0]
    assert out["remission_rate"].iloc[2] == 0.5 and out["response_rate"].iloc[2] == 0.5


def test_row_identity_events_plus_censored():
    df = relief_summary([("IV", 100, 95, 5), ("IN", 80, 40, 40), ("ALL", 180, 135, 45)])
    out = disclosure.protect("time_to_relief", df, 11)
    # IV censored 5 is hidden; events 95 = patients - censored would reveal it, so events go too
    assert is_hidden(out["censored"].iloc[0]) and is_hidden(out["events"].iloc[0])
    assert out["patients"].iloc[0] == 100  # the total is never the one hidden for the identity
    assert is_hidden(out["median_days"].iloc[0])


def test_zero_beside_a_small_hidden_base_is_hidden():
    # IN's 7 patients were all relieved: its 0 censored would say so (a share of fewer than k patients)
    df = relief_summary([("IV", 100, 95, 5), ("IM", 60, 30, 30), ("IN", 7, 7, 0), ("ALL", 167, 132, 35)])
    out = disclosure.protect("time_to_relief", df, 11)
    assert all(is_hidden(out[c].iloc[2]) for c in ("patients", "events", "censored"))
    assert disclosure.hidden_reason(out, 2, "censored") == ("hidden", 11.0)  # never "fewer than 11": it is 0
    # IV's 5 censored are hidden anyway; IN's 0 and IV's 5 hold fewer than 11, so IM's 30 covers them (and IM's
    # patients and events cover IN's); ALL shows
    assert out["censored"].isna().tolist() == [True, True, True, False] and out["censored"].iloc[3] == 35
    assert out["patients"].iloc[0] == 100 and out["events"].iloc[3] == 132

    # 0 responders of 9 evaluable (hidden) says none responded; of 40, or where nobody responded at all, it shows
    resp = pd.DataFrame([
        {"route": "IV", "patients": 50, "evaluable": 40, "responders": 20, "remitters": 0},
        {"route": "IM", "patients": 45, "evaluable": 40, "responders": 0, "remitters": 0},
        {"route": "IN", "patients": 12, "evaluable": 9, "responders": 0, "remitters": 0},
        {"route": "ALL", "patients": 107, "evaluable": 89, "responders": 20, "remitters": 0},
    ])
    out = disclosure.protect("response_by_route", resp, 11)
    assert is_hidden(out["responders"].iloc[2]) and is_hidden(out["responders"].iloc[0])  # IN and its cover
    assert out["responders"].iloc[1] == 0 and out["responders"].iloc[3] == 20
    assert out["remitters"].tolist() == [0, 0, 0, 0]

    # a cohort of 6 evaluable patients, none of whom responded: ALL's 0 is itself a share of a small group, so
    # neither it nor the routes' zeros (which would follow from it) show (a newcomer's sex-X quarter)
    few = pd.DataFrame([
        {"route": "IV", "patients": 4, "evaluable": 4, "responders": 0, "remitters": 0},
        {"route": "IN", "patients": 3, "evaluable": 2, "responders": 0, "remitters": 0},
        {"route": "ALL", "patients": 7, "evaluable": 6, "responders": 0, "remitters": 0},
    ])
    out = disclosure.protect("response_by_route", few, 11)
    assert out[["evaluable", "responders", "remitters"]].isna().all().all()
    assert disclosure.hidden_reason(out, 2, "responders") == ("hidden", 11.0)


def test_maintenance_hides_a_zero_beside_few_responders():
    # PO's one responder (hidden) had no 8-week follow-up: "0 followed" would say so of fewer than 11
    maint = pd.DataFrame([
        {"route": "IV", "responders": 40, "responders_in_maintenance": 12, "maintenance_patients": 20,
         "maintenance_sessions": 60, "sustained_patients": 30},
        {"route": "IM", "responders": 30, "responders_in_maintenance": 11, "maintenance_patients": 15,
         "maintenance_sessions": 40, "sustained_patients": 20},
        {"route": "PO", "responders": 1, "responders_in_maintenance": 0, "maintenance_patients": 0,
         "maintenance_sessions": 0, "sustained_patients": 0},
        {"route": "ALL", "responders": 71, "responders_in_maintenance": 23, "maintenance_patients": 35,
         "maintenance_sessions": 100, "sustained_patients": 50},
    ])
    out = disclosure.protect("maintenance", maint, 11)
    assert is_hidden(out["responders"].iloc[2])
    assert is_hidden(out["sustained_patients"].iloc[2]) and is_hidden(out["responders_in_maintenance"].iloc[2])
    assert out["sustained_patients"].iloc[3] == 50


def test_a_count_hidden_in_another_file_is_hidden_here_too():
    # maintenance.csv's responders are response_by_route.csv's: where that file hides IN's 0 responders (of
    # fewer than 11 evaluable) and IV's as its cover, this one hides them too, whatever its own rule says
    maint = pd.DataFrame([
        {"route": "IV", "responders": 20, "responders_in_maintenance": 12, "uptake_rate": 0.6},
        {"route": "IM", "responders": 0, "responders_in_maintenance": 0, "uptake_rate": np.nan},
        {"route": "IN", "responders": 0, "responders_in_maintenance": 0, "uptake_rate": np.nan},
        {"route": "ALL", "responders": 20, "responders_in_maintenance": 12, "uptake_rate": 0.6},
    ])
    alone = disclosure.protect("maintenance", maint, 11)
    assert alone["responders"].tolist() == [20, 0, 0, 20]
    out = disclosure.protect("maintenance", maint, 11, hidden_elsewhere={"responders": [True, False, True, False]})
    assert out["responders"].isna().tolist() == [True, False, True, False]
    assert disclosure.hidden_reason(out, 2, "responders") == ("hidden", 11.0)  # a zero: never "fewer than 11"
    assert out["uptake_rate"].isna().tolist() == [True, True, True, False]  # IM: no responders, undefined
    # IN's 0 in maintenance is a part of its hidden responders; IV's 12 cover it, ALL shows
    assert out["responders_in_maintenance"].isna().tolist() == [True, False, True, False]
    # without a minimum cell nothing is hidden; a mask of the wrong length or for a two-way table is refused
    assert disclosure.protect("maintenance", maint, 0, hidden_elsewhere={"responders": [True] * 4}).equals(
        disclosure.protect("maintenance", maint, 0))
    with pytest.raises(ValueError, match="3 values for 4 rows"):
        disclosure.protect("maintenance", maint, 11, hidden_elsewhere={"responders": [True, False, True]})
    with pytest.raises(ValueError, match="one-way"):
        disclosure.protect("trend", pd.DataFrame(), 11, hidden_elsewhere={"responders": []})


def test_sessions_of_few_patients_hidden():
    rows = []
    for r, (s, p) in {"IV": (200, 40), "PO": (30, 3), "IN": (120, 25)}.items():
        rows.append({"route": r, "event": "nausea", "sessions": s, "sessions_with_event": 20, "session_rate": 0.1,
                     "patients": p, "patients_with_event": min(p, 12), "patient_rate": 0.3})
    rows.append({"route": "ALL", "event": "nausea", "sessions": 350, "sessions_with_event": 60, "session_rate": 0.2,
                 "patients": 68, "patients_with_event": 27, "patient_rate": 0.4})
    out = disclosure.protect("side_effects", pd.DataFrame(rows), 11)
    assert is_hidden(out["sessions"].iloc[1])  # 30 sessions of 3 patients
    assert is_hidden(out["sessions_with_event"].iloc[1])  # 20 sessions of 3 patients with the event
    assert is_hidden(out["session_rate"].iloc[1])


def test_unknown_table_refused():
    with pytest.raises(KeyError):
        disclosure.protect("nope", pd.DataFrame(), 11)


def test_curve_thinned_to_k_events_between_points():
    rows = [{"route": "IV", "day": 0.0, "at_risk": 40, "events": 0, "relieved": 0.0, "ci_low": 0.0, "ci_high": 0.0}]
    at_risk, relieved = 40, 0.0
    for day in range(1, 21):
        rows.append({"route": "IV", "day": float(day), "at_risk": at_risk, "events": 2, "relieved": relieved,
                     "ci_low": 0.0, "ci_high": 0.0})
        at_risk -= 2
    df = pd.DataFrame(rows)
    all_rows = df.assign(route="ALL")
    out = disclosure.protect("time_to_relief_curve", pd.concat([df, all_rows], ignore_index=True), 5)
    iv = out[out["route"] == "IV"]
    # 2 events a day: a point every 3 days (6 >= 5 events), while at least 5 are at risk; the rest left out
    assert iv["day"].tolist() == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
    assert iv["relieved"].notna().all()
    assert iv["events"].iloc[1:].isna().all()  # 2 events per row: never shown
    assert iv["events"].iloc[0] == 0  # the start: zero may show


# --- property tests: random tables -------------------------------------------------------------------------


def check_lines(original: pd.DataFrame, protected: pd.DataFrame, rule: disclosure.Rule, k: int) -> None:
    keys = [c for c in rule.line_keys if c in original.columns]
    groups = original.groupby(keys, sort=False).indices.values() if keys else [np.arange(len(original))]
    # counts equal on the routes (a route's patients are its patients with sessions) are hidden together, and
    # the first one's line is checked through the second's: ALL's patients also hold the never-dosed, which
    # are ALL's patients minus its with_sessions, so that line has no identity of its own to check
    through = {a for a, _ in rule.equal_on_routes}
    for a, b in rule.equal_on_routes:
        for i in range(len(original)):
            if original["route"].iloc[i] != spec.ALL:
                assert is_hidden(protected[a].iloc[i]) == is_hidden(protected[b].iloc[i]), (a, b, i)
    for col in rule.counts:
        if col not in original.columns:
            continue
        for v in protected[col]:
            assert is_hidden(v) or v == 0 or v >= k, (col, v)
        if col in through:
            continue
        for idx in groups:
            idx = list(idx)
            total = [i for i in idx if original["route"].iloc[i] == spec.ALL]
            members = [i for i in idx if original["route"].iloc[i] != spec.ALL]
            if not total or is_hidden(protected[col].iloc[total[0]]):
                continue
            hidden = [i for i in members if is_hidden(protected[col].iloc[i])]
            if hidden:
                assert len(hidden) >= 2, (col, hidden)  # one would be ALL minus the shown ones
                # together at least k (ALL's patients also hold the never-dosed, which are ALL's patients
                # minus its with_sessions, and so no cover: the routes' patients are their with_sessions)
                assert float(original[col].iloc[hidden].sum()) >= k, (col, hidden)


def check_derived(original: pd.DataFrame, protected: pd.DataFrame, rule: disclosure.Rule, k: int) -> None:
    for col, bases in rule.at_least_k.items():
        if col not in original.columns:
            continue
        for i in range(len(original)):
            if is_hidden(protected[col].iloc[i]):
                continue
            for b in bases:
                assert float(original[b].iloc[i]) >= k, (col, b)
            for dep in rule.hide_with.get(col, ()):
                if dep in protected.columns:
                    assert not is_hidden(protected[dep].iloc[i]), (col, dep)


routes_st = st.lists(st.sampled_from(spec.ROUTES), min_size=1, max_size=6, unique=True)
count_st = st.integers(0, 40)


@hsettings(max_examples=300, deadline=None)
@given(routes=routes_st, data=st.data(), k=st.integers(1, 15), never_dosed=st.integers(0, 20))
def test_property_cohort(routes, data, k, never_dosed):
    values = {r: data.draw(count_st) for r in routes}
    df = cohort_table(values, all_patients=sum(values.values()) + never_dosed)
    out = disclosure.protect("cohort", df, k)
    check_lines(df, out, disclosure.TABLES["cohort"], k)


def check_zeros_of_few(original: pd.DataFrame, protected: pd.DataFrame, zero_bases: dict, k: int) -> None:
    """No zero shows beside a base of 1..k-1 patients it is a part of, unless ALL shows the same zero beside
    a base of k or more (every route's zero then follows from it)."""
    total = original.index[original["route"] == spec.ALL][0]
    for part, bases in zero_bases.items():
        for base in bases:
            if part not in original.columns or base not in original.columns:
                continue
            excused = original.loc[total, part] == 0 and not 1 <= original.loc[total, base] < k
            for i in original.index:
                if original.loc[i, part] == 0 and 1 <= original.loc[i, base] < k and not excused:
                    assert is_hidden(protected.loc[i, part]), (i, part, base, original.loc[i].to_dict())


@hsettings(max_examples=300, deadline=None)
@given(routes=routes_st, data=st.data(), k=st.integers(1, 15), never_dosed=st.integers(0, 20))
def test_property_cohort_funnel(routes, data, k, never_dosed):
    """A real funnel (each step a part of the one before; a route's patients all have sessions): lines as
    ever, and no step's zero beside a small earlier step ("0 with an endpoint" of 3 eligible: a newcomer found
    220 such zeros over 90 filter states)."""
    rows = []
    for r in routes:
        step = data.draw(st.integers(0, 30))
        row = {"route": r, "patients": step, "with_sessions": step}
        for col in ("with_baseline", "eligible", "with_followup", "with_endpoint"):
            step = data.draw(st.integers(0, step))
            row[col] = step
        rows.append(row)
    df = pd.DataFrame(rows)
    alls = df.drop(columns="route").sum()
    alls["patients"] += never_dosed
    df = pd.concat([df, pd.DataFrame([{"route": "ALL", **alls.to_dict()}])], ignore_index=True)
    out = disclosure.protect("cohort", df, k)
    rule = disclosure.TABLES["cohort"]
    check_lines(df, out, rule, k)
    # the test's own statement of the funnel (not the rule's), so a rule that forgets a step fails here
    steps = ("patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint")
    check_zeros_of_few(df, out, {step: steps[:i] for i, step in enumerate(steps) if i}, k)
    # (check_lines: a route's patients and with_sessions are hidden together, or the shown one gives the hidden
    # one back: a reviewer read IV's hidden 10 as ALL's 65 with sessions minus IN's shown 55 patients)


@hsettings(max_examples=200, deadline=None)
@given(routes=routes_st, data=st.data(), k=st.integers(1, 15))
def test_property_time_to_relief(routes, data, k):
    rows = []
    for r in routes:
        e, c = data.draw(count_st), data.draw(count_st)
        rows.append({"route": r, "patients": e + c, "events": e, "censored": c})
    total = {c: sum(row[c] for row in rows) for c in ("patients", "events", "censored")}
    df = pd.DataFrame(rows + [{"route": "ALL", **total}])
    for c in ("median_days", "median_ci_low", "median_ci_high", *(f"relieved_by_day_{d}" for d in spec.RELIEF_DAYS)):
        df[c] = 1.0
    out = disclosure.protect("time_to_relief", df, k)
    rule = disclosure.TABLES["time_to_relief"]
    check_lines(df, out, rule, k)
    check_derived(df, out, rule, k)
    for i in range(len(df)):  # events + censored = patients: never exactly one unknown
        if not is_hidden(out["patients"].iloc[i]):
            assert is_hidden(out["events"].iloc[i]) == is_hidden(out["censored"].iloc[i])


@hsettings(max_examples=150, deadline=None)
@given(routes=routes_st, data=st.data(), k=st.integers(1, 15))
def test_property_side_effects(routes, data, k):
    rows = []
    events = ("nausea", "bp_severe")
    per_route = {}
    for r in routes:
        patients = data.draw(st.integers(0, 30))
        sessions = patients * data.draw(st.integers(1, 4))
        per_route[r] = (sessions, patients)
        for e in events:
            pwe = data.draw(st.integers(0, patients))
            swe = data.draw(st.integers(pwe, max(pwe, min(sessions, pwe * 3))))
            rows.append({"route": r, "event": e, "sessions": sessions, "sessions_with_event": swe,
                         "patients": patients, "patients_with_event": pwe})
    df = pd.DataFrame(rows)
    totals = df.groupby("event", sort=False)[["sessions", "sessions_with_event", "patients", "patients_with_event"]].sum().reset_index()
    df = pd.concat([df, totals.assign(route="ALL")], ignore_index=True)
    df["session_rate"] = df["sessions_with_event"] / df["sessions"].where(df["sessions"] > 0)
    df["patient_rate"] = df["patients_with_event"] / df["patients"].where(df["patients"] > 0)
    out = disclosure.protect("side_effects", df, k)
    rule = disclosure.TABLES["side_effects"]
    check_lines(df, out, rule, k)
    check_derived(df, out, rule, k)


# --- property tests: random cohorts through the whole export ---------------------------------------------

patient_st = st.fixed_dictionaries({
    "sessions": st.lists(st.tuples(st.integers(0, 20), st.sampled_from(("IV", "IN", "IM", "PO")),
                                   st.sampled_from(("induction", "maintenance"))), min_size=0, max_size=5),
    "baseline": st.one_of(st.none(), st.integers(5, 21)),
    "followups": st.lists(st.tuples(st.integers(0, 40), st.integers(0, 21), st.booleans()), max_size=4),
    "site": st.sampled_from(("S1", "S2")),
    "nausea": st.booleans(),
})


def build_random(tmp_dir, people) -> str:
    patients, sessions, assessments, events = [], [], [], []
    for i, p in enumerate(people):
        pid = f"P{i:03d}"
        patients.append(patient(pid, site=p["site"]))
        days = sorted({d for d, _, _ in p["sessions"]})
        if p["sessions"]:
            # sessions start on day 0 (the export format's rule)
            for j, (d, route, phase) in enumerate(sorted(p["sessions"])):
                sessions.append(session(f"{pid}s{j}", pid, d - days[0], route=route, phase=phase,
                                        sbp_peak=185 if j == 1 else 130))
                if p["nausea"] and j == 0:
                    events.append(event(f"{pid}s{j}", "nausea"))
        if p["baseline"] is not None:
            assessments.append(assessment(pid, 0, p["baseline"]))
        for day, score, post in p["followups"]:
            if post and p["sessions"]:
                assessments.append(assessment(pid, 0, score, hours=3))
            elif day > 0:
                assessments.append(assessment(pid, day, score))
    path = tmp_dir / f"r{abs(hash(str(people))) % 10**12}.duckdb"
    if path.exists():
        path.unlink()
    return str(build_db(path, patients, sessions, assessments, events))


def check_curve(original: pd.DataFrame, protected: pd.DataFrame, k: int) -> None:
    # rows left out are hidden points: line the protected rows up with the original ones
    keyed = protected.set_index(["route", "day"])
    rows = []
    for route, day in zip(original["route"], original["day"]):
        if (route, day) in keyed.index:
            rows.append(keyed.loc[(route, day)].to_dict())
        else:
            rows.append({c: np.nan for c in ("at_risk", "events", "relieved", "ci_low", "ci_high")})
    protected = pd.DataFrame(rows, index=original.index, columns=["at_risk", "events", "relieved", "ci_low", "ci_high"])
    for v in protected["at_risk"]:
        assert is_hidden(v) or v >= k, v
    for v in protected["events"]:
        assert is_hidden(v) or v == 0 or v >= k, v
    for route, part in original.groupby("route", sort=False):
        prot = protected.loc[part.index]
        shown = prot["relieved"].notna().to_numpy()
        risk = part["at_risk"].to_numpy()
        ev = part["events"].to_numpy()
        last = None
        for j in range(len(part)):
            if shown[j]:
                assert risk[j] >= k
                if last is not None:
                    assert ev[last + 1: j + 1].sum() >= k
                last = j
    # ALL's shown at-risk counts minus the routes' exactly known ones never leave 1..k-1
    routes = [r for r in original["route"].unique() if r != spec.ALL]
    all_rows = original[original["route"] == spec.ALL]
    for i, row in all_rows.iterrows():
        if is_hidden(protected.loc[i, "at_risk"]):
            continue
        unknown = 0
        for r in routes:
            part = original[(original["route"] == r) & (original["day"] >= row["day"])]
            if len(part) and is_hidden(protected.loc[part.index[0], "at_risk"]):
                unknown += part["at_risk"].iloc[0]
        assert unknown == 0 or unknown >= k


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(people=st.lists(patient_st, min_size=1, max_size=40), k=st.integers(1, 8),
       site=st.sampled_from((None, "S1")), population=st.sampled_from(("observed", "itt")),
       routes=st.sampled_from(((), ("IV", "IN"), ("IM", "PO", "IV"))), window=st.sampled_from((7, 14)))
def test_property_export_never_shows_hidden_values(tmp_path, people, k, site, population, routes, window):
    from dashboard.analysis import metrics

    path = build_random(tmp_path, people)
    s = Settings(min_cell=k, site=(site,) if site else (), population=population, min_baseline=8, route=routes,
                 window=window)
    con = duckdb.connect(path, read_only=True)
    try:
        files = export.compute_summaries(con, s)
        raw = {
            "cohort.csv": metrics.cohort_funnel(con, s),
            "response_by_route.csv": metrics.response_by_route(con, s),
            "time_to_relief.csv": metrics.time_to_relief(con, s).summary,
            "side_effects.csv": metrics.side_effects(con, s),
            "maintenance.csv": metrics.maintenance(con, s),
        }
        curve = metrics.time_to_relief(con, s).curve
        # the lighter loads the dashboard draws from must show exactly what the files show
        banner = disclosure.protect("cohort", metrics.cohort_size(con, s), k)
        uptake = export.protect_table(con, s, "maintenance", metrics.maintenance_uptake(con, s))
    finally:
        con.close()
    pd.testing.assert_frame_equal(banner, files["cohort.csv"][["route", "patients"]].tail(1).reset_index(drop=True))
    pd.testing.assert_frame_equal(uptake, files["maintenance.csv"][list(metrics.UPTAKE_COLUMNS)])
    names = {"cohort.csv": "cohort", "response_by_route.csv": "response_by_route", "time_to_relief.csv": "time_to_relief",
             "side_effects.csv": "side_effects", "maintenance.csv": "maintenance"}
    for file, name in names.items():
        rule = disclosure.TABLES[name]
        check_lines(raw[file], files[file], rule, k)
        check_derived(raw[file], files[file], rule, k)
    check_curve(curve.reset_index(drop=True), files["time_to_relief_curve.csv"], k)
    # the same count in two files is hidden in both or in neither
    pairs = [("cohort.csv", "eligible", "response_by_route.csv", "patients"),
             ("cohort.csv", "with_followup", "time_to_relief.csv", "patients")]
    if population == "observed":
        pairs += [("cohort.csv", "with_endpoint", "response_by_route.csv", "evaluable"),
                  ("response_by_route.csv", "responders", "maintenance.csv", "responders")]
    for fa, ca, fb, cb in pairs:
        a = files[fa].set_index("route")
        b = files[fb].set_index("route")
        ra = raw[fa].set_index("route")
        for route in b.index.intersection(a.index):
            if ra.loc[route, ca] > 0:
                assert is_hidden(a.loc[route, ca]) == is_hidden(b.loc[route, cb]), (fa, ca, fb, cb, route)
    # a zero responders count response_by_route.csv hides (of a small hidden base) is hidden in maintenance.csv
    response, maintenance = files["response_by_route.csv"].set_index("route"), files["maintenance.csv"].set_index("route")
    for route in maintenance.index.intersection(response.index):
        if is_hidden(response.loc[route, "responders"]):
            assert is_hidden(maintenance.loc[route, "responders"]), route


def test_a_cohort_nobody_in_which_was_dosed_exports_every_file(tmp_path):
    # the case hypothesis found: maintenance_counts.sql's total row over no dosed patient must count 0, not
    # NULL, now that maintenance.csv's protection reads response_by_route's counts from it
    path = build_random(tmp_path, [{"sessions": [], "baseline": None, "followups": [], "site": "S1",
                                    "nausea": False}])
    con = duckdb.connect(path, read_only=True)
    try:
        files = export.compute_summaries(con, Settings(min_cell=1))
    finally:
        con.close()
    assert files["maintenance.csv"][["route", "responders", "responders_in_maintenance"]].to_dict("records") == [
        {"route": "ALL", "responders": 0, "responders_in_maintenance": 0}]
    assert files["response_by_route.csv"]["evaluable"].tolist() == [0]


def test_curve_all_hidden_where_routes_would_reveal_a_small_count():
    def rows(route, spec_rows):
        return [{"route": route, "day": float(d), "at_risk": n, "events": e, "relieved": 0.1, "ci_low": 0.0, "ci_high": 0.2}
                for d, n, e in spec_rows]

    curve = pd.DataFrame(
        rows("IV", [(0, 30, 0), (1, 30, 10), (2, 20, 10), (3, 10, 5)])
        + rows("IN", [(0, 45, 0), (5, 45, 10), (6, 35, 10), (7, 25, 10), (8, 15, 5), (10, 5, 0)])
        + rows("PO", [(0, 3, 0), (9, 3, 3)])
        + rows("ALL", [(0, 78, 0), (1, 78, 10), (2, 68, 10), (3, 58, 5), (5, 48, 10), (6, 38, 10), (7, 28, 10),
                       (8, 18, 5), (9, 13, 3), (10, 5, 0)])
    )
    out = disclosure.protect("time_to_relief_curve", curve, 5).set_index(["route", "day"])
    # PO's 3 patients are hidden (its points left out), its 0 censored too (all 3 relieved), and IV's counts as
    # their complement (the smallest: 25 events, 5 censored against IN's 35 and 10); IN shows
    assert "PO" not in out.index.get_level_values("route")
    assert out["at_risk"].loc[("IV", 0.0)] is pd.NA and out["relieved"].loc[("IV", 1.0)] == 0.1
    assert out["at_risk"].loc[("IN", 5.0)] == 45
    # day 0: ALL 78 - IN 45 = 33 for IV and PO together: shown
    assert out["at_risk"].loc[("ALL", 0.0)] == 78
    # day 5: IV is over (0 at risk, known from its days), so ALL 48 - IN 45 would be PO's 3: hidden
    assert out["at_risk"].loc[("ALL", 5.0)] is pd.NA
    assert out["relieved"].loc[("ALL", 5.0)] == 0.1  # the point itself rests on 48 at risk
    assert out["at_risk"].loc[("ALL", 3.0)] == 58  # IV 10 + PO 3 unknown at day 3


@pytest.mark.parametrize("name, across", [("breakdown", "group"), ("trend", "start_quarter")])
@hsettings(max_examples=200, deadline=None)
@given(groups=st.lists(st.sampled_from(("S1", "S2", "S3", "S4")), min_size=1, max_size=4, unique=True),
       routes=routes_st, data=st.data(), k=st.integers(1, 15))
def test_property_two_way_response_both_directions(name, across, groups, routes, data, k):
    """Breakdown groups and start quarters: within each group and, per route, across groups against the route's
    total in response_by_route (protected there by response_by_route's own rule, zeros of few included). No
    "0 responders" is shown beside fewer than k evaluable (ALL's own included) unless its group's ALL shows 0
    of k or more, and no such zero is given back by a total."""
    rows = []
    for g in groups:
        for r in routes:
            ev = data.draw(st.integers(0, 30))
            rows.append({across: g, "route": r, "evaluable": ev, "responders": data.draw(st.integers(0, ev))})
    df = pd.DataFrame(rows)
    df = df[df["evaluable"] > 0]
    if df.empty:
        return
    alls = df.groupby(across, sort=False)[["evaluable", "responders"]].sum().reset_index().assign(route="ALL")
    df = pd.concat([df, alls], ignore_index=True)
    df["response_rate"] = df["responders"] / df["evaluable"]
    df["response_ci_low"] = df["response_ci_high"] = df["response_rate"]
    out = disclosure.protect(name, df, k)
    rule = disclosure.TABLES[name]
    check_lines(df, out, rule, k)  # within each group
    check_derived(df, out, rule, k)
    group_all = df[df["route"] == "ALL"].set_index(across)
    for i in df.index:
        line = group_all.loc[df.loc[i, across]]
        excused = line["responders"] == 0 and line["evaluable"] >= k  # "nobody responded" of k or more
        if 1 <= df.loc[i, "evaluable"] < k and df.loc[i, "responders"] == 0 and not excused:
            assert is_hidden(out.loc[i, "responders"]), (i, df.loc[i].to_dict())
    # across groups: a route's cells add up to its total in response_by_route (protected by its own rule)
    totals = df.groupby("route", sort=False)[["evaluable", "responders"]].sum().reset_index()
    resp = disclosure.hidden_cells(totals, disclosure.TABLES["response_by_route"], k)
    for col in ("evaluable", "responders"):
        for j, route in enumerate(totals["route"]):
            if resp[col][j]:
                continue
            part = df[df["route"] == route]
            hidden = [i for i in part.index if is_hidden(out.loc[i, col])]
            if hidden:
                # what the route's total gives back is the sum of its hidden cells: never a count from 1 to k-1
                # (metrics.md), nor a zero of few. Only a total of 0 gives back zeros, which it shows itself
                # (seed 256143444324432572773608727718697208516: one hidden 0 beside a shown total of 0).
                recovered = df.loc[hidden, col].sum()
                assert (recovered == 0 and totals.loc[j, col] == 0) or (len(hidden) >= 2 and recovered >= k), (route, col)


@hsettings(max_examples=120, deadline=None)
@given(numbers=st.integers(1, 4), routes=routes_st, data=st.data(), k=st.integers(1, 12))
def test_property_session_number_both_directions(numbers, routes, data, k):
    rows = []
    for r in routes:
        for number in range(1, numbers + 1):
            sessions = data.draw(st.integers(0, 25))
            if sessions:
                rows.append({"route": r, "event": "nausea", "session_number": number, "sessions": sessions,
                             "sessions_with_event": data.draw(st.integers(0, sessions))})
    if not rows:
        return
    df = pd.DataFrame(rows)
    alls = df.groupby(["event", "session_number"], sort=False)[["sessions", "sessions_with_event"]].sum().reset_index()
    df = pd.concat([df, alls.assign(route="ALL")], ignore_index=True)
    df["session_rate"] = df["sessions_with_event"] / df["sessions"]
    out = disclosure.protect("side_effect_by_session_number", df, k)
    rule = disclosure.TABLES["side_effect_by_session_number"]
    check_lines(df, out, rule, k)
    check_derived(df, out, rule, k)
    # a route's session numbers add up to its total in side_effects (protected there by its own rule)
    totals = df.groupby(["route", "event"], sort=False)[["sessions", "sessions_with_event"]].sum().reset_index()
    t_rule = disclosure.Rule(counts={"sessions": None, "sessions_with_event": None}, line_keys=("event",))
    t_hidden = disclosure.hidden_cells(totals, t_rule, k)
    for col in ("sessions", "sessions_with_event"):
        for j, route in enumerate(totals["route"]):
            if t_hidden[col][j]:
                continue
            part = df[df["route"] == route]
            hidden = [i for i in part.index if is_hidden(out.loc[i, col])]
            if hidden:
                # what the route's total gives back is the sum of its hidden cells: never a count from 1 to k-1
                # (metrics.md). A sum of 0 gives back zeros, which are no small count (seed
                # 256143444324432572773608727718697208516: one hidden 0 beside a shown total of 0).
                recovered = df.loc[hidden, col].sum()
                assert recovered == 0 or (len(hidden) >= 2 and recovered >= k), (route, col)


@hsettings(max_examples=300, deadline=None)
@given(routes=routes_st, data=st.data(), k=st.integers(1, 15))
def test_property_relief_at_risk(routes, data, k):
    """Numbers at risk: shown values are 0 or >= k, a route's shown values fall by 0 or >= k, and what ALL
    reveals about the hidden routes (their sum, and its fall since ALL's last shown day) obeys the same."""
    weeks = 6
    table = {}
    for r in routes:
        n = data.draw(st.integers(0, 60))
        drops = [data.draw(st.integers(0, 15)) for _ in range(weeks - 1)]
        values = [n]
        for d in drops:
            values.append(max(values[-1] - d, 0))
        table[r] = values
    table["ALL"] = [sum(table[r][w] for r in routes) for w in range(weeks)]
    df = pd.DataFrame([{"route": r, "day": 7 * w, "at_risk": v[w]} for r, v in table.items() for w in range(weeks)])
    out = disclosure.protect("relief_at_risk", df, k)
    shown = {(r, d): v for r, d, v in out[["route", "day", "at_risk"]].itertuples(index=False) if not is_hidden(v)}
    for (r, d), v in shown.items():
        assert v == table[r][d // 7]
        assert v == 0 or v >= k
    for r in table:
        seq = [shown[(r, 7 * w)] for w in range(weeks) if (r, 7 * w) in shown]
        assert all(a - b == 0 or a - b >= k for a, b in zip(seq, seq[1:]))
    last = None
    for w in range(weeks):
        if ("ALL", 7 * w) not in shown:
            continue
        hidden_routes = [r for r in routes if (r, 7 * w) not in shown]
        unknown = sum(table[r][w] for r in hidden_routes)
        assert unknown == 0 or unknown >= k
        if last is not None:
            fall = sum(table[r][last] for r in hidden_routes) - unknown
            assert unknown == 0 or fall == 0 or fall >= k
        last = w


def test_relief_at_risk_hidden_route_and_all():
    table = {"IV": [40, 28, 25, 12], "IN": [5, 4, 0, 0], "SL": [20, 20, 15, 0]}
    table["ALL"] = [sum(v[w] for v in table.values()) for w in range(4)]  # 65, 52, 40, 12
    df = pd.DataFrame([{"route": r, "day": 7 * w, "at_risk": v[w]} for r, v in table.items() for w in range(4)])
    out = disclosure.protect("relief_at_risk", df, 11)
    got = {r: [None if is_hidden(v) else int(v) for v in out[out["route"] == r]["at_risk"]] for r in table}
    # IV: 25 fell by 3 since 28 (a small count of departures): withheld; 12 fell by 16 since 28: shown
    assert got["IV"] == [40, 28, None, 12]
    # IN has 5 patients; SL, the smallest other route, is hidden with it so ALL - IV does not reveal IN
    assert got["IN"] == [None] * 4 and got["SL"] == [None] * 4
    # ALL on day 7 would reveal that the hidden routes (IN + SL: 25 -> 24) lost 1 patient
    assert got["ALL"] == [65, None, 40, 12]


# `_masked_count` and `_cell_keys` replace pandas steps per column (bench/RESULTS.md "Disclosure control over
# arrays"); each must give what the pandas steps gave, for every kind of column a summary table has.
COUNT_COLUMNS = {
    "int64": pd.Series([0, 3, 12, 40], dtype="int64"),
    "Int64 with a missing value": pd.Series([0, pd.NA, 12, 40], dtype="Int64"),
    "bool": pd.Series([True, False, True, True]),
    "whole floats with NaN": pd.Series([0.0, float("nan"), 12.0, 40.0]),
    "Float64 with a missing value": pd.Series([0.0, pd.NA, 12.0, 40.0], dtype="Float64"),
    "fractions": pd.Series([0.5, float("nan"), 12.0, 40.25]),
}


@pytest.mark.parametrize("kind", COUNT_COLUMNS)
def test_masked_count_is_the_pandas_steps(kind):
    column = COUNT_COLUMNS[kind]
    hidden = np.array([False, True, True, False])
    want = disclosure._as_nullable_int(column).mask(hidden)
    got = pd.Series(disclosure._masked_count(column, hidden))
    pd.testing.assert_series_equal(got, want.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("column", [
    pd.Series([0, 7, 2 ** 32 - 1], dtype="int64"),
    pd.Series([0, pd.NA, 2 ** 32 - 1], dtype="Int64"),
    pd.Series([0.0, float("nan"), 4294967295.0]),
    pd.Series(["0", "x", "4294967295"], dtype=object),
], ids=["int64", "Int64 with a missing value", "floats with NaN", "text"])
def test_cell_keys_are_the_pandas_steps(column):
    want = pd.to_numeric(column, errors="coerce").fillna(0).astype("int64").to_numpy()
    np.testing.assert_array_equal(disclosure._cell_keys(column), want)
    assert disclosure._cell_keys(column).dtype == np.int64


def test_a_hidden_rates_bound_rests_on_the_published_denominator_never_on_the_true_one():
    # found by a newcomer: SC's remission hidden with "< 28 %" beside a shown 39 evaluable: 28 % is 11 / 40,
    # so the bound gave back the true count (40) that the perturbation had moved to 39
    minus_one = next(key for key in range(0, 2 ** 32, 2 ** 16) if disclosure.noise(key) == -1)
    plus_one = next(key for key in range(0, 2 ** 32, 2 ** 16) if disclosure.noise(key) == 1)

    def table(evaluable: int, key: int) -> pd.DataFrame:
        return pd.DataFrame({
            "route": ["SC", "IV", "ALL"], "patients": [45, 400, 445], "evaluable": [evaluable, 300, 300 + evaluable],
            "evaluable__key": [key, 7, 11], "responders": [15, 150, 165], "responders__key": [5, 6, 8],
            "remitters": [4, 100, 104], "remitters__key": [9, 10, 12],
            "response_rate": [15 / evaluable, 0.5, 165 / (300 + evaluable)], "response_ci_low": [0.2, 0.45, 0.4],
            "response_ci_high": [0.5, 0.55, 0.6], "remission_rate": [4 / evaluable, 1 / 3, 104 / (300 + evaluable)],
            "remission_ci_low": [0.0, 0.3, 0.3], "remission_ci_high": [0.2, 0.4, 0.4]})

    # true 40 published as 39, and true 38 published as 39: the same published table, the same bound
    for evaluable, key in ((40, minus_one), (38, plus_one)):
        out = disclosure.protect("response_by_route", table(evaluable, key), 11)
        assert out.at[0, "evaluable"] == 39
        assert disclosure.hidden_reason(out, 0, "remission_rate") == ("rate_below", 11 / 39)
        assert figures.cell_text(out, 0, "remission_rate", "pct") == "< 29 %"  # 11 / 39 = 28.2 %, rounded up
    # a denominator without a key is published as it is, and so is its bound's
    out = disclosure.protect("response_by_route", table(40, minus_one).drop(columns="evaluable__key"), 11)
    assert disclosure.hidden_reason(out, 0, "remission_rate") == ("rate_below", 11 / 40)


# --- cell keys in the queries ---------------------------------------------------------------------------------

QUERIES = Path(__file__).resolve().parent.parent / "queries"
_KEY_FORMS = (  # (the count's expression, its key's expression): the condition must be the same text
    (r"count\(\*\) FILTER \(WHERE (?P<c>.+)\)", r"cell_key\(sum\(rk\) FILTER \(WHERE (?P<c>.+)\)\)"),
    (r"sum\(CASE WHEN (?P<c>.+) THEN 1 ELSE 0 END\)(::BIGINT)?", r"cell_key\(sum\(CASE WHEN (?P<c>.+) THEN rk ELSE 0 END\)\)"),
    (r"count\(\*\)(?P<c>)", r"cell_key\(sum\((rk|record_key\(pk\))\)\)(?P<c>)"),
)


def _select_items(sql: str) -> dict[str, str]:
    """`name -> expression` of every `<expression> AS <name>` on a line of its own (comments dropped)."""
    items = {}
    for line in sql.splitlines():
        line = line.split("--")[0].strip().rstrip(",")
        for part in re.split(r",\s+(?=[a-z_]+\()", line) if line.upper().startswith("SELECT") else [line]:
            m = re.fullmatch(r"(?:SELECT\s+)?(?P<e>.+?)\s+AS\s+(?P<n>\w+)", part.strip())
            if m:
                items[m["n"]] = m["e"]
    return items


def test_every_count_key_selects_the_same_patients_as_its_count():
    """A count's cell key must sum the record keys of exactly the patients the count counts: a key over other
    patients perturbs by the noise of another set (a newcomer found below_min_baseline's key filtering on the
    raw $min_baseline, NULL under the matched questionnaire, so its key was always that of nobody and the
    published count always the true one minus 24: exact differences)."""
    checked = 0
    for path in sorted(QUERIES.glob("*.sql")):
        items = _select_items(path.read_text(encoding="utf-8"))
        for name, key_expr in items.items():
            if not name.endswith("__key") or name[:-5] not in items:
                continue
            count_expr = items[name[:-5]]
            for count_form, key_form in _KEY_FORMS:
                c, k_ = re.fullmatch(count_form, count_expr), re.fullmatch(key_form, key_expr)
                if c and k_:
                    assert c["c"] == k_["c"], (path.name, name, c["c"], k_["c"])
                    checked += 1
                    break
    assert checked >= 25  # the queries' patient counts of every form above were compared
