"""Esketamine (SPRAVATO REMS) monitoring: the optional columns through the real importer, every rule on
both sides of its limit with exact expected counts, an export without the columns (empty measures, named),
the minimum as a setting, rems.csv in the export, disclosure control, and the page.

The hand-made export (built by `rems_export`) has two sites. Sessions (all intranasal esketamine in the
clinic unless noted; pressures before = 120/80, at 40 minutes and at discharge 130/82 unless noted):

    site N: P1 s1 day 0: 120 min, pressures at 40 min 180/100, form day 7 (7 days), sedation, resolved,
                         ready at 90 min, dissociation event
               s2 day 3: 119 min, systolic at 40 missing (diastolic 110), form day 11 (8 days), oximetry no,
                         not resolved, ready at 125
            P2 s3 day 0: minutes, form, oximetry, sedation, resolved, ready all empty; diastolic at 40 missing
                         (systolic 179); respiratory depression
               s4 day 1: 240 min, 179/109 at 40, systolic at discharge missing, form day 1, ready at 150
    site S: P3 s5 day 0: 121 min, 150/110 at 40, diastolic at discharge missing, form day 8, ready 60, dissociation
               s6 day 2: 120 min, systolic before missing, form day 9 (7 days), ready 119
            P4 s7 day 0: 60 min, diastolic before missing, form day 7, ready 45
               s8 day 5: 130 min, every pressure, form day 12 (7 days), ready 120
            P5 s9 day 0: esketamine at home (not monitored here; the first esketamine dose)
               s10 day 2: 125 min, every pressure, form day 2, ready 130
    site N: P6 k1 IV ketamine day 0, k2 IN racemic ketamine day 1 (neither counts)

Enrolment: P1 day -3 and P2 day 0 (on the first dose: counts), P3 day 1 (after), P4 empty, P5 day 1 (after
the home dose on day 0, before the first clinic dose on day 2: the first dose in any setting counts).
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from conftest import write_export
from dashboard import cli
from dashboard.analysis import disclosure, rems
from dashboard.analysis.settings import Settings
from dashboard.data import ingest, spec
from dashboard.data.ingest import ImportRefused, import_export
from dashboard.reports import export

PATIENT_HEAD = ["patient_id", "site", "start_quarter", "age_band", "primary_diagnosis", "rems_enrolled_day"]
SESSION_HEAD = ["session_id", "patient_id", "day", "route", "drug", "setting", "phase", "monitoring_minutes",
                "sbp_pre", "dbp_pre", "sbp_40min", "dbp_40min", "sbp_discharge", "dbp_discharge",
                "pulse_oximetry", "spo2_min", "sedation", "respiratory_depression", "resolved_at_discharge",
                "ready_to_leave_minutes", "form_submitted_day", "benzodiazepine", "sedative_hypnotic",
                "psychostimulant", "maoi", "opioid"]


def esk(sid, pid, day, minutes, *, pre=(120, 80), at40=(130, 82), discharge=(130, 82), oximetry="true",
        sedation="false", resp="false", resolved="true", ready=None, form=None, setting="clinic"):
    return [sid, pid, day, "IN", "esketamine", setting, "induction", minutes, *pre, *at40, *discharge,
            oximetry, 97 if oximetry == "true" else None, sedation, resp, resolved, ready, form,
            "true", "false", "false", "false", "false"]


def rems_tables(drop_optional: bool = False) -> dict:
    patients = [
        ["P1", "N", "2025-Q1", "35-44", "MDD", -3], ["P2", "N", "2025-Q1", "35-44", "MDD", 0],
        ["P3", "S", "2025-Q1", "35-44", "MDD", 1], ["P4", "S", "2025-Q1", "35-44", "MDD", None],
        ["P5", "S", "2025-Q1", "35-44", "MDD", 1], ["P6", "N", "2025-Q1", "35-44", "MDD", None],
    ]
    sessions = [
        esk("s1", "P1", 0, 120, at40=(180, 100), form=7, sedation="true", ready=90),
        esk("s2", "P1", 3, 119, at40=(None, 110), form=11, oximetry="false", resolved="false", ready=125),
        esk("s3", "P2", 0, None, at40=(179, None), form=None, oximetry=None, sedation=None, resp="true",
            resolved=None, ready=None),
        esk("s4", "P2", 1, 240, at40=(179, 109), discharge=(None, 82), form=1, ready=150),
        esk("s5", "P3", 0, 121, at40=(150, 110), discharge=(130, None), form=8, ready=60),
        esk("s6", "P3", 2, 120, pre=(None, 80), at40=(140, 90), form=9, ready=119),
        esk("s7", "P4", 0, 60, pre=(120, None), at40=(140, 90), form=7, ready=45),
        esk("s8", "P4", 5, 130, at40=(140, 90), form=12, ready=120),
        esk("s9", "P5", 0, 30, setting="home", form=None, ready=None),
        esk("s10", "P5", 2, 125, at40=(140, 90), form=2, ready=130),
        ["k1", "P6", 0, "IV", "ketamine", "clinic", "induction", 30] + [None] * (len(SESSION_HEAD) - 8),
        ["k2", "P6", 1, "IN", "ketamine", "clinic", "induction", 30] + [None] * (len(SESSION_HEAD) - 8),
    ]
    events = [["s1", "dissociation"], ["s5", "dissociation"], ["s2", "nausea"]]
    assessments = [[p[0], 0, "PHQ9", 20] for p in patients]
    tables = {
        "patients": (PATIENT_HEAD, patients),
        "sessions": (SESSION_HEAD, sessions),
        "assessments": (["patient_id", "day", "instrument", "score"], assessments),
        "adverse_events": (["session_id", "event"], events),
    }
    if drop_optional:  # the plain format: no optional REMS column, no monitoring_minutes, no adverse_events
        keep_p = [i for i, c in enumerate(PATIENT_HEAD) if c != "rems_enrolled_day"]
        keep_s = [i for i, c in enumerate(SESSION_HEAD)
                  if c not in spec.REMS_SESSION_COLUMNS and c != "monitoring_minutes"]
        tables["patients"] = ([PATIENT_HEAD[i] for i in keep_p], [[r[i] for i in keep_p] for r in patients])
        tables["sessions"] = ([SESSION_HEAD[i] for i in keep_s], [[r[i] for i in keep_s] for r in sessions])
        del tables["adverse_events"]
    return tables


@pytest.fixture(scope="module")
def rems_db(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("rems")
    db = base / "rems.duckdb"
    import_export(write_export(base / "export", rems_tables()), db)
    return db


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("plain")
    db = base / "plain.duckdb"
    import_export(write_export(base / "export", rems_tables(drop_optional=True)), db)
    return db


def compute(db: Path, **settings) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return rems.rems(con, Settings(min_cell=0, **settings)).set_index("site")


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval written out (Wilson 1927), z = 1.959963984540054."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# (met, recorded) per site, worked out by hand from the module docstring
EXPECTED = {
    "N": {"monitored_min": (2, 3), "bp_three_points": (1, 4), "pulse_oximetry": (2, 3), "form_within_7d": (2, 4),
          "sedation": (1, 3), "respiratory_depression": (1, 4), "dissociation": (1, 4),
          "resolved_at_discharge": (2, 3), "bp_high_40min": (1, 2), "enrolled_before_first_dose": (2, 2)},
    "S": {"monitored_min": (4, 5), "bp_three_points": (2, 5), "pulse_oximetry": (5, 5), "form_within_7d": (4, 5),
          "sedation": (0, 5), "respiratory_depression": (0, 5), "dissociation": (1, 5),
          "resolved_at_discharge": (5, 5), "bp_high_40min": (1, 5), "enrolled_before_first_dose": (0, 3)},
    "ALL": {"monitored_min": (6, 8), "bp_three_points": (3, 9), "pulse_oximetry": (7, 8), "form_within_7d": (6, 9),
            "sedation": (1, 8), "respiratory_depression": (1, 9), "dissociation": (2, 9),
            "resolved_at_discharge": (7, 8), "bp_high_40min": (2, 7), "enrolled_before_first_dose": (2, 5)},
}


def test_every_rule_counts_exactly_on_both_sides_of_its_limit(rems_db):
    df = compute(rems_db)
    assert list(df.index) == ["N", "S", "ALL"]
    # the raw table carries its counts' cell keys for disclosure.protect (never in rems.csv)
    assert [c for c in df.reset_index().columns if not c.endswith("__key")] == list(rems.REMS_COLUMNS)
    assert df.loc[["N", "S", "ALL"], "sessions"].tolist() == [4, 5, 9]
    assert df.loc[["N", "S", "ALL"], "patients"].tolist() == [2, 3, 5]
    for site, measures in EXPECTED.items():
        for m, (k, n) in measures.items():
            row = df.loc[site]
            assert (row[m], row[m + "_of"]) == (k, n), (site, m)
            assert row[m + "_rate"] == pytest.approx(k / n, abs=1e-15)
            low, high = wilson(k, n)
            assert row[m + "_ci_low"] == pytest.approx(low, abs=1e-12), (site, m)
            assert row[m + "_ci_high"] == pytest.approx(high, abs=1e-12), (site, m)
    # ready to leave: N 90, 125, 150; S 45, 60, 119, 120, 130; ALL the eight together
    assert df["ready_to_leave_median"].tolist() == [125.0, 119.0, 119.5]
    assert df["ready_to_leave_sessions"].tolist() == [3, 5, 8]


def test_the_derived_table_holds_each_esketamine_clinic_session_once_with_its_patient_s_first_dose(rems_db):
    # derive_55_esketamine_clinic_sessions.sql: the clinic esketamine sessions only (not s9 at home, not the
    # racemic k1, k2), dissociation from the adverse events, one first_of_patient row per patient, and
    # enrolment against the first esketamine dose in any setting (P5's home dose on day 0)
    with duckdb.connect(str(rems_db), read_only=True) as con:
        rows = con.execute(
            "SELECT s.session_id, s.patient_id, e.dissociated, e.first_of_patient, e.enrolled_before_first_dose, "
            "e.site, e.rk = record_key(e.pk) FROM esketamine_clinic_sessions e JOIN sessions s USING (session_id) "
            "ORDER BY s.session_id").fetchall()
    assert rows == [
        ("s1", "P1", True, True, True, "N", True), ("s10", "P5", False, True, False, "S", True),
        ("s2", "P1", False, False, True, "N", True), ("s3", "P2", False, True, True, "N", True),
        ("s4", "P2", False, False, True, "N", True), ("s5", "P3", True, True, False, "S", True),
        ("s6", "P3", False, False, False, "S", True), ("s7", "P4", False, True, None, "S", True),
        ("s8", "P4", False, False, None, "S", True),
    ]


def test_the_monitoring_minimum_is_a_setting(rems_db):
    # 119 minutes meets a minimum of 119 and 120 meets 120 (at least), 121 does not meet 122
    assert compute(rems_db, rems_minutes=119).loc["N", "monitored_min"] == 3
    assert compute(rems_db, rems_minutes=120).loc["S", "monitored_min"] == 4
    assert compute(rems_db, rems_minutes=122).loc["S", "monitored_min"] == 2
    assert compute(rems_db, rems_minutes=122).loc["ALL", "monitored_min_of"] == 8


def test_filters_apply_to_the_patients(rems_db):
    df = compute(rems_db, site=("S",))
    assert list(df.index) == ["S", "ALL"]
    assert df.loc["ALL", "sessions"] == 5 and df.loc["ALL", "enrolled_before_first_dose_of"] == 3


def test_an_export_without_the_columns_gives_empty_measures_and_names_them(plain_db):
    df = compute(plain_db)
    assert df["sessions"].tolist() == [4, 5, 9]
    for m in spec.REMS_MEASURES:
        for c in rems._five(m):
            assert df[c].isna().all(), c  # empty, never 0
    assert df["ready_to_leave_median"].isna().all() and df["ready_to_leave_sessions"].isna().all()
    with duckdb.connect(str(plain_db), read_only=True) as con:
        lacking = rems.lacking_columns(con)
        assert lacking["monitored_min"] == ["sessions.monitoring_minutes"]
        assert lacking["bp_three_points"] == ["sessions.sbp_40min", "sessions.dbp_40min", "sessions.sbp_discharge",
                                              "sessions.dbp_discharge"]
        assert lacking["dissociation"] == ["adverse_events.event"]
        assert lacking["enrolled_before_first_dose"] == ["patients.rems_enrolled_day"]
        assert set(lacking) == set(spec.REMS_MEASURE_COLUMNS)
        assert rems.rems_distribution(con, Settings(min_cell=0)).empty
    csv = export.summary_csv_bytes(disclosure.protect("rems", df.reset_index(), 0)).decode()
    assert csv.split("\n")[3].startswith("ALL,9,,,,,,")


def test_one_column_missing_empties_only_its_measures(tmp_path):
    tables = rems_tables()
    head, rows = tables["sessions"]
    i = head.index("form_submitted_day")
    tables["sessions"] = (head[:i] + head[i + 1:], [r[:i] + r[i + 1:] for r in rows])
    db = tmp_path / "db.duckdb"
    import_export(write_export(tmp_path / "e", tables), db)
    df = compute(db)
    assert df["form_within_7d"].isna().all() and df["form_within_7d_of"].isna().all()
    assert df.loc["ALL", "monitored_min"] == 6  # the others are untouched


def test_distributions_are_binned_exactly(rems_db):
    with duckdb.connect(str(rems_db), read_only=True) as con:
        dist = rems.rems_distribution(con, Settings(min_cell=0))
    def bins(measure):
        sub = dist[dist["measure"] == measure]
        return dict(zip(sub["bin"].tolist(), sub["sessions"].tolist()))
    # minutes 120, 119, 240, 121, 120, 60, 130, 125 in bins of 15
    assert bins("monitoring_minutes") == {60: 1, 75: 0, 90: 0, 105: 1, 120: 5, 135: 0, 150: 0, 165: 0, 180: 0,
                                          195: 0, 210: 0, 225: 0, 240: 1}
    assert bins("ready_to_leave_minutes") == {45: 1, 60: 1, 75: 0, 90: 1, 105: 1, 120: 3, 135: 0, 150: 1}
    # systolic rise: 60 (s1), 59 (s3, s4), 30 (s5), 20 (s7, s8, s10); s2 and s6 lack a reading; 60 = "60 or more"
    assert bins("sbp_rise_40min") == {20: 3, 30: 1, 40: 0, 50: 2, 60: 1}
    # diastolic rise: 20 (s1), 30 (s2), 29 (s4), 30 (s5), 10 (s6), 10 (s8, s10); s3 and s7 lack a reading
    assert bins("dbp_rise_40min") == {10: 3, 15: 0, 20: 1, 25: 1, 30: 2}


@pytest.mark.parametrize("column, value, message", [
    ("sbp_40min", "261", "out of range: must be a whole number from 60 to 260"),
    ("dbp_discharge", "29", "out of range: must be a whole number from 30 to 160"),
    ("pulse_oximetry", "maybe", "not a boolean (true/false, 1/0 or yes/no)"),
    ("spo2_min", "49", "out of range: must be a whole number from 50 to 100"),
    ("ready_to_leave_minutes", "1441", "out of range: must be a whole number from 0 to 1440"),
    ("form_submitted_day", "2", "before the session's day 3: the form is submitted on or after the session's day"),
    ("maoi", "2", "not a boolean (true/false, 1/0 or yes/no)"),
])
def test_bad_optional_values_are_refused_with_file_line_column_and_value(tmp_path, column, value, message):
    tables = rems_tables()
    head, rows = tables["sessions"]
    rows = [list(r) for r in rows]
    rows[1][head.index(column)] = value  # s2, day 3, on line 3
    tables["sessions"] = (head, rows)
    with pytest.raises(ImportRefused) as exc:
        import_export(write_export(tmp_path / "e", tables), tmp_path / "db.duckdb")
    assert [(p.file, p.line, p.column, p.value, p.message) for p in exc.value.problems] == [
        ("sessions.csv", 3, column, value, message)]
    assert not (tmp_path / "db.duckdb").exists()


def test_a_bad_enrolment_day_is_refused(tmp_path):
    tables = rems_tables()
    head, rows = tables["patients"]
    rows = [list(r) for r in rows]
    rows[0][head.index("rems_enrolled_day")] = "2025-01-03"
    tables["patients"] = (head, rows)
    with pytest.raises(ImportRefused) as exc:
        import_export(write_export(tmp_path / "e", tables), tmp_path / "db.duckdb")
    assert [(p.line, p.column, p.value) for p in exc.value.problems] == [(2, "rems_enrolled_day", "2025-01-03")]


def test_the_optional_columns_are_format_columns():
    assert set(spec.REMS_SESSION_COLUMNS) <= set(ingest.COLUMNS["sessions"])
    assert set(spec.REMS_PATIENT_COLUMNS) <= set(ingest.COLUMNS["patients"])
    assert not any(ingest.COLUMNS["sessions"][c] for c in spec.REMS_SESSION_COLUMNS)  # none required


def test_rems_csv_in_the_export_exactly(rems_db, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(rems_db), "--out", str(out), "--min-cell", "0",
                     "--rems-minutes", "119"]) == 0
    lines = (out / "rems.csv").read_text().split("\n")
    assert lines[0] == ",".join(rems.REMS_COLUMNS)
    assert lines[1].startswith("N,4,3,3,1,")  # 119 minutes meets a minimum of 119
    assert lines[3].startswith("ALL,9,7,8,0.875,")
    assert lines[-1] == "" and len(lines) == 5


def test_disclosure_hides_small_counts_and_what_they_reveal(rems_db, monkeypatch):
    with duckdb.connect(str(rems_db), read_only=True) as con:
        raw = rems.rems(con, Settings())
    shown = disclosure.protect("rems", raw, 3)
    # protect drops the cell keys (it perturbs the counts with them) and keeps every other column
    assert list(shown.columns) == [c for c in raw.columns if not c.endswith("__key")]
    n = shown.set_index("site")
    # N has 2 patients (< 3): every session count of N is hidden, and so its rates
    assert pd.isna(n.loc["N", "sessions"]) and pd.isna(n.loc["N", "monitored_min_rate"])
    # ... and ALL minus S would reveal N, so S's session count is hidden too (complementary suppression)
    assert pd.isna(n.loc["S", "sessions"]) and n.loc["ALL", "sessions"] == 9
    # S: 4 of 5 monitored; 1 missed (< 3) would follow from 5 - 4, so the 4 is hidden with it
    assert pd.isna(n.loc["S", "monitored_min"])
    # with no minimum cell everything shows
    assert disclosure.protect("rems", raw, 0).set_index("site").loc["S", "monitored_min"] == 4
    # The suppression rules, checked with the cell-key noise off: with it on, recorded − met is the difference
    # of two independently perturbed counts (not the exact number missed), whose true value these rules keep
    # at 0 or at least k.
    monkeypatch.setattr(disclosure, "noise", lambda key: 0)
    # the whole-column form of the same noise (perturb_counts, the relief groups)
    monkeypatch.setattr(disclosure, "noise_array", lambda keys: np.zeros(len(keys), dtype=np.int64))
    for k in (3, 5, 11):
        p = disclosure.protect("rems", raw, k)
        for m in spec.REMS_MEASURES:
            for c in (m, m + "_of"):
                v = p[c].dropna()
                assert ((v == 0) | (v >= k)).all(), (k, c)
            both = p[m].notna() & p[m + "_of"].notna()
            missed = p.loc[both, m + "_of"] - p.loc[both, m]
            assert ((missed == 0) | (missed >= k)).all(), (k, m)


def test_distribution_disclosure_hides_small_bins_in_pairs():
    dist = pd.DataFrame({"measure": ["monitoring_minutes"] * 4, "bin": [90, 105, 120, 135],
                         "sessions": [2, 40, 30, 25]})
    shown = disclosure.protect("rems_distribution", dist, 11)["sessions"]
    # 2 is hidden, and with it the smallest other bin (25), so the total minus the shown bins gives 27, not 2
    assert shown.isna().tolist() == [True, False, False, True]
    assert shown.dropna().tolist() == [40, 30]
    assert disclosure.protect("rems_distribution", dist, 0)["sessions"].tolist() == [2, 40, 30, 25]


def test_an_older_database_asks_for_a_new_import(tmp_path):
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE sessions (session_id VARCHAR)")
    from dashboard.data.store import StoreError
    with duckdb.connect(str(db), read_only=True) as con, pytest.raises(StoreError, match="import the clinic export"):
        rems.lacking_columns(con)


# --- the page -------------------------------------------------------------------------------------------------

def open_rems_page(db: Path, monkeypatch, view: str | None = None, **params):
    """The Esketamine monitoring page in AppTest on `db`, opened as test_app opens a page (at part `view`)."""
    from streamlit.testing.v1 import AppTest

    from dashboard.app import ui
    from test_app import APP, open_page

    monkeypatch.setenv(ui.DB_ENV, str(db))
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    open_page(at, "views/esketamine.py", view=view)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_the_page_counts_rule_breaks_by_rule_and_site(rems_db, monkeypatch):
    at = open_rems_page(rems_db, monkeypatch, min_cell="0")
    assert at.title[0].value == "Esketamine monitoring"
    assert not at.warning  # the export had every column
    breaks = at.table[0].value
    assert list(breaks.columns) == ["Rule", "Site N", "Site S", "All sites"]
    # recorded − met per rule (EXPECTED): sessions, then patients for the enrolment
    assert breaks["Site N"].tolist() == ["1", "3", "1", "2", "1", "0"]
    assert breaks["Site S"].tolist() == ["1", "3", "0", "1", "0", "3"]
    assert breaks["All sites"].tolist() == ["2", "6", "1", "3", "1", "3"]
    # the sidebar's PDF report button is on every page; the page's own downloads are these
    assert [b.proto.label for b in at.get("download_button") if b.proto.label != "Download report (PDF)"] == [
        "rems.csv", "All summaries (zip)"]
    # a minimum of 119 minutes moves session s2 (119 minutes) to the compliant side
    at = open_rems_page(rems_db, monkeypatch, min_cell="0", rems_minutes="119")
    assert at.table[0].value["Site N"].tolist()[0] == "0"
    assert at.sidebar.number_input(key="rems_minutes").value == 119


def test_the_page_names_what_the_export_lacks(plain_db, monkeypatch):
    at = open_rems_page(plain_db, monkeypatch, min_cell="0")
    warning = at.warning[0].value
    assert "does not include" in warning and "not zero" in warning
    assert "`sessions.sbp_40min`" in warning and "`patients.rems_enrolled_day`" in warning
    breaks = at.table[0].value
    assert set(breaks["All sites"]) == {"not in export"}
    import json

    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    texts = [a["text"] for s in specs for a in s["layout"].get("annotations", [])]
    assert "Not in the clinic export" in texts  # in the panel of each rule it lacks


def test_the_rules_figure_has_a_panel_per_rule_with_every_site_s_rate_interval_and_n(rems_db, plain_db, monkeypatch):
    """The six rules in one figure (six charts took the browser twice as long to draw): per rule a panel, per site
    and overall the rate with its Wilson interval and the n it rests on, as EXPECTED; hidden rates say so."""
    from dashboard.charts import figures

    monkeypatch.setattr(disclosure, "noise", lambda key: 0)
    monkeypatch.setattr(disclosure, "noise_array", lambda keys: np.zeros(len(keys), dtype=np.int64))
    with duckdb.connect(str(rems_db), read_only=True) as con:
        raw = rems.rems(con, Settings())
    table = disclosure.protect("rems", raw, 0)
    fig = figures.create_rems_rules_figure(table, spec.REMS_RULES)
    panels = [a.text for a in fig.layout.annotations]
    assert panels == [spec.REMS_LABELS[m] for m in spec.REMS_RULES[:-1]] + [
        "Enrolled in the REMS before the first dose (patients)"]
    assert len(list(fig.select_xaxes())) == 6 and fig.layout.xaxis2.domain[0] > 0.5  # two a row
    assert list(fig.layout.yaxis.categoryarray) == ["All sites", "Site S", "Site N"]  # sites top, overall last
    for k, measure in enumerate(spec.REMS_RULES, start=1):
        traces = [t for t in fig.data if (t.xaxis or "x") == ("x" if k == 1 else f"x{k}")]
        sites, overall, n = traces  # nothing hidden at a minimum cell of 0
        met = {site: EXPECTED[site][measure] for site in ("N", "S")}
        assert list(sites.y) == ["Site S", "Site N"] and list(overall.y) == ["All sites"]
        assert list(sites.x) == pytest.approx([met["S"][0] / met["S"][1], met["N"][0] / met["N"][1]])
        total = EXPECTED["ALL"][measure]
        assert overall.x[0] == pytest.approx(total[0] / total[1])
        low, high = proportion_confint(total[0], total[1], alpha=0.05, method="wilson")
        assert overall.error_x.arrayminus[0] == pytest.approx(total[0] / total[1] - low)
        assert overall.error_x.array[0] == pytest.approx(high - total[0] / total[1])
        assert dict(zip(n.y, n.text)) == {"Site S": f"n = {met['S'][1]}", "Site N": f"n = {met['N'][1]}",
                                          "All sites": f"n = {total[1]}"}
        assert n.x[0] > 1 and fig.layout[f"xaxis{'' if k == 1 else k}"].range[1] > n.x[0]  # right of 100 %
    # hidden rates (k = 2: each site's one short session) read "hidden" at 0, with no dot
    hidden = figures.create_rems_rules_figure(disclosure.protect("rems", raw, 2), ("monitored_min",), columns=1)
    words = [t for t in hidden.data if t.mode == "text" and "hidden" in list(t.text)]
    assert len(words) == 1 and list(words[0].y) == ["Site S", "Site N"] and list(words[0].x) == [0, 0]
    # a rule whose columns the export lacks says so in its panel; on a phone, one panel a row
    with duckdb.connect(str(plain_db), read_only=True) as con:
        plain = disclosure.protect("rems", rems.rems(con, Settings(min_cell=0)), 0)
    phone = figures.create_rems_rules_figure(plain, spec.REMS_RULES, columns=1)
    assert "Not in the clinic export" in [a.text for a in phone.layout.annotations]
    assert {tuple(a.domain) for a in phone.select_xaxes()} == {(0.0, 1.0)}


def test_the_sample_has_realistic_gaps(sample_db):
    """The generator's REMS columns (sample.Parameters rems_*): mostly compliant, with some sessions short of
    120 minutes, some forms late, some 40-minute pressures missing, and sites that differ."""
    with duckdb.connect(str(sample_db), read_only=True) as con:
        assert rems.lacking_columns(con) == {}
        df = rems.rems(con, Settings(min_cell=0)).set_index("site")
        dist = rems.rems_distribution(con, Settings(min_cell=0))
        # the generator fills the columns on clinic esketamine sessions only
        other = con.execute("SELECT count(*) FILTER (WHERE form_submitted_day IS NOT NULL OR sbp_40min IS NOT NULL) "
                            "FROM sessions WHERE drug <> 'esketamine' OR setting <> 'clinic'").fetchone()[0]
    assert other == 0
    total = df.loc["ALL"]
    assert total["sessions"] > 1000
    assert 0.90 < total["monitored_min_rate"] < 0.995
    assert 0.85 < total["form_within_7d_rate"] < 0.97
    assert 0.75 < total["bp_three_points_rate"] < 0.95
    assert total["bp_high_40min_of"] < total["sessions"]  # some 40-minute pressures missing
    assert 0.9 < total["enrolled_before_first_dose_rate"] < 1.0
    assert 60 <= total["ready_to_leave_median"] <= 90
    sites = df.drop(index="ALL")
    assert sites["monitored_min_rate"].max() - sites["monitored_min_rate"].min() > 0.03
    short = dist[(dist["measure"] == "monitoring_minutes") & (dist["bin"] < 120)]["sessions"].sum()
    assert short == total["monitored_min_of"] - total["monitored_min"]  # the bins agree with the rule


def test_too_few_esketamine_patients_get_a_message_not_numbers(rems_db, monkeypatch):
    # 6 patients in the cohort (shown with a minimum cell of 6), but only 5 esketamine patients: hidden
    at = open_rems_page(rems_db, monkeypatch, min_cell="6")
    assert any("Too few to show" in w.value for w in at.warning)
    assert not at.get("plotly_chart") and not at.table
    # a cohort without esketamine: a plain message
    at = open_rems_page(rems_db, monkeypatch, min_cell="0", route="IV")
    assert any("No esketamine sessions held in the clinic" in i.value for i in at.info)


def test_figures_mark_hidden_and_missing_values(rems_db, plain_db, monkeypatch):
    from dashboard.charts import figures

    # the figure's marking of hidden values, on the exact counts (cell-key noise off: the labels' n are exact)
    monkeypatch.setattr(disclosure, "noise", lambda key: 0)
    # the whole-column form of the same noise (perturb_counts, the relief groups)
    monkeypatch.setattr(disclosure, "noise_array", lambda keys: np.zeros(len(keys), dtype=np.int64))

    with duckdb.connect(str(rems_db), read_only=True) as con:
        raw = rems.rems(con, Settings())
        dist = rems.rems_distribution(con, Settings())
    # k = 2: one short session per site (hidden, and the met count with it); ALL's 2 of 8 may show
    shown = disclosure.protect("rems", raw, 2)
    fig = figures.create_rems_rate_figure(shown, "monitored_min")
    labels = [t.y[0] for t in fig.data]
    assert labels == ["All sites (n = 8)", "Site S (n = 5)", "Site N (n = 3)"]
    assert [t.text[0] if t.text else None for t in fig.data] == [None, "hidden", "hidden"]
    assert fig.data[0].x[0] == pytest.approx(6 / 8)
    with duckdb.connect(str(plain_db), read_only=True) as con:
        plain = disclosure.protect("rems", rems.rems(con, Settings(min_cell=0)), 0)
    fig = figures.create_rems_rate_figure(plain, "form_within_7d")
    assert fig.layout.annotations[0].text == "The clinic export does not include the columns this measure needs"
    fig = figures.create_rems_distribution_figure(disclosure.protect("rems_distribution", dist, 0),
                                                  "monitoring_minutes", 120)
    assert [s.x0 for s in fig.layout.shapes] == [120]
    assert list(fig.data[0].y) == [1, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0, 1]
    hidden = disclosure.protect("rems_distribution", dist, 3)
    fig = figures.create_rems_distribution_figure(hidden, "monitoring_minutes", 120)
    assert list(fig.data[0].text).count("hidden") == int(hidden["sessions"][hidden["measure"] == "monitoring_minutes"].isna().sum()) > 0


# --- rules that could be checked in no session, hidden rules, and no sessions at all --------------------------


@pytest.fixture(scope="module")
def unrecorded_db(tmp_path_factory) -> Path:
    """The export's REMS columns present but every value of them empty (and no enrolment day recorded)."""
    base = tmp_path_factory.mktemp("unrecorded")
    tables = rems_tables()
    empty_from = SESSION_HEAD.index("monitoring_minutes")
    sessions = [row[:empty_from] + [None] * (len(row) - empty_from) if row[4] == "esketamine" else row
                for row in tables["sessions"][1]]
    patients = [row[:-1] + [None] for row in tables["patients"][1]]
    tables["sessions"] = (SESSION_HEAD, sessions)
    tables["patients"] = (PATIENT_HEAD, patients)
    db = base / "unrecorded.duckdb"
    import_export(write_export(base / "export", tables), db)
    return db


