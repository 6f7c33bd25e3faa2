"""Sign-in through a real OpenID Connect provider, in a real browser.

`oidc-provider-mock` runs in-process on 127.0.0.1 with users whose claims carry `role` and `sites`;
`ketamine-outcomes serve` runs from a folder whose `.streamlit/secrets.toml` points at it; Playwright
drives Debian's Chromium through the provider's own sign-in page, as a person would. An S1 site director
opening a link that names S2 sees S2 named and dropped and nothing else of it, downloads exactly the
command-line export with the same scope, and a network admin then finds all of it in the audit log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dashboard import cli
from dashboard.reports import audit
from serving import IDLE, dashboard_command, free_port, served

pytestmark = pytest.mark.browser

USERS = {
    "director-s1": {"email": "director@s1.example", "role": "site_director", "sites": ["S1"]},
    "network-admin": {"email": "admin@network.example", "role": "network_admin"},
}


@pytest.fixture(scope="module")
def provider():
    from oidc_provider_mock import User, run_server_in_thread

    with run_server_in_thread(port=0, user_claims=[User(sub=sub, claims=c) for sub, c in USERS.items()]) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def signed_server(provider, sample_db, tmp_path_factory):
    """`ketamine-outcomes serve` started from a folder with `[auth]` in .streamlit/secrets.toml."""
    home = tmp_path_factory.mktemp("signin")
    db = home / "network.duckdb"
    shutil.copy(sample_db, db)
    port = free_port()  # the provider is told the redirect address before the dashboard starts
    base = f"http://127.0.0.1:{port}"
    (home / ".streamlit").mkdir()
    (home / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{base}/oauth2callback"\n'
        'cookie_secret = "a-long-random-string-for-the-tests"\n'
        'client_id = "ketamine-outcomes"\n'
        'client_secret = "not-a-secret-in-tests"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in (audit.AUDIT_ENV, "KETAMINE_OUTCOMES_ACCESS")}
    with served(dashboard_command(db), home / "serve.log", port=port, env=env, cwd=home):
        yield base, db


def settle(pg) -> None:  # noqa: ANN001
    pg.wait_for_selector(IDLE)
    pg.wait_for_timeout(700)
    pg.wait_for_selector(IDLE)


def sign_in(pg, base: str, sub: str) -> None:  # noqa: ANN001
    """Through the provider's own page: 'Log in', then the user's button."""
    pg.goto(base)
    settle(pg)
    pg.get_by_role("button", name="Log in").click()
    pg.wait_for_url(lambda url: not url.startswith(base), timeout=60_000)
    pg.get_by_role("button", name=sub, exact=True).click()
    pg.wait_for_url(lambda url: url.startswith(base) and "oauth2callback" not in url, timeout=60_000)
    pg.wait_for_selector("h1:has-text('Overview')")
    settle(pg)


def test_an_s1_director_signed_in_at_the_provider_never_sees_s2_and_everything_is_audited(
        signed_server, browser, tmp_path):
    base, db = signed_server
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    try:
        # before sign-in: nothing of the data, on any page
        pg.goto(f"{base}/response?site=S2")
        settle(pg)
        body = pg.locator("[data-testid='stApp']").inner_text()
        assert "Sign in to see the dashboard" in body and "S2" not in body
        assert pg.locator(".js-plotly-plot").count() == 0

        sign_in(pg, base, "director-s1")
        sidebar = pg.locator("[data-testid='stSidebar']").inner_text()
        assert "director@s1.example, site director of S1" in sidebar

        # a shared link naming S2 (and S1): S2 is named and dropped, nothing else of it anywhere (the link opens
        # the Response page's breakdown by site)
        pg.goto(f"{base}/response?site=S2&site=S1&view=breakdown")
        settle(pg)
        pg.locator(".js-plotly-plot").first.wait_for(state="visible")
        text = pg.locator("[data-testid='stApp']").inner_text()
        assert "'S2' is not among the sites you may see; dropped" in text
        assert text.count("S2") == 1
        assert pg.locator("[data-testid='stException']").count() == 0
        # the site list holds S1 (chosen by the link) and offers nothing else
        site_box = pg.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").nth(1)
        assert "S1" in site_box.inner_text()
        site_box.click()
        # S1 is chosen and is the director's only site: the list offers no other site (it may be empty)
        options = pg.locator("[role='option']").all_inner_texts()
        assert not any("S2" in o or "S3" in o for o in options)
        pg.keyboard.press("Escape")
        # hover text comes from the figures' data: no S2 in any chart's data on this page
        charts = pg.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                             ".map(el => JSON.stringify(el.data))")
        assert charts and all("S2" not in c for c in charts)
        assert any("S1" in c for c in charts)  # the breakdown by site shows their own site

        # the download is the command-line export with the same scope, byte for byte
        pg.goto(f"{base}/?site=S1")
        settle(pg)
        with pg.expect_download() as info:
            pg.get_by_role("button", name="cohort.csv").click()
        got = Path(info.value.path()).read_bytes()
        out = tmp_path / "cli"
        # the link names no questionnaire and S1 mixes diagnoses: the dashboard's default is matched
        assert cli.main(["export", "--db", str(db), "--out", str(out), "--site", "S1", "--scope", "S1",
                         "--instrument", "matched"]) == 0
        assert got == (out / "cohort.csv").read_bytes()

        # sign out through the provider's end-session page: the session is over
        pg.get_by_role("button", name="Log out").click()
        try:
            pg.get_by_role("button", name="End session").click(timeout=15_000)
        except Exception:  # noqa: BLE001 - a provider may end the session without asking
            pass
        pg.wait_for_url(lambda url: url.startswith(base), timeout=60_000)
        settle(pg)
        assert "Sign in to see the dashboard" in pg.locator("[data-testid='stApp']").inner_text()

    finally:
        context.close()

    # the network admin, at their own browser, reads every view and the download in the audit log
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    try:
        sign_in(pg, base, "network-admin")
        pg.goto(f"{base}/audit")
        settle(pg)
        pg.wait_for_selector("h1:has-text('Audit log')")
        with pg.expect_download() as info:
            pg.get_by_role("button", name="Download these entries (audit.csv)").click()
        csv_text = Path(info.value.path()).read_text(encoding="utf-8")
        assert "director@s1.example" in csv_text
    finally:
        context.close()

    log = audit.read_log(audit.audit_path(db))
    director = log[log["email"] == "director@s1.example"]
    views = director[director["action"] == "view"]
    # the settings in force are recorded, the dashboard's matched default included
    assert ("response", "site=S1&instrument=matched") in set(zip(views["page"], views["query"]))
    assert set(director["sites"]) == {"S1"} and set(director["role"]) == {"site_director"}
    downloads = director[director["action"] == "download"]
    assert list(downloads["files"]) == ["cohort.csv"] and list(downloads["query"]) == ["site=S1&instrument=matched"]
    admin = log[log["email"] == "admin@network.example"]
    assert "audit.csv" in set(admin["files"]) and set(admin["sites"]) == {"*"}
    assert "S2" not in " ".join(director["query"]) + " ".join(director["sites"])
