"""Browser timings: what a director waits for, against the floor this stack allows.

    .venv/bin/python bench/browser.py --sizes 10000 100000 --json bench/results/browser.json

For each size it builds a sample database (or takes `--db`), serves the dashboard (`ketamine-outcomes serve`)
and the minimal app of bench/minimal_app.py (the same eight page addresses, one sidebar filter bound to the
URL, one Plotly chart per page, on the same database) side by side, and drives both with Playwright in Debian's
Chromium:

- **shared link**: a new browser session opens a page from a link with a filter state not seen before;
- **page switch**: inside one session, a click on the next page's link in the sidebar's navigation;
- **filter change**: on each page, a new cohort from the sidebar's first filter (route): a route added while
  fewer than three are chosen, else the last one removed.

With `--phone` the same walk is driven as an iPhone (390 x 844, its User-Agent, a touch screen): the dashboard
lays its charts out for a phone, and the sidebar, closed on a narrow screen, is opened before each click in it
(untimed).

Each interaction is timed from the action until a script run it caused has finished, no element is stale or
still a loading placeholder, and every Plotly chart on the page has drawn its SVG. An interaction that ends on
an error screen, on the wrong page or without changing the filter stops the run (RuntimeError). Results are
medians and maxima per page, and ratios to the minimal app's median for the same interaction in the same run
(these machines are shared and noisy: ratios, not absolute times, are what compares across runs). Where the
time went is summarised beside them from the websocket's messages (`phases_of`: the server's first message, its
"script finished", the end; how many element messages and bytes). Nothing here is a test: tests/test_bench.py
only checks that it runs at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the served app and Chromium, as the browser tests have them
from serving import CHROMIUM, CHROMIUM_ARGS, IPHONE, dashboard_command, served  # noqa: E402
PAGES = ["", "response", "relief", "side-effects", "maintenance", "esketamine-monitoring", "benchmark", "data"]
ROUTES = ["IV", "IM", "SC", "IN", "SL", "PO"]
# idle, nothing stale, no element still waiting for its code, every Plotly chart drawn. Streamlit loads the
# code of a chart or a grid on first use and shows an `stSkeleton` placeholder until then: without that check
# a page whose only charts are still placeholders counted as drawn (no .js-plotly-plot existed yet), so a
# first visit ended 1-3 s early and the next interaction paid for the rest (Plotly's bundle compiled and run,
# about 1.5 s of the Response page's page switch, which always came first after the Overview).
DRAWN = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector("[data-stale='true']")) return false;
  if (document.querySelector("[data-testid='stSkeleton']")) return false;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.every(p => p.querySelector('.main-svg'));
}"""


