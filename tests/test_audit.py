"""The audit log (append-only, beside the database, survives imports), its reading, filtering and CSV, the
command line's records of imports and exports, and `serve` refusing a public address without sign-in."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from dashboard import cli
from dashboard.analysis import access
from dashboard.reports import audit

DIRECTOR = access.Person(subject="u-1", email="ana@x.org", role="site_director", sites=("S1",), source="claims")
ADMIN = access.Person(subject="u-2", email="boss@x.org", role="network_admin", sites=(), source="claims")
T0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=timezone.utc)


def test_the_log_sits_beside_the_database(tmp_path, monkeypatch):
    monkeypatch.delenv(audit.AUDIT_ENV, raising=False)
    assert audit.audit_path(tmp_path / "clinic.duckdb") == tmp_path / "clinic.audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_ENV, str(tmp_path / "elsewhere.jsonl"))
    assert audit.audit_path(tmp_path / "clinic.duckdb") == tmp_path / "elsewhere.jsonl"


def test_entries_are_appended_and_read_back(tmp_path):
    log = tmp_path / "a.audit.jsonl"
    audit.record(log, audit.make_entry(person=DIRECTOR, action="view", page="response", query="site=S1&route=IV",
                                       import_id=3, now=T0))
    audit.record(log, audit.make_entry(person=ADMIN, action="download", page="overview", files=["cohort.csv"],
                                       import_id=3, now=T0.replace(hour=11)))
    lines = log.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {
        "time": "2026-11-29T10:00:00.000000Z", "subject": "u-1", "email": "ana@x.org", "role": "site_director",
        "sites": "S1", "page": "response", "action": "view", "files": "", "query": "site=S1&route=IV",
        "import_id": 3, "source": "claims",
    }
    assert json.loads(lines[1])["sites"] == "*"
    df = audit.read_log(log)
    assert list(df["action"]) == ["view", "download"] and list(df["import_id"]) == [3, 3]
    assert audit.log_csv_bytes(df).decode() == (
        "time,subject,email,role,sites,page,action,files,query,import_id,source\n"
        "2026-11-29T10:00:00.000000Z,u-1,ana@x.org,site_director,S1,response,view,,site=S1&route=IV,3,claims\n"
        "2026-11-29T11:00:00.000000Z,u-2,boss@x.org,network_admin,*,overview,download,cohort.csv,,3,claims\n"
    )
    assert stat.S_IMODE(os.stat(log).st_mode) & 0o007 == 0  # not readable by everyone


def test_filters_by_person_action_and_time(tmp_path):
    log = tmp_path / "f.jsonl"
    for hour, person, action in ((9, DIRECTOR, "view"), (10, ADMIN, "view"), (11, DIRECTOR, "download")):
        audit.record(log, audit.make_entry(person=person, action=action, now=T0.replace(hour=hour)))
    df = audit.read_log(log)
    assert list(audit.filter_log(df, people=["ana@x.org"])["action"]) == ["view", "download"]
    assert list(audit.filter_log(df, actions=["view"])["email"]) == ["ana@x.org", "boss@x.org"]
    window = audit.filter_log(df, start=T0, end=T0.replace(hour=11))
    assert list(window["email"]) == ["boss@x.org"]  # start inclusive, end exclusive
    naive = audit.filter_log(df, start=datetime(2026, 11, 29, 11, 0))
    assert list(naive["action"]) == ["download"]


def test_a_damaged_line_stays_visible(tmp_path):
    log = tmp_path / "d.jsonl"
    audit.record(log, audit.make_entry(person=DIRECTOR, action="view", now=T0))
    with open(log, "ab") as fh:
        fh.write(b'{"time": "2026-11-29T1')
    df = audit.read_log(log)
    assert list(df["action"]) == ["view", "unreadable"] and df["page"].iloc[1] == "line 2"


def test_a_missing_log_is_empty_and_an_unwritable_one_raises(tmp_path):
    assert audit.read_log(tmp_path / "none.jsonl").empty
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # running as root: a read-only folder does not stop root
            target = tmp_path / "is_a_dir.jsonl"
            target.mkdir()
        else:
            target = folder / "log.jsonl"
        with pytest.raises(audit.AuditError, match="cannot be written.*Nothing was shown or saved"):
            audit.record(target, audit.make_entry(person=DIRECTOR, action="view"))
        with pytest.raises(audit.AuditError):
            audit.check_writable(target)
    finally:
        folder.chmod(0o700)
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.make_entry(person=DIRECTOR, action="peek")



def test_checking_the_log_is_writable_leaves_nothing_behind(tmp_path):
    # a command refused after the check (an import of a bad export) must not leave an empty log or folders
    audit.check_writable(tmp_path / "new" / "deeper" / "log.jsonl")
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "log.jsonl"
    existing.write_text('{"action": "view"}\n')
    audit.check_writable(existing)
    assert existing.read_text() == '{"action": "view"}\n'


def test_the_command_line_records_imports_and_exports_and_the_log_survives_imports(sample_export, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.delenv(audit.AUDIT_ENV, raising=False)
    db = tmp_path / "net.duckdb"
    assert cli.main(["import", str(sample_export), "--db", str(db), "--quiet"]) == 0
    assert cli.main(["export", "--db", str(db), "--out", str(tmp_path / "o"), "--scope", "S1", "--route", "IV"]) == 0
    assert cli.main(["import", str(sample_export), "--db", str(db), "--quiet"]) == 0  # replaces the database
    df = audit.read_log(tmp_path / "net.audit.jsonl")
    assert list(df["action"]) == ["import", "export", "import"]
    assert list(df["import_id"]) == [1, 1, 2]
    assert set(df["page"]) == {"command line"} and set(df["source"]) == {"local"}
    assert df["subject"].iloc[0].startswith("local:")
    export_row = df.iloc[1]
    assert export_row["sites"] == "S1" and export_row["query"] == "route=IV"
    assert export_row["files"].split() == ["cohort.csv", "response_by_route.csv", "time_to_relief.csv",
                                           "time_to_relief_curve.csv", "side_effects.csv", "maintenance.csv",
                                           "rems.csv", "adjusted_response.csv", "benchmark.csv", "headline.csv",
                                           "trend.csv", "provenance.json"]
    assert df["sites"].iloc[0] == "*"


def test_an_export_that_cannot_be_recorded_does_not_happen(sample_db, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "dir.jsonl"
    blocker.mkdir()  # a folder where the log file should be: no entry can be appended
    monkeypatch.setenv(audit.AUDIT_ENV, str(blocker))
    out = tmp_path / "o"
    assert cli.main(["export", "--db", str(sample_db), "--out", str(out)]) == cli.EXIT_REFUSED
    assert "audit log" in capsys.readouterr().err and not out.exists()


def test_serve_refuses_a_public_address_without_sign_in(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli.main(["serve", "--address", "0.0.0.0"]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without sign-in" in err and "[auth]" in err
    assert cli.sign_in_configured() == (False, "no .streamlit/secrets.toml with an [auth] section was found")
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\ncookie_secret = "s"\n', encoding="utf-8")
    ok, why = cli.sign_in_configured()
    assert not ok and why == f"{secrets} [auth] lacks client_id, client_secret, server_metadata_url"
    secrets.write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\ncookie_secret = "s"\nclient_id = "c"\n'
                       'client_secret = "t"\nserver_metadata_url = "http://idp/.well-known/openid-configuration"\n',
                       encoding="utf-8")
    assert cli.sign_in_configured() == (True, str(secrets))


def test_serve_checks_the_access_file_first(tmp_path, capsys):
    bad = tmp_path / "access.csv"
    bad.write_text("email,role,sites\nana@x.org,boss,S1\n", encoding="utf-8")
    assert cli.main(["serve", "--access-file", str(bad)]) == cli.EXIT_REFUSED
    assert f"{bad}, line 2, column role: 'boss' is not a role" in capsys.readouterr().err
