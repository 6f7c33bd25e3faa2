"""The dashboard in a real browser: Playwright drives Debian's Chromium against `ketamine-outcomes serve`.

Pages open from filtered links, a filter changed in the sidebar lands in the URL, and the CSV and zip
downloads are byte for byte what `ketamine-outcomes export` writes for the same filters.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from dashboard.reports import export
from dashboard.analysis.settings import Settings
from dashboard.app import ui
from dashboard.charts import colors
from serving import IDLE, IPHONE, dashboard_command, served

pytestmark = pytest.mark.browser

RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
PAGES = {
    "": "Overview",
    "response": "Response by route",
    "relief": "Time to relief",
    "side-effects": "Side effects",
    "maintenance": "Maintenance",
    "benchmark": "Network benchmark",
    "data": "Data and definitions",
}


@pytest.fixture(scope="session")
def server(sample_db: Path, tmp_path_factory: pytest.TempPathFactory):
    """`ketamine-outcomes serve` on a free port; the whole process group is stopped afterwards."""
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with served(dashboard_command(sample_db), log) as base:
        yield base


def wait_idle(pg) -> None:  # noqa: ANN001
    """Wait until the script run an action started has finished."""
    try:
        pg.wait_for_selector(RUNNING, timeout=1500)
    except Exception:  # noqa: BLE001 - a fast rerun may finish before we look
        pass
    pg.wait_for_selector(IDLE)
    pg.wait_for_timeout(300)


def open_url(pg, url: str) -> None:  # noqa: ANN001
    pg.goto(url)
    pg.wait_for_selector(IDLE)
    pg.wait_for_selector("h1")
    pg.wait_for_timeout(500)
    pg.wait_for_selector(IDLE)


def assert_no_exception(pg) -> None:  # noqa: ANN001
    assert pg.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in pg.content()


def expect_chips(box, words: list[str]) -> None:  # noqa: ANN001
    """The chosen options a multiselect shows, as on screen (retried while the sidebar redraws)."""
    expect(box.locator(".react-aria-ComboBox [data-tag]")).to_have_text(words)


def query(pg) -> dict[str, list[str]]:  # noqa: ANN001
    return parse_qs(urlparse(pg.url).query)


def cli_export(db: Path, out: Path, settings: Settings) -> Path:
    """Run the real command line and return its output folder."""
    result = subprocess.run(
        [sys.executable, "-m", "dashboard.cli", "export", "--db", str(db), "--out", str(out), *settings.to_args()],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


# --- pages and links ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PAGES))
def test_each_page_opens_from_a_filtered_link(server, page, path):
    link = f"{server}/{path}?route=IV&route=IN&site=S2&instrument=PHQ9"
    open_url(page, link)
    assert_no_exception(page)
    assert page.locator("h1").first.inner_text() == PAGES[path]
    assert query(page) == {"route": ["IV", "IN"], "site": ["S2"], "instrument": ["PHQ9"]}
    assert urlparse(page.url).path == f"/{path}"
    sidebar = page.locator("[data-testid='stSidebar']")
    assert "IV infusion, Intranasal; site S2" in sidebar.inner_text()
    # the filter chips read words; the link keeps the codes (issue 11)
    route_box = sidebar.locator("[data-testid='stMultiSelect']").first
    expect_chips(route_box, ["IV infusion", "Intranasal"])
    assert sidebar.get_by_role("combobox", name="Questionnaire").input_value() == "PHQ-9 (depression)"
    if path not in ("data",):
        # Plotly draws in the browser after the script has finished: wait for it rather than race it
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)


def test_changing_a_filter_updates_the_page_and_the_link(server, page):
    open_url(page, f"{server}/response")
    sidebar = page.locator("[data-testid='stSidebar']")
    assert "Cohort: 2,000 patients" in sidebar.inner_text()
    route = sidebar.locator("[data-testid='stMultiSelect']").first
    route.click()
    page.keyboard.type("Subling")  # the list offers words
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    expect(sidebar).to_contain_text("Sublingual · ")  # the cohort line in words; the link keeps the code
    assert_no_exception(page)
    assert query(page) == {"route": ["SL"]}
    expect_chips(route, ["Sublingual"])
    assert "Cohort: 2,000 patients" not in sidebar.inner_text()
    # the sidebar's navigation keeps the filters
    sidebar.get_by_role("link", name="Time to relief").click()
    wait_idle(page)
    page.wait_for_selector("h1:has-text('Time to relief')")
    assert urlparse(page.url).path == "/relief"
    assert query(page) == {"route": ["SL"]}
    assert "Sublingual · " in page.locator("[data-testid='stSidebar']").inner_text()


def test_a_closed_section_keeps_its_settings(server, page):
    """"More filters" and "Analysis settings" are drawn only while open (each widget costs every rerun in
    the browser); a setting chosen there stays in force, in the link and the cohort line once the section is
    closed, across a page switch, and shows again when it is reopened."""
    open_url(page, f"{server}/response")
    sidebar = page.locator("[data-testid='stSidebar']")
    assert sidebar.get_by_text("Sex", exact=True).count() == 0  # closed: not drawn
    sidebar.get_by_text("More filters").click()
    wait_idle(page)
    sex = sidebar.locator("[data-testid='stMultiSelect']").nth(3)  # route, site, diagnosis, then sex
    expect(sex.locator("input")).to_have_attribute("placeholder", "Any")
    sex.locator("input").click()
    page.get_by_role("option", name="Female").click()
    page.keyboard.press("Escape")
    wait_idle(page)
    assert query(page) == {"sex": ["F"]}
    sidebar.get_by_text("More filters").click()  # close it
    wait_idle(page)
    assert sidebar.get_by_text("Sex", exact=True).count() == 0
    assert query(page) == {"sex": ["F"]}
    cohort = sidebar.inner_text()
    assert "emale" in cohort
    sidebar.get_by_role("link", name="Time to relief").click()
    wait_idle(page)
    page.wait_for_selector("h1:has-text('Time to relief')")
    assert query(page) == {"sex": ["F"]}
    assert "emale" in page.locator("[data-testid='stSidebar']").inner_text()
    sidebar.get_by_text("More filters").click()
    wait_idle(page)
    expect_chips(sidebar.locator("[data-testid='stMultiSelect']").nth(3), ["Female"])
    assert_no_exception(page)


def test_the_log_rank_section_draws_its_tests_when_opened(server, page):
    """The Time to relief page's pairwise log-rank tests are computed and drawn only once their section is
    opened (a click on its header), and a new session opens with it closed."""
    open_url(page, f"{server}/relief?route=IV&route=IN&route=PO")
    main = page.locator("[data-testid='stMain']")
    section = main.locator("[data-testid='stExpander']").filter(has_text="log-rank")
    assert main.get_by_text("IV infusion vs Intranasal").count() == 0  # closed: not drawn
    section.get_by_text("Comparing routes").click()
    wait_idle(page)
    expect(section.locator("[data-testid='stTable']")).to_contain_text("IV infusion vs Intranasal")
    assert section.locator("[data-testid='stTable'] tbody tr").count() == 3  # every pair of three routes
    page.goto(f"{server}/relief?route=IV&route=IN&route=PO")  # a new session: closed again
    page.wait_for_selector(IDLE)
    expect(main.get_by_text("IV infusion vs Intranasal")).to_have_count(0)
    assert_no_exception(page)


def test_a_bad_link_shows_a_notice_not_a_traceback(server, page):
    open_url(page, f"{server}/maintenance?route=IV&route=XX&window=soon")
    assert_no_exception(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Part of this link could not be used" in body
    assert "route: 'XX' is not a route" in body
    assert "window: 'soon' is not a whole number" in body
    assert query(page) == {"route": ["IV"]}


def test_an_empty_cohort_shows_a_message(server, page):
    open_url(page, f"{server}/relief?site=S1&sex=X&age_band=75%2B&from_quarter=2023-Q1&to_quarter=2023-Q1")
    assert_no_exception(page)
    assert "No patients match these filters" in page.locator("[data-testid='stMain']").inner_text()


# --- downloads ------------------------------------------------------------------------------------------------------


def download(page, label: str) -> bytes:  # noqa: ANN001
    return download_named(page, label)[1]


def download_named(page, label: str) -> tuple[str, bytes]:  # noqa: ANN001
    """(the file name the browser is offered, the bytes)."""
    with page.expect_download() as info:
        page.get_by_role("button", name=label).click()
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def test_csv_downloads_equal_the_command_line_export(server, page, sample_db, tmp_path):
    params = "route=IV&route=IN&relief=mcid&min_cell=5"
    # the link names no questionnaire and the cohort mixes diagnoses: the dashboard's default is matched,
    # which the command line is told explicitly (docs/choices.md)
    settings = Settings.from_query_params(parse_qs(params)).replace(instrument="matched")
    expected = cli_export(sample_db, tmp_path / "cli", settings)
    open_url(page, f"{server}/relief?{params}")
    assert_no_exception(page)
    tag = "route-IV-IN__instrument-matched__relief-mcid__min-cell-5"
    for name in ("time_to_relief.csv", "time_to_relief_curve.csv"):
        file_name, got = download_named(page, name)
        assert got == (expected / name).read_bytes(), name
        # the name carries the cohort, so two downloads for different filters never share a name
        assert file_name == name.replace(".csv", f"__{tag}.csv")
    file_name, zipped = download_named(page, "All summaries (zip)")
    assert file_name == f"ketamine-outcomes-summaries__{tag}.zip"
    now = datetime.now()
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        assert sorted(zf.namelist()) == sorted([*export.SUMMARY_FILES, export.PROVENANCE_FILE])
        for name in [*export.SUMMARY_FILES, export.PROVENANCE_FILE]:
            assert zf.read(name) == (expected / name).read_bytes(), name
            # dated when it was made (the server's local time), not 1980
            assert abs((now - datetime(*zf.getinfo(name).date_time)).total_seconds()) < 600


def test_a_file_of_a_part_not_shown_downloads_the_command_lines_bytes(server, page, sample_db, tmp_path):
    """The Response page opens on its rates; the adjusted model's file is computed only when its button is
    clicked (in the server's download thread, not the page's script), and is the command line's file."""
    params = "route=IV&route=SC&min_cell=7"
    settings = Settings.from_query_params(parse_qs(params)).replace(instrument="matched")  # as the first test
    expected = cli_export(sample_db, tmp_path / "cli", settings)
    open_url(page, f"{server}/response?{params}")
    assert_no_exception(page)
    file_name, got = download_named(page, "adjusted_response.csv")
    assert got == (expected / "adjusted_response.csv").read_bytes()
    assert file_name == "adjusted_response__route-IV-SC__instrument-matched__min-cell-7.csv"
    assert_no_exception(page)


