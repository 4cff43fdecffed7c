"""What makes a COCO instances json unusable, said before Detectron2's loader meets it.

Detectron2 reads a COCO json through pycocotools, which indexes images and annotations
by id in dicts. Two images with one id therefore become one image holding the boxes of
both (the other image's file is never seen), and two annotations with one id collapse
in evaluation; neither is reported. A json without ``categories``, or with an image
lacking ``height``, fails with a bare ``KeyError: 'categories'``. :func:`coco_json_problem`
names each of these, the file, the entry and what is expected, in one line.
"""

import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ...utils.errors import DataError, MissingFileError

__all__ = ["check_coco_json", "coco_json_problem", "duplicate_problem", "read_coco_json"]

logger = logging.getLogger(__name__)

# The fields Detectron2's load_coco_json (and pycocotools) read of each entry.
REQUIRED_FIELDS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id"),
    "categories": ("id", "name"),
}
EXPECTED = (
    "expected a COCO instances json: 'images' (id, file_name, height, width), "
    "'annotations' (id, image_id, category_id, bbox) and 'categories' (id, name)"
)


def read_coco_json(path: os.PathLike) -> Any:
    """The parsed content of ``path``.

    Raises:
        MissingFileError: no such file.
        DataError: the file is not json.
    """
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise MissingFileError(f"{path} does not exist; expected a COCO json file") from e
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise DataError(f"{path} is not valid json ({e}); {EXPECTED}") from e


def _short(entry: Any) -> str:
    text = json.dumps(entry, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_id(value: Any) -> bool:
    # pycocotools keys dicts by these; Detectron2 sorts image ids, so one kind per file.
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_size(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _entry_problem(key: str, index: int, entry: Any) -> Optional[str]:
    if not isinstance(entry, dict):
        return f"{key}[{index}] is a {type(entry).__name__} ({_short(entry)}); {EXPECTED}"
    missing = [f for f in REQUIRED_FIELDS[key] if f not in entry]
    if missing:
        return f"{key}[{index}] lacks {', '.join(map(repr, missing))} ({_short(entry)}); {EXPECTED}"
    wrong = [f for f in ("id", "image_id", "category_id") if f in entry and not _is_id(entry[f])]
    if key == "images":
        wrong += [f for f in ("height", "width") if not _is_size(entry[f])]
        if not isinstance(entry["file_name"], str):
            wrong.append("file_name")
    if key == "annotations" and entry.get("iscrowd", 0) not in (0, 1):  # NaN included
        return (
            f"{key}[{index}] has iscrowd={entry['iscrowd']!r}; expected 0 or 1 (Detectron2 "
            "would take any other value for a crowd and drop the box)"
        )
    if wrong:
        values = ", ".join(f"{f}={entry[f]!r} (a {type(entry[f]).__name__})" for f in wrong)
        what = "positive numbers for height and width, " if key == "images" else ""
        return f"{key}[{index}] has {values}; expected {what}integer or string ids" + (
            " and a string file_name" if "file_name" in wrong else ""
        )
    return None


def coco_json_problem(data: Any) -> Optional[str]:
    """The first thing that makes ``data`` no COCO instances json Detectron2 can load."""
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}; {EXPECTED}"
    for key in ("images", "annotations", "categories"):
        if key not in data:
            return f"has no {key!r} key; {EXPECTED}"
        if not isinstance(data[key], list):
            return f"has a {type(data[key]).__name__} under {key!r}, not a list; {EXPECTED}"
        for index, entry in enumerate(data[key]):
            problem = _entry_problem(key, index, entry)
            if problem:
                return problem
    if not data["categories"]:
        return f"lists no category under 'categories'; {EXPECTED}"
    kinds = {type(image["id"]).__name__ for image in data["images"]}
    if len(kinds) > 1:
        return f"mixes image ids of types {sorted(kinds)}; expected ids of one type"
    return _category_id_type_problem(data)


def _category_id_type_problem(data: dict) -> Optional[str]:
    """An annotation's category id of another type than the categories' ids: ``"1"`` for
    the category 1, which Detectron2 reports as an id that does not exist."""
    kinds = {type(category["id"]) for category in data["categories"]}
    for index, annotation in enumerate(data["annotations"]):
        given = annotation["category_id"]
        if type(given) not in kinds:
            names = " and ".join(sorted(kind.__name__ for kind in kinds))
            return (
                f"annotations[{index}] has category_id={given!r} (a {type(given).__name__}), "
                f"but the ids under 'categories' are {names}; expected the same type "
                f"(Detectron2 would find no category {given!r})"
            )
    return None


def _repeated(values: Iterable[Any]) -> list[Any]:
    counts = Counter(values)
    return [value for value, n in counts.items() if n > 1]


def duplicate_problem(data: dict, path: os.PathLike) -> Optional[str]:
    """Repeated image ids, annotation ids or file names in a well-formed COCO json.

    Repeated annotation ids are only warned about in a file named ``*minival*``: the
    published COCO 2014 minival jsons hold a few, and Detectron2 exempts them too.
    """
    images: Sequence[dict] = data["images"]
    ids = _repeated(image["id"] for image in images)
    if ids:
        names = [i["file_name"] for i in images if i["id"] == ids[0]][:3]
        return (
            f"image id {ids[0]!r} is listed {sum(i['id'] == ids[0] for i in images)} times "
            f"(files {names}; {len(ids)} repeated ids in all); expected one id per image "
            "(Detectron2 would read one of these images with the boxes of all)"
        )
    annotation_ids = _repeated(a["id"] for a in data["annotations"])
    if annotation_ids:
        message = (
            f"annotation id {annotation_ids[0]!r} is used "
            f"{sum(a['id'] == annotation_ids[0] for a in data['annotations'])} times "
            f"({len(annotation_ids)} repeated ids in all); expected one id per annotation "
            "(COCO evaluation would count one of them twice and drop the other)"
        )
        if "minival" not in os.path.basename(path):
            return message
        logger.warning(f"{path}: {message}; accepted in a minival json, as Detectron2 does")
    by_name: dict[str, list] = defaultdict(list)
    for image in images:
        by_name[os.path.normpath(image["file_name"])].append(image["id"])
    shared = {name: ids for name, ids in by_name.items() if len(ids) > 1}
    if shared:
        name, name_ids = next(iter(shared.items()))
        return (
            f"file {name!r} is listed as {len(name_ids)} images (ids {name_ids[:3]}; "
            f"{len(shared)} such files in all); expected each file once (its boxes would be "
            "split over the entries, each training with some of them as background)"
        )
    return None


def check_coco_json(path: os.PathLike) -> dict:
    """Read ``path`` and refuse it, in one line, if Detectron2 would misread or fail on it.

    Returns:
        The parsed json.

    Raises:
        DataError: naming the file, the entry and what is expected.
    """
    data = read_coco_json(path)
    problem = coco_json_problem(data) or duplicate_problem(data, path)
    if problem:
        raise DataError(f"{path}: {problem}")
    return data
