"""How the command-line tools end: user errors in one line, bugs with their traceback.

Every tool's entry point runs under :func:`run_tool`. A :class:`~resnext_det.errors.UserError`
is printed as ``error: <message>`` on stderr and ends the tool with its exit code (2; 3
when training diverged), without a traceback; so does one raised in a worker process of
a multi-process launch, which prints it itself (:func:`worker_errors`) and exits with
that code. Any other exception propagates with its traceback.
"""

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

from torch.multiprocessing.spawn import ProcessExitedException

from .errors import TrainingDiverged, UserError

__all__ = ["USER_ERROR_EXIT_CODES", "report", "run_tool", "worker_errors"]

USER_ERROR_EXIT_CODES = (UserError.exit_code, TrainingDiverged.exit_code)


# PyTorch re-raises an exception of a DataLoader worker with the worker's whole traceback
# as its message; the user error is the last line, after the exception's class name.
_FROM_LOADER_WORKER = re.compile(
    r"^Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback .*\n[\w.]+: (.+?)\s*$",
    re.S,
)


def report(error: UserError) -> None:
    """Print a user error as one line on stderr (without a data loader worker's traceback)."""
    text = str(error)
    from_worker = _FROM_LOADER_WORKER.match(text)
    if from_worker:
        text = from_worker[1]
    message = " ".join(text.split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_tool(main: Callable[[], Optional[int]]) -> None:
    """Run a tool's ``main`` and exit: 0, its return code, or the code of a user error."""
    try:
        code = main()
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
    except ProcessExitedException as e:
        if e.exit_code in USER_ERROR_EXIT_CODES:  # the worker has reported it already
            sys.exit(e.exit_code)
        raise
    sys.exit(code or 0)


@contextmanager
def worker_errors() -> Iterator[None]:
    """In a worker of a multi-process launch: report a user error and exit with its code,
    so that the launcher neither prints a traceback nor waits for the other workers."""
    try:
        yield
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
