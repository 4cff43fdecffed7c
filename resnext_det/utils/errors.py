"""Errors that are the user's to fix, told apart from the project's own.

A :class:`UserError` names the bad value and what was expected in one line; the tools
print it and exit with code 2, without a traceback (``resnext_det.utils.cli``). Any other
exception is a bug of ours or of a library and keeps its traceback. Each class also
derives from the builtin a caller would expect (a bad config value is a ``ValueError``,
a missing file a ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

__all__ = [
    "ConfigError",
    "DataError",
    "MissingFileError",
    "OutputError",
    "TrainingDiverged",
    "UserError",
    "WeightsError",
]


class UserError(Exception):
    """Something the user gave (a config, a path, data, weights) is not what is expected."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config file, key or value is invalid."""


class DataError(UserError, ValueError):
    """A dataset's files or annotations are not usable."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the run needs does not exist."""


class OutputError(UserError, OSError):
    """An output file or folder cannot be written: a file where a folder should be, no
    permission, a full disk, another run writing to the same folder."""


class WeightsError(UserError, ValueError):
    """A weight file cannot be read safely, or does not fit the model."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3

    @classmethod
    def stopped(cls, event: str, checkpointer, warmup_key: str) -> "TrainingDiverged":
        """The error for ``event`` ("the loss became NaN at iteration 7"), naming the last
        checkpoint of ``checkpointer`` (an fvcore ``Checkpointer``) and what to change."""
        last = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else ""
        return cls(
            f"{event}; training stopped before the optimizer step or a save could keep it, "
            f"so the weights of the last checkpoint ({last or 'none written yet'}) are "
            f"intact; expected finite values: lower SOLVER.BASE_LR or raise {warmup_key}, "
            "then rerun with --resume"
        )
