"""Which data a dataset name stands for: a digest that changes when its data does.

A registered name (``coco_2014_minival``, ``demo_trees_train``) is read from wherever the
datasets root points today; a result recorded under the name alone would be taken for
one of other data. :func:`dataset_digest` names the data itself.
"""

import hashlib
import json
import os
from typing import Any

from .sanitize import load_registered

__all__ = ["dataset_digest"]


def _plain(value: Any) -> Any:
    """A json value for what ``json.dumps`` cannot write (numpy arrays, box modes)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def dataset_digest(name: str) -> str:
    """The sha256 of a registered dataset's records as Detectron2 loads them (ids, sizes,
    boxes, categories), each image named by its path below the images' common folder and
    its size in bytes.

    Other annotations or other image files give another digest; the same data in another
    folder gives the same. The pixels are not read (that would read the whole dataset): an
    image replaced by another of the same name and size is not noticed.

    Raises:
        UserError: the dataset is not registered or cannot be loaded (one line).
    """
    records = load_registered(name)
    files = [os.path.abspath(r["file_name"]) for r in records if "file_name" in r]
    root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    digest = hashlib.sha256()
    for record in records:
        entry = dict(record)
        if "file_name" in entry:
            path = os.path.abspath(entry["file_name"])
            size = os.path.getsize(path) if os.path.isfile(path) else None  # checked later
            entry["file_name"] = [os.path.relpath(path, root), size]
        digest.update(json.dumps(entry, sort_keys=True, default=_plain).encode())
    return digest.hexdigest()
