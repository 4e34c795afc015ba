"""Files that must never be seen half-written (a run's metrics.json, a summary's tables)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated metrics.json."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write atomically: an interrupted summary or search never leaves half a file. The temporary
    file's name is unique to this writer, so two processes (DDP ranks, sweep jobs) writing the same
    file never interleave in one temporary file; the last rename wins whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file reads as a plain write's would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
