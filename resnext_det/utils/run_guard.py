"""One writer per output folder, and worker processes that end with their launcher.

Two runs writing one ``OUTPUT_DIR`` would overwrite each other's checkpoints and
``last_checkpoint``; :func:`exclusive_output_dir` makes the second end at once, in one line
naming the folder and the first run's pid. The lock is an ``flock`` on ``OUTPUT_DIR/.lock``,
held by the launching process for the whole run, and released by the kernel whenever that
process ends (``kill -9`` included), so a stale lock cannot outlive its run.

Detectron2's ``launch`` spawns one worker per process; a SIGTERM (a scheduler, ``kill``)
ends only the launcher, and its workers would write on without it, unlocked.
:func:`workers_end_with_launcher` ends them first.
"""

import fcntl
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .atomic_io import make_output_dir, remove_abandoned_partials
from .errors import OutputError

__all__ = [
    "LOCK_FILE",
    "exclusive_output_dir",
    "exclusive_output_dir_of_group",
    "workers_end_with_launcher",
]

LOCK_FILE = ".lock"
# Seconds a worker gets to end after SIGTERM before it is killed: a worker blocked in a
# collective (gloo, NCCL) may not run its signal handling until the collective times out.
GRACE_SECONDS = 10.0


def _owner(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def exclusive_output_dir(path: os.PathLike, what: str = "OUTPUT_DIR") -> Iterator[Path]:
    """Hold the output folder ``path`` for this process while the block runs.

    Creates the folder (:func:`~resnext_det.utils.atomic_io.make_output_dir`), locks it, and
    removes temporary files that killed runs left in it.

    Raises:
        OutputError: the folder cannot be written, or another run holds it.
    """
    folder = make_output_dir(path, what)
    lock = folder / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec: workers lack it
    except OSError as e:
        raise OutputError(
            f"{what}={str(folder)!r}: cannot create its lock file {lock} ({e.strerror}); "
            "expected a folder this user can write"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{what}={str(folder)!r} is in use by another run (pid {_owner(lock)}); "
                f"expected one run per output folder: wait for that run to end, or choose "
                f"another {what}"
            ) from None
        except OSError as e:  # a file system without locks (some network mounts)
            raise OutputError(
                f"{what}={str(folder)!r} cannot be locked ({e.strerror}); expected a folder "
                "on a file system with flock, so that two runs cannot write it at once"
            ) from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_abandoned_partials(folder)
        yield folder
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race)


@contextmanager
def exclusive_output_dir_of_group(
    path: os.PathLike, is_main: bool, world_size: int, what: str = "OUTPUT_DIR"
) -> Iterator[None]:
    """:func:`exclusive_output_dir` for processes started together (torchrun), which have
    no launcher of ours: the main process holds the folder, and if it cannot, every process
    ends with its one-line error (rather than waiting for it at the next collective)."""
    with ExitStack() as stack:
        error = None
        if is_main:
            try:
                stack.enter_context(exclusive_output_dir(path, what))
            except OutputError as e:
                error = str(e)
        if world_size > 1:
            import torch.distributed as dist

            shared = [error]
            dist.broadcast_object_list(shared, src=0)
            error = shared[0]
        if error is not None:
            raise OutputError(error)
        yield


def _end_children() -> int:
    """Terminate this process's children (SIGTERM, then SIGKILL after a grace period) and
    wait for them; return how many there were."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(GRACE_SECONDS)
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()
    return len(children)


@contextmanager
def workers_end_with_launcher(what: str = "the run") -> Iterator[None]:
    """While the block runs, a SIGTERM to this process first ends its worker processes.

    The launcher then exits with code 143 (128 + SIGTERM) after one line on stderr; so it
    holds its output folder until no worker can write there any more. Checkpoints are
    written atomically, so the last one is whole whenever a worker is stopped.
    """

    def on_sigterm(signum: int, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one would end this one
        ended = _end_children()
        print(
            f"error: {what} was stopped by SIGTERM; its {ended} worker process(es) were "
            "ended too, and the last checkpoint written is whole (rerun with --resume to "
            "continue)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
