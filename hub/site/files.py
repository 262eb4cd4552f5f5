"""The one way this platform replaces a file: readers see the old content or the new, never half.

A temporary file with a random name is made next to the target (O_EXCL: a name another user
planted, a link among them, is never followed), filled, given its mode, flushed to disk, and
renamed over the target. `check`, when given, sees the finished temporary first (visudo checks
a sudo rule there) and may raise to keep the old file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, content: str | bytes, mode: int = 0o644,
                 check: Callable[[Path], object] | None = None) -> Path:
    """Replace `path` by `content` (str is written as UTF-8) with permissions `mode`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content.encode() if isinstance(content, str) else content)
            os.fchmod(out.fileno(), mode)
            out.flush()
            os.fsync(out.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
