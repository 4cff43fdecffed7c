"""Detectron2's checkpointer, reading through the one safe reader and saving atomically.

Detectron2 loads ``.pkl`` files with ``pickle.load`` and downloads URLs; this checkpointer
reads every file with :func:`~.safe_load.load_weight_file` (no code runs, each broken file
ends in one line naming it) and checks its weights finite. Checkpoints are written to a
temporary file, then renamed, so a run killed mid-save leaves the previous checkpoint and
``last_checkpoint`` intact for ``--resume``.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from ..utils.atomic_io import write_atomically, write_text_atomically
from ..utils.errors import WeightsError
from .safe_load import (
    check_finite_weights,
    drop_caffe2_momentum,
    load_weight_file,
    reason_of,
    refuse_url,
    require_local_file,
)

__all__ = ["SafeDetectionCheckpointer", "read_checkpoint"]


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer: files load without executing code and save atomically.

    Every file is read by :func:`load_weight_file` and its weights checked finite, so a
    URL, a missing, corrupt, crafted or NaN file ends in one line naming it.
    """

    # How errors name the file being loaded (read_checkpoint sets the config key).
    label: Optional[str] = None

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Detectron2's ``load``, which refuses a URL or a missing file in one line (fvcore
        would download the one and assert on the other)."""
        if path:
            require_local_file(urlparse(path)._replace(query="").geturl(), self.label or str(path))
        return super().load(path, *args, **kwargs)

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
        label = self.label or filename
        if filename.endswith(".pkl"):
            data = self._load_pickle(filename, label)
        else:
            # .pth and the rest end in _torch_load below, with Detectron2's handling of
            # "?matching_heuristics=True"; .pyth (pycls) in torch.load, whose default has
            # been weights_only=True since torch 2.6.
            try:
                data = super()._load_file(filename)
            except ValueError as e:  # Detectron2's, for a query it does not know
                if isinstance(e, WeightsError):
                    raise
                raise WeightsError(
                    f"{label}: {reason_of(e)}; expected at most '?matching_heuristics=True' after "
                    "the file name"
                ) from e
        if isinstance(data.get("model"), Mapping):
            check_finite_weights(data["model"], label)
        return data

    def _load_pickle(self, filename: str, label: str) -> dict[str, Any]:
        data = load_weight_file(filename, label, safetensors=False)
        if not isinstance(data, dict):
            raise WeightsError(f"{label} holds a {type(data).__name__}; expected a dict of arrays")
        if "model" in data and "__author__" in data:  # Detectron2 model zoo format
            return data
        # Caffe2 / Detectron1 model zoo format, as Detectron2 reads it.
        data = drop_caffe2_momentum(data.get("blobs", data))
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f: str) -> dict[str, Any]:
        label = self.label or f
        data = load_weight_file(f, label, safetensors=False)
        if not isinstance(data, Mapping):
            raise WeightsError(f"{label} holds a {type(data).__name__}; expected a dict of weights")
        return dict(data)


def read_checkpoint(path: str, label: Optional[str] = None) -> dict[str, Any]:
    """A weight file's content as Detectron2's checkpointer will see it, read safely.

    The same formats and flags as :meth:`SafeDetectionCheckpointer.load` (``"model"``,
    ``"matching_heuristics"``, ``"__author__"``), without loading anything into a model.

    Args:
        path: the file, as ``MODEL.WEIGHTS`` names it (a ``?matching_heuristics=True``
            query included).
        label: how errors name it (default: the path).
    """
    refuse_url(path, label)
    parsed = urlparse(path)  # Detectron2 accepts "file.pth?matching_heuristics=True"
    local = parsed._replace(query="").geturl()
    reader = SafeDetectionCheckpointer(nn.Module())
    reader.label = label
    # Detectron2 reads the query from this attribute, which only load() sets.
    reader._parsed_url_during_load = parsed
    try:
        return reader._load_file(local)
    finally:
        reader._parsed_url_during_load = None