def test_a_changed_filter_changes_the_download(server, page, sample_db, tmp_path):
    open_url(page, f"{server}/side-effects?site=S3")
    before = download(page, "side_effects.csv")
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.locator("[data-testid='stMultiSelect']").nth(1).click()  # site
    page.keyboard.type("S4")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    expect(sidebar).to_contain_text("site S3, S4")
    assert query(page) == {"site": ["S3", "S4"]}
    after = download(page, "side_effects.csv")
    assert after != before
    expected = cli_export(sample_db, tmp_path / "cli", Settings(site=("S3", "S4")))
    assert after == (expected / "side_effects.csv").read_bytes()


def test_tables_offer_no_download_of_their_own(server, page):
    """Nothing leaves without disclosure control: summary tables are static (no toolbar at all), and the
    interactive grids that remain have no CSV download in their toolbar (disableDataExport)."""
    open_url(page, f"{server}/maintenance")
    expect(page.locator("[data-testid='stTable']").first).to_be_visible()
    assert page.locator("[data-testid='stDataFrame']").count() == 0
    assert page.locator("[data-testid='stMain'] [data-testid='stElementToolbar']").count() == 0
    open_url(page, f"{server}/esketamine-monitoring")  # its rule-breaks table is static too (issue 16)
    expect(page.locator("[data-testid='stTable']").first).to_be_visible()
    assert page.locator("[data-testid='stDataFrame']").count() == 0
    open_url(page, f"{server}/audit")  # a long list: the scrolling grid, without a download
    table = page.locator("[data-testid='stDataFrame']").first
    table.scroll_into_view_if_needed()
    table.hover()
    page.wait_for_selector("[data-testid='stElementToolbar'] button")
    labels = [b.get_attribute("aria-label") for b in page.locator("[data-testid='stElementToolbar'] button").all()]
    assert "Search" in labels
    assert not any("download" in (label or "").lower() for label in labels)


