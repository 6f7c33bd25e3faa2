"""Sign-in and per-site access in the dashboard (Streamlit AppTest with `at.user`): nothing before sign-in,
a director's pages and option lists name only their sites, a link's other site is named and dropped,
viewers get no downloads, network admins get the audit log, every view is recorded, an unwritable log
stops the page, sign-out ends the session."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.analysis import access
from dashboard.analysis.settings import Settings
from dashboard.app import ui
from dashboard.data import store
from dashboard.reports import audit, export

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app" / "main.py"
AUTH = {
    "redirect_uri": "http://localhost:8639/oauth2callback", "cookie_secret": "test-cookie-secret",
    "client_id": "ko", "client_secret": "ko-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
DIRECTOR = {"is_logged_in": True, "sub": "dir-1", "email": "director@s1.org", "role": "site_director", "sites": ["S1"]}
VIEWER = {"is_logged_in": True, "sub": "view-1", "email": "viewer@s1.org", "role": "viewer", "sites": ["S1", "S3"]}
ADMIN = {"is_logged_in": True, "sub": "adm-1", "email": "admin@net.org", "role": "network_admin"}


@pytest.fixture
def db(sample_db, tmp_path, monkeypatch) -> Path:
    """A private copy of the sample database, so each test's audit log starts empty."""
    copy = tmp_path / "net.duckdb"
    shutil.copy(sample_db, copy)
    monkeypatch.setenv(ui.DB_ENV, str(copy))
    monkeypatch.delenv(audit.AUDIT_ENV, raising=False)
    monkeypatch.delenv(ui.ACCESS_ENV, raising=False)
    return copy


def plain_text(markdown: str) -> str:
    """What a reader sees of Markdown whose outside text ui.plain escaped (tests/test_app.py's `shown`)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def signed_in(user: dict | None, **params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.secrets["auth"] = AUTH
    at.user = user if user is not None else {"is_logged_in": False}
    for key, value in params.items():
        at.query_params[key] = value
    return at


def everything_shown(at: AppTest) -> str:
    """Every text, table, option list and chart (hover text included) the run drew, as one string."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success",
                 "metric"):
        for el in at.get(kind):
            parts.append(str(getattr(el, "value", "")) + str(getattr(el, "label", "")))
    for el in at.get("dataframe"):
        parts.append(el.value.to_csv())
    for el in at.get("plotly_chart"):
        # Plotly ships numeric arrays as base64 ("bdata"): numbers, not text a reader sees, whose letters can
        # spell "S2" by chance (they did for the percent trajectory under the matched instrument)
        parts.append(re.sub(r'"bdata":"[^"]*"', '"bdata":""', el.proto.spec))
    for kind in ("multiselect", "selectbox", "radio"):
        for el in at.get(kind):
            parts.append(" ".join(map(str, el.options)))
    return "\n".join(parts)


def test_nothing_is_shown_before_sign_in(db):
    at = signed_in(None)
    at.run()
    assert not at.exception
    assert "Sign in to see the dashboard" in at.info[0].value
    assert not at.get("plotly_chart") and not at.get("dataframe") and not at.get("multiselect")
    assert at.button(key="_ko_login").label == "Log in"
    assert not audit.audit_path(db).exists()


def test_a_person_without_role_or_sites_sees_only_that(db):
    for user, why in (({"is_logged_in": True, "sub": "x", "email": "x@y.org"}, "no role"),
                      ({"is_logged_in": True, "sub": "v", "email": "v@y.org", "role": "viewer"}, "no sites")):
        at = signed_in(user)
        at.run()
        assert not at.exception
        assert why in at.warning[0].value and "no access to any data" in at.warning[0].value
        assert not at.get("plotly_chart") and not at.get("multiselect")


def test_an_s1_director_never_sees_s2_and_the_link_names_it_dropped(db):
    at = signed_in(DIRECTOR, site=["S2", "S1"])
    at.run()
    assert not at.exception and not at.error
    assert at.multiselect(key="site").options == ["S1"]
    assert at.session_state[ui.CONTEXT_KEY].settings.scope == ("S1",)
    notice = [w.value for w in at.warning if "could not be used" in w.value]
    assert notice and "'S2' is not among the sites you may see; dropped" in plain_text(notice[0])
    for page in ("views/overview.py", "views/response.py", "views/data.py"):
        if page != "views/overview.py":
            at.switch_page(page).run()
        assert not at.exception and not at.error, page
        shown = everything_shown(at).replace(notice[0], "")
        assert "S2" not in shown and "S3" not in shown, page
        assert "S1" in shown, page
        if page == "views/response.py":  # every part under its tabs (a tab choice is the same view: no entry)
            for label in list(ui.PAGE_VIEWS["response"].values())[1:]:
                at.session_state["_ko_view_response"] = label
                at.run()
                assert not at.exception and not at.error, label
                shown = everything_shown(at).replace(notice[0], "")
                assert "S2" not in shown and "S3" not in shown, label
    log = audit.read_log(audit.audit_path(db))
    assert set(log["email"]) == {"director@s1.org"} and set(log["action"]) == {"view"}
    assert set(log["sites"]) == {"S1"} and set(log["role"]) == {"site_director"}
    assert list(log["page"]) == ["overview", "response", "data"]
    assert set(log["query"]) == {"site=S1&instrument=matched"}  # the dashboard's default instrument


