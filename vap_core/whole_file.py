"""Writing a file whole or not at all (torch-free, for the batch runner too)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_whole(path: Path, write: Callable[[Path], object]) -> bool:
    """`write(partial)` writes PATH.partial, which then replaces PATH at once: a reader (or a rerun that
    skips finished files) never sees half a file. A `write` that returns False leaves PATH as it was;
    the partial file never stays behind. Errors (OSError and the writer's) go to the caller."""
    partial = path.with_name(path.name + ".partial")
    try:
        if write(partial) is False:
            return False
        os.replace(partial, path)
        return True
    finally:
        partial.unlink(missing_ok=True)
