"""Files written whole or not at all: a temporary file beside the target, then a rename.

A run killed mid-write (``kill -9``, a pre-emption) leaves the previous file, or none,
never a truncated one that a later run would trust: checkpoints, proposal files, stage
markers, split jsons, converted weights.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically", "write_text_atomically"]


def write_atomically(path: os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary binary file, flush it to disk, rename it to ``path``."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def write_text_atomically(path: os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))