class ScriptRuns:
    """Counts the script runs a page's server finished, from Streamlit's own messages on the websocket
    (ForwardMsg.script_finished). The page's `data-test-script-state` attribute cannot be trusted for this: a
    run of a few milliseconds never shows "running" in the DOM, so waiting for that state first missed fast
    runs and then waited out its timeout (a second added to every fast interaction, the minimal app's above
    all)."""

    def __init__(self, page: Any) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.done = 0
        # every message since the last `timed` began: (time.perf_counter() when Chromium reported it, its type,
        # its size in bytes), for where an interaction's time went (`phases`)
        self.frames: list[tuple[float, str, int]] = []
        finished = {ForwardMsg.ScriptFinishedStatus.Value(v) for v in
                    ("FINISHED_SUCCESSFULLY", "FINISHED_WITH_COMPILE_ERROR", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY")}

        def frame(payload: bytes | str) -> None:
            if isinstance(payload, (bytes, bytearray)):
                msg = ForwardMsg.FromString(bytes(payload))
                kind = msg.WhichOneof("type") or ""
                self.frames.append((time.perf_counter(), kind, len(payload)))
                if kind == "script_finished" and msg.script_finished in finished:
                    self.done += 1

        page.on("websocket", lambda ws: ws.on("framereceived", frame))


def timed(page: Any, runs: ScriptRuns, action: Callable[[], None], timeout_ms: int = 120_000,
          phases: list[dict[str, float]] | None = None) -> float:
    """Milliseconds from ACTION until a script run it caused has finished (not one cut short for a rerun)
    and the page is idle, fresh and every chart drawn. With `phases`, where that time went is appended to it
    (see `phases_of`)."""
    before = runs.done
    runs.frames.clear()
    t0 = time.perf_counter()
    action()
    deadline = t0 + timeout_ms / 1000
    while runs.done <= before:  # Playwright delivers the websocket's frames while it waits
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no script run finished within {timeout_ms} ms ({page.url})")
        page.wait_for_timeout(5)
    page.wait_for_function(DRAWN, timeout=max(1, int((deadline - time.perf_counter()) * 1000)), polling=20)
    total = (time.perf_counter() - t0) * 1000
    if phases is not None:
        phases.append(phases_of(runs.frames, t0, total))
    return total


def phases_of(frames: list[tuple[float, str, int]], t0: float, total_ms: float) -> dict[str, float]:
    """Where one interaction's time went, from the messages Chromium reported (ms from the action): the
    server's first message (its script has started), its last "script finished" (Chromium reports a frame
    from its page thread, so this also waits for the drawing of what came before: bench/RESULTS.md), the end
    (every chart drawn), and how many element messages ("deltas") and bytes the page was sent."""
    finished = [t for t, kind, _ in frames if kind == "script_finished"]
    return {
        "first_message_ms": (frames[0][0] - t0) * 1000 if frames else float("nan"),
        "script_finished_ms": (finished[-1] - t0) * 1000 if finished else float("nan"),
        "drawn_ms": total_ms,
        "deltas": sum(1 for _, kind, _ in frames if kind == "delta"),
        "bytes": sum(size for _, _, size in frames),
    }


def new_page(browser: Any, phone: bool = False) -> tuple[Any, Any, ScriptRuns]:
    """A new browser session (context) with one page at 1440 x 900, or as an iPhone (390 x 844, touch), and its
    run counter."""
    if phone:
        context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE, has_touch=True)
    else:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    return context, page, ScriptRuns(page)


def open_sidebar(page: Any) -> None:
    """Open the sidebar where a narrow screen has closed it (its navigation and filters are in it)."""
    expand = page.locator("[data-testid='stExpandSidebarButton']")
    if expand.count() and expand.first.is_visible():
        expand.first.click()
        page.locator("[data-testid='stSidebar'] [data-testid='stSidebarNav']").wait_for(state="visible")
        page.wait_for_timeout(300)  # its sliding in is not part of what is timed


SHOWN = """() => ({
  errors: document.querySelectorAll("[data-testid='stException']").length,
  charts: document.querySelectorAll('.js-plotly-plot .main-svg').length,
})"""


def check_shown(page: Any, what: str, require_chart: bool) -> None:
    """Raise if the interaction ended on an error instead of its page: a timing of an error screen is not a
    timing of the app (the minimal app once timed its own SQL error, which made it look fast)."""
    shown = page.evaluate(SHOWN)
    if shown["errors"]:
        raise RuntimeError(f"{what}: the page shows an error instead of its content ({page.url})")
    if require_chart and not shown["charts"]:
        raise RuntimeError(f"{what}: no chart was drawn ({page.url})")


def filter_states(count: int) -> list[str]:
    """COUNT distinct query strings over the route filter (the one filter both apps share)."""
    states = []
    for k in range(1, len(ROUTES) + 1):
        for i in range(len(ROUTES)):
            combo = [ROUTES[(i + j) % len(ROUTES)] for j in range(k)]
            q = "&".join(f"route={r}" for r in sorted(combo, key=ROUTES.index))
            if q not in states:
                states.append(q)
    return states[:count]


def measure_app(browser: Any, base: str, states: list[str], rounds: int,
                require_chart: bool = False, pause_s: float = 0.0,
                phone: bool = False) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Per interaction and page of one app, where each interaction's time went (`phases_of`; its `drawn_ms` is
    the interaction's time); every interaction must end on its page without an error (and, with
    `require_chart`, with a chart drawn), else RuntimeError. `pause_s`: seconds the reader looks at the page
    before each page switch and filter change (0: clicks at once); `phone`: as an iPhone (`new_page`)."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {k: {p or "overview": [] for p in PAGES}
                                                         for k in ("shared_link", "page_switch", "filter_change")}
    state = iter(states * (rounds * len(PAGES) + 1))
    for _ in range(rounds):
        for path in PAGES:
            context, page, runs = new_page(browser, phone)
            url = f"{base}/{path}?{next(state)}"
            timed(page, runs, lambda: page.goto(url), phases=out["shared_link"][path or "overview"])
            check_shown(page, "shared link", require_chart)
            context.close()
        context, page, runs = new_page(browser, phone)
        timed(page, runs, lambda: page.goto(f"{base}/?{next(state)}"))
        for path in PAGES[1:] + PAGES[:1]:
            # by address, not position: the dashboard's navigation has more pages than the walk
            link = page.locator(f"[data-testid='stSidebarNav'] a[href='{base}/{path}']")
            page.wait_for_timeout(pause_s * 1000)
            open_sidebar(page)
            timed(page, runs, lambda: link.click(no_wait_after=True), phases=out["page_switch"][path or "overview"])
            check_shown(page, "page switch", require_chart)
            if not page.url.split("?")[0].rstrip("/").endswith(f"{base}/{path}".rstrip("/")):
                raise RuntimeError(f"page switch to /{path} ended on {page.url}")
            box = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").first
            before = page.url
            chosen = before.count("route=")
            page.wait_for_timeout(pause_s * 1000)
            open_sidebar(page)

            def pick() -> None:
                # a new cohort every time: add a route while few are chosen, else remove the last one. The box's
                # text input, not its middle, which may be a chosen route's chip (a click there opens nothing)
                box.locator("input").first.click()
                if chosen >= 3:
                    page.keyboard.press("Backspace")
                else:
                    page.keyboard.press("ArrowDown")
                    page.keyboard.press("Enter")
                page.keyboard.press("Escape")

            timed(page, runs, pick, phases=out["filter_change"][path or "overview"])
            check_shown(page, "filter change", require_chart)
            if page.url.count("route=") == chosen:
                raise RuntimeError(f"the filter change left the routes as they were ({before} -> {page.url})")
        context.close()
    return out


