"""Load weight files without running code hidden in them.

``torch.load`` runs with ``weights_only=True``. Detectron2's model-zoo ``.pkl`` files are
plain pickles, which Detectron2 loads with ``pickle.load``: a crafted one runs any code
it likes. Here they go through an unpickler that builds only numpy arrays and plain
containers and refuses everything else before it is called.

Checkpoints are also written safely: to a temporary file, then renamed, so a run killed
mid-save leaves the previous checkpoint and ``last_checkpoint`` intact for ``--resume``.
"""

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from torch import nn

from ..atomic_io import write_atomically, write_text_atomically
from ..errors import WeightsError

__all__ = [
    "SafeDetectionCheckpointer",
    "UnsafePickleError",
    "load_pickle_safely",
    "read_checkpoint",
]

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
    """A pickle asked for something other than numpy arrays and plain containers."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a pickle; weight files may hold only "
            "numpy arrays and plain containers"
        )


def load_pickle_safely(file: BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle numpy arrays and plain containers; raise :class:`UnsafePickleError` otherwise."""
    return _RestrictedUnpickler(file, encoding=encoding).load()


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer: files load without executing code and save atomically."""

    def save(self, name: str, **kwargs: Any) -> None:
        """Like fvcore's ``Checkpointer.save``, but a kill never leaves a truncated file."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = Path(self.save_dir) / basename
        self.logger.info(f"Saving checkpoint to {path}")
        write_atomically(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = Path(self.save_dir) / "last_checkpoint"
        write_text_atomically(path, last_filename_basename)

    def _load_file(self, filename: str) -> dict[str, Any]:
        if not filename.endswith(".pkl"):
            # .pth and the rest end in _torch_load below; .pyth (pycls) in torch.load,
            # whose default has been weights_only=True since torch 2.6.
            return super()._load_file(filename)
        with PathManager.open(filename, "rb") as f:
            data = load_pickle_safely(io.BytesIO(f.read()))
        if not isinstance(data, dict):
            raise WeightsError(
                f"{filename} holds a {type(data).__name__}; expected a dict of arrays"
            )
        if "model" in data and "__author__" in data:  # Detectron2 model zoo format
            return data
        # Caffe2 / Detectron1 model zoo format, as Detectron2 reads it.
        data = data.get("blobs", data)
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f: str) -> dict[str, Any]:
        with PathManager.open(f, "rb") as file:
            return torch.load(file, map_location=torch.device("cpu"), weights_only=True)


def read_checkpoint(path: str) -> dict[str, Any]:
    """A weight file's content as Detectron2's checkpointer will see it, read safely.

    The same formats and flags as :meth:`SafeDetectionCheckpointer.load` (``"model"``,
    ``"matching_heuristics"``, ``"__author__"``), without loading anything into a model.
    """
    parsed = urlparse(path)  # Detectron2 accepts "file.pth?matching_heuristics=True"
    local = PathManager.get_local_path(parsed._replace(query="").geturl())
    reader = SafeDetectionCheckpointer(nn.Module())
    # Detectron2 reads the query from this attribute, which only load() sets.
    reader._parsed_url_during_load = parsed
    try:
        return reader._load_file(local)
    finally:
        reader._parsed_url_during_load = None
