"""Precomputed proposal files in Detectron2's format, written atomically and read safely.

A proposal file is a pickled dict, the format ``detectron2.data.load_proposals_into_dataset``
reads and ``COCOEvaluator`` writes:

- ``"ids"``: the image ids of the split, one per image;
- ``"boxes"``: one float32 ``(N, 4)`` array per image, ``XYXY_ABS`` in original pixels;
- ``"objectness_logits"``: one float32 ``(N,)`` array per image;
- ``"bbox_mode"``: ``BoxMode.XYXY_ABS.value`` (an int, as Detectron2 itself writes it).

Detectron2 reads these files with ``pickle.load``, which runs any code a crafted file
holds; here they go through the same restricted unpickler as weight files.
"""

import io
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from detectron2.structures import BoxMode

from ...utils.atomic_io import write_atomically
from ...utils.errors import DataError
from ...utils.safe_pickle import load_pickle_safely

__all__ = ["attach_proposals", "load_proposal_file", "missing_image_ids", "write_proposal_file"]

ImageId = Union[int, str]


def write_proposal_file(
    path: os.PathLike,
    ids: Sequence[ImageId],
    boxes: Sequence[np.ndarray],
    objectness_logits: Sequence[np.ndarray],
) -> None:
    """Write proposals in Detectron2's format: a temporary file, then an atomic rename.

    A killed run therefore never leaves a truncated file that a later run would trust.
    """
    if not len(ids) == len(boxes) == len(objectness_logits):
        raise DataError(
            f"proposals for {len(ids)} image ids, {len(boxes)} box arrays and "
            f"{len(objectness_logits)} logit arrays; expected one of each per image"
        )
    data = {
        "ids": list(ids),
        "boxes": [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes],
        "objectness_logits": [np.asarray(s, dtype=np.float32).ravel() for s in objectness_logits],
        "bbox_mode": BoxMode.XYXY_ABS.value,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Protocol 4: readable by any Python 3 Detectron2.
    write_atomically(path, lambda f: pickle.dump(data, f, protocol=4))


def load_proposal_file(path: os.PathLike) -> dict[str, Any]:
    """Read a proposal file without executing code, and check its structure.

    Accepts Detectron1's key names (``indexes``, ``scores``) as Detectron2 does.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a proposal file of the format above.
        UnsafePickleError: the pickle asks for anything but arrays and plain containers.
    """
    with open(path, "rb") as f:
        data = load_pickle_safely(io.BytesIO(f.read()))
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}; expected a dict of proposals")
    for old, new in (("indexes", "ids"), ("scores", "objectness_logits")):
        if old in data:
            data[new] = data.pop(old)
    missing = [k for k in ("ids", "boxes", "objectness_logits") if k not in data]
    if missing:
        raise DataError(
            f"{path} lacks the keys {missing}; expected 'ids', 'boxes', 'objectness_logits'"
        )
    lengths = {k: len(data[k]) for k in ("ids", "boxes", "objectness_logits")}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path} has lists of unequal length {lengths}; expected one per image")
    mode = data.get("bbox_mode", BoxMode.XYXY_ABS.value)
    try:
        data["bbox_mode"] = BoxMode(mode)
    except ValueError as e:
        allowed = ", ".join(f"{m.value} ({m.name})" for m in BoxMode)
        raise DataError(f"{path} has bbox_mode={mode!r}; expected one of {allowed}") from e
    return data


def missing_image_ids(path: os.PathLike, image_ids: Iterable[ImageId]) -> list[ImageId]:
    """The image ids that a proposal file does not cover (all of them if it is missing)."""
    image_ids = list(image_ids)
    if not Path(path).is_file():
        return image_ids
    covered = {str(i) for i in load_proposal_file(path)["ids"]}
    return [i for i in image_ids if str(i) not in covered]


def attach_proposals(dataset_dicts: list[dict], path: os.PathLike) -> list[dict]:
    """Add a proposal file's boxes to every record, as ``load_proposals_into_dataset`` does.

    Raises:
        ValueError: the file lacks proposals for some image of the dataset (the first few
            missing ids are named), rather than a ``KeyError`` in the middle of training.
    """
    data = load_proposal_file(path)
    index = {str(image_id): i for i, image_id in enumerate(data["ids"])}
    missing = [r["image_id"] for r in dataset_dicts if str(r["image_id"]) not in index]
    if missing:
        raise DataError(
            f"{path} has no proposals for {len(missing)} of {len(dataset_dicts)} images "
            f"(image_id {missing[:5]}...); expected one entry per image of the dataset"
        )
    for record in dataset_dicts:
        i = index[str(record["image_id"])]
        logits = np.asarray(data["objectness_logits"][i])
        order = logits.argsort()[::-1]  # best first: the mapper keeps the top k
        record["proposal_boxes"] = np.asarray(data["boxes"][i])[order]
        record["proposal_objectness_logits"] = logits[order]
        record["proposal_bbox_mode"] = data["bbox_mode"]
    return dataset_dicts
