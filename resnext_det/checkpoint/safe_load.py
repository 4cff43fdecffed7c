"""Load weight files without running code hidden in them, and refuse broken ones in one line.

``torch.load`` runs with ``weights_only=True``. Detectron2's model-zoo ``.pkl`` files are
plain pickles, which Detectron2 loads with ``pickle.load``: a crafted one runs any code
it likes. Here they go through an unpickler that builds only numpy arrays and plain
containers and refuses everything else before it is called.

Every weight file goes through :func:`load_weight_file`, which reads it by its content (a
torch zip, a pickle, safetensors), not by its name, and turns each way a file can be
wrong into one line naming it: a URL (:mod:`.resolve` downloads those first), a missing
file, a text file, a truncated or corrupt one, a pickle asking for Python objects (torch's
own message would advise loading it with ``weights_only=False``, that is, running them).
Its tensors must
then be finite (:func:`check_finite_weights`): NaN weights would evaluate to AP nan, or
train into a loss blamed on the learning rate.

The layouts of weight files are known here too: where a file keeps its state dict, which
code base wrote it (:func:`guess_source`), the Caffe2 blobs that are no weights, whether a
file is one the converter wrote. The converter reads through :func:`read_weight_file`,
:mod:`.checkpointer` as Detectron2's checkpointer would.
"""

import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..utils.errors import MissingFileError, WeightsError
from ..utils.safe_pickle import UnsafePickleError, load_pickle_safely

__all__ = [
    "CONVERTED_AUTHOR",
    "UnsafePickleError",
    "check_finite_weights",
    "drop_caffe2_momentum",
    "guess_source",
    "is_converted_weights",
    "load_pickle_safely",
    "load_weight_file",
    "reason_of",
    "read_weight_file",
    "refuse_url",
    "require_local_file",
    "state_dict_of",
]

WEIGHT_FORMATS = "a torch checkpoint (.pth), a Detectron2 model-zoo pickle (.pkl) or .safetensors"


def _refused_code(label: str, global_name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"refusing to load {global_name} from {label}: the file holds Python objects other "
        "than tensors and arrays, and loading them could run code; expected a weight file of "
        "tensors or arrays in plain containers",
        global_name,
    )


def reason_of(error: BaseException) -> str:
    """The first sentence of an exception's message, for a one-line error."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.split(". ")[0][:160]


def refuse_url(path: str, label: Optional[str] = None) -> None:
    """Refuse a URL (``https://``, ``detectron2://``): the readers read local files, and
    names are resolved before (:func:`~.resolve.fetch_weights`, the checkpointer)."""
    if "://" in str(path):
        raise WeightsError(
            f"{label or path} is a URL; expected a local weight file (fetch_weights of "
            "resnext_det.checkpoint.resolve downloads one)"
        )


def require_local_file(path: str, label: str) -> Path:
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
            f"{label} cannot be read as a torch checkpoint ({reason_of(e)}); expected "
            f"{WEIGHT_FORMATS}, whole"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (a corrupt file fails in many ways inside torch)
        raise WeightsError(
            f"{label} is corrupt or truncated ({reason_of(e)}); expected a whole torch checkpoint"
        ) from e


def _pickle_load(path: Path, label: str) -> Any:
    try:
        return load_pickle_safely(io.BytesIO(path.read_bytes()))
    except UnsafePickleError as e:
        raise _refused_code(label, e.global_name) from None
    except Exception as e:  # noqa: BLE001 (garbage fails anywhere in the unpickler)
        raise WeightsError(
            f"{label} cannot be read as a pickle of arrays ({reason_of(e)}); expected a whole "
            "Detectron2 model-zoo .pkl"
        ) from e


def _safetensors_load(path: Path, label: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # ships with timm

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 (SafetensorError and others, from Rust)
        raise WeightsError(
            f"{label} is corrupt or truncated ({reason_of(e)}); expected a whole .safetensors file"
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
    file = require_local_file(path, label)
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


def read_weight_file(path: str) -> tuple[dict[str, Any], str]:
    """A weight file's top-level dict, as :func:`load_weight_file` reads it, and its source.

    What the converter reads: any of the formats (safetensors included), nothing added for
    Detectron2's matching (that is :func:`~.checkpointer.read_checkpoint`). Its weights
    must be finite.

    Returns:
        The file's top-level dict and the source guessed from its layout
        (:func:`guess_source`).

    Raises:
        WeightsError: in one line naming the file: not a weight file, corrupt, holding
            code, holding no dict, or non-finite values (naming the tensor).
    """
    data = load_weight_file(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path} holds a {type(data).__name__}; expected a dict of weights")
    check_finite_weights(state_dict_of(data), str(path))
    return dict(data), guess_source(data)


# -- layouts: where the weights are, and who wrote them ----------------------------------

# The "__author__" of the files the converter writes (beside their "conventions").
CONVERTED_AUTHOR = "resnext_det"


def state_dict_of(data: Mapping) -> Mapping:
    """Where a file keeps its weights: under ``model`` (Detectron2, ours), ``state_dict``
    (training scripts), ``blobs`` (Caffe2), else at the top (torchvision, timm)."""
    for key in ("model", "state_dict", "blobs"):
        if isinstance(data.get(key), Mapping):
            return data[key]
    return data


def guess_source(data: Mapping) -> str:
    """The code base that wrote a file, from its layout: 'resnext_det', 'caffe2',
    'torchvision' (timm's ResNets use the same names) or 'unknown'."""
    if "resnext_det" in data:  # our pretraining's metadata
        return "resnext_det"
    keys = set(state_dict_of(data))
    if "conv1_w" in keys or "blobs" in data:
        return "caffe2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    if "stem.conv1.weight" in keys:
        return "resnext_det"
    return "unknown"


def drop_caffe2_momentum(blobs: Mapping[str, Any]) -> dict[str, Any]:
    """Caffe2 blobs without the ``*_momentum`` blobs: optimizer state, not weights."""
    return {k: v for k, v in blobs.items() if not k.endswith("_momentum")}


def is_converted_weights(path: Path) -> bool:
    """Whether ``path`` is a file the converter wrote (its ``__author__``, ``conventions``).

    Read lazily (memory-mapped: a large file is not read whole to decide whether it may be
    replaced); a file that cannot be read so, in any way, is not one.
    """
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (any file that is not ours, in any way)
        return False
    return (
        isinstance(data, dict)
        and data.get("__author__") == CONVERTED_AUTHOR
        and ("conventions" in data)
    )
