"""The CSV summaries and `ketamine-outcomes export`: files, columns, formatting, provenance, same bytes."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard import __version__, cli
from dashboard.reports import export
from dashboard.analysis import disclosure

from dashboard.data import spec
from dashboard.analysis.settings import Settings
from metrics_data import build_db, hand_dataset

REQUIRED = {
    "cohort.csv": ["route", "patients", "with_sessions", "with_baseline", "eligible", "with_followup", "with_endpoint"],
    "response_by_route.csv": ["route", "patients", "evaluable", "responders", "response_rate", "response_ci_low",
                              "response_ci_high", "remitters", "remission_rate"],
    "time_to_relief.csv": ["route", "patients", "events", "censored", "median_days", "median_ci_low", "median_ci_high",
                           "relieved_by_day_1", "relieved_by_day_7", "relieved_by_day_14", "relieved_by_day_28"],
    "time_to_relief_curve.csv": ["route", "day", "at_risk", "events", "relieved", "ci_low", "ci_high"],
    "side_effects.csv": ["route", "event", "sessions", "sessions_with_event", "session_rate", "patients",
                         "patients_with_event", "patient_rate"],
    "maintenance.csv": ["route", "responders", "responders_in_maintenance", "uptake_rate", "maintenance_patients",
                        "maintenance_sessions", "median_days_to_first_maintenance", "median_interval_days",
                        "sessions_per_patient_month", "sustained_response_8w"],
}


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory):
    return build_db(tmp_path_factory.mktemp("export") / "hand.duckdb", *hand_dataset())


def read(path) -> str:
    return path.read_bytes().decode("utf-8")


def test_cli_writes_the_six_files_and_provenance(hand_db, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--min-cell", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*export.SUMMARY_FILES, "provenance.json"])
    for name, columns in REQUIRED.items():
        text = read(out / name)
        assert "\r" not in text and text.endswith("\n")
        header = text.split("\n")[0].split(",")
        assert header[: len(columns)] == columns or set(columns) <= set(header), name
        df = pd.read_csv(out / name, keep_default_na=False)
        assert df["route"].iloc[-1] == "ALL"
    assert read(out / "cohort.csv") == (
        "route,patients,with_sessions,with_baseline,eligible,with_followup,with_endpoint\n"
        "IV,5,5,4,3,3,1\n"
        "IN,2,2,2,2,2,2\n"
        "ALL,8,7,6,5,5,3\n"
    )
    relief = read(out / "time_to_relief.csv").split("\n")
    # IV never reaches one half: empty median; IN's median is exactly at one half on day 7
    assert relief[1].startswith("IV,3,1,2,,")
    assert relief[2].startswith("IN,2,2,0,7,")
    assert f"Wrote {len(export.SUMMARY_FILES) + 1} files" in capsys.readouterr().out


def test_minimum_cell_in_the_files(hand_db, tmp_path):
    out = tmp_path / "k3"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--min-cell", "3"]) == 0
    # IN's 2s are hidden; so is IV's cell beside each, patients too: a route's patients are its patients with
    # sessions, so they are hidden together (ALL's never-dosed patient is ALL 8 - ALL 7 with sessions, no
    # cover). Suppression decides on the true counts (IV,5,5,4,3,3,1 / IN,2,2,2,2,2,2 / ALL,8,7,6,5,5,3);
    # the shown ones are then perturbed by their cell key.
    true = {"IV": [5, 5, 4, 3, 3, 1], "ALL": [8, 7, 6, 5, 5, 3]}
    cohort = pd.read_csv(out / "cohort.csv", keep_default_na=False)
    assert list(cohort["route"]) == ["IV", "IN", "ALL"]
    assert list(cohort.iloc[1, 1:]) == [""] * 6 and list(cohort.iloc[0, 1:]) == [""] * 6
    shown = [int(v) for v in cohort.iloc[2, 1:]]
    for value, t in zip(shown, true["ALL"]):
        assert value >= 3 and abs(value - t) <= disclosure.NOISE_REACH
    # ALL patients is every patient of the data set: its cell key is the sum of all record keys, computed
    # here from the record keys alone, so the published value is exactly the method's
    with duckdb.connect(str(hand_db), read_only=True) as con:
        keys = [r[0] for r in con.execute("SELECT record_key(pk) FROM patient_summary").fetchall()]
    assert len(keys) == 8
    assert shown[0] == disclosure.perturbed(8, sum(keys) % 2 ** 32, 3)
    resp = pd.read_csv(out / "response_by_route.csv")
    assert resp["response_rate"].iloc[:2].isna().all()
    # ALL responders and evaluable are perturbed independently; the rate follows the published counts
    assert resp["response_rate"].iloc[2] == min(resp["responders"].iloc[2], resp["evaluable"].iloc[2]) / resp["evaluable"].iloc[2]


def test_same_settings_same_bytes(hand_db, tmp_path):
    args = ["--route", "IV", "--route", "IN", "--site", "S1", "--window", "8", "--min-cell", "2", "--population", "itt"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(a), *args]) == 0
    assert cli.main(["export", "--db", str(hand_db), "--out", str(b), *reversed_pairs(args)]) == 0
    for name in [*export.SUMMARY_FILES, "provenance.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    con = duckdb.connect(str(hand_db), read_only=True)
    try:
        s = Settings.from_args(cli.build_parser().parse_args(["export", "--db", "x", "--out", "y", *args]))
        when = datetime(2026, 11, 29, 9, 30, 12)
        z1, z2 = export.summaries_zip_bytes(con, s, when=when), export.summaries_zip_bytes(con, s, when=when)
    finally:
        con.close()
    assert z1 == z2
    with zipfile.ZipFile(io.BytesIO(z1)) as zf:
        assert zf.namelist() == [*export.SUMMARY_FILES, "provenance.json"]
        for name in zf.namelist():
            assert zf.read(name) == (a / name).read_bytes()
            assert zf.getinfo(name).date_time == (2026, 11, 29, 9, 30, 12)  # the time given: a real date


def reversed_pairs(args: list[str]) -> list[str]:
    pairs = [args[i: i + 2] for i in range(0, len(args), 2)]
    return [x for pair in reversed(pairs) for x in pair]


def test_provenance(hand_db, tmp_path):
    out = tmp_path / "p"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--severity", "severe", "--integration", "no",
                     "--min-cell", "5", "--instrument", "GAD7"]) == 0
    p = json.loads(read(out / "provenance.json"))
    assert p["program_version"] == __version__
    assert p["filters"]["severity"] == ["severe"] and p["filters"]["integration"] is False and p["filters"]["route"] == []
    assert p["settings"] == {"instrument": "GAD7", "min_baseline": 10, "population": "observed", "relief": "response",
                             "window": 7, "min_cell": 5, "rems_minutes": 120}
    assert p["min_cell"] == 5
    assert p["data_set"]["database"] == "hand.duckdb"
    assert p["data_set"]["imported_at"] == "2026-11-01T12:00:00Z"
    assert p["data_set"]["rows"] == {"patients": 8, "sessions": 19, "assessments": 22, "adverse_events": 5}
    assert p["query_string"] == "integration=no&severity=severe&min_cell=5"
    assert p["command_line_flags"] == ["--integration", "no", "--severity", "severe", "--min-cell", "5"]
    assert p["scope"] is None


def test_export_takes_quiet_as_import_sample_and_anonymize_do(hand_db, tmp_path, capsys):
    """`export --quiet` was refused ("unrecognized arguments"). It writes no progress lines (export has none);
    what was written and every error are still said."""
    out = tmp_path / "q"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--min-cell", "0", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == f"Wrote 12 files to {out}: {', '.join([*export.SUMMARY_FILES, 'provenance.json'])}\n"
    assert cli.main(["export", "--db", str(tmp_path / "missing.duckdb"), "--out", str(out), "--quiet"]) == 1
    assert "No database" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["report", "--db", "d", "--out", "r.pdf", "--quiet"]).quiet is True


def test_a_site_outside_the_scope_is_named_and_dropped_as_in_the_dashboard(hand_db, tmp_path, capsys):
    """`export --scope S1 --site S2` wrote an empty cohort without a word. As the dashboard does with a link's
    site outside the person's sites (access.md: named and dropped), the site is named in a warning and dropped,
    whether or not it exists; the rest applies, so the export covers the scope."""
    out = tmp_path / "s"
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--min-cell", "0", "--scope", "S1",
                     "--site", "S2", "--site", "NOWHERE"]) == 0
    assert capsys.readouterr().err == (
        "warning: --site: 'NOWHERE' is not among the sites of --scope (S1); dropped\n"
        "warning: --site: 'S2' is not among the sites of --scope (S1); dropped\n")
    cohort = pd.read_csv(out / "cohort.csv", keep_default_na=False)
    assert cohort["patients"].iloc[-1] == 7  # S1's seven patients (H, at S2, is not among them)
    p = json.loads(read(out / "provenance.json"))
    assert p["filters"]["site"] == [] and p["scope"] == ["S1"]
    assert p["query_string"] == "min_cell=0"
    # the flags that reproduce these files keep the scope (it is never part of a link)
    assert p["command_line_flags"] == ["--min-cell", "0", "--scope", "S1"]
    # a site within the scope stays; --quiet does not silence the warning
    assert cli.main(["export", "--db", str(hand_db), "--out", str(out), "--scope", "S1", "--scope", "S2",
                     "--site", "S2", "--site", "S3", "--min-cell", "0", "--quiet"]) == 0
    assert capsys.readouterr().err == "warning: --site: 'S3' is not among the sites of --scope (S1, S2); dropped\n"
    p = json.loads(read(out / "provenance.json"))
    assert p["filters"]["site"] == ["S2"] and p["scope"] == ["S1", "S2"]
    assert p["command_line_flags"] == ["--site", "S2", "--min-cell", "0", "--scope", "S1", "--scope", "S2"]
    assert pd.read_csv(out / "cohort.csv", keep_default_na=False)["patients"].iloc[-1] == 1


def test_cli_errors_are_messages(hand_db, tmp_path, capsys):
    assert cli.main(["export", "--db", str(hand_db), "--out", str(tmp_path / "x"), "--window", "soon", "--route", "XX"]) == 2
    err = capsys.readouterr().err
    assert "--window" in err and "'soon'" in err and "--route" in err and "'XX'" in err and "Traceback" not in err
    assert cli.main(["export", "--db", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "x")]) == 1
    assert "No database" in capsys.readouterr().err
    # a database without the derived tables (made before them) asks for a re-import
    old = tmp_path / "old.duckdb"
    build_db(old, *hand_dataset())
    con = duckdb.connect(str(old))
    con.execute("DROP MACRO TABLE cohort_outcomes")
    con.execute("DROP MACRO TABLE cohort")
    con.execute("DROP TABLE patient_summary")
    con.close()
    assert cli.main(["export", "--db", str(old), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "older version of Ketamine Outcomes" in err and "Import the clinic export again" in err
    assert f"ketamine-outcomes import EXPORT_DIR --db {old}" in err
    # plain words: the missing tables and macros are named in a debug log, not in the message; the command run
    # as a person runs it (no logging set up, where Python prints warnings to stderr) says no more either
    assert "patient_summary" not in err and "macro" not in err and "cohort_outcomes" not in err
    run = subprocess.run([sys.executable, "-m", "dashboard.cli", "export", "--db", str(old), "--out",
                          str(tmp_path / "y")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "older version of Ketamine Outcomes" in run.stderr
    assert "patient_summary" not in run.stderr and "macro" not in run.stderr and "Traceback" not in run.stderr


def test_summary_csv_formatting():
    df = pd.DataFrame({
        "route": ["IV", "ALL"],
        "n": pd.array([3, None], dtype="Int64"),
        "rate": [1 / 3, float("nan")],
        "tiny": [0.00001234, -0.0],
        "big": [123456789012.5, 2.0],
        "flag": [True, False],
    })
    assert export.summary_csv_bytes(df) == (
        b"route,n,rate,tiny,big,flag\n"
        b"IV,3,0.3333333333,0.00001234,123456789000,true\n"
        b"ALL,,,0,2,false\n"
    )
    assert export.format_value(np.int64(7)) == "7" and export.format_value(None) == "" and export.format_value(pd.NA) == ""
    assert export.format_value(float("inf")) == ""


def test_sample_export_respects_minimum_cell(sample_db, tmp_path):
    out = tmp_path / "sample"
    assert cli.main(["export", "--db", str(sample_db), "--out", str(out)]) == 0  # default minimum cell 11
    counts = {
        "cohort.csv": REQUIRED["cohort.csv"][1:],
        "response_by_route.csv": ["patients", "evaluable", "responders", "remitters"],
        "time_to_relief.csv": ["patients", "events", "censored"],
        "time_to_relief_curve.csv": ["at_risk", "events"],
        "side_effects.csv": ["sessions", "sessions_with_event", "patients", "patients_with_event"],
        "maintenance.csv": ["responders", "responders_in_maintenance", "maintenance_patients", "maintenance_sessions"],
    }
    for name, cols in counts.items():
        df = pd.read_csv(out / name)
        for c in cols:
            shown = df[c].dropna()
            assert ((shown == 0) | (shown >= spec.DEFAULT_MIN_CELL)).all(), (name, c)
        for c in df.columns:
            if c.endswith("_rate"):
                shown = df[c].dropna()
                assert ((shown >= 0) & (shown <= 1)).all()
    again = tmp_path / "again"
    assert cli.main(["export", "--db", str(sample_db), "--out", str(again)]) == 0
    for name in [*export.SUMMARY_FILES, "provenance.json"]:
        assert (out / name).read_bytes() == (again / name).read_bytes()


@pytest.mark.parametrize("k", [0, 5, 11, 60])
def test_dashboard_shortcuts_show_what_the_files_show(sample_db, k):
    """The cohort banner (a count of its own) and the Overview's maintenance uptake (from outcome_counts) are
    cheaper paths to numbers the files hold: they must show the same values, hidden in the same cells."""
    from dashboard.analysis import disclosure, metrics

    states = [Settings(), Settings(route=("IV",)), Settings(site=("S1", "S2"), instrument="PHQ9"),
              Settings(diagnosis=("PTSD",), instrument="PCL5", window=21), Settings(age_band=("75+",)),
              Settings(population="itt", min_baseline=15, severity=("severe",)), Settings(route=("SL",), sex=("M",))]
    seen_shown = seen_hidden = 0
    con = duckdb.connect(str(sample_db), read_only=True)
    try:
        for state in states:
            s = dataclasses.replace(state, min_cell=k)
            files = export.compute_summaries(con, s)
            banner = disclosure.protect("cohort", metrics.cohort_size(con, s), k)
            pd.testing.assert_frame_equal(banner, files["cohort.csv"][["route", "patients"]].tail(1).reset_index(drop=True))
            uptake = export.protect_table(con, s, "maintenance", metrics.maintenance_uptake(con, s))
            pd.testing.assert_frame_equal(uptake, files["maintenance.csv"][list(metrics.UPTAKE_COLUMNS)])
            seen_shown += int(uptake["uptake_rate"].notna().sum())
            seen_hidden += int(uptake["uptake_rate"].isna().sum())
    finally:
        con.close()
    assert seen_shown > 0  # the comparison covered real values …
    if k >= 11:
        assert seen_hidden > 0  # … and hidden ones


def test_no_file_shows_a_responder_count_response_by_route_hides(sample_db, tmp_path):
    """maintenance.csv repeats response_by_route.csv's responders per route: in small cohorts (one site and
    diagnosis) the latter hides a route's 0 responders of fewer than 11 evaluable; maintenance.csv, the
    Overview's maintenance tile and the PDF report's maintenance table hide the same cells."""
    from dashboard.analysis import metrics
    from dashboard.reports.report import ReportBuild

    con = duckdb.connect(str(sample_db), read_only=True)
    hidden_zeros = 0
    try:
        sites = [r[0] for r in con.execute("SELECT DISTINCT site FROM patients ORDER BY 1").fetchall()]
        for site in sites:
            for diagnosis in ("MDD", "SAD", "PANIC", "PTSD", "OTHER", "OCD"):
                s = Settings(site=(site,), diagnosis=(diagnosis,))
                response = export.compute_summary(con, s, "response_by_route.csv")
                hidden = set(response.loc[response["responders"].isna(), "route"])
                raw = export.raw_summary(con, s, "maintenance.csv")
                maint = export.compute_summary(con, s, "maintenance.csv")
                assert hidden <= set(maint.loc[maint["responders"].isna(), "route"]), (site, diagnosis)
                uptake = export.protect_table(con, s, "maintenance", metrics.maintenance_uptake(con, s))
                pd.testing.assert_frame_equal(uptake, maint[list(metrics.UPTAKE_COLUMNS)])
                hidden_zeros += int(raw.loc[raw["route"].isin(hidden), "responders"].eq(0).sum())
        s = Settings(site=("S1",), diagnosis=("MDD",))
        report_maint = ReportBuild(con, s, made_at=datetime(2026, 12, 1, 12, 0)).summary("maintenance.csv")
        pd.testing.assert_frame_equal(report_maint, export.compute_summary(con, s, "maintenance.csv"))
    finally:
        con.close()
    assert hidden_zeros >= 5  # the zeros the other file hides were there to hide


def test_the_maintenance_page_protects_responders_from_its_own_scan(sample_db):
    """maintenance_counts.sql counts response_by_route's patients too: the table built from it equals
    response_by_route's (its counts; suppression needs no cell keys), so maintenance.csv is protected without
    the outcome counts' scan, and gives the same file either way."""
    from dashboard.analysis import metrics

    con = duckdb.connect(str(sample_db), read_only=True)
    try:
        for s in (Settings(), Settings(site=("S1",), diagnosis=("MDD",)), Settings(population="itt", window=7),
                  Settings(instrument="matched", route=("IV", "SC")), Settings(site=("S2",), sex=("F",))):
            response = metrics.response_by_route(con, s)
            pd.testing.assert_frame_equal(metrics.maintenance_response(con, s),
                                          response[[c for c in response.columns if not c.endswith("__key")]])
            metrics.clear_query_memo()
            alone = export.compute_summary(con, s, "maintenance.csv")
            ran = {key[0] for key in metrics._memo[con]}
            assert "maintenance_counts" in ran and "outcome_counts_by_site_quarter" not in ran, ran
            metrics.clear_query_memo()
            export.compute_summary(con, s, "response_by_route.csv")  # the other way round: the same file
            pd.testing.assert_frame_equal(export.compute_summary(con, s, "maintenance.csv"), alone)
    finally:
        con.close()