def summarise(dash: dict, minimal: dict) -> dict[str, Any]:
    """Per interaction: the minimal app's median time, each page's median, maximum and ratio to it, and where
    the time went (medians of `phases_of`), from `measure_app`'s results for both apps."""
    result: dict[str, Any] = {}
    for interaction, pages in dash.items():
        floor = statistics.median([r["drawn_ms"] for rs in minimal[interaction].values() for r in rs])
        times = {p: [r["drawn_ms"] for r in rs] for p, rs in pages.items() if rs}
        result[interaction] = {
            "minimal_median_ms": round(floor, 1),
            "pages": {p: {"median_ms": round(statistics.median(ts), 1), "max_ms": round(max(ts), 1),
                          "ratio": round(statistics.median(ts) / floor, 2)} for p, ts in times.items()},
            "phases": {
                "minimal": median_phases([r for rs in minimal[interaction].values() for r in rs]),
                "pages": {p: median_phases(rs) for p, rs in pages.items() if rs},
            },
        }
    return result


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each of `phases_of`'s measures over several interactions."""
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]} if runs else {}


def build_database(patients: int, workdir: Path, python: str) -> Path:
    db = workdir / f"sample-{patients}.duckdb"
    if db.exists():
        return db
    export = workdir / f"export-{patients}"
    cli = [python, "-m", "dashboard.cli"]
    # the benchmark's own work folder: replaced whole if an earlier run left it (sample refuses other files)
    subprocess.run([*cli, "sample", "--out", str(export), "--patients", str(patients), "--format", "parquet",
                    "--quiet", "--replace"], check=True)
    subprocess.run([*cli, "import", str(export), "--db", str(db), "--quiet"], check=True)
    return db


# The first visit after a server starts is timed this long after the server answers: about the time a person
# takes to open its address once it is running (and the time the dashboard has to warm its default view).
FIRST_VISIT_AFTER_S = 5.0


