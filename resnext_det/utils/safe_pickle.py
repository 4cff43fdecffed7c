"""Unpickle numpy arrays in plain containers, and nothing else.

Detectron2's model-zoo ``.pkl`` files and its proposal files are plain pickles, which
Detectron2 reads with ``pickle.load``: a crafted one runs any code it likes. This
unpickler builds only numpy arrays and plain containers and refuses every other global
before it is called.
"""

import pickle
from typing import Any, BinaryIO

from .errors import WeightsError

__all__ = ["UnsafePickleError", "load_pickle_safely"]

# Everything a pickle of numpy arrays in dicts/lists/tuples needs, for numpy 1 and 2
# and for Python-2 pickles (Caffe2 model zoo) read with encoding="latin1".
_ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        # Pickle protocol 5 (Python 3.14's default) rebuilds arrays from raw bytes.
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class UnsafePickleError(pickle.UnpicklingError, WeightsError):
    """A pickle asked for something other than numpy arrays and plain containers.

    Attributes:
        global_name: what it asked for (``"posix.system"``).
    """

    def __init__(self, message: str, global_name: str = "an object"):
        super().__init__(message)
        self.global_name = global_name


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a pickle; weight files may hold only "
            "numpy arrays and plain containers",
            f"{module}.{name}",
        )


def load_pickle_safely(file: BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle numpy arrays and plain containers; raise :class:`UnsafePickleError` otherwise."""
    return _RestrictedUnpickler(file, encoding=encoding).load()