def test_a_zip_made_now_is_dated_now(hand_db):
    with duckdb.connect(str(hand_db), read_only=True) as con:
        before = datetime.now().replace(microsecond=0)
        data = export.summaries_zip_bytes(con, Settings(min_cell=0))
        after = datetime.now()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist()[-1] == "provenance.json"
        for info in zf.infolist():
            stamp = datetime(*info.date_time)
            # zip times have two-second resolution
            assert (before - stamp).total_seconds() <= 2 and stamp <= after


@pytest.mark.parametrize(("settings", "expected"), [
    (Settings(), "response_by_route.csv"),
    (Settings(route=("IN", "IV"), site=("S2",)), "response_by_route__route-IV-IN__site-S2.csv"),
    (Settings(age_band=("75+",), min_cell=0), "response_by_route__age-band-75+__min-cell-0.csv"),
    (Settings(treatment_resistant=True, from_quarter="2025-Q1"),
     "response_by_route__from-quarter-2025-Q1__treatment-resistant-yes.csv"),
])
def test_download_names_carry_the_cohort(settings, expected):
    assert export.download_name("response_by_route.csv", settings) == expected


def test_a_long_cohort_name_is_cut_and_still_unique():
    many = Settings(site=tuple(f"SITE{i:03d}" for i in range(40)))
    other = Settings(site=tuple(f"SITE{i:03d}" for i in range(41)))
    a, b = export.download_name("trend.csv", many), export.download_name("trend.csv", other)
    assert a != b and a.endswith(".csv") and len(a) <= len("trend__.csv") + export.FILE_NAME_MAX