def test_a_link_cannot_turn_hiding_off_for_a_viewer_or_director(db):
    """`?min_cell=0` from a viewer's or site director's link is named and raised to 11 (the number box
    refuses less); a network admin's is used as it is."""
    for user in (VIEWER, DIRECTOR):
        at = signed_in(user, min_cell="0")
        at.run()
        assert not at.exception and not at.error
        assert at.session_state[ui.CONTEXT_KEY].settings.min_cell == 11
        notice = " ".join(plain_text(w.value) for w in at.warning if "could not be used" in w.value)
        assert "min_cell: 0 is below 11, the smallest minimum cell your role may use; 11 is used" in notice
        box = at.number_input(key="min_cell")
        assert box.value == 11 and box.min == 11 and "11 or more for your role" in box.label
        assert "min_cell" not in at.query_params  # the link now says what is in force: the default
    admin = signed_in(ADMIN, min_cell="0")
    admin.run()
    assert not admin.exception and admin.session_state[ui.CONTEXT_KEY].settings.min_cell == 0
    assert admin.number_input(key="min_cell").min == 0


def test_a_filter_change_is_a_new_view_and_a_rerun_is_not(db):
    at = signed_in(DIRECTOR)
    at.run()
    at.run()  # nothing changed
    at.multiselect(key="route").set_value(["IV"]).run()
    log = audit.read_log(audit.audit_path(db))
    # the log records the settings viewed: the dashboard's default instrument (matched) is named, since an
    # absent instrument means GAD-7 in a Settings query string (docs/choices.md "Matched instrument")
    assert list(log["query"]) == ["instrument=matched", "route=IV&instrument=matched"]


def test_a_viewer_gets_no_downloads(db):
    at = signed_in(VIEWER)
    at.run()
    assert not at.exception
    assert any("Downloads are for site directors" in c.value for c in at.caption)
    assert not at.get("download_button")
    director = signed_in(DIRECTOR)
    director.run()
    assert director.get("download_button")


def test_the_network_admin_reads_and_filters_the_audit_log(db):
    director = signed_in(DIRECTOR, route="IN")
    director.run()
    at = signed_in(ADMIN)
    at.run()
    assert at.multiselect(key="site").options == ["S1", "S2", "S3", "S4", "S5", "S6"]
    at.switch_page("views/audit.py").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["email"]) == ["director@s1.org", "admin@net.org", "admin@net.org"]
    assert list(table["query"]) == ["route=IN&instrument=matched", "instrument=matched", "instrument=matched"]
    assert list(table["page"]) == ["overview", "overview", "audit"]
    at.multiselect(key="_ko_audit_people").set_value(["director@s1.org"]).run()
    assert list(at.dataframe[0].value["email"]) == ["director@s1.org"]
    assert at.get("download_button")


def test_the_audit_page_is_refused_to_others(db):
    at = signed_in(DIRECTOR)
    at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page") as info:
        at.switch_page("views/audit.py")  # not among their pages at all
    assert "views/data.py" in str(info.value)  # (their pages are listed)


def test_a_log_that_cannot_be_written_stops_the_view(db, tmp_path, monkeypatch):
    blocker = tmp_path / "log-is-a-folder"
    blocker.mkdir()
    monkeypatch.setenv(audit.AUDIT_ENV, str(blocker))
    at = signed_in(DIRECTOR)
    at.run()
    assert not at.exception
    assert "not shown because it could not be recorded" in at.error[0].value
    assert not at.get("plotly_chart") and not at.get("dataframe")


def test_sign_out_ends_the_session(db):
    at = signed_in(DIRECTOR)
    at.run()
    assert ui.CONTEXT_KEY in at.session_state
    at.button(key="_ko_logout").click().run()
    assert not at.exception
    assert ui.CONTEXT_KEY not in at.session_state
    assert "Sign in to see the dashboard" in at.info[0].value


def test_the_access_file_gives_roles_when_the_provider_has_no_claims(db, tmp_path, monkeypatch):
    table = tmp_path / "access.csv"
    table.write_text("email,role,sites\nplain@s2.org,site_director,S2\n", encoding="utf-8")
    monkeypatch.setenv(ui.ACCESS_ENV, str(table))
    at = signed_in({"is_logged_in": True, "sub": "p", "email": "plain@s2.org"})
    at.run()
    assert not at.exception and at.multiselect(key="site").options == ["S2"]
    table.write_text("email,role,sites\nplain@s2.org,boss,S2\n", encoding="utf-8")
    at = signed_in({"is_logged_in": True, "sub": "p", "email": "plain@s2.org"})
    at.run()
    assert not at.exception
    assert f"{table}, line 2, column role: 'boss' is not a role" in plain_text(at.error[0].value)


