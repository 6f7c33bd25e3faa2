"""Load test (issue 12): N real browser sessions walk every page with new filter states while an import swaps
the database under them; reports page loads, errors and the time from navigation to a drawn page.

    .venv/bin/python bench/load.py --sessions 8 --rounds 3 --patients 2000 --port 8637

It builds a sample database in a temporary folder (or takes --db), starts `streamlit run` on it, runs the
sessions (each in its own thread with its own Playwright and Debian Chromium at /usr/bin/chromium), and
half-way through re-imports a different sample into the same path (the importer swaps a new file in).
"Drawn" is Streamlit's script state `notRunning` plus every chart element rendered. An error is any
exception element, Streamlit error box, or a navigation that does not finish within --timeout seconds.
Not a timed test: tests/test_bench.py only runs it at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("", "response", "relief", "side-effects", "maintenance", "data")
sys.path.insert(0, str(ROOT / "tests"))  # the served app and Chromium, as the browser tests have them
from serving import CHROMIUM, CHROMIUM_ARGS, IDLE, served  # noqa: E402


def build_db(folder: Path, patients: int, seed: int) -> Path:
    from dashboard.data.ingest import import_export
    from dashboard.data.sample import write_sample_export

    export = folder / f"export-{seed}"
    write_sample_export(export, patients=patients, seed=seed, fmt="parquet")
    db = folder / "load.duckdb"
    import_export(export, db)
    return db


def server_command() -> list[str]:
    """server.py, as `ketamine-outcomes serve` runs it (st.App around main.py, with the nested-path redirect)."""
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app" / "server.py"),
            "--server.port", "{port}", "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none"]


def filter_state(rng: random.Random) -> dict[str, str]:
    """A new filter state of the kind readers choose: a route or two, a sex, a window, an instrument."""
    state: dict[str, object] = {}
    if rng.random() < 0.6:
        state["route"] = rng.sample(["IV", "IM", "IN", "SL", "PO", "SC"], rng.randint(1, 2))
    if rng.random() < 0.4:
        state["sex"] = [rng.choice(["F", "M"])]
    if rng.random() < 0.3:
        state["window"] = str(rng.choice([0, 7, 14, 21]))
    if rng.random() < 0.3:
        state["instrument"] = rng.choice(["PHQ9", "PCL5"])
    return state


def session(base: str, rounds: int, seed: int, timeout: float, records: list, lock: threading.Lock) -> None:
    from playwright.sync_api import sync_playwright

    rng = random.Random(seed)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            for _ in range(rounds):
                for path in PAGES:
                    state = filter_state(rng)
                    url = f"{base}/{path}?" + urlencode(state, doseq=True)
                    started = time.monotonic()
                    error = ""
                    try:
                        page.goto(url, timeout=timeout * 1000)
                        page.wait_for_selector(IDLE, timeout=timeout * 1000)
                        if page.query_selector("[data-testid='stException']"):
                            error = "exception"
                        elif page.query_selector("[data-testid='stAlertContentError']"):
                            error = "error box: " + page.inner_text("[data-testid='stAlertContentError']")[:120]
                    except Exception as exc:  # noqa: BLE001 - a timeout or a crashed page counts as an error
                        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                    with lock:
                        records.append({"page": path or "overview", "seconds": time.monotonic() - started,
                                        "error": error, "at": time.monotonic()})
        finally:
            browser.close()


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ko-load-"))
    db = Path(args.db) if args.db else build_db(work, args.patients, seed=11)
    records: list[dict] = []
    lock = threading.Lock()
    swaps: list[float] = []
    env = dict(os.environ, KETAMINE_OUTCOMES_DB=str(db))
    with served(server_command(), work / "server.log", port=args.port or None, env=env, timeout_s=120) as base:
        threads = [threading.Thread(target=session, args=(base, args.rounds, i, args.timeout, records, lock))
                   for i in range(args.sessions)]
        started = time.monotonic()
        for t in threads:
            t.start()
        expected = args.sessions * args.rounds * len(PAGES)
        while any(t.is_alive() for t in threads) and not swaps:
            if len(records) >= expected // 2:  # half-way: an import swaps in a new file
                from dashboard.data.ingest import import_export
                from dashboard.data.sample import write_sample_export

                write_sample_export(work / "export-swap", patients=args.patients, seed=12, fmt="parquet")
                import_export(work / "export-swap", db)
                swaps.append(time.monotonic() - started)
            time.sleep(0.2)
        for t in threads:
            t.join()
        wall = time.monotonic() - started
    times = sorted(r["seconds"] for r in records if not r["error"])
    q = statistics.quantiles(times, n=20, method="inclusive") if len(times) >= 2 else times * 19
    return {
        "sessions": args.sessions, "rounds": args.rounds, "patients": args.patients,
        "page_loads": len(records), "errors": [r for r in records if r["error"]],
        "p50_seconds": statistics.median(times) if times else None, "p95_seconds": q[18] if times else None,
        "max_seconds": max(times) if times else None, "wall_seconds": wall,
        "import_swapped_at_seconds": swaps[0] if swaps else None,
        "loads_after_swap": sum(1 for r in records if swaps and r["at"] - started > swaps[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="browser sessions at once (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="walks through every page per session (default 3)")
    parser.add_argument("--patients", type=int, default=2000, help="sample size when no --db (default 2000)")
    parser.add_argument("--db", help="an existing database to serve (it is re-imported half-way!)")
    parser.add_argument("--port", type=int, default=0, help="port for the dashboard (default a free one)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a page load is an error")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if not result["errors"] and result["import_swapped_at_seconds"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
