"""Output folders replaced all or nothing: the new folder is written beside the old one, then swapped in.

Used by the export, `sample` (dashboard/reports/export.py's `write_folder`) and `anonymize`
(dashboard/data/anonymize.py): a run that fails anywhere, the swap included, leaves the previous output as
it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def swap_in(new: Path, out: Path) -> None:
    """Put the folder `new` at `out` (same file system: beside it), replacing a folder already there.

    The previous `out` is first moved aside, and moved back if `new` cannot take its place, so `out` is
    never missing or half written; once `new` is in place the previous folder is deleted. Raises OSError
    (the previous folder then still at `out`)."""
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        if old is not None:
            os.replace(old, out)  # put the previous output back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