def test_a_directors_download_equals_the_command_line_export_and_is_recorded(db, tmp_path):
    from dashboard import cli

    person = access.person_from_claims(DIRECTOR)
    # the link ?site=S1&site=S2&min_cell=0 for an S1 director: S2 is named and dropped (the test above), and
    # the minimum cell raised to 11 (a director may not turn hiding off)
    settings = access.apply_scope(Settings(site=("S1",), min_cell=0), person)
    assert settings.min_cell == 11
    ctx = ui.PageContext(db_path=db, signature=store.database_signature(db),
                         settings=settings, person=person, audit_log=audit.audit_path(db), page="overview")
    zipped = ui.audited(ctx, ["ketamine-outcomes-summaries.zip"], ui.zip_bytes_builder(ctx))()
    out = tmp_path / "cli"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--site", "S1", "--site", "S2",
                     "--scope", "S1"]) == 0
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        for name in [*export.SUMMARY_FILES, export.PROVENANCE_FILE]:
            assert zf.read(name) == (out / name).read_bytes(), name
    log = audit.read_log(audit.audit_path(db))
    assert list(log["action"]) == ["download", "export"]
    first = log.iloc[0]
    assert (first["email"], first["sites"], first["files"], first["query"]) == (
        "director@s1.org", "S1", "ketamine-outcomes-summaries.zip", "site=S1")
    # the command line drops S2 as the dashboard does, so its provenance.json (compared above) is the same
    provenance = json.loads((out / export.PROVENANCE_FILE).read_text())
    assert provenance["filters"]["site"] == ["S1"]
    assert provenance["command_line_flags"] == ["--site", "S1", "--scope", "S1"]


def test_a_directors_report_download_is_made_within_their_sites(db, tmp_path):
    """The sidebar's 'Download report (PDF)' for a site director once failed (MediaFileStorageError 'rows': the
    cover read the whole data set's counts, which a scoped provenance leaves out) while the log recorded the
    report. The button's data callable gives their report, naming no other site, and records it."""
    import subprocess

    person = access.person_from_claims(DIRECTOR)
    settings = access.apply_scope(Settings(min_cell=0), person)
    ctx = ui.PageContext(db_path=db, signature=store.database_signature(db),
                         settings=settings, person=person, audit_log=audit.audit_path(db), page="overview")
    pdf = ui.audited(ctx, ["ketamine-outcomes-report.pdf"], ui.report_bytes_builder(ctx), action="report")()
    assert pdf.startswith(b"%PDF")
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], check=True, capture_output=True,
                          text=True).stdout.replace("\u00a0", " ")
    assert not re.findall(r"\bS[2-6]\b", text), "another site is named in a director's report"
    assert "Sites S1 only: this report covers the sites its reader may see" in re.sub(r"\s+", " ", text)
    log = audit.read_log(audit.audit_path(db))
    assert list(log["action"]) == ["report"]
    assert (log["email"].iloc[0], log["sites"].iloc[0], log["files"].iloc[0]) == (
        "director@s1.org", "S1", "ketamine-outcomes-report.pdf")


def test_a_viewer_gets_no_benchmark_download(db):
    """The benchmark page once drew its own benchmark.csv button for anyone limited to some sites, viewers
    included (access.md: viewers may not download)."""
    at = signed_in(VIEWER)
    at.run()
    at.switch_page("views/benchmark.py").run()
    assert not at.exception and not at.error
    assert [b.proto.label for b in at.get("download_button")] == []
    assert any("Downloads are for site directors" in c.value for c in at.caption)


def test_a_directors_benchmark_download_is_audited_and_names_only_their_sites(db, tmp_path, deferred_downloads):
    """A site director's benchmark.csv from /benchmark was never written to the audit log (the page's own
    button bypassed `ui.audited`). It now goes through the download helper of every page: recorded, and the
    command line's bytes for the same scope."""
    from dashboard import cli

    at = signed_in(DIRECTOR)
    at.run()
    at.switch_page("views/benchmark.py").run()
    assert not at.exception and not at.error
    buttons = {b.proto.label: b.proto.deferred_file_id for b in at.get("download_button")}
    assert set(buttons) == {"benchmark.csv", "All summaries (zip)", ui.REPORT_LABEL}
    got = deferred_downloads[buttons["benchmark.csv"]]()
    out = tmp_path / "cli"
    assert cli.main(["export", "--db", str(db), "--out", str(out), "--scope", "S1", "--instrument", "matched"]) == 0
    assert got == (out / "benchmark.csv").read_bytes()
    assert {line.split(b",")[0] for line in got.splitlines()[1:]} == {b"S1"}
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(deferred_downloads[buttons["All summaries (zip)"]]())) as zf:
        assert zf.read("benchmark.csv") == got
    log = audit.read_log(audit.audit_path(db))
    assert list(log["action"]) == ["view", "view", "download", "export", "download"]
    download = log.iloc[2]
    assert (download["email"], download["role"], download["sites"], download["page"], download["files"],
            download["query"]) == ("director@s1.org", "site_director", "S1", "benchmark", "benchmark.csv",
                                   "instrument=matched")