def test_the_relief_threshold_switch_lands_in_the_link(server, page):
    open_url(page, f"{server}/relief?route=IV&instrument=GAD7")
    page.locator("[data-testid='stMain']").get_by_text("minimal important change", exact=True).click()
    wait_idle(page)
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text("baseline ≥ 10")
    expect(page.locator(".js-plotly-plot").first).to_contain_text("a drop of 4+ points on GAD-7")
    assert_no_exception(page)
    assert query(page) == {"route": ["IV"], "instrument": ["GAD7"], "relief": ["mcid"]}
    assert "a drop of 4+ points on GAD-7" in page.locator(".js-plotly-plot").first.inner_text()


def test_a_tab_opens_its_part_alone_and_lands_in_the_link(server, page):
    open_url(page, f"{server}/response?route=IV&route=IN&view=comparison")
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_role("tab", selected=True)).to_have_text("Route comparison")
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    expect(page.locator(".js-plotly-plot")).to_contain_text("Difference in response rate between routes")
    main.get_by_role("tab", name="Weekly trajectory").click()
    wait_idle(page)
    expect(page.locator(".js-plotly-plot")).to_contain_text("Weekly improvement from baseline by route")
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    assert query(page) == {"route": ["IV", "IN"], "view": ["trajectory"]}
    # another page has no such part: the link drops it and no notice is raised
    page.locator("[data-testid='stSidebar']").get_by_role("link", name="Side effects").click()
    wait_idle(page)
    page.wait_for_selector("h1:has-text('Side effects')")
    expect(main.get_by_role("tab", selected=True)).to_have_text("By route and effect")
    assert query(page) == {"route": ["IV", "IN"]}
    assert "Part of this link could not be used" not in main.inner_text()
    assert_no_exception(page)