def bench_size(db: Path, workdir: Path, rounds: int, states: int, pause_s: float = 0.0,
               phone: bool = False, first_visit_after_s: float = FIRST_VISIT_AFTER_S) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    env = dict(os.environ, KETAMINE_OUTCOMES_DB=str(db.resolve()), KETAMINE_OUTCOMES_CACHE=str(workdir / "cache"))
    flags = ["--server.port", "{port}", "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    dashboard = dashboard_command(db)
    minimal = [sys.executable, "-m", "streamlit", "run", str(HERE / "minimal_app.py"), *flags]
    with served(dashboard, workdir / "dashboard.log", env=env, timeout_s=120) as dash_url, \
            served(minimal, workdir / "minimal.log", env=env, timeout_s=120) as min_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The first visit to each server, at its address (the default view), timed apart: what the first
            # person after a start waits for, imports and cold caches included; the walks below do not pay it.
            time.sleep(first_visit_after_s)
            first: dict[str, dict[str, float]] = {}
            for app, url in (("dashboard", dash_url), ("minimal", min_url)):
                context, page, runs = new_page(browser, phone)
                phases: list[dict[str, float]] = []
                timed(page, runs, lambda: page.goto(url), phases=phases)
                check_shown(page, "first visit", require_chart=app == "minimal")
                first[app] = phases[0]
                context.close()
            s = filter_states(states)
            dash = measure_app(browser, dash_url, s, rounds, pause_s=pause_s, phone=phone)
            mini = measure_app(browser, min_url, s, rounds, require_chart=True, pause_s=pause_s, phone=phone)
        finally:
            browser.close()
    summary = summarise(dash, mini)
    summary["first_visit"] = {"after_s": first_visit_after_s, "minimal_ms": round(first["minimal"]["drawn_ms"], 1),
                              "dashboard_ms": round(first["dashboard"]["drawn_ms"], 1),
                              "ratio": round(first["dashboard"]["drawn_ms"] / first["minimal"]["drawn_ms"], 2),
                              "phases": first}
    return {"raw": {"dashboard": dash, "minimal": mini, "first_visit": first}, "summary": summary}


def markdown(results: dict[str, Any]) -> str:
    sizes = list(results["sizes"])
    lines = ["| interaction, page | " + " | ".join(f"{int(n):,} patients: median ms (ratio)" if n.isdigit() else f"{n}: median ms (ratio)"
                                          for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    first = results["sizes"][sizes[0]]["summary"]
    for interaction, block in first.items():
        if interaction == "first_visit":
            continue
        lines.append(f"| {interaction.replace('_', ' ')}: minimal app | "
                     + " | ".join(f"{results['sizes'][n]['summary'][interaction]['minimal_median_ms']:,.0f}"
                                  for n in sizes) + " |")
        for page in block["pages"]:
            cells = []
            for n in sizes:
                r = results["sizes"][n]["summary"][interaction]["pages"][page]
                cells.append(f"{r['median_ms']:,.0f} ({r['ratio']:.2f})")
            lines.append(f"| {interaction.replace('_', ' ')}: {page} | " + " | ".join(cells) + " |")
    visits = [results["sizes"][n]["summary"].get("first_visit") for n in sizes]
    if all(visits):
        lines.append("| first visit after a start: minimal app | "
                     + " | ".join(f"{v['minimal_ms']:,.0f}" for v in visits) + " |")
        lines.append("| first visit after a start: the dashboard's address | "
                     + " | ".join(f"{v['dashboard_ms']:,.0f} ({v['ratio']:.2f})" for v in visits) + " |")
    return "\n".join(lines)


def phases_markdown(results: dict[str, Any]) -> str:
    """Where the time went, per size, interaction and page (median ms from the action; `phases_of`)."""
    lines = []
    for n, size in results["sizes"].items():
        name = f"{int(n):,} patients" if n.isdigit() else n
        lines += [f"\nWhere the time went, {name} (median ms from the action; messages as Chromium reported them):\n",
                  "| interaction, page | first message | script finished | drawn | element messages | kB sent |",
                  "|---|---:|---:|---:|---:|---:|"]
        for interaction, block in size["summary"].items():
            if interaction == "first_visit":
                rows = [("minimal app", block["phases"]["minimal"]), ("overview", block["phases"]["dashboard"])]
            else:
                rows = [("minimal app", block["phases"]["minimal"]), *block["phases"]["pages"].items()]
            for page, ph in rows:
                if ph:
                    lines.append(f"| {interaction.replace('_', ' ')}: {page} | {ph['first_message_ms']:,.0f} | "
                                 f"{ph['script_finished_ms']:,.0f} | {ph['drawn_ms']:,.0f} | {ph['deltas']:,.0f} | "
                                 f"{ph['bytes'] / 1000:,.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument("--db", type=Path, help="use this database instead of generating one (one size)")
    parser.add_argument("--rounds", type=int, default=3, help="times each interaction is repeated per page")
    parser.add_argument("--states", type=int, default=30, help="distinct filter states to cycle through")
    parser.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                        help="the reader looks at each page this long before the next click (default 0)")
    parser.add_argument("--phone", action="store_true",
                        help="as an iPhone (390 x 844, its User-Agent): the dashboard's phone layouts")
    parser.add_argument("--first-visit-after", type=float, default=FIRST_VISIT_AFTER_S, metavar="SECONDS",
                        help="time each app's first visit this long after its server answers (default "
                             f"{FIRST_VISIT_AFTER_S:g})")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ko-browser-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_start": os.getloadavg()[0]},
        "pause_s": args.pause,
        "device": "phone" if args.phone else "laptop",
        "sizes": {},
    }
    targets = [("db", args.db)] if args.db else [(n, None) for n in args.sizes]
    for n, db in targets:
        db = db or build_database(n, workdir, sys.executable)
        print(f"[browser bench] {db} …", file=sys.stderr, flush=True)
        results["sizes"][str(n)] = bench_size(db, workdir, args.rounds, args.states, args.pause, args.phone,
                                              args.first_visit_after)
    results["machine"]["load_end"] = os.getloadavg()[0]
    table = markdown(results)
    print(table)
    print(phases_markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
