"""Detectron2's checkpointer, reading through the one safe reader and saving atomically.

Detectron2 loads ``.pkl`` files with ``pickle.load`` and downloads URLs unchecked; this
checkpointer resolves what it is given (:func:`~.resolve.resolve_weights`: a published
name or a URL downloaded and checked, a file in another format converted) and reads every
file with :func:`~.safe_load.load_weight_file` (no code runs, each broken file ends in one
line naming it) and checks its weights finite. Checkpoints are written to a temporary
file, then renamed, so a run killed mid-save leaves the previous checkpoint and
``last_checkpoint`` intact for ``--resume``.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from ..utils.atomic_io import write_atomically, write_text_atomically
from ..utils.errors import WeightsError
from .resolve import resolve_weights
from .safe_load import (
    check_finite_weights,
    drop_caffe2_momentum,
    load_weight_file,
    reason_of,
)

__all__ = ["SafeDetectionCheckpointer", "read_checkpoint"]


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer: files load without executing code and save atomically.

    Every name is resolved (:func:`resolve_weights`), every file read by
    :func:`load_weight_file` and its weights checked finite, so a failed download, a
    missing, corrupt, crafted or NaN file ends in one line naming it.
    """

    # How errors name the file being loaded (read_checkpoint sets the config key).
    label: Optional[str] = None

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Detectron2's ``load`` of what ``path`` names once resolved: a published name or
        a URL downloaded and checked, a file in another format converted, a missing file
        refused in one line (fvcore would assert)."""
        if path:
            label = self.label or str(path)
            path = resolve_weights(path, label, self.model.state_dict().keys()).path
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
        _check_tensors(data.get("model"), label)
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


def _check_tensors(weights: Any, label: str) -> None:
    """Refuse weights that are not tensors or arrays (a small hand-made file of lists), on
    which Detectron2 would fail with "Unsupported type found in checkpoint"."""
    if not isinstance(weights, Mapping):
        raise WeightsError(
            f"{label} holds its weights as a {type(weights).__name__}; expected a dict of "
            "tensors or arrays"
        )
    for key, value in weights.items():
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise WeightsError(
                f"{label} holds {key!r} as a {type(value).__name__}, not a tensor or array; "
                "expected a weight file of tensors or arrays (a .pkl without '__author__' "
                "is read as Detectron2 reads it: Caffe2 blobs, each name an array)"
            )


def read_checkpoint(
    path: str, label: Optional[str] = None, model: Optional[nn.Module] = None
) -> dict[str, Any]:
    """A weight file's content as Detectron2's checkpointer will see it, read safely.

    The same resolution, formats and flags as :meth:`SafeDetectionCheckpointer.load`
    (``"model"``, ``"matching_heuristics"``, ``"__author__"``), without loading anything
    into a model.

    Args:
        path: the file, as ``MODEL.WEIGHTS`` names it (a published name, a URL, a
            ``?matching_heuristics=True`` query included).
        label: how errors name it (default: the path).
        model: the model it is for, as the checkpointer would be given it (a file that has
            its names is read as it is, not converted).
    """
    keys = model.state_dict().keys() if model is not None else None
    path = resolve_weights(path, label, keys).path
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
