"""Set up everything and run the dashboard or the whole test suite: the README's Quick start.

    python3 dev.py serve [ketamine-outcomes serve flags]   # dashboard on the built-in sample data
    python3 dev.py test [pytest flags]                     # the whole suite, browser tests included

Creates `.venv` beside this file on first use and installs the project into it: `serve` installs only what
the dashboard needs, `test` adds the test tools (again only when pyproject.toml changes). For the tests it
makes sure Debian's Chromium is present, installing it with apt-get when this is a Debian machine run as
root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed-from"  # one line per installed extra set: "<pyproject hash> <extras>"
CHROMIUM = Path(os.environ.get("KETAMINE_OUTCOMES_CHROMIUM", "/usr/bin/chromium"))


def say(message: str) -> None:
    print(f"[dev.py] {message}", flush=True)


def run(command: list[str], **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def ensure_environment(extras: str) -> None:
    """Make .venv hold the project (editable) with EXTRAS ("" for the dashboard alone, "test", ...)."""
    if sys.version_info < (3, 11):
        sys.exit("Ketamine Outcomes needs Python 3.11 or newer; this is " + sys.version.split()[0])
    if not PYTHON.exists():
        say(f"creating a virtual environment in {VENV}")
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = f"{digest} {extras or '-'}"
    done = [line for line in (STAMP.read_text().split("\n") if STAMP.exists() else []) if line.startswith(digest)]
    if wanted in done:
        return
    what = "the dashboard and its test tools" if extras else "the dashboard"
    say(f"installing {what} into .venv: about {'3' if extras else '2'} minutes on a first run "
        "(Streamlit, DuckDB, pandas, SciPy, Plotly …); pip's progress follows")
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    # --progress-bar on without --quiet: a first run is not silent for minutes
    run([str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-e", target])
    # an install with extras contains the dashboard-only one
    STAMP.write_text("\n".join({*done, wanted, f"{digest} -"}))
    say("installed")


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if apt and hasattr(os, "geteuid") and os.geteuid() == 0:
        say("installing Debian's chromium for the browser tests")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run([apt, "update", "-qq"], env=env)
        run([apt, "install", "-y", "-qq", "chromium"], env=env)
    if not CHROMIUM.exists():
        sys.exit(
            f"The browser tests need Chromium at {CHROMIUM}. Install Debian's package "
            "(sudo apt-get install chromium) or set KETAMINE_OUTCOMES_CHROMIUM to a Chromium binary."
        )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment("" if command == "serve" else "test")
    if command == "serve":
        return subprocess.call([str(BIN / "ketamine-outcomes"), "serve", *rest], cwd=ROOT)
    ensure_chromium()
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
