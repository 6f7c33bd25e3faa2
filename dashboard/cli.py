"""The `ketamine-outcomes` command: import clinic exports, write sample data, export summaries, serve.

Each subcommand parses its flags, calls the same core functions the dashboard uses and turns their
errors into a clear message and a non-zero exit code (never a traceback). Imports and exports are
recorded in the database's audit log (dashboard/reports/audit.py) under the operating-system user; an
export can be limited to some sites with `--scope` (the same scope a signed-in person's view has).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from dashboard import __version__
from dashboard.data import store

EXIT_OK = 0
EXIT_REFUSED = 1  # the input was refused (bad export, bad flags, missing database)
EXIT_USAGE = 2
EXIT_INSTALLATION = 3  # Ketamine Outcomes itself is installed incompletely


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def _audit(db: Path, action: str, *, files: list[str] = (), query: str = "", import_id: int | None = None,
           **sites: tuple[str, ...] | None) -> None:
    """Record a command-line action under the operating-system user (raises audit.AuditError)."""
    from dashboard.analysis.access import local_person
    from dashboard.reports import audit

    person = local_person()
    audit.record(audit.audit_path(db), audit.make_entry(
        person=person, action=action, page="command line", query=query, files=files, import_id=import_id, **sites))


def cmd_import(args: argparse.Namespace) -> int:
    from dashboard.data.ingest import ImportRefused, import_export
    from dashboard.reports import audit

    folder = Path(args.db).parent
    if not folder.is_dir():  # never made silently: a mistyped path would hide the database somewhere new
        print(f"error: {folder} is a file, not a folder: choose another --db." if folder.exists() else
              f"error: the folder {folder} does not exist: create it first or choose another --db.", file=sys.stderr)
        return EXIT_REFUSED
    try:
        # an import that could not be recorded must not happen: check the log before changing anything
        audit.check_writable(audit.audit_path(Path(args.db)))
    except audit.AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        summary = import_export(Path(args.export_dir), Path(args.db), progress=None if args.quiet else _progress)
    except ImportRefused as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"Import interrupted; {args.db} was not changed.", file=sys.stderr)
        return 130
    try:
        _audit(Path(args.db), "import", files=[str(Path(args.export_dir).resolve())], import_id=summary.import_id)
    except audit.AuditError as exc:
        print(summary.describe(), file=sys.stderr)
        print(f"error: the import is done but could not be recorded: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(summary.describe())
    return EXIT_OK


def cmd_anonymize(args: argparse.Namespace) -> int:
    from dashboard.data import anonymize as an

    records = Path(args.records_dir)
    if args.init:
        if not records.is_dir():
            print(f"error: no folder at {records}: give the folder holding the records (CSV files or one .xlsx "
                  "workbook)", file=sys.stderr)
            return EXIT_REFUSED
        text = an.init_mapping(records)
        if args.mapping in (None, "-"):
            print(text)
            return EXIT_OK
        target = Path(args.mapping)
        if args.mapping in an.SHIPPED_MAPPINGS or target.exists():
            print(f"error: {target} exists (or is a shipped mapping); --init writes a new mapping file",
                  file=sys.stderr)
            return EXIT_REFUSED
        target.write_text(text, encoding="utf-8")
        print(f"Wrote a mapping skeleton to {target}: fill in the source column names, then run anonymize "
              f"with --mapping {target}")
        return EXIT_OK
    missing = [flag for flag, value in (("--mapping", args.mapping), ("--key", args.key), ("--out", args.out))
               if not value]
    if missing:
        print(f"error: anonymize needs {', '.join(missing)} (or --init to write a mapping skeleton)", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out).resolve()
    key_path = Path(args.key).resolve()
    if key_path == out or out in key_path.parents:
        print("error: the key file must not be inside the output folder (the key is never shared)", file=sys.stderr)
        return EXIT_REFUSED
    try:
        mapping = an.load_mapping(args.mapping)
    except an.MappingError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        with an.key_for_run(key_path) as (key, created):  # a refused run keeps no new key
            report = an.anonymize(records, mapping, key, out, year_only=args.year_only,
                                  progress=None if args.quiet else _progress)
    except an.KeyFileError as exc:
        print(f"error: {exc}. Nothing was written.", file=sys.stderr)
        return EXIT_REFUSED
    except an.AnonymizeRefused as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:  # the output's folder cannot be made or written (a file in its path, no permission)
        from dashboard.reports.export import os_problem

        where = Path(exc.filename) if getattr(exc, "filename", None) else out
        print(f"error: cannot write the anonymized export: {os_problem(exc, where)}. Choose a folder you can "
              "write to, then run anonymize again.", file=sys.stderr)
        return EXIT_REFUSED
    if created:
        print(f"Created the key file {key_path} (readable by you only). Keep it safe and private: the same key "
              "gives the same pseudonyms next time.", file=sys.stderr)
    if not args.quiet:  # the same account is in the output folder (anonymize-report.txt)
        print(report.describe())
    print(f"Wrote the anonymized export to {out}. Import it with: ketamine-outcomes import {out} --db PATH")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    from dashboard.data.sample import write_sample_export
    from dashboard.reports import export

    if args.patients < 1:
        print("--patients must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.seed < 0:
        print("--seed must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    counts: dict[str, int] = {}

    def fill(folder: Path) -> None:
        counts.update(write_sample_export(folder, patients=args.patients, seed=args.seed, fmt=args.format,
                                          progress=None if args.quiet else _progress))
        # marks the folder as this program's, so the next `sample` (or `export`) may replace it whole
        export.mark_as_output(folder, kind="sample", patients=args.patients, seed=args.seed, format=args.format)

    try:
        # as `export`: a folder of someone's files (a clinic's real export) is never overwritten or emptied
        export.check_output_folder(out, replace=args.replace, kind="sample export")
        export.write_folder(out, fill, kind="sample export", again="run sample again")
    except export.ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"Wrote a sample export to {args.out}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    return EXIT_OK


def _scoped(settings, scope: list[str] | None):  # noqa: ANN001, ANN202 - Settings is imported lazily
    """`settings` limited to the `--scope` sites (a site director's files), with every `--site` outside them
    named in a warning and dropped, as the dashboard names and drops a link's site outside the person's sites
    (access.md); the rest of the filters apply. Printed with --quiet too: it changes what is written.
    Raises SettingsError for a scope that is not site codes."""
    if scope is None:
        return settings
    settings = settings.replace(scope=tuple(scope))  # the scope is never a filter flag (links must never set it)
    from dashboard.analysis.settings import quoted

    for site in settings.sites_outside_scope():
        print(f"warning: --site: {quoted(site)} is not among the sites of --scope ({', '.join(settings.scope)}); "
              "dropped", file=sys.stderr)
    return settings.within_scope()


def cmd_export(args: argparse.Namespace) -> int:
    from dashboard.reports import audit
    from dashboard.reports.export import PROVENANCE_FILE, SUMMARY_FILES, write_summaries
    from dashboard.analysis.settings import Settings, SettingsError

    try:
        settings = _scoped(Settings.from_args(args), args.scope)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem.replace('scope:', '--scope:', 1)}", file=sys.stderr)
        return EXIT_USAGE
    try:  # before the audit log, which would otherwise be created beside nothing
        store.check_database_file(Path(args.db))
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        # recorded before anything is written: an export that cannot be recorded does not happen
        _audit(Path(args.db), "export", files=[*SUMMARY_FILES, PROVENANCE_FILE], query=settings.to_query_string(),
               import_id=_import_id(Path(args.db)), sites=settings.effective_sites)
    except audit.AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        paths = write_summaries(Path(args.db), Path(args.out), settings, replace=args.replace)
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"Wrote {len(paths)} files to {args.out}: " + ", ".join(p.name for p in paths))
    return EXIT_OK


def _import_id(db: Path) -> int | None:
    """The data set's latest import id (None when the database cannot be read; the export then says why)."""
    import duckdb

    try:
        con = store.open_database(db, read_only=True)
    except store.StoreError:
        return None
    try:
        history = store.run_query(con, "import_provenance")
        return int(history["import_id"].iloc[0]) if len(history) else None
    except duckdb.Error:  # e.g. a file cut short past its table list: the export names the damage
        return None
    finally:
        con.close()


def sign_in_configured(secrets_files: list[Path] | None = None) -> tuple[bool, str]:
    """Whether Streamlit will find an `[auth]` section to sign people in with, and where (or why not).

    Looks where Streamlit looks by default: ~/.streamlit/secrets.toml and ./.streamlit/secrets.toml."""
    import tomllib

    files = secrets_files if secrets_files is not None else [
        Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]
    needed = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
    reasons: list[str] = []
    for path in files:
        if not path.exists():
            continue
        try:
            auth = tomllib.loads(path.read_text(encoding="utf-8")).get("auth")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            reasons.append(f"{path} could not be read ({exc})")
            continue
        if not isinstance(auth, dict):
            reasons.append(f"{path} has no [auth] section")
            continue
        # a provider may sit in a named sub-section ([auth.google]); the shared keys may be at the top
        providers = [v for v in auth.values() if isinstance(v, dict)] or [{}]
        missing = [k for k in needed if k not in auth and not all(k in p for p in providers)]
        if missing:
            reasons.append(f"{path} [auth] lacks {', '.join(missing)}")
            continue
        return True, str(path)
    return False, "; ".join(reasons) or "no .streamlit/secrets.toml with an [auth] section was found"
def cmd_report(args: argparse.Namespace) -> int:
    from dashboard.analysis.settings import Settings, SettingsError
    from dashboard.reports import audit, report

    try:
        settings = _scoped(Settings.from_args(args), args.scope)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem.replace('scope:', '--scope:', 1)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store.check_database_file(Path(args.db))
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        # recorded before anything is written: a report that cannot be recorded is not made
        _audit(Path(args.db), "report", files=[Path(args.out).name], query=settings.to_query_string(),
               import_id=_import_id(Path(args.db)), sites=settings.effective_sites)
    except audit.AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        path = report.write_report(Path(args.db), Path(args.out), settings)
    except report.ReportUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INSTALLATION
    except (store.StoreError, report.EmptyCohort) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"Wrote the report to {path}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from dashboard.data.builtin import ensure_sample_database

    configured, where = sign_in_configured()
    if args.address not in LOCAL_ADDRESSES and not configured:
        print(f"error: refusing to serve on {args.address} without sign-in: anyone who can reach that address "
              f"would see every site's data ({where}).\n"
              "Configure sign-in first: an [auth] section in .streamlit/secrets.toml (see the README, "
              "'Sign-in and access'), or serve on 127.0.0.1 for yourself alone.", file=sys.stderr)
        return EXIT_REFUSED
    if args.access_file is not None:
        from dashboard.analysis.access import AccessFileError, load_access_file

        try:
            load_access_file(args.access_file)  # every fault now, not at someone's sign-in
        except AccessFileError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return EXIT_REFUSED
    if args.db is None:
        db = ensure_sample_database(progress=_progress)
    else:
        db = Path(args.db)
        try:
            store.check_database_file(db)  # missing or unreadable: said before the server starts
        except store.StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    # server.py wraps main.py in st.App with the middleware that makes nested unknown paths say "page not found"
    app = Path(__file__).resolve().parent / "app" / "server.py"
    env = dict(os.environ, KETAMINE_OUTCOMES_DB=str(db.resolve()))
    if args.access_file is not None:
        env["KETAMINE_OUTCOMES_ACCESS"] = str(Path(args.access_file).resolve())
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        *streamlit_config_flags(),
        "--server.port", str(args.port), "--server.address", args.address,
    ]
    mode = f"sign-in from {where}" if configured else "local mode, no sign-in"
    print(f"Serving {db} at http://{args.address}:{args.port} ({mode})", file=sys.stderr)
    return run_until_stopped(command, env)


