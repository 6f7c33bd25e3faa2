"""The project as a package: what a wheel carries, where the core ends, and faults of the installation itself.

The wheel test builds the wheel from a copy of the checkout, installs it into a fresh virtual environment
outside the clone and there runs `sample`, `import`, `export` and `serve` (health endpoint, the Overview
drawn in Chromium) — what `pip install ketamine-outcomes` or `pipx install` gives a clinic.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from dashboard import cli
from dashboard.data import store
from serving import IDLE, served

ROOT = Path(__file__).resolve().parent.parent
CORE = ("data", "analysis", "charts", "reports")


def test_every_code_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in (ROOT / "dashboard").rglob("*")
        if folder.is_dir() and any(folder.glob("*.py")) and "__pycache__" not in folder.parts
    } | {"dashboard"}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    # resource packages map the top-level folders, which stay the one source
    assert config["package-dir"] == {
        "dashboard.queries": "queries",
        "dashboard.example_export": "sample_data/example_export",
        "dashboard.example_records": "sample_data/example_records",
        "dashboard.streamlit_config": ".streamlit",
    }
    assert store.queries_dir() == ROOT / "queries"
    assert store.example_export_dir() == ROOT / "sample_data" / "example_export"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_outside_app_imports_streamlit_and_the_flow_runs_one_way():
    # import → store (data) → metrics (analysis) → figures (charts) → files (reports) / dashboard (app)
    allowed = {"data": {"data"}, "analysis": {"data", "analysis"}, "charts": {"data", "analysis", "charts"},
               "reports": {"data", "analysis", "charts", "reports"}}
    for part in CORE:
        for path in (ROOT / "dashboard" / part).rglob("*.py"):
            modules = _imported_modules(path)
            assert not any(m == "streamlit" or m.startswith("streamlit.") for m in modules), path
            layers = {m.split(".")[1] for m in modules if m.startswith("dashboard.") and m.count(".") >= 1}
            assert layers <= allowed[part] | {"queries"}, (path, layers - allowed[part])
    assert not any(m.startswith("streamlit") for m in _imported_modules(ROOT / "dashboard" / "cli.py"))


def test_a_missing_query_file_is_reported_as_an_installation_fault(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "queries"
    empty.mkdir()
    monkeypatch.setattr(store, "queries_dir", lambda: empty)
    store.load_sql.cache_clear()
    try:
        code = cli.main(["import", str(store.example_export_dir()), "--db", str(tmp_path / "db.duckdb"), "--quiet"])
    finally:
        store.load_sql.cache_clear()
    err = capsys.readouterr().err
    assert code == cli.EXIT_INSTALLATION == 3
    assert "Ketamine Outcomes is installed incompletely: the query file check_macros.sql is missing" in err
    assert "export" not in err.split("missing")[0]  # the user's export is not blamed
    assert "pip install --force-reinstall ketamine-outcomes" in err
    assert not (tmp_path / "db.duckdb").exists()


def test_a_missing_dependency_is_reported_as_an_installation_fault(monkeypatch, capsys, tmp_path):
    def needs_a_missing_package(args):  # noqa: ANN001
        import ketamine_outcomes_missing_dependency  # noqa: F401

    monkeypatch.setattr(cli, "cmd_sample", needs_a_missing_package)  # main() builds its parser afresh
    assert cli.main(["sample", "--out", str(tmp_path / "x")]) == cli.EXIT_INSTALLATION
    assert ("the package 'ketamine_outcomes_missing_dependency' it needs is missing"
            in capsys.readouterr().err)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the clone holding the wheel built from a copy of the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "bench",
        "*.duckdb", ".cache"))
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "-w", str(dist), str(source)], check=True, cwd=base)
    wheel = next(dist.glob("ketamine_outcomes-*.whl"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                   check=True, cwd=base)
    return env_dir


def _outside_env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KETAMINE_OUTCOMES_DB")}
    env["KETAMINE_OUTCOMES_CACHE"] = str(base / "cache")
    return env


@pytest.mark.browser
def test_the_wheel_installed_outside_the_clone_imports_exports_and_serves(installed_wheel, tmp_path, browser):
    command = installed_wheel / "bin" / "ketamine-outcomes"
    env = _outside_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(command), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    # the resources come from the installed package, not from the clone
    where = subprocess.run(
        [str(installed_wheel / "bin" / "python"), "-c",
         "from dashboard.data import store; print(store.queries_dir()); print(store.example_export_dir())"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(installed_wheel) for p in where), where
    assert (Path(where[0]) / "check_macros.sql").is_file() and (Path(where[1]) / "patients.csv").is_file()

    run("sample", "--out", "export", "--patients", "300", "--seed", "5", "--quiet")
    run("import", "export", "--db", "clinic.duckdb", "--quiet")
    run("import", where[1], "--db", "example.duckdb", "--quiet")  # the shipped example export imports too
    run("export", "--db", "clinic.duckdb", "--out", "summaries", "--min-cell", "0")
    # the installed export writes exactly what this checkout's core computes for the same database
    from dashboard.analysis.settings import Settings
    from dashboard.reports import export

    expected = tmp_path / "expected"
    export.write_summaries(work / "clinic.duckdb", expected, Settings(min_cell=0))
    for path in sorted(expected.glob("*.csv")):
        assert (work / "summaries" / path.name).read_bytes() == path.read_bytes(), path.name

    with served([str(command), "serve", "--db", "clinic.duckdb", "--port", "{port}", "--address", "127.0.0.1"],
                tmp_path / "serve.log", cwd=work, env=env) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_selector(IDLE, timeout=60_000)
        page.wait_for_selector("h1:has-text('Overview')", timeout=30_000)
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)
        assert page.locator("[data-testid='stException']").count() == 0
        context.close()
