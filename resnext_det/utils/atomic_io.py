"""Files written whole or not at all: a temporary file beside the target, then a rename.

A run killed mid-write (``kill -9``, a pre-emption) leaves the previous file, or none,
never a truncated one that a later run would trust: checkpoints, proposal files, stage
markers, split jsons, converted weights. A write that fails (a full disk, no permission)
removes its temporary file and ends in one line (:class:`~resnext_det.utils.errors.OutputError`).

Each writer's temporary file has its own name (``<name>.<pid>-<random>.partial``), so two
processes writing the same target never write into one file; a file left by a killed
writer is removed by :func:`remove_abandoned_partials` (the next run on that folder).
"""

import os
import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Optional

from .errors import OutputError

__all__ = [
    "check_output_dir",
    "make_output_dir",
    "remove_abandoned_partials",
    "write_atomically",
    "write_text_atomically",
]

_PARTIAL = re.compile(r".+\.(\d+)-[0-9a-f]{8}\.partial")


def _partial_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer uses (pid and a random part)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


def write_atomically(path: os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary binary file, flush it to disk, rename it to ``path``.

    Raises:
        OutputError: the file cannot be written (``path``'s folder is missing or read-only,
            the disk is full); the previous file at ``path``, if any, is intact and no
            temporary file is left.
    """
    path = Path(path)
    partial = _partial_path(path)
    try:
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException as e:  # a kill by signal included: nothing half-written remains
        partial.unlink(missing_ok=True)
        failed = _failed_write(e)
        if failed is not None:
            raise OutputError(
                f"cannot write {path} ({failed.strerror}); expected a writable folder with "
                f"free space (the previous {path.name}, if there was one, is intact)"
            ) from e
        raise


def _failed_write(error: BaseException) -> Optional[OSError]:
    """The OSError of the file system behind ``error``: ``error`` itself, or the one it was
    raised while handling (torch's zip writer turns a failed write of ours into a
    ``RuntimeError("... unexpected pos ...")``); None if there is none."""
    while error is not None and not isinstance(error, OutputError):
        if isinstance(error, OSError) and error.errno is not None:
            return error
        error = error.__context__
    return None


def write_text_atomically(path: os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def check_output_dir(path: os.PathLike, what: str) -> Path:
    """Check, without creating anything, that the folder ``path`` can be created and written.

    For a tool to call before its work: the folder itself is made later
    (:func:`make_output_dir`), so a refused run leaves none behind.

    Args:
        path: the folder.
        what: how the user named it in the error (``"OUTPUT_DIR"``, ``"--output"``).

    Raises:
        OutputError: ``path`` or a parent of it is a file, or the nearest existing folder
            cannot be written; in one line.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under a file ({existing})"
        raise OutputError(
            f"{what}={str(path)!r} {where}; expected a folder (or a path where one can be created)"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):  # os.access would be wrong for root
            pass
    except OSError as e:
        raise OutputError(
            f"{what}={str(path)!r} cannot be written ({e.strerror} in {existing}); expected a "
            "folder this user can create and write"
        ) from e
    return path


def make_output_dir(path: os.PathLike, what: str) -> Path:
    """Create the output folder ``path`` (with its parents), checked as by
    :func:`check_output_dir`.

    Raises:
        OutputError: as :func:`check_output_dir`, or the folder cannot be created.
    """
    path = check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"{what}={str(path)!r} cannot be created ({e.strerror}); expected a folder this "
            "user can create and write"
        ) from e
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_abandoned_partials(folder: os.PathLike) -> list[Path]:
    """Remove the temporary files of killed writers in ``folder`` and its subfolders.

    Only files named as :func:`write_atomically` names them, whose writing process is gone.
    Call it while holding the folder (:func:`resnext_det.utils.run_guard.exclusive_output_dir`).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for path in [*folder.glob("*.partial"), *folder.glob("*/*.partial")]:
        match = _PARTIAL.fullmatch(path.name)
        if match and not _alive(int(match[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
