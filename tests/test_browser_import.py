"""The Import page in a real browser: a zip of identified records is uploaded, checked, imported, and the
running dashboard shows the new data without a restart (Playwright driving Debian's Chromium)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import expect

from dashboard.data import store, uploads
from serving import IDLE, dashboard_command, served
from test_browser import open_url, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture
def import_server(sample_db: Path, tmp_path: Path):
    """`ketamine-outcomes serve` on a copy of the sample database (the test replaces it) and a fresh key."""
    db = tmp_path / "outcomes.duckdb"
    shutil.copy(sample_db, db)
    key = tmp_path / "clinic.key"
    env = dict(os.environ, KETAMINE_OUTCOMES_KEY=str(key))
    with served(dashboard_command(db), tmp_path / "serve.log", env=env) as base:
        yield base, db, key


def test_upload_a_records_zip_check_and_import(import_server, page, tmp_path):
    base, db, key = import_server
    zipped = tmp_path / "records.zip"
    zipped.write_bytes(uploads.zip_folder_bytes(store.package_folder("dashboard.example_records")))
    open_url(page, f"{base}/import")
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_role("heading", name="Import")).to_be_visible()
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(zipped))
    expect(main.get_by_text("records.zip")).to_be_visible()
    wait_idle(page)
    main.get_by_role("button", name="Check the files").click()
    wait_idle(page)
    expect(main.get_by_text("No problems found.")).to_be_visible()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    main.get_by_role("button", name="Import into the dashboard").click()
    wait_idle(page)
    expect(main.get_by_text("Imported. The dashboard now shows the new data.")).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == 60
    # the same running dashboard, another page: the new data set, no restart
    page.locator("[data-testid='stSidebar']").get_by_role("link", name="Data and definitions").click()
    wait_idle(page)
    expect(main.get_by_text("The whole data set holds 60 patients", exact=False)).to_be_visible()
    page.wait_for_selector(IDLE)
