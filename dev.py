"""Set up everything and run the dashboard or the whole test suite: the README's Quick start.

    python3 dev.py serve [ketamine-outcomes serve flags]   # dashboard on the built-in sample data
    python3 dev.py test [pytest flags]                     # the whole suite, browser tests included

Creates `.venv` beside this file on first use and installs the project into it: `serve` installs only what
the dashboard needs, `test` adds the test tools (again only when pyproject.toml changes). For the tests it
makes sure Debian's Chromium, Pango and poppler-utils are present, installing them with apt-get when this is
a Debian machine run as root; `serve` installs the first two the same way (the PDF report needs them) and, when
it cannot, says what to install and serves the dashboard all the same.
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


def _has_library(name: str) -> bool:
    import ctypes.util

    return ctypes.util.find_library(name) is not None


# Debian package -> how to tell it is present. The PDF report needs the first three (charts through Chromium,
# layout with Pango); the tests also read the PDFs back with poppler-utils (pdftotext, pdftoppm).
SYSTEM_PACKAGES = {
    "chromium": lambda: CHROMIUM.exists(),
    "libpango-1.0-0": lambda: _has_library("pango-1.0"),
    "libpangoft2-1.0-0": lambda: _has_library("pangoft2-1.0"),
    "poppler-utils": lambda: shutil.which("pdftotext") is not None and shutil.which("pdftoppm") is not None,
    # Arial's metrics, which the charts' margins are measured in (dashboard/charts/figures.py, `text_px`); a
    # browser test checks Plotly draws each chart once in them
    "fonts-liberation": lambda: Path("/usr/share/fonts/truetype/liberation").is_dir(),
}
REPORT_PACKAGES = ("chromium", "libpango-1.0-0", "libpangoft2-1.0-0")
TEST_PACKAGES = (*REPORT_PACKAGES, "poppler-utils", "fonts-liberation")


def ensure_system_packages(packages: tuple[str, ...], *, required: bool) -> None:
    """Install the Debian packages that are missing (as root with apt-get). When that cannot be done:
    stop with what to install (`required`, the tests), or say it and go on (serve: only the PDF report
    needs them, and the dashboard names them on its button)."""
    missing = [p for p in packages if not SYSTEM_PACKAGES[p]()]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt and hasattr(os, "geteuid") and os.geteuid() == 0:
        say(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            run([apt, "update", "-qq"], env=env)
            run([apt, "install", "-y", "-qq", *missing], env=env)
        except subprocess.CalledProcessError:
            say("apt-get could not install them")
    missing = [p for p in packages if not SYSTEM_PACKAGES[p]()]
    if not missing:
        return
    message = f"Install these Debian packages: sudo apt-get install {' '.join(missing)}"
    if "chromium" in missing:
        message += f" (or set KETAMINE_OUTCOMES_CHROMIUM to a Chromium binary; expected at {CHROMIUM})"
    if required:
        sys.exit("The tests need Chromium (browser tests and the report's charts), Pango (the report's "
                 "layout), poppler-utils (reading the report back) and the Liberation fonts (Arial's metrics). "
                 + message)
    say("the PDF report will not be available until you do this (everything else works). " + message)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment("" if command == "serve" else "test")
    if command == "serve":
        ensure_system_packages(REPORT_PACKAGES, required=False)
        # this process becomes the server's command (same process id), so stopping it (Ctrl-C, `kill PID`)
        # stops the server; a child here outlived a `kill` of this script
        os.chdir(ROOT)
        server = BIN / "ketamine-outcomes"
        os.execv(server, [str(server), "serve", *rest])
    ensure_system_packages(TEST_PACKAGES, required=True)
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