def run_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run the server `command` as a child process until it exits, passing on the signals that stop this one.

    `kill PID` (SIGTERM), a closed terminal (SIGHUP) and Ctrl-C (SIGINT) each reach the server exactly once:
    the child runs in a process group of its own, so the terminal's Ctrl-C is not delivered to it twice, and
    this process forwards what it receives (before, `kill PID` stopped this process and left the server
    serving). A signal this process was started ignoring (`nohup` ignores SIGHUP, a background job of a script
    SIGINT) stays ignored by both, as the person starting it asked. Returns EXIT_OK when stopped by a signal,
    else the server's exit status."""
    import signal

    server = subprocess.Popen(command, env=env, process_group=0)
    stopped: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)
        server.send_signal(signum)

    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
    code = server.wait()
    return EXIT_OK if stopped else code


def streamlit_config_flags() -> list[str]:
    """The dashboard's Streamlit settings (.streamlit/config.toml, shipped as `dashboard.streamlit_config`)
    as command-line flags, so they hold whatever folder `serve` is started from and in an installed wheel."""
    import tomllib

    path = store.package_folder("dashboard.streamlit_config") / "config.toml"
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise store.InstallationError(
            f"Ketamine Outcomes is installed incompletely: {path} is missing. {store.REINSTALL}") from None
    flags: list[str] = []
    for section, values in config.items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{key}", text]
    return flags