def test_on_a_phone_every_part_and_the_open_one_are_in_sight(server, browser):
    """On a phone Streamlit's tab bar scrolled sideways and left the open tab out of sight: a link to the
    Response page's breakdown opened with no tab marked on screen. There the parts wrap onto rows, each within
    the screen, the link's part marked; choosing another draws it and puts it in the link."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE, has_touch=True,
                                  is_mobile=True)
    try:
        pg = context.new_page()
        open_url(pg, f"{server}/response?route=IV&route=IN&view=breakdown")
        assert_no_exception(pg)
        main = pg.locator("[data-testid='stMain']")
        expect(main.get_by_role("tab")).to_have_count(0)
        parts = main.locator("[data-testid='stButtonGroup']").first
        shown = parts.evaluate("""g => [...g.querySelectorAll('button')].map(b => {
            const r = b.getBoundingClientRect(); return [b.innerText, r.left, r.right, b.getAttribute('aria-checked')]; })""")
        assert [text for text, *_ in shown] == ["Response and remission", "Adjusted for case mix", "Route comparison",
                                               "Weekly trajectory", "Breakdown"]
        assert all(left >= 0 and right <= 390 for _, left, right, _ in shown), shown
        assert [text for text, *_, checked in shown if checked == "true"] == ["Breakdown"]
        expect(pg.locator(".js-plotly-plot").first).to_contain_text("Response rate by site and route")
        parts.get_by_role("radio", name="Weekly trajectory").click()
        wait_idle(pg)
        expect(pg.locator(".js-plotly-plot").first).to_contain_text("Weekly improvement from baseline")  # wrapped
        assert query(pg) == {"route": ["IV", "IN"], "view": ["trajectory"]}
        assert_no_exception(pg)
    finally:
        context.close()


def test_the_relief_chart_draws_the_first_eight_weeks_until_asked_for_more(server, page):
    """Issue 11 finding 6, as drawn: the JSON's range was right but the browser autoranged the shared axis."""
    open_url(page, f"{server}/relief")
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    drawn = "() => document.querySelector('.js-plotly-plot')._fullLayout.xaxis.range[1]"
    assert page.evaluate(drawn) <= 56 + 28 + 0.5
    page.locator("[data-testid='stMain']").get_by_text("Whole follow-up", exact=True).click()
    wait_idle(page)
    page.wait_for_function(f"({drawn})() > 100")
    assert query(page) == {"days": ["all"]}  # the choice is in the link, as a code
    open_url(page, f"{server}/relief?days=all")  # and the link brings it back
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    page.wait_for_function(f"({drawn})() > 100")


def test_the_numbers_at_risk_are_drawn_whole(server, page):
    """The numbers under the first and last ticks were centred on the plot's edge and cut in half: "1,308"
    read "308". Each number is drawn whole, right of the routes' names and within the chart, wide or narrow."""
    check = """() => { const el = document.querySelector('.js-plotly-plot');
        const svg = el.querySelector('.main-svg').getBoundingClientRect();
        const names = Math.max(...[...el.querySelectorAll('.y2tick text')].map(t => t.getBoundingClientRect().right));
        return [...el.querySelectorAll('.scatterlayer .trace text')].filter(t => t.textContent)
            .map(t => { const r = t.getBoundingClientRect();
                        return [t.textContent, r.left - names, svg.right - r.right]; }); }"""
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        open_url(page, f"{server}/relief")
        page.locator(".js-plotly-plot").first.wait_for(state="visible")
        numbers = page.evaluate(check)
        assert any("," in text for text, _, _ in numbers), numbers  # thousands under day 0
        assert all(left >= 0 and right >= 0 for _, left, right in numbers), (width, [n for n in numbers if min(n[1:]) < 0])