def test_a_rule_checked_in_no_session_says_none_recorded_never_zero_breaks_or_hidden(unrecorded_db, monkeypatch):
    # monitoring minutes, oximetry, sedation, respiratory depression, resolution and the 40-minute pressure
    # were recorded in no session: nothing to break (not "0" breaks, which reads as full compliance) and a rate
    # that is undefined (not "hidden"); blood pressure at three points, the form and enrolment count the
    # missing values against the rule, so their breaks are counts
    from dashboard.charts import figures

    at = open_rems_page(unrecorded_db, monkeypatch, min_cell="0")
    assert not at.warning  # the columns are in the export
    breaks = at.table[0].value.set_index("Rule")
    for m in ("monitored_min", "pulse_oximetry", "resolved_at_discharge"):
        assert set(breaks.loc[spec.REMS_LABELS[m] + " (sessions)"]) == {"none recorded"}, m
    assert breaks.loc[spec.REMS_LABELS["bp_three_points"] + " (sessions)", "All sites"] == "9"
    assert breaks.loc[spec.REMS_LABELS["enrolled_before_first_dose"] + " (patients)", "All sites"] == "5"
    table = compute(unrecorded_db).reset_index()
    fig = figures.create_rems_rules_figure(table, spec.REMS_RULES)
    words = {w for t in fig.data if t.mode == "text" and t.text is not None for w in t.text if not w.startswith("n =")}
    assert words == {"none recorded"}
    one = figures.create_rems_rate_figure(table, "sedation")
    assert {t.text[0] for t in one.data} == {"none recorded"}
    at = open_rems_page(unrecorded_db, monkeypatch, min_cell="0", view="monitoring-time")
    assert "Site N none recorded, Site S none recorded, All sites none recorded" in " ".join(c.value for c in at.caption)
    at = open_rems_page(unrecorded_db, monkeypatch, min_cell="0", view="blood-pressure")
    assert "40 minutes: none recorded overall" in " ".join(c.value for c in at.caption)


