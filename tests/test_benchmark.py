"""Network benchmark (dashboard/analysis/benchmark.py, docs/metrics.md "Network benchmark").

Quantiles and control limits against values worked out by hand for six sites, the floors (30 patients,
5 sites) on both sides, the minimum-cell rule, and the viewer restriction: no other site's name or numbers
in the file a site director gets.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest

from dashboard.analysis import benchmark
from dashboard.analysis.settings import Settings
from dashboard.data import store
from dashboard.reports import export
from tests.metrics_data import assessment, build_db, patient, session

# site: (evaluable, responders, remitters); response rates of the benchmarked ones: .5 .6 .4 .7 .4
COUNTS = {
    "SITE_A": (40, 20, 11),
    "SITE_B": (55, 33, 17),
    "SITE_C": (35, 14, 6),
    "SITE_D": (60, 42, 23),
    "SITE_E": (45, 18, 9),
    "SITE_F": (29, 21, 5),  # one patient short of the floor: not benchmarked
}


def counts(data: dict[str, tuple[int, int, int]] = COUNTS) -> pd.DataFrame:
    return pd.DataFrame([{"site": s, "evaluable": n, "responders": r, "remitters": m} for s, (n, r, m) in data.items()])


def cell(table: pd.DataFrame, site: str, measure: str, col: str):  # noqa: ANN201
    return table[(table["site"] == site) & (table["measure"] == measure)].iloc[0][col]


def test_quantiles_pooled_rate_positions_and_control_limits_by_hand():
    t = benchmark.benchmark_from_counts(counts())
    assert list(t.columns) == list(benchmark.COLUMNS)
    assert list(t["site"]) == [s for s in sorted(COUNTS) for _ in range(2)]
    assert list(t["measure"]) == ["response", "remission"] * 6
    # sorted benchmarked response rates .4 .4 .5 .6 .7: median the 3rd, P75 at position 0.75·4 = 3 → .6
    assert cell(t, "SITE_A", "response", "network_median") == pytest.approx(0.5)
    assert cell(t, "SITE_A", "response", "network_p75") == pytest.approx(0.6)
    # remission rates 11/40 .275, 17/55 .309091, 6/35 .171429, 23/60 .383333, 9/45 .2:
    # sorted .171429 .2 .275 .309091 .383333 → median .275, P75 .309091
    assert cell(t, "SITE_C", "remission", "network_median") == pytest.approx(0.275)
    assert cell(t, "SITE_C", "remission", "network_p75") == pytest.approx(17 / 55)
    pooled = 148 / 264  # (20+33+14+42+18+21) / (40+55+35+60+45+29), SITE_F included
    assert cell(t, "SITE_F", "response", "network_pooled") == pytest.approx(pooled)
    assert cell(t, "SITE_B", "remission", "network_pooled") == pytest.approx(71 / 264)
    positions = [cell(t, s, "response", "position") for s in sorted(COUNTS)]
    assert positions[:5] == ["above median", "top quartile", "below median", "top quartile", "below median"]
    assert pd.isna(positions[5])  # not benchmarked: no position
    assert [bool(cell(t, s, "response", "benchmarked")) for s in sorted(COUNTS)] == [True] * 5 + [False]
    # SITE_D: 0.7 against pooled .560606 ± z·√(.560606·.439394/60) = ± z·0.0640738 (computed by hand)
    half = math.sqrt(pooled * (1 - pooled) / 60)
    assert half == pytest.approx(0.0640738, abs=1e-7)
    assert 0.7 > pooled + 1.959964 * half and 0.7 < pooled + 3.090232 * half
    assert bool(cell(t, "SITE_D", "response", "outside_95")) and not bool(cell(t, "SITE_D", "response", "outside_998"))
    # SITE_C: 0.4 against .560606 − 1.959964·√(.560606·.439394/35) = .396180: inside
    assert not bool(cell(t, "SITE_C", "response", "outside_95"))
    lo, hi = benchmark.control_limits(pooled, np.array([35, 60]), 1.959964)
    assert lo[0] == pytest.approx(0.3961802, abs=1e-7) and hi[1] == pytest.approx(0.6861883, abs=1e-7)
    # flags exist for sites that are not benchmarked too: SITE_F 21/29 = .724138 vs its upper limit .741242
    assert not bool(cell(t, "SITE_F", "response", "outside_95"))
    # Wilson interval as everywhere else (metrics.wilson)
    assert cell(t, "SITE_A", "response", "ci_low") == pytest.approx(0.3519953, abs=1e-7)  # (p + z²/2n − z√(p(1−p)/n + z²/4n²)) / (1 + z²/n)


def test_floors_30_patients_and_5_sites_on_both_sides():
    at_floor = dict(COUNTS, SITE_F=(30, 21, 5))
    t = benchmark.benchmark_from_counts(counts(at_floor))
    assert bool(cell(t, "SITE_F", "response", "benchmarked"))
    # six benchmarked rates .4 .4 .5 .6 .7 .7: median .55, P75 at 3.75 → .6 + .75·.1 = .675
    assert cell(t, "SITE_A", "response", "network_median") == pytest.approx(0.55)
    assert cell(t, "SITE_A", "response", "network_p75") == pytest.approx(0.675)
    assert cell(t, "SITE_F", "response", "position") == "top quartile"

    four = {s: v for s, v in COUNTS.items() if s != "SITE_E"}  # 4 benchmarked sites: no quantiles
    t4 = benchmark.benchmark_from_counts(counts(four))
    assert t4["network_median"].isna().all() and t4["network_p75"].isna().all()
    assert t4["position"].isna().all()
    assert t4["network_pooled"].notna().all()  # the pooled rate needs no floor
    five = dict(four, SITE_F=(30, 21, 5))  # SITE_F reaches 30: five benchmarked sites again
    assert benchmark.benchmark_from_counts(counts(five))["network_median"].notna().all()
    # a site without evaluable patients has no rows
    t0 = benchmark.benchmark_from_counts(counts(dict(COUNTS, SITE_Z=(0, 0, 0))))
    assert "SITE_Z" not in set(t0["site"])


def _csv_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(export.summary_csv_bytes(df).decode())))


def test_a_site_director_sees_their_site_on_the_distribution_and_nothing_of_another_site():
    full = benchmark.protect_benchmark(benchmark.benchmark_from_counts(counts()), 0)
    mine = benchmark.restrict_benchmark(full, frozenset({"SITE_B"}))
    data = export.summary_csv_bytes(mine).decode()
    for other in set(COUNTS) - {"SITE_B"}:
        assert other not in data
    rows = _csv_rows(mine)
    assert [r["site"] for r in rows] == ["SITE_B", "SITE_B"]
    other_numbers = {str(v) for s, vals in COUNTS.items() if s != "SITE_B" for v in vals}
    for r in rows:
        assert r["evaluable"] not in other_numbers and r["events"] not in other_numbers
        assert r["evaluable"] == "55"
    # the distribution stays: median, P75, pooled rate and the position on it
    assert rows[0]["network_median"] == "0.5" and rows[0]["network_p75"] == "0.6"
    assert rows[0]["network_pooled"] == export.format_value(148 / 264)
    assert rows[0]["position"] == "top quartile"
    # a viewer of every site (None) gets every row
    assert len(benchmark.restrict_benchmark(full, None)) == 12
    # with one other site only, the pooled rate would nearly give that site away: left out
    two = benchmark.protect_benchmark(benchmark.benchmark_from_counts(counts(
        {"SITE_A": COUNTS["SITE_A"], "SITE_B": COUNTS["SITE_B"]})), 0)
    assert benchmark.restrict_benchmark(two, frozenset({"SITE_B"}))["network_pooled"].isna().all()
    assert benchmark.restrict_benchmark(two, None)["network_pooled"].notna().all()
    # a viewer of no site sees no row
    assert benchmark.restrict_benchmark(full, frozenset()).empty


def test_minimum_cell_hides_small_sites_and_their_findings():
    data = dict(COUNTS, SITE_G=(7, 3, 1))
    raw = benchmark.benchmark_from_counts(counts(data))
    t = benchmark.protect_benchmark(raw, 11)
    g = t[t["site"] == "SITE_G"]
    assert g["evaluable"].isna().all() and g["events"].isna().all() and g["rate"].isna().all()
    assert g["ci_low"].isna().all() and g["position"].isna().all()
    assert g["outside_95"].isna().all() and g["outside_998"].isna().all()
    # no shown count from 1 to 10, and the hidden site cannot be recovered from the rest: a second site
    # is hidden along with it (complementary suppression against the network total)
    for col in ("evaluable", "events"):
        shown = t[col].dropna().astype(int)
        assert not ((shown >= 1) & (shown < 11)).any(), col
    assert t[t["measure"] == "response"]["evaluable"].isna().sum() >= 2
    # the quantiles are of the benchmarked sites and are unchanged by protection
    assert t["network_median"].tolist() == pytest.approx(raw["network_median"].tolist(), nan_ok=True)
    # k = 0 hides nothing
    t0 = benchmark.protect_benchmark(raw, 0)
    assert t0["rate"].notna().all() and t0["evaluable"].notna().all()


def test_through_the_database_every_filter_but_site_applies(tmp_path):
    patients, sessions, assessments = [], [], []
    for i in range(60):
        pid = f"P{i:02d}"
        site = ("S1", "S2", "S3")[i % 3]
        patients.append(patient(pid, site=site, sex="F" if i < 40 else "M"))
        sessions.append(session(f"s{i}", pid, 0, route="IV" if i % 2 else "IN"))
        assessments.append(assessment(pid, 0, 16))
        assessments.append(assessment(pid, 3, 6 if i % 4 == 0 else 12))  # i % 4 == 0 responds (and remits? no)
    db = build_db(tmp_path / "b.duckdb", patients, sessions, assessments)
    con = store.open_database(db)
    try:
        s = Settings(min_cell=0, sex=("F",))
        t = benchmark.network_benchmark(con, s)
        assert t.equals(benchmark.network_benchmark(con, s.replace(site=("S2",))))  # the site filter is ignored
        # women are patients 0..39: per site 14, 13, 13; responders i % 4 == 0 → 0,12,24,36 at S1; 4,16,28 at
        # S2 (i % 3 == 1); 8,20,32 at S3
        resp = t[t["measure"] == "response"].set_index("site")
        assert resp["evaluable"].tolist() == [14, 13, 13]
        assert resp["events"].tolist() == [4, 3, 3]
        assert not resp["benchmarked"].any()  # fewer than 30 each
        assert resp["network_pooled"].tolist() == pytest.approx([10 / 40] * 3)
        mine = benchmark.network_benchmark(con, s, named_sites=frozenset({"S3"}))
        assert set(mine["site"]) == {"S3"}
        assert export.compute_summary(con, s, "benchmark.csv").equals(t)
        assert export.compute_summary(con, s, "benchmark.csv", named_sites=frozenset({"S3"})).equals(mine)
        # the zip of all summaries obeys the same restriction
        import zipfile

        with zipfile.ZipFile(io.BytesIO(export.summaries_zip_bytes(con, s, named_sites=frozenset({"S3"})))) as zf:
            data = zf.read("benchmark.csv").decode()
        assert data == export.summary_csv_bytes(mine).decode() and "S1" not in data and "S2" not in data
    finally:
        con.close()


def test_a_scoped_export_names_only_the_scope_on_the_whole_network(sample_db, tmp_path):
    """`export --scope S1` (a site director's files): benchmark.csv holds S1's rows only, placed on the
    distribution of every site of the network (the scope narrows the cohort, never the benchmark's network)."""
    from dashboard import cli
    from dashboard.analysis.settings import Settings
    from dashboard.data import store

    assert cli.main(["export", "--db", str(sample_db), "--out", str(tmp_path / "s1"), "--scope", "S1",
                     "--min-cell", "0"]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s1" / "benchmark.csv").read_text())))
    assert {r["site"] for r in rows} == {"S1"}
    con = store.open_database(sample_db)
    try:
        whole = benchmark.network_benchmark(con, Settings(min_cell=0))
        # the same network figures as an unrestricted viewer's
        for r in rows:
            mine = whole[(whole["site"] == "S1") & (whole["measure"] == r["measure"])].iloc[0]
            assert r["network_median"] == export.format_value(mine["network_median"])
            assert r["network_pooled"] == export.format_value(mine["network_pooled"])
            assert r["evaluable"] == export.format_value(mine["evaluable"])
        # a scope that the caller narrows further names only their intersection
        assert benchmark.network_benchmark(con, Settings(min_cell=0, scope=("S1", "S2")),
                                           named_sites=frozenset({"S2", "S3"}))["site"].unique().tolist() == ["S2"]
    finally:
        con.close()
    other = (tmp_path / "s1" / "benchmark.csv").read_text()
    for site in ("S2", "S3", "S4", "S5", "S6"):
        assert site not in other


@pytest.mark.parametrize("s", [Settings(), Settings(sex=("X",)), Settings(sex=("X",), instrument="matched"),
                               Settings(diagnosis=("PTSD",), population="itt")],
                         ids=["everyone", "sex-X", "sex-X-matched", "PTSD-itt"])
def test_the_pooled_rate_is_the_cohorts_own_published_rate(sample_db, s):
    """With no site chosen, the network's pooled rates are the cohort's: the same patients, published the
    same way as response_by_route.csv's ALL row. A newcomer saw "pooled 37 %" beside the Overview's 54 % for
    sex X: the pooled rate summed every small site's perturbed counts, and their noise with them."""
    import duckdb

    con = duckdb.connect(str(sample_db), read_only=True)
    try:
        table = export.compute_summary(con, s, "benchmark.csv")
        response = export.compute_summary(con, s, "response_by_route.csv").set_index("route").loc["ALL"]
    finally:
        con.close()
    for measure, rate in (("response", "response_rate"), ("remission", "remission_rate")):
        pooled = table.loc[table["measure"] == measure, "network_pooled"].to_numpy(dtype=float)
        assert len(set(pooled.tolist())) == 1 or np.isnan(pooled).all(), measure
        if pd.isna(response[rate]):  # hidden in both (fewer than k responders in the whole network)
            assert np.isnan(pooled).all(), measure
        else:
            assert pooled[0] == pytest.approx(float(response[rate]), abs=1e-15), measure