@pytest.mark.parametrize("path", ["/maintenance?view=projection", "/maintenance?view=timing",
                                  "/side-effects?view=blood-pressure"])
def test_the_numbers_on_bars_stand_within_their_panel_on_a_phone(server, browser, path):
    """On a phone the numbers over the projected load's bars stand upright; over the tallest bar "1,241" was
    cut to "1" at the plot's top edge. Beside horizontal bars in half a phone's width, the maintenance timing's
    "27" read "2" and blood pressure's "1.0 %" read "1.0" at the right edge. Each number now lies within its
    panel's plot area."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE)
    try:
        pg = context.new_page()
        open_url(pg, f"{server}{path}")
        pg.locator(".js-plotly-plot").first.wait_for(state="visible")
        numbers = pg.evaluate("""() => { const el = document.querySelector('.js-plotly-plot');
            return [...el.querySelectorAll('.bartext')].map(t => {
                const panel = t.closest('.subplot').classList[1];  // "xy", "x2y2", …
                const plot = el.querySelector(`.draglayer .${panel} .nsewdrag`).getBoundingClientRect();
                const r = t.getBoundingClientRect();
                return [t.textContent, r.top - plot.top, plot.bottom - r.bottom, r.left - plot.left,
                        plot.right - r.right]; }); }""")
        assert len(numbers) >= 5 and any(text[0].isdigit() for text, *_ in numbers), numbers
        assert all(min(room) >= -1 for _, *room in numbers), [n for n in numbers if min(n[1:]) < -1]
        assert_no_exception(pg)
    finally:
        context.close()


@pytest.mark.parametrize("agent", [IPHONE, None], ids=["phone", "desktop"])
def test_the_monitoring_rules_are_one_chart_with_every_n_in_its_panel(server, browser, agent):
    """The six REMS rules are one chart of six panels (with six charts a warm switch to the page took 489 ms
    instead of 341 at 100,000 patients): two a row on a desktop, one a row on a phone, and every site's
    "n = …" right of 100 % lies within its panel."""
    width = 390 if agent else 1440
    context = browser.new_context(viewport={"width": width, "height": 900}, user_agent=agent)
    try:
        pg = context.new_page()
        open_url(pg, f"{server}/esketamine-monitoring")
        pg.locator(".js-plotly-plot").first.wait_for(state="visible")
        expect(pg.locator(".js-plotly-plot")).to_have_count(1)
        drawn = pg.evaluate("""() => { const el = document.querySelector('.js-plotly-plot');
            const texts = [...el.querySelectorAll('.scatterlayer .textpoint text')].filter(t => t.textContent.startsWith('n = '))
                .map(t => { const panel = t.closest('.subplot').classList[1];
                    const plot = el.querySelector(`.draglayer .${panel} .nsewdrag`).getBoundingClientRect();
                    const r = t.getBoundingClientRect();
                    return [t.textContent, r.left - plot.left, plot.right - r.right]; });
            const lefts = [...el.querySelectorAll('.draglayer .nsewdrag')].map(d => Math.round(d.getBoundingClientRect().left));
            return {texts, columns: new Set(lefts).size}; }""")
        assert drawn["columns"] == (1 if agent else 2)
        assert len(drawn["texts"]) >= 6 * 2, drawn  # at least one site and overall in each of the six panels
        assert all(left > 0 and right >= -1 for _, left, right in drawn["texts"]), drawn["texts"]
        assert_no_exception(pg)
    finally:
        context.close()


def test_every_chart_title_stands_under_the_toolbar_on_a_phone(server, browser):
    """On a touch screen Plotly's toolbar is always shown over the chart's top right; every title ran under its
    icons (and the maintenance timing's two-line title touched its four-line panel titles). On every page
    with charts, each title now starts under the toolbar and ends above the panels' titles."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE, has_touch=True,
                                  is_mobile=True)
    try:
        pg = context.new_page()
        for path in ("/", "/response", "/relief", "/side-effects", "/maintenance?view=timing",
                     "/esketamine-monitoring", "/benchmark"):
            open_url(pg, f"{server}{path}")
            pg.locator(".js-plotly-plot").first.wait_for(state="visible")
            charts = pg.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(el => {
                const bar = el.querySelector('.modebar').getBoundingClientRect();
                const title = el.querySelector('.gtitle').getBoundingClientRect();
                const panels = [...el.querySelectorAll('.annotation')].map(a => a.getBoundingClientRect())
                    .filter(a => a.bottom <= el.querySelector('.draglayer .nsewdrag').getBoundingClientRect().top);
                return [el.querySelector('.gtitle').textContent, bar.height > 0 ? title.top - bar.bottom : 99,
                        Math.min(99, ...panels.map(a => a.top - title.bottom))]; })""")
            assert charts, path
            assert all(under >= 0 and above >= 0 for _, under, above in charts), (path, charts)
            assert_no_exception(pg)
    finally:
        context.close()


def test_the_report_button_gives_the_pdf_of_the_current_view(server, page, sample_db, tmp_path):
    """The sidebar's "Download report (PDF)" on a filtered page: a PDF whose numbers are the CSV export's for
    the same filters, with its page numbers and sections in order (checks shared with tests/test_report.py)."""
    from test_report import check_structure, check_tables, pdf_pages

    params = "route=IV&route=IN&min_cell=0"
    settings = Settings.from_query_params(parse_qs(params)).replace(instrument="matched")  # the dashboard's default
    expected = cli_export(sample_db, tmp_path / "cli", settings)
    page.set_default_timeout(300_000)  # the first report also starts the server's Chromium for the charts
    open_url(page, f"{server}/maintenance?{params}")
    assert_no_exception(page)
    button = page.locator("[data-testid='stSidebar']").get_by_role("button", name="Download report (PDF)")
    with page.expect_download(timeout=300_000) as info:
        button.click()
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(Path(info.value.path()).read_bytes())
    assert info.value.suggested_filename == "ketamine-outcomes-report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    pages = pdf_pages(pdf)
    check_structure(pdf, pages)
    assert check_tables(pages, expected) == 0
    assert "IV infusion, Intranasal" in pages[0]
    assert_no_exception(page)

# --- issue 12: links that inject content or lead nowhere ------------------------------------------------------


def test_a_crafted_link_renders_no_link_and_loads_no_image(server, page):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    open_url(page, f"{server}/?%5BYour%20session%20expired%20-%20log%20in%20again%5D%28https%3A//evil.example/login%29=x"
                   "&site=%21%5Bpx%5D%28http%3A//127.0.0.1%3A8529/t.png%29&note=mail%20a%40evil.example%20www.evil.example")
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    body = main.inner_text().replace("\u2060", "")
    phishing = "[Your session expired - log in again](https://evil.example/login)"
    # The name is shown as written, shortened past 60 characters as every value from a link is.
    assert f"{phishing[:60]}… ({len(phishing)} characters): not a setting" in body
    assert "site: '![px](http://127.0.0.1:8529/t.png)' is not a site code" in body
    assert "a@evil.example www.evil.example" in body  # shown as written …
    hrefs = [a.get_attribute("href") or "" for a in page.query_selector_all("a")]
    assert not [h for h in hrefs if "evil" in h or "8529" in h]  # … but nothing is a link
    assert not page.query_selector_all("[data-testid='stMain'] img")
    assert not [u for u in requested if urlparse(u).netloc in ("127.0.0.1:8529", "evil.example")]


def test_an_unknown_page_says_page_not_found_with_links(server, page):
    open_url(page, f"{server}/RESPONSE")
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    assert "Page not found" in main.inner_text()
    assert "There is no page at “/RESPONSE”" in main.inner_text()
    # a link to every page: the eight of the cohort, Data, and (local mode: a network admin) Import and Audit log
    links = [a.inner_text() for a in page.query_selector_all("[data-testid='stMain'] [data-testid='stPageLink'] a")]
    titles = ["Overview", "Response by route", "Time to relief", "Side effects", "Maintenance", "Esketamine monitoring",
              "Network benchmark", "Data and definitions", "Import", "Audit log"]
    assert len(links) == len(titles) and all(title in text for title, text in zip(titles, links)), links

@pytest.mark.parametrize("path", ["views/overview.py", "response/extra/path", "RESPONSE", "response/extra?route=IV"])
def test_a_nested_or_wrong_case_path_says_page_not_found_not_blank(server, page, path):
    """A nested unknown path used to leave the page blank (index.html's relative script URLs resolved under
    it and got HTML back); dashboard/app/server.py sends it to the one-segment form, where the app loads and
    says "page not found". A wrong-case path is unknown too, never the Overview in silence."""
    open_url(page, f"{server}/{path}")
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    text = main.inner_text()
    assert "Page not found" in text
    assert f"There is no page at “/{path.split('?')[0]}”" in text
    assert "Cohort:" not in page.locator("[data-testid='stSidebar']").inner_text()  # no Overview behind it
    # Streamlit's own notice ("Page not found … Running the app's main page") opens over the screen as a modal
    # dialog, as for any unknown path; it closes with Escape, and the links under it work.
    if page.locator("[role='dialog']").count():
        assert "Page not found" in page.locator("[role='dialog']").inner_text()
        page.keyboard.press("Escape")
        page.wait_for_selector("[role='dialog']", state="detached")
    overview = page.locator("[data-testid='stMain'] [data-testid='stPageLink'] a").filter(has_text="Overview")
    overview.click()
    wait_idle(page)
    page.wait_for_selector("h1")
    assert "Page not found" not in page.locator("[data-testid='stMain']").inner_text()
    assert urlparse(page.url).path == "/"
    page.wait_for_selector("[data-testid='stSidebar'] >> text=Cohort:")  # the Overview has drawn, with its cohort


def test_streamlit_routes_are_never_redirected():
    from dashboard.app.server import flattened_path

    assert flattened_path("/views/overview.py") == "/views%2Foverview.py"
    assert flattened_path("/response/extra/path") == "/response%2Fextra%2Fpath"
    for path in ("/", "/response", "/RESPONSE", "/static/js/index.js", "/_stcore/health", "/media/abc.png",
                 "/component/x/index.html", "/app/static/a.png", "/auth/login", "/response/"):
        assert flattened_path(path) is None, path
    assert flattened_path("/base/views/x", "/base") == "/base/views%2Fx"
    assert flattened_path("/elsewhere/x", "/base") is None


# --- issue 11: hidden values never read as None, nan or "not reached"; the Overview answers first --------------------


@pytest.fixture(scope="module")
def small_cohort(sample_db: Path) -> str:
    """A site × diagnosis link with 15 to 40 patients (shown, with some figures hidden)."""
    import duckdb

    with duckdb.connect(str(sample_db), read_only=True) as con:
        site, diagnosis = con.sql(
            "SELECT site, primary_diagnosis::VARCHAR FROM patients GROUP BY ALL HAVING count(*) BETWEEN 15 AND 40 "
            "ORDER BY count(*), 1, 2 LIMIT 1").fetchall()[0]
    return f"site={site}&diagnosis={diagnosis}"


HIDDEN_AS_FINDING = re.compile(r"\bNone\b|\bnan\b|\bNaN\b|<NA>|not reached")


# every page, and every part of a page with tabs
PARTS = list(PAGES) + [f"{path}?view={view}" for path, views in ui.PAGE_VIEWS.items() for view in list(views)[1:]]


@pytest.mark.parametrize("path", PARTS)
def test_no_page_shows_none_nan_or_not_reached_for_a_hidden_value(server, page, small_cohort, path):
    open_url(page, f"{server}/{path}{'&' if '?' in path else '?'}{small_cohort}")
    assert_no_exception(page)
    page.locator("[data-testid='stMain'] h1").first.wait_for(state="visible")
    text = page.locator("[data-testid='stMain']").inner_text()
    assert not HIDDEN_AS_FINDING.findall(text), HIDDEN_AS_FINDING.findall(text)[:5]
    # hover text of the charts too (Plotly keeps it in the figure data)
    hovers = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => (p.data || [])"
        ".flatMap(t => [].concat(t.hovertemplate || [], t.text || [], t.hovertext || []).flat()))")
    assert not [h for h in hovers if isinstance(h, str) and HIDDEN_AS_FINDING.search(h)]


DRAWN_MARGINS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
  title: (gd.layout.title || {}).text || '', given: gd.layout.margin, final: gd._fullLayout._size}))"""


