"""How the command-line tools start and end: user errors in one line, bugs with their traceback.

Every tool's entry point runs under :func:`run_tool`, which first sets the tools' warnings
and logging (:func:`set_tool_policy`): they are the tools' choice, so importing
``resnext_det`` as a library changes neither. A :class:`~resnext_det.utils.errors.UserError`
is printed as ``error: <message>`` on stderr and ends the tool with its exit code (2; 3
when training diverged), without a traceback; so does one raised in a worker process of
a multi-process launch, which prints it itself (:func:`worker_errors`) and exits with
that code. Any other exception propagates with its traceback.
"""

import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

from torch.multiprocessing.spawn import ProcessExitedException

from .errors import TrainingDiverged, UserError

__all__ = [
    "USER_ERROR_EXIT_CODES",
    "report",
    "run_tool",
    "set_tool_policy",
    "worker_errors",
]

USER_ERROR_EXIT_CODES = (UserError.exit_code, TrainingDiverged.exit_code)


# PyTorch re-raises an exception of a DataLoader worker with the worker's whole traceback
# as its message; the user error is the last line, after the exception's class name.
_FROM_LOADER_WORKER = re.compile(
    r"^Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback .*\n[\w.]+: (.+?)\s*$",
    re.S,
)


class _WithoutUserErrorTracebacks(logging.Filter):
    """Detectron2 logs every exception of its training loop with a traceback; a user error
    (a NaN loss among them) is reported by the tool in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UserError))


_TRAINING_LOOP_FILTER = _WithoutUserErrorTracebacks()


def set_tool_policy() -> None:
    """The tools' warnings and logging (set by :func:`run_tool` and :func:`worker_errors`).

    Two deprecations inside Detectron2's own code that torch reports on every run (it
    scripts functions, which importing ``resnext_det`` quiets on import; its anchor
    generator calls meshgrid without indexing) concern Detectron2, not the user, and would
    bury our messages; and a user error raised
    in Detectron2's training loop is reported in one line, without the loop's traceback.
    Safe to call again.
    """
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings(
        "ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning
    )
    logging.getLogger("detectron2.engine.train_loop").addFilter(_TRAINING_LOOP_FILTER)


def report(error: UserError) -> None:
    """Print a user error as one line on stderr (without a data loader worker's traceback)."""
    text = str(error)
    from_worker = _FROM_LOADER_WORKER.match(text)
    if from_worker:
        text = from_worker[1]
    message = " ".join(text.split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_tool(main: Callable[[], Optional[int]]) -> None:
    """Run a tool's ``main`` under the tools' policy (:func:`set_tool_policy`) and exit: 0,
    its return code, or the code of a user error."""
    set_tool_policy()
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
    """In a worker of a multi-process launch: the tools' policy, and a user error reported
    with its exit code, so that the launcher neither prints a traceback nor waits for the
    other workers."""
    set_tool_policy()
    try:
        yield
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
