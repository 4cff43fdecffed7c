"""Load weight files without running code hidden in them, and refuse broken ones in one line.

``torch.load`` runs with ``weights_only=True``. Detectron2's model-zoo ``.pkl`` files are
plain pickles, which Detectron2 loads with ``pickle.load``: a crafted one runs any code
it likes. Here they go through an unpickler that builds only numpy arrays and plain
containers and refuses everything else before it is called.

Every weight file goes through :func:`load_weight_file`, which reads it by its content (a
torch zip, a pickle, safetensors), not by its name, and turns each way a file can be
wrong into one line naming it: a URL (nothing is downloaded), a missing file, a text file,
a truncated or corrupt one, a pickle asking for Python objects (torch's own message would
advise loading it with ``weights_only=False``, that is, running them). Its tensors must
then be finite (:func:`check_finite_weights`): NaN weights would evaluate to AP nan, or
train into a loss blamed on the learning rate.

Checkpoints are also written safely: to a temporary file, then renamed, so a run killed
mid-save leaves the previous checkpoint and ``last_checkpoint`` intact for ``--resume``.
"""

import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from ..utils.atomic_io import write_atomically, write_text_atomically
from ..utils.errors import MissingFileError, WeightsError
from ..utils.safe_pickle import UnsafePickleError, load_pickle_safely

__all__ = [
    "SafeDetectionCheckpointer",
    "UnsafePickleError",
    "check_finite_weights",
    "load_pickle_safely",
    "load_weight_file",
    "read_checkpoint",
    "refuse_url",
]

WEIGHT_FORMATS = "a torch checkpoint (.pth), a Detectron2 model-zoo pickle (.pkl) or .safetensors"


def _refused_code(label: str, global_name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"refusing to load {global_name} from {label}: the file holds Python objects other "
        "than tensors and arrays, and loading them could run code; expected a weight file of "
        "tensors or arrays in plain containers",
        global_name,
    )


