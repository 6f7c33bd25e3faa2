"""The Import page in Streamlit's AppTest: identified records (a zip) or a ready export are checked, every
problem is listed in a table, and only a clean upload is imported; the dashboard then shows the new data,
as after `ketamine-outcomes import`. The page is left out when `ui.may_import()` says no."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.app import ui
from dashboard.data import store, uploads

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app" / "main.py"
PAGE = "views/import_data.py"


@pytest.fixture
def db(sample_db: Path, tmp_path: Path) -> Path:
    """A copy of the sample database: these tests replace it."""
    copy = tmp_path / "db" / "outcomes.duckdb"
    copy.parent.mkdir()
    shutil.copy(sample_db, copy)
    return copy


@pytest.fixture
def app(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(ui.DB_ENV, str(db))
    monkeypatch.setenv(ui.KEY_ENV, str(tmp_path / "clinic.key"))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def patients(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM patients").fetchone()[0]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_records_zip_checked_then_imported_and_the_dashboard_switches(app, db, tmp_path):
    assert patients(db) == 2000
    assert app.title[0].value == "Import" and app.radio(key="import_kind").value == "records"
    assert button(app, "Check the files").disabled
    records = store.package_folder("dashboard.example_records")
    app.file_uploader(key="import_files").upload("records.zip", uploads.zip_folder_bytes(records), "application/zip")
    app.run()
    button(app, "Check the files").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.success[0].value.startswith("**No problems found.**")
    assert stat.S_IMODE((tmp_path / "clinic.key").stat().st_mode) == 0o600
    assert patients(db) == 2000  # checked, not imported yet
    button(app, "Import into the dashboard").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert patients(db) == 60
    assert app.success[0].value.startswith("Imported. The dashboard now shows the new data. Imported 60 patients")
    # the running dashboard switched: the cohort the entry script computed is the new data set's
    app.switch_page("views/data.py").run()
    assert not app.exception
    history = ui.load_import_history(app.session_state[ui.CONTEXT_KEY].signature)
    assert history.iloc[0]["source"] == "upload: adverse_events.csv, patients.csv, questionnaires.csv, sessions.csv"
    assert int(history.iloc[0]["patients"]) == 60


def test_problems_are_listed_and_nothing_is_imported(app, db, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(store.package_folder("dashboard.example_records"), records,
                    ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    lines = (records / "patients.csv").read_text().splitlines()
    head = lines[1].split(",")
    head[3] = "03/04/1980"  # birth_date, ambiguous
    lines[1] = ",".join(head)
    (records / "patients.csv").write_text("\n".join(lines) + "\n")
    uploader = app.file_uploader(key="import_files")
    uploader.set_value([(p.name, p.read_bytes(), "text/csv") for p in sorted(records.glob("*.csv"))])
    app.run()
    button(app, "Check the files").click().run()
    assert not app.exception
    assert app.error[0].value.startswith("**1 problem found: nothing was imported.**")
    table = app.dataframe[0].value
    assert table.to_dict("records") == [{
        "file": "patients.csv", "table": "patients", "line": "2", "column": "birth_date", "value": "",
        "problem": "this date could not be read: ambiguous date (day/month or month/day?): name the format in the mapping's [formats], "
                   'e.g. date = "%d/%m/%Y"'}]
    assert "03/04/1980" not in table.to_string()
    # besides the sidebar's PDF report button, which is on every page
    assert [d.proto.label for d in app.get("download_button") if d.proto.label != "Download report (PDF)"] == [
        "Download the problems (CSV)"]
    assert [b.label for b in app.button if b.label == "Import into the dashboard"] == []
    assert patients(db) == 2000


def test_ready_export_files_are_imported(app, db):
    export = store.example_export_dir()
    app.radio(key="import_kind").set_value("export").run()
    app.file_uploader(key="import_files").set_value(
        [(p.name, p.read_bytes(), "text/csv") for p in sorted(export.glob("*.csv"))])
    app.run()
    button(app, "Check the files").click().run()
    assert app.success[0].value.startswith("**No problems found.**")
    button(app, "Import into the dashboard").click().run()
    assert not app.exception and not app.error
    assert patients(db) == 5


def test_only_network_admins_see_the_import_page_when_sign_in_is_configured(db, monkeypatch):
    from dashboard.reports import audit
    from test_access_app import ADMIN, AUTH, DIRECTOR

    monkeypatch.setenv(ui.DB_ENV, str(db))
    monkeypatch.delenv(audit.AUDIT_ENV, raising=False)
    for user, shown in ((DIRECTOR, False), (ADMIN, True)):
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.secrets["auth"] = AUTH
        at.user = user
        at.run()
        assert not at.exception
        if shown:
            at.switch_page(PAGE).run()
            assert not at.exception and at.title[0].value == "Import"
        else:
            with pytest.raises(ValueError, match="Could not find a navigation page for .*import_data.py"):
                at.switch_page(PAGE)
            at.switch_page("views/data.py").run()  # the other pages are still there
            assert not at.exception


def test_a_database_the_dashboard_cannot_show_can_be_replaced_on_the_import_page(db, tmp_path, monkeypatch):
    # a database built by an older version (a derived table missing) stopped every page, the Import page too,
    # although importing again is what its message asks for
    with duckdb.connect(str(db)) as con:
        con.execute("DROP TABLE esketamine_clinic_sessions")
    monkeypatch.setenv(ui.DB_ENV, str(db))
    monkeypatch.setenv(ui.KEY_ENV, str(tmp_path / "clinic.key"))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert "The database could not be opened" in at.error[0].value
    assert "on the *Import* page" in at.markdown[-1].value
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Import"
    assert "The current data cannot be shown" in at.warning[0].value and "older version" in at.warning[0].value
    records = store.package_folder("dashboard.example_records")
    at.file_uploader(key="import_files").upload("records.zip", uploads.zip_folder_bytes(records), "application/zip")
    at.run()
    button(at, "Check the files").click().run()
    button(at, "Import into the dashboard").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert patients(db) == 60 and not at.warning
    at.switch_page("views/overview.py").run()  # the dashboard shows the new data
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Overview"


def test_a_ready_export_checked_as_records_says_which_choice_to_make(app, db, tmp_path):
    export = store.example_export_dir()
    uploader = app.file_uploader(key="import_files")
    uploader.set_value([(p.name, p.read_bytes(), "text/csv") for p in sorted(export.glob("*.csv"))])
    app.run()
    button(app, "Check the files").click().run()
    assert not app.exception
    assert app.error[0].value.startswith("**1 problem found: nothing was imported.**")
    table = app.dataframe[0].value
    assert table.to_dict("records") == [{"file": "", "table": "", "line": "", "column": "", "value": "",
                                         "problem": uploads.READY_EXPORT_HINT}]
    assert [i.value for i in app.info if "pseudonym key" in i.value] == []  # no key made for nothing
    assert patients(db) == 2000
