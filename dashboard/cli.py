"""The `ketamine-outcomes` command: import clinic exports, write sample data, export summaries, serve.

Each subcommand parses its flags, calls the same core functions the dashboard uses and turns their
errors into a clear message and a non-zero exit code (never a traceback).
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


def cmd_import(args: argparse.Namespace) -> int:
    from dashboard.data.ingest import ImportRefused, import_export

    try:
        summary = import_export(Path(args.export_dir), Path(args.db), progress=None if args.quiet else _progress)
    except ImportRefused as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"Import interrupted; {args.db} was not changed.", file=sys.stderr)
        return 130
    print(summary.describe())
    return EXIT_OK


def cmd_anonymize(args: argparse.Namespace) -> int:
    from dashboard.data import anonymize as an

    records = Path(args.records_dir)
    if args.init:
        if not records.is_dir():
            print(f"error: no folder at {records}: give the folder holding the records' CSV files", file=sys.stderr)
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
        key, created = an.load_key(key_path)
    except an.KeyFileError as exc:
        print(f"error: {exc}. Nothing was written.", file=sys.stderr)
        return EXIT_REFUSED
    if created:
        print(f"Created the key file {key_path} (readable by you only). Keep it safe and private: the same key "
              "gives the same pseudonyms next time.", file=sys.stderr)
    try:
        report = an.anonymize(records, mapping, key, out, year_only=args.year_only,
                              progress=None if args.quiet else _progress)
    except an.AnonymizeRefused as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_REFUSED
    print(report.describe())
    print(f"Wrote the anonymized export to {out}. Import it with: ketamine-outcomes import {out} --db PATH")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    from dashboard.data.sample import write_sample_export

    if args.patients < 1:
        print("--patients must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.seed < 0:
        print("--seed must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    counts = write_sample_export(
        Path(args.out), patients=args.patients, seed=args.seed, fmt=args.format,
        progress=None if args.quiet else _progress,
    )
    print(f"Wrote a sample export to {args.out}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from dashboard.reports.export import write_summaries
    from dashboard.analysis.settings import Settings, SettingsError

    try:
        settings = Settings.from_args(args)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        paths = write_summaries(Path(args.db), Path(args.out), settings)
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"Wrote {len(paths)} files to {args.out}: " + ", ".join(p.name for p in paths))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from dashboard.data.builtin import ensure_sample_database

    if args.db is None:
        db = ensure_sample_database(progress=_progress)
    else:
        db = Path(args.db)
        if not db.exists():
            print(f"error: no database at {db}. Import a clinic export first:\n"
                  f"  ketamine-outcomes import EXPORT_DIR --db {db}", file=sys.stderr)
            return EXIT_REFUSED
    app = Path(__file__).resolve().parent / "app" / "main.py"
    env = dict(os.environ, KETAMINE_OUTCOMES_DB=str(db.resolve()))
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        *streamlit_config_flags(),
        "--server.port", str(args.port), "--server.address", args.address,
    ]
    print(f"Serving {db} at http://localhost:{args.port}", file=sys.stderr)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return EXIT_OK


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

    p = sub.add_parser("import", help="load a clinic export (CSV or Parquet) into a database, all or nothing")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="folder holding patients, sessions, assessments[, adverse_events]")
    p.add_argument("--db", required=True, metavar="PATH", help="database file to create or replace")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("anonymize", help="turn a clinic's identified records into an anonymized export")
    p.add_argument("records_dir", metavar="RECORDS_DIR", help="folder of the records' CSV files")
    p.add_argument("--mapping", metavar="MAPPING",
                   help="mapping TOML file, or `generic` for the shipped generic layout (with --init: the file to write)")
    p.add_argument("--key", metavar="KEY_FILE", help="the clinic's secret key file; created (owner-only) on first use")
    p.add_argument("--out", metavar="EXPORT_DIR", help="folder to write the anonymized export to")
    p.add_argument("--year-only", action="store_true",
                   help="start quarter as the year only (written YYYY-Q1), for sharing outside the clinic")
    p.add_argument("--init", action="store_true", help="write a mapping skeleton from the headers found, then stop")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_anonymize)

    p = sub.add_parser("sample", help="write a realistic, deterministic sample export")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the export to")
    p.add_argument("--patients", type=int, default=store.SAMPLE_PATIENTS, metavar="N")
    p.add_argument("--seed", type=int, default=store.SAMPLE_SEED, metavar="S")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="write the CSV summaries for a cohort")
    p.add_argument("--db", required=True, metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    Settings.add_arguments(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="start the dashboard (default: the built-in sample data)")
    p.add_argument("--db", metavar="PATH", help="database to show (default: the built-in sample, built if missing)")
    p.add_argument("--port", type=int, default=8501, metavar="N")
    p.add_argument("--address", default="localhost", metavar="HOST")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