def _reason(error: BaseException) -> str:
    """The first sentence of an exception's message, for a one-line error."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.split(". ")[0][:160]


def refuse_url(path: str, label: Optional[str] = None) -> None:
    """Refuse a URL (``http://``, ``detectron2://``): this project downloads nothing."""
    if "://" in str(path):
        raise WeightsError(
            f"{label or path} is a URL; expected a local weight file (nothing is downloaded: "
            "fetch the file first and give its path)"
        )


def _local_file(path: str, label: str) -> Path:
    """``path`` as a local file, or a one-line error: a URL, missing, a folder."""
    refuse_url(path, label)
    file = Path(path)
    if not file.exists():
        raise MissingFileError(f"{label} does not exist; expected a weight file")
    if not file.is_file():
        raise WeightsError(f"{label} is a folder; expected a weight file")
    return file


def _is_safetensors(head: bytes, size: int) -> bool:
    # An 8-byte little-endian header length, then the JSON header.
    return len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _torch_load(path: Path, label: str) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        asked = re.search(r"GLOBAL ([\w.]+)", str(e))
        if asked:
            raise _refused_code(label, asked[1]) from None  # not torch's advice to run it
        raise WeightsError(
            f"{label} cannot be read as a torch checkpoint ({_reason(e)}); expected "
            f"{WEIGHT_FORMATS}, whole"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (a corrupt file fails in many ways inside torch)
        raise WeightsError(
            f"{label} is corrupt or truncated ({_reason(e)}); expected a whole torch checkpoint"
        ) from e


def _pickle_load(path: Path, label: str) -> Any:
    try:
        return load_pickle_safely(io.BytesIO(path.read_bytes()))
    except UnsafePickleError as e:
        raise _refused_code(label, e.global_name) from None
    except Exception as e:  # noqa: BLE001 (garbage fails anywhere in the unpickler)
        raise WeightsError(
            f"{label} cannot be read as a pickle of arrays ({_reason(e)}); expected a whole "
            "Detectron2 model-zoo .pkl"
        ) from e


def _safetensors_load(path: Path, label: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # ships with timm

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 (SafetensorError and others, from Rust)
        raise WeightsError(
            f"{label} is corrupt or truncated ({_reason(e)}); expected a whole .safetensors file"
        ) from e


def load_weight_file(path: str, label: Optional[str] = None, safetensors: bool = True) -> Any:
    """A local weight file's content, read by what it holds and without running code.

    A torch zip or legacy checkpoint loads with ``torch.load(weights_only=True)``, a
    ``.pkl`` with the restricted unpickler, a safetensors file (whatever its suffix) with
    the safetensors reader.

    Args:
        path: the file.
        label: how errors name it (default: the path), e.g. ``"MODEL.WEIGHTS='x.pth'"``.
        safetensors: accept safetensors files (the converter does; Detectron2's checkpoint
            loading does not, so its callers refuse them in one line instead).

    Raises:
        WeightsError: in one line naming the file, for a URL, a missing file or a folder, a
            file that is no weight file (text, say), a corrupt or truncated one, and (as
            :class:`UnsafePickleError`) one holding Python objects.
    """
    label = label or str(path)
    file = _local_file(path, label)
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(16)
    if size == 0:
        raise WeightsError(f"{label} is empty; expected {WEIGHT_FORMATS}")
    if _is_safetensors(head, size):
        if not safetensors:
            raise WeightsError(
                f"{label} is a safetensors file; expected a Detectron2 checkpoint (.pth or "
                ".pkl): convert it first with tools/convert_weights.py"
            )
        return _safetensors_load(file, label)
    if head.startswith(b"PK\x03\x04"):  # torch's zip format, whatever the suffix
        return _torch_load(file, label)
    if file.suffix == ".pkl":
        return _pickle_load(file, label)
    if head.startswith(b"\x80"):  # a pickle (protocol 2+): torch's legacy format
        return _torch_load(file, label)
    raise WeightsError(
        f"{label} is not a weight file (it begins with {head[:12]!r}); expected {WEIGHT_FORMATS}"
    )


def _non_finite(value: Any) -> Optional[tuple[str, int, int]]:
    """("NaN" or "infinite", how many, of how many) for a float tensor or array that is not
    finite, else None."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        # numpy itself: Caffe2 pickles may hold big-endian or read-only arrays.
        finite, isnan = np.isfinite(value), np.isnan
    elif isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
        finite, isnan = torch.isfinite(value), torch.isnan
    else:
        return None
    if bool(finite.all()):
        return None
    kind = "NaN" if bool(isnan(value).any()) else "infinite"
    return (
        kind,
        int((~finite).sum()),
        int(value.size if isinstance(value, np.ndarray) else value.numel()),
    )


def check_finite_weights(weights: Mapping[str, Any], label: str) -> None:
    """Raise unless every float tensor or array in ``weights`` is finite.

    The one check every weight file passes where it enters: training (``MODEL.WEIGHTS``,
    a checkpoint to resume, pretraining's too), evaluation, ``tools/demo.py``,
    ``tools/export_model.py`` and the converter.

    Raises:
        WeightsError: naming the file (``label``), the first non-finite tensor and how many
            others there are.
    """
    bad = [(key, found) for key, value in weights.items() if (found := _non_finite(value))]
    if bad:
        key, (kind, count, total) = bad[0]
        others = f", and {len(bad) - 1} more tensor(s) are not finite" if len(bad) > 1 else ""
        raise WeightsError(
            f"{label} holds {kind} values in {key!r} ({count} of its {total}){others}; expected "
            "finite weights (the file is corrupt, or was saved by a run that diverged)"
        )


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
            _local_file(urlparse(path)._replace(query="").geturl(), self.label or str(path))
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
                    f"{label}: {_reason(e)}; expected at most '?matching_heuristics=True' after "
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
        data = data.get("blobs", data)
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
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
