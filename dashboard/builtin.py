"""The built-in sample database: generated from the sample generator and imported on first use."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from . import store


def ensure_sample_database(
    db_path: Path = store.DEFAULT_DB,
    *,
    patients: int = store.SAMPLE_PATIENTS,
    seed: int = store.SAMPLE_SEED,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Return the sample database, building it (deterministically) if it does not exist yet."""
    from .ingest import import_export
    from .sample import write_sample_export

    db_path = Path(db_path)
    if db_path.exists():
        return db_path
    if progress:
        progress(f"Building the built-in sample database ({patients:,} patients, seed {seed}) at {db_path} …")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ketamine-sample-") as tmp:
        export_dir = Path(tmp) / "export"
        write_sample_export(export_dir, patients=patients, seed=seed, fmt="parquet")
        import_export(export_dir, db_path, source_label=f"built-in sample ({patients} patients, seed {seed})")
    return db_path