def drawn_margins(pg, url: str) -> list[dict]:
    """Each chart of the page at URL once drawn: its title, the margins it was given and those Plotly drew."""
    open_url(pg, url)
    pg.wait_for_function("() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];"
                         " return plots.length > 0 && plots.every(p => p.querySelector('.main-svg')); }")
    charts = pg.evaluate(DRAWN_MARGINS)
    assert charts
    return charts


@pytest.mark.parametrize("path", ["", "response", "relief", "side-effects", "maintenance", "esketamine-monitoring",
                                  "benchmark"])
def test_each_pages_first_charts_are_drawn_once_with_room_for_their_labels(server, page, path):
    """Plotly draws a chart, grows margins its labels do not fit and draws it again (10-35 ms a chart on every
    page and filter change: bench/RESULTS.md). The charts a page opens on are given margins that fit their tick
    labels, axis titles, legend and colour bar (figures.labelled_margins): the margins Plotly ends with are
    the ones it was given, on a laptop's screen."""
    for chart in drawn_margins(page, f"{server}/{path}"):
        grown = {side: (chart["given"][side], round(chart["final"][side], 1)) for side in "lrb"
                 if chart["final"][side] > chart["given"][side] + 0.5}
        assert not grown, f"{chart['title']!r}: Plotly grew the margins (given, drawn): {grown}"


