"""Writing files atomically: every file lstm_np saves (vocabularies, checkpoint arrays and manifests, metrics)
goes through `atomic_write`, so a reader never sees a half-written file.

The write goes to a temporary file in the destination's folder, which is flushed and fsynced and then
renamed onto the destination with os.replace (atomic on POSIX and Windows within one file system). A
process killed mid-write leaves at most a temporary file named `TEMP_PREFIX...` behind, never a truncated
destination; checkpoint.py deletes such leftovers on its next save.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "atomic_write"]

TEMP_PREFIX = ".tmp-"   # names of atomic_write's temporary files: a kill mid-write leaves only these behind


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file object) on a temporary file beside `path`, fsync it, then os.replace it onto `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
