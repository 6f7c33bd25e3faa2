"""Per-site access in the core: the scope on Settings, people from claims and access files, the scoped
option lists, exports and provenance, and property tests that no cohort reaches a patient outside the scope."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from dashboard import cli
from dashboard.analysis import access, metrics
from dashboard.analysis.settings import Settings, SettingsError
from dashboard.data import spec, store
from dashboard.reports import export

SITES = ("S1", "S2", "S3", "S4", "S5", "S6")


@pytest.fixture(scope="module")
def con(sample_db):
    c = store.open_database(sample_db)
    yield c
    c.close()


@pytest.fixture(scope="module")
def patients(con) -> pd.DataFrame:
    with con.cursor() as cur:
        return cur.execute("SELECT * FROM patients").df()


# --- Settings.scope ------------------------------------------------------------------------------------------


def test_scope_intersects_the_site_filter():
    s = Settings(site=("S2", "S1"), scope=("S3", "S1"))
    assert s.scope == ("S1", "S3")
    assert s.effective_sites == ("S1",)
    assert s.cohort_params()["sites"] == ["S1"]
    assert s.sites_outside_scope() == ("S2",)
    assert s.within_scope().site == ("S1",)


def test_no_site_filter_means_the_whole_scope_and_no_scope_means_every_site():
    assert Settings(scope=("S2",)).cohort_params()["sites"] == ["S2"]
    assert Settings().cohort_params()["sites"] is None
    assert Settings(site=("S4",)).cohort_params()["sites"] == ["S4"]


def test_an_empty_intersection_binds_no_site_never_every_site():
    assert Settings(site=("S2",), scope=("S1",)).cohort_params()["sites"] == []
    assert Settings(scope=()).cohort_params()["sites"] == []


def test_the_scope_is_never_read_from_a_link_or_written_to_one():
    s = Settings(site=("S1",), scope=("S1",))
    assert s.to_query_params() == [("site", "S1")]
    assert "scope" not in s.to_args()
    assert Settings.from_query_params({"scope": ["S2"]}).scope is None
    with pytest.raises(SettingsError):
        Settings.from_query_params({"scope": ["S2"]}, ignore_unknown=False)


def test_the_scope_is_part_of_the_cache_key():
    assert repr(Settings(scope=("S1",))) != repr(Settings(scope=("S2",))) != repr(Settings())
    assert hash(Settings(scope=("S1",))) != hash(Settings())


def test_the_description_names_the_scope_when_no_site_is_chosen():
    assert Settings(scope=("S1", "S3")).describe_filters() == "site S1, S3 (your access)"
    assert Settings(route=("IV",), scope=("S1",)).describe_filters() == "IV infusion; site S1 (your access)"
    assert Settings(site=("S1",), scope=("S1", "S3")).describe_filters() == "site S1"
    assert Settings().describe_filters() == "All patients"


def test_a_bad_scope_code_is_refused():
    with pytest.raises(SettingsError, match="scope"):
        Settings(scope=("S 1",))


# --- the scope in the metrics -----------------------------------------------------------------------------


def test_an_empty_intersection_is_an_empty_cohort(con):
    s = Settings(site=("S2",), scope=("S1",), min_cell=0)
    assert int(metrics.cohort_size(con, s)["patients"].iloc[0]) == 0
    assert int(metrics.cohort_size(con, Settings(scope=(), min_cell=0))["patients"].iloc[0]) == 0


def test_scope_counts_equal_the_patients_table(con, patients):
    for scope in (("S1",), ("S2", "S5")):
        expected = int(patients["site"].astype(str).isin(scope).sum())
        assert int(metrics.cohort_size(con, Settings(scope=scope, min_cell=0))["patients"].iloc[0]) == expected


def test_the_breakdown_by_site_names_only_sites_in_scope(con):
    df = metrics.breakdown(con, Settings(scope=("S1", "S3"), min_cell=0), "site")
    assert set(df["group"].astype(str)) == {"S1", "S3"}


def test_filter_options_list_only_the_scope(con, patients):
    assert metrics.filter_options(con, Settings())["site"] == list(SITES)
    opts = metrics.filter_options(con, Settings(scope=("S2",)))
    assert opts["site"] == ["S2"]
    in_s2 = patients[patients["site"].astype(str) == "S2"]
    assert opts["quarter"] == sorted(in_s2["start_quarter"].astype(str).unique())
    assert metrics.filter_options(con, Settings(scope=())) == {"site": [], "quarter": []}


def test_scoped_summaries_equal_the_site_filter_and_provenance_hides_network_totals(con):
    scoped = export.summary_files(con, Settings(scope=("S1",), min_cell=0))
    filtered = export.summary_files(con, Settings(site=("S1",), min_cell=0))
    for name in export.SUMMARY_FILES:
        if name == "benchmark.csv":
            # the benchmark ignores the site filter (every site against the network); a scope names only its
            # own sites on the same network figures
            named = export.summary_files(con, Settings(site=("S1",), min_cell=0), named_sites=frozenset({"S1"}))
            assert scoped[name] == named[name] and b"S2" not in scoped[name]
            continue
        assert scoped[name] == filtered[name], name
    p_scoped = json.loads(scoped[export.PROVENANCE_FILE])
    p_all = json.loads(filtered[export.PROVENANCE_FILE])
    assert p_scoped["scope"] == ["S1"] and p_all["scope"] is None
    assert "rows" not in p_scoped["data_set"] and "rows" in p_all["data_set"]
    assert "S2" not in scoped[export.PROVENANCE_FILE].decode()


def test_the_command_line_export_applies_a_scope(sample_db, tmp_path, con, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", "--db", str(sample_db), "--out", str(out), "--min-cell", "0", "--scope", "S1",
                     "--site", "S2", "--site", "S1"]) == 0
    # S2 is named and dropped, as the dashboard drops a link's site outside the person's sites
    assert capsys.readouterr().err == "warning: --site: 'S2' is not among the sites of --scope (S1); dropped\n"
    expected = export.summary_files(con, Settings(site=("S1",), scope=("S1",), min_cell=0))
    for name, data in expected.items():
        assert (out / name).read_bytes() == data, name
    by_site = pd.read_csv(out / "cohort.csv")
    assert by_site["patients"].iloc[-1] > 0


def test_the_command_line_refuses_a_bad_scope_code(sample_db, tmp_path, capsys):
    assert cli.main(["export", "--db", str(sample_db), "--out", str(tmp_path / "o"), "--scope", "S 1"]) == cli.EXIT_USAGE
    assert "--scope" in capsys.readouterr().err


# --- property: no cohort reaches outside the scope --------------------------------------------------------

_lists = lambda values: st.lists(st.sampled_from(values), unique=True, max_size=3)  # noqa: E731


@st.composite
def scoped_settings(draw) -> Settings:
    quarters = ("2023-Q1", "2024-Q2", "2025-Q1", "2025-Q4")
    lo, hi = sorted([draw(st.sampled_from((None,) + quarters)) or "", draw(st.sampled_from((None,) + quarters)) or ""])
    return Settings(
        site=tuple(draw(_lists(SITES + ("S9",)))),
        scope=tuple(draw(st.lists(st.sampled_from(SITES), unique=True, max_size=3))),
        sex=tuple(draw(_lists(spec.SEXES))),
        age_band=tuple(draw(_lists(spec.AGE_BANDS))),
        diagnosis=tuple(draw(_lists(spec.DIAGNOSES))),
        from_quarter=lo or None, to_quarter=hi or None,
        treatment_resistant=draw(st.sampled_from((None, True, False))),
        min_cell=0,
    )


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=scoped_settings())
def test_no_cohort_reaches_a_patient_outside_the_scope(con, patients, s):
    # independent count from the patients table: the filters that live there, within the scope
    p = patients.assign(site=patients["site"].astype(str))
    keep = p["site"].isin(s.scope) & (p["site"].isin(s.site) if s.site else True)
    for name, column in (("sex", "sex"), ("age_band", "age_band"), ("diagnosis", "primary_diagnosis")):
        if getattr(s, name):
            keep &= p[column].astype(str).isin(getattr(s, name))
    if s.from_quarter:
        keep &= p["start_quarter"].astype(str) >= s.from_quarter
    if s.to_quarter:
        keep &= p["start_quarter"].astype(str) <= s.to_quarter
    if s.treatment_resistant is not None:
        keep &= p["treatment_resistant"] == s.treatment_resistant
    assert int(metrics.cohort_size(con, s)["patients"].iloc[0]) == int(keep.sum())
    groups = set(metrics.breakdown(con, s, "site")["group"].astype(str))
    assert groups <= set(s.scope)
    assert set(metrics.filter_options(con, s)["site"]) <= set(s.scope)


# --- people: claims and the access file ------------------------------------------------------------------


def test_claims_give_role_and_sites():
    p = access.person_from_claims({"sub": "u1", "email": "Ana@x.org", "role": "site_director", "sites": ["S2", "S1"]})
    assert (p.role, p.sites, p.source) == ("site_director", ("S1", "S2"), "claims")
    assert p.scope == ("S1", "S2") and p.named_sites == ("S1", "S2") and not p.sees_all_sites
    assert p.may_download and not p.may_import and not p.may_read_audit
    assert access.person_from_claims({"sub": "u", "role": "viewer", "sites": "S1, S3"}).sites == ("S1", "S3")


def test_a_network_admin_sees_every_site():
    p = access.person_from_claims({"sub": "a", "role": "network_admin"})
    assert p.scope is None and p.named_sites is None and p.sees_all_sites
    assert p.may_import and p.may_read_audit and p.has_access


def test_only_a_network_admin_may_lower_the_minimum_cell():
    """A shared dashboard's viewers and site directors see counts under the default minimum cell at most:
    their settings are raised to it in the core (a newcomer turned hiding off with `?min_cell=0`)."""
    viewer = access.person_from_claims({"sub": "v", "role": "viewer", "sites": ["S1"]})
    director = access.person_from_claims({"sub": "d", "role": "site_director", "sites": ["S1"]})
    admin = access.person_from_claims({"sub": "a", "role": "network_admin"})
    for who in (viewer, director):
        assert who.min_cell_floor == spec.DEFAULT_MIN_CELL == 11
        assert access.apply_scope(Settings(min_cell=0), who).min_cell == 11
        assert access.apply_scope(Settings(min_cell=5), who).min_cell == 11
        assert access.apply_scope(Settings(min_cell=20), who).min_cell == 20  # stricter is anyone's choice
    for who in (admin, access.local_person()):
        assert who.min_cell_floor == 0
        assert access.apply_scope(Settings(min_cell=0), who).min_cell == 0


def test_no_role_or_no_sites_means_no_access_and_an_empty_scope():
    nobody = access.person_from_claims({"sub": "x", "email": "x@y.org"})
    assert not nobody.has_access and nobody.scope == () and "no role" in nobody.why_no_access()
    siteless = access.person_from_claims({"sub": "v", "role": "viewer"})
    assert not siteless.has_access and siteless.scope == () and "no sites" in siteless.why_no_access()
    odd = access.person_from_claims({"sub": "o", "role": "superuser", "sites": ["S1"]})
    assert not odd.has_access and odd.scope == () and "superuser" in odd.why_no_access()
    s = access.apply_scope(Settings(site=("S1",)), odd)
    assert s.cohort_params()["sites"] == []
    assert not access.person_from_claims({"sub": "viewer", "role": "viewer", "sites": ["S1"]}).may_download


def test_the_access_file_is_used_when_the_provider_sends_no_role(tmp_path):
    f = tmp_path / "access.csv"
    f.write_text("email,role,sites\nana@x.org,site_director,S1 S3\nboss@x.org,network_admin,\n", encoding="utf-8")
    table = access.load_access_file(f)
    ana = access.person_from_claims({"sub": "1", "email": "ANA@x.org"}, table)
    assert (ana.role, ana.sites, ana.source) == ("site_director", ("S1", "S3"), "access file")
    assert access.person_from_claims({"sub": "2", "email": "boss@x.org"}, table).sees_all_sites
    # claims win over the file
    assert access.person_from_claims({"sub": "1", "email": "ana@x.org", "role": "viewer", "sites": "S2"}, table).sites == ("S2",)
    assert not access.person_from_claims({"sub": "3", "email": "who@x.org"}, table).has_access


def test_a_bad_access_file_names_file_line_column_and_value(tmp_path):
    f = tmp_path / "access.csv"
    f.write_text("email,role,sites\nana@x.org,director,S1\nnot-an-address,viewer,S1\nbob@x.org,viewer,\n"
                 "ana@x.org,viewer,S/1;S2\n", encoding="utf-8")
    with pytest.raises(access.AccessFileError) as info:
        access.load_access_file(f)
    problems = info.value.problems
    assert f"{f}, line 2, column role: 'director' is not a role; use one of viewer, site_director, network_admin" in problems
    assert f"{f}, line 3, column email: 'not-an-address' is not an e-mail address" in problems
    assert f"{f}, line 4, column sites: empty; a viewer needs at least one site" in problems
    assert f"{f}, line 5, column email: 'ana@x.org' is listed twice; keep one line per person" in problems
    assert f"{f}, line 5, column sites: 'S/1' is not a site code (1–32 letters, digits, '-' or '_')" in problems
    assert len(problems) == 5
    with pytest.raises(access.AccessFileError, match="does not exist"):
        access.load_access_file(tmp_path / "missing.csv")
    (tmp_path / "h.csv").write_text("mail,role,sites\n", encoding="utf-8")
    with pytest.raises(access.AccessFileError, match="line 1: column 'email' is missing"):
        access.load_access_file(tmp_path / "h.csv")


@st.composite
def any_settings(draw) -> Settings:
    """Every cohort filter, including those that live on sessions and scores, plus a scope."""
    return Settings(
        route=tuple(draw(_lists(spec.ROUTES))), site=tuple(draw(_lists(SITES))),
        setting=tuple(draw(_lists(spec.SETTINGS))), severity=tuple(draw(_lists(spec.SEVERITY_BANDS))),
        integration=draw(st.sampled_from((None, True, False))), instrument=draw(st.sampled_from(spec.INSTRUMENTS)),
        scope=tuple(draw(st.lists(st.sampled_from(SITES), unique=True, max_size=4))), min_cell=0,
    )


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=any_settings())
def test_under_any_filters_the_scoped_cohort_is_the_sum_of_its_own_sites(con, s):
    # per site without any scope (the unrestricted view's numbers) add up to the scoped cohort
    allowed = [x for x in (s.site or SITES) if x in s.scope]
    per_site = sum(int(metrics.cohort_size(con, s.replace(site=(x,), scope=None))["patients"].iloc[0]) for x in allowed)
    assert int(metrics.cohort_size(con, s)["patients"].iloc[0]) == per_site
    groups = set(metrics.breakdown(con, s, "site")["group"].astype(str))
    assert groups <= set(allowed)