@pytest.mark.parametrize("path", ["", "response", "relief", "side-effects", "maintenance", "esketamine-monitoring",
                                  "benchmark"])
def test_each_pages_first_charts_are_drawn_once_on_a_phone(server, browser, path):
    """The same on a phone: its layout (figures.fit_for_phone: wrapped titles, the legend below, the heatmap
    turned) is given the margins its labels and legend take (figures.phone_margins), and Plotly changes none of
    them (it also shrinks margins that leave the plot too little height: none does)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE, has_touch=True)
    try:
        pg = context.new_page()
        pg.set_default_timeout(90_000)
        for chart in drawn_margins(pg, f"{server}/{path}"):
            changed = {side: (chart["given"][side], round(chart["final"][side], 1)) for side in "lrtb"
                       if abs(chart["final"][side] - chart["given"][side]) > 1}
            assert not changed, f"{chart['title']!r}: Plotly changed the margins (given, drawn): {changed}"
    finally:
        context.close()


def test_the_overview_answers_first_and_fits_a_laptop(server, page):
    page.set_viewport_size({"width": 1440, "height": 900})
    open_url(page, server)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    assert main.locator("h2, h3").first.inner_text().strip() == "Which route works best?"
    table = main.locator("[data-testid='stTable']").first
    box, view = table.bounding_box(), main.bounding_box()
    assert box["x"] + box["width"] <= view["x"] + view["width"] + 1  # no sideways scroll for the answer
    assert "Compared with the best" in table.inner_text()


@pytest.mark.parametrize("agent", [IPHONE, None], ids=["phone", "narrow-desktop"])
def test_a_phone_gets_charts_laid_out_for_its_screen(server, browser, small_cohort, agent):
    """Issue 11: on a phone the heatmap's 'fewer than 11' cells overlapped and legends took half the width."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=agent)
    try:
        pg = context.new_page()
        pg.set_default_timeout(90_000)
        open_url(pg, f"{server}/side-effects?{small_cohort}")
        assert_no_exception(pg)
        pg.locator(".js-plotly-plot").first.wait_for(state="visible")
        heat = pg.evaluate("() => { const el = document.querySelector('.js-plotly-plot');"
                           " return {x: el.data[0].x, title: el.layout.title.text, legend: el.layout.showlegend}; }")
        routes_across = all(colors.route_label(code) in heat["x"] for code in ("ALL",))
        if agent == IPHONE:
            assert routes_across, heat  # routes across, events down: wide cells
            assert "<br>" in heat["title"]
            # every cell's words within its cell (seen: "hidden" ran into its neighbours, "< 11 %" was cut),
            # in the small cohort and in the whole sample with all its routes (the narrowest cells)
            for link in (small_cohort, ""):
                if link == "":
                    open_url(pg, f"{server}/side-effects")
                    pg.locator(".js-plotly-plot").first.wait_for(state="visible")
                cells = pg.evaluate("() => { const el = document.querySelector('.js-plotly-plot');"
                                    " const cell = el._fullLayout._size.w / el.data[0].x.length;"
                                    " return {cell, words: [...el.querySelectorAll('.heatmaplayer text')]"
                                    ".map(t => [t.textContent, t.getBBox().width])}; }")
                assert cells["words"] and all(w <= cells["cell"] - 2 for _, w in cells["words"]), (link, cells)
        else:
            assert not routes_across, heat  # the desktop layout, whatever the width
    finally:
        context.close()