def build_parser() -> argparse.ArgumentParser:
    from dashboard.analysis.settings import Settings

    parser = argparse.ArgumentParser(
        prog="ketamine-outcomes",
        description="Outcomes analytics for ketamine clinics: import exports, make sample data, export summaries, serve the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="load a clinic export (CSV, Parquet or an Excel workbook) into a database, all or nothing")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="folder holding patients, sessions, assessments[, adverse_events]")
    p.add_argument("--db", required=True, metavar="PATH", help="database file to create or replace")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "anonymize", help="turn a clinic's identified records into an anonymized export",
        usage="%(prog)s RECORDS_DIR --mapping MAPPING --key KEY_FILE --out EXPORT_DIR [--year-only] [--quiet]\n"
              "       %(prog)s RECORDS_DIR --init [--mapping NEW_MAPPING.toml]",
        description="Turn a clinic's identified records into an anonymized export. --mapping, --key and --out "
                    "are required, except with --init, which writes a mapping skeleton and stops.")
    p.add_argument("records_dir", metavar="RECORDS_DIR",
                   help="folder holding the records: CSV files (patients.csv, sessions.csv, …) or one .xlsx "
                        "workbook whose sheets are the tables")
    needed = p.add_argument_group("required (except with --init)")
    needed.add_argument("--mapping", metavar="MAPPING",
                        help="mapping TOML file, or `generic` for the shipped generic layout (with --init: the new "
                             "file to write; without it, or -, the skeleton is printed)")
    needed.add_argument("--key", metavar="KEY_FILE",
                        help="the clinic's secret key file; created (readable by you only) on first use")
    needed.add_argument("--out", metavar="EXPORT_DIR",
                        help="folder to write the anonymized export to (new, empty, or an earlier output of anonymize)")
    p.add_argument("--year-only", action="store_true",
                   help="start quarter as the year only (written YYYY-Q1), for sharing outside the clinic")
    p.add_argument("--init", action="store_true", help="write a mapping skeleton from the headers found, then stop")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_anonymize)

    p = sub.add_parser("sample", help="write a realistic, deterministic sample export")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created, or replaced whole if it holds a previous sample or export)")
    p.add_argument("--replace", action="store_true",
                   help="replace DIR even if it holds files that are not a previous sample or export")
    p.add_argument("--patients", type=int, default=store.SAMPLE_PATIENTS, metavar="N")
    p.add_argument("--seed", type=int, default=store.SAMPLE_SEED, metavar="S")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="write the CSV summaries for a cohort")
    p.add_argument("--db", required=True, metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created, or replaced whole if it holds a previous export)")
    p.add_argument("--replace", action="store_true",
                   help="replace DIR even if it holds files that are not a previous export")
    Settings.add_arguments(p)
    p.add_argument("--scope", action="append", metavar="SITE",
                   help="only these sites (repeat for several): a site director's export; a --site outside "
                        "them is named and dropped")
    p.add_argument("--quiet", action="store_true", help="no progress messages (errors and warnings are still said)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write the PDF report of a cohort (the dashboard's 'Download report')")
    p.add_argument("--db", required=True, metavar="PATH")
    p.add_argument("--out", required=True, metavar="FILE.pdf")
    Settings.add_arguments(p)
    p.add_argument("--scope", action="append", metavar="SITE",
                   help="only these sites (repeat for several): a site director's report; a --site outside "
                        "them is named and dropped")
    p.add_argument("--quiet", action="store_true", help="no progress messages (errors and warnings are still said)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="start the dashboard (default: the built-in sample data)")
    p.add_argument("--db", metavar="PATH", help="database to show (default: the built-in sample, built if missing)")
    p.add_argument("--port", type=int, default=8501, metavar="N")
    p.add_argument("--address", default="127.0.0.1", metavar="HOST",
                   help="address to listen on; anything but 127.0.0.1/localhost needs sign-in configured")
    p.add_argument("--access-file", dest="access_file", metavar="CSV",
                   help="roles and sites by e-mail (email,role,sites) for a provider without role/sites claims")
    p.set_defaults(func=cmd_serve)
    return parser


def empty_path_flag(args: argparse.Namespace) -> str | None:
    """The message for a path flag given as an empty string (`--out ""`), else None.

    An empty path is the current folder to pathlib (Path("") is "."): `sample --out ""` wrote into it,
    `report --out ""` and `import --db ""` failed with a traceback. It is never what was meant."""
    for dest, flag in (("db", "--db"), ("out", "--out"), ("key", "--key"), ("access_file", "--access-file")):
        value = getattr(args, dest, None)
        if value is None or value.strip():
            continue
        what = {
            "db": "the database file, such as clinic.duckdb",
            "out": "the PDF file to write, such as report.pdf" if args.command == "report"
            else "a new or empty folder to write to, such as ./export",
            "key": "the clinic's key file, such as ~/clinic.key",
            "access_file": "the access file, such as access.csv",
        }[dest]
        return f"error: {flag} is empty: give {what}."
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = empty_path_flag(args)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except store.InstallationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INSTALLATION
    except ModuleNotFoundError as exc:
        # a dependency that pip should have installed is absent: the installation, not the input, is at fault
        print(f"error: Ketamine Outcomes is installed incompletely: the package {exc.name!r} it needs is missing. "
              f"{store.REINSTALL}", file=sys.stderr)
        return EXIT_INSTALLATION


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