def test_a_measure_hidden_in_every_row_is_not_called_missing_from_the_export(rems_db):
    # every cell of pulse oximetry hidden by disclosure control once read "Not in the clinic export"
    from dashboard.charts import figures

    with duckdb.connect(str(rems_db), read_only=True) as con:
        table = disclosure.protect("rems", rems.rems(con, Settings()), 11)
    assert table["pulse_oximetry_rate"].isna().all()
    fig = figures.create_rems_rate_figure(table, "pulse_oximetry")
    assert {t.text[0] for t in fig.data} == {"hidden"}
    rules = figures.create_rems_rules_figure(table, spec.REMS_RULES)
    assert "Not in the clinic export" not in [a.text for a in rules.layout.annotations]


@pytest.mark.parametrize("settings, words", [
    ({"route": ("IV",)}, "No esketamine sessions held in the clinic match these filters"),
    ({"min_cell": 11}, "Too few to show: this cohort's esketamine sessions in the clinic rest on fewer than 11"),
])
def test_the_report_says_when_there_are_no_esketamine_sessions_or_too_few(rems_db, settings, words):
    # as the page does: in words, not a chart of empty rates reading "hidden" or "not in the export"
    import datetime as dt

    from dashboard.reports import report

    with duckdb.connect(str(rems_db), read_only=True) as con:
        build = report.ReportBuild(con, Settings(**settings), made_at=dt.datetime(2026, 11, 30))
        section = report.section_esketamine(build)
    assert all(isinstance(block, str) for block in section.blocks)  # no chart, no table
    assert words in " ".join(section.blocks).replace("&#x27;", "'")


def test_the_privacy_note_names_hidden_rules_in_a_sentence_keeping_rems(rems_db, monkeypatch):
    # site N's two enrolled patients are hidden under a minimum cell of 3; the note once said "the rems"
    at = open_rems_page(rems_db, monkeypatch, min_cell="3")
    notes = " ".join(m.value for m in at.info)
    assert "enrolled in the REMS before the first dose" in notes
