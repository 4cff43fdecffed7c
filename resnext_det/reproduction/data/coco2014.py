"""The paper's COCO splits, ``coco_2014_trainval35k`` and ``coco_2014_minival``, from any layout.

Users hold COCO in one of three forms under ``<root>/coco``:

- ``2014``: ``train2014/``, ``val2014/`` and ``annotations/instances_train2014.json``,
  ``instances_valminusminival2014.json``, ``instances_minival2014.json``;
- ``2014-ids``: ``train2014/``, ``val2014/``, ``annotations/instances_train2014.json``,
  ``instances_val2014.json`` and ``minival2014_ids.txt`` (the minival image ids, one per
  line): :func:`build_minival_jsons` writes the two missing jsons, making it ``2014``,
  and rewrites them when the list or the val json changes;
- ``2017``: ``train2017/``, ``val2017/``, ``annotations/instances_train2017.json`` and
  ``instances_val2017.json``: train2017 is trainval35k and val2017 is minival, image
  for image.

trainval35k = train2014 (82,783 images) + valminusminival (35,504) = train2017 (118,287);
minival = val2017 (5,000).
"""

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ...utils.atomic_io import write_text_atomically
from ...utils.errors import DataError, MissingFileError
from .coco_json import coco_json_problem, duplicate_problem, read_coco_json

__all__ = [
    "COCO_SPLITS",
    "FULL_COCO_IMAGES",
    "CocoLayout",
    "build_minival_jsons",
    "check_coco",
    "find_coco_layout",
    "register_coco2014_splits",
]

COCO_SPLITS = ("coco_2014_trainval35k", "coco_2014_minival")
FULL_COCO_IMAGES = {"coco_2014_trainval35k": 118287, "coco_2014_minival": 5000}
# Object annotations: those of train2017 and val2017, the same images and boxes.
FULL_COCO_ANNOTATIONS = {"coco_2014_trainval35k": 860001, "coco_2014_minival": 36781}
MINIVAL_IDS_FILE = "minival2014_ids.txt"
# The key under which a split json built here records the sha256 of its inputs.
BUILT_FROM = "built_from"


@dataclass(frozen=True)
class CocoLayout:
    """Which form was found, and (json, image folder) parts of each split."""

    form: str
    parts: dict  # split name -> tuple of (json path, image root)


def _layouts(coco: Path) -> list[CocoLayout]:
    ann = coco / "annotations"
    return [
        CocoLayout(
            "2014",
            {
                "coco_2014_trainval35k": (
                    (ann / "instances_train2014.json", coco / "train2014"),
                    (ann / "instances_valminusminival2014.json", coco / "val2014"),
                ),
                "coco_2014_minival": ((ann / "instances_minival2014.json", coco / "val2014"),),
            },
        ),
        CocoLayout(
            "2017",
            {
                "coco_2014_trainval35k": ((ann / "instances_train2017.json", coco / "train2017"),),
                "coco_2014_minival": ((ann / "instances_val2017.json", coco / "val2017"),),
            },
        ),
    ]


def find_coco_layout(root: os.PathLike) -> Optional[CocoLayout]:
    """The first form whose json files all exist under ``<root>/coco``, else None."""
    for layout in _layouts(Path(root) / "coco"):
        if all(js.is_file() for parts in layout.parts.values() for js, _ in parts):
            return layout
    return None


def _read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_minival_ids(ids_file: Path) -> set[int]:
    """The image ids of a minival id list (one per line; blank lines ignored).

    Raises:
        DataError: a line is not an integer, or the list holds no id (an empty list would
            leave minival empty and put all of val2014 into training).
    """
    ids = set()
    for number, line in enumerate(ids_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(int(line))
        except ValueError:
            raise DataError(
                f"{ids_file} line {number} is {line.strip()[:40]!r}; expected one integer "
                "image id per line"
            ) from None
    if not ids:
        raise DataError(
            f"{ids_file} lists no image id; expected the minival image ids of val2014, one "
            "per line (5000 for COCO's minival): an empty list would train on all of val2014"
        )
    return ids


def _built_from(path: Path) -> Optional[dict]:
    """What a split json records it was built from, or None (no such file or record)."""
    if not path.is_file():
        return None
    try:
        record = _read_json(path).get(BUILT_FROM)
    except (OSError, ValueError, AttributeError):  # unreadable, not json, not an object
        return None
    return record if isinstance(record, dict) else None


def _image_ids(path: Path) -> Optional[set]:
    try:
        return {image["id"] for image in _read_json(path)["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_foreign_jsons(outputs: list[Path], ids: set, val: dict, ids_file: Path) -> bool:
    """True if the split jsons exist without our record (published with Detectron, or by
    hand) and agree with the id list; refuse to overwrite them if they do not."""
    if not all(p.is_file() and _built_from(p) is None for p in outputs):
        return False
    val_ids = {image["id"] for image in val["images"]}
    for path, wanted in zip(outputs, (ids, val_ids - ids)):
        found = _image_ids(path)
        if found != wanted:
            differ = "is unreadable" if found is None else f"differs in {len(found ^ wanted)}"
            raise DataError(
                f"{path} was not built from {ids_file.name} and its image list {differ} "
                f"of {len(wanted)} images from the split the list gives; expected them to "
                f"agree: move {path.name} away to have it rebuilt from the list"
            )
    return True


def build_minival_jsons(root: os.PathLike) -> list[Path]:
    """Form ``2014-ids``: split ``instances_val2014.json`` by the minival id list.

    Each json written records what it was built from (the sha256 of the val json and of
    the id list, under ``"built_from"``), and is rebuilt when either input changes; a run
    killed between the two files leaves records that differ, so the next run rebuilds
    both. Jsons without that record (the published ones) are kept when they agree with
    the id list, and refused when they do not (they are not overwritten).

    Returns:
        The two jsons written (none if they are up to date).

    Raises:
        MissingFileError: the val json or the id list is missing (and the two jsons too).
        DataError: the val json is not a COCO instances json Detectron2 can load, the id
            list is empty or not integers, names images that val2014 does not hold, or
            contradicts jsons it did not build.
    """
    ann = Path(root) / "coco" / "annotations"
    minival, rest = ann / "instances_minival2014.json", ann / "instances_valminusminival2014.json"
    val_json, ids_file = ann / "instances_val2014.json", ann / MINIVAL_IDS_FILE
    if not (val_json.is_file() and ids_file.is_file()) and minival.is_file() and rest.is_file():
        return []  # form 2014: nothing to build them from
    for needed in (val_json, ids_file):
        if not needed.is_file():
            raise MissingFileError(f"{needed} is missing; needed to build {minival.name}")
    ids = read_minival_ids(ids_file)
    source = {val_json.name: _sha256(val_json), ids_file.name: _sha256(ids_file)}
    if all(_built_from(path) == source for path in (minival, rest)):
        return []
    val = read_coco_json(val_json)
    problem = coco_json_problem(val)  # before splitting it: the parts would inherit it
    if problem:
        raise DataError(f"{val_json}: {problem}")
    if _check_foreign_jsons([minival, rest], ids, val, ids_file):
        return []
    unknown = ids - {image["id"] for image in val["images"]}
    if unknown:
        raise DataError(
            f"{ids_file} names {len(unknown)} image ids that {val_json.name} does not hold "
            f"(e.g. {sorted(unknown)[:3]}); expected minival ids of val2014"
        )
    for path, keep in ((minival, True), (rest, False)):
        subset = {k: v for k, v in val.items() if k not in ("images", "annotations")}
        subset["images"] = [i for i in val["images"] if (i["id"] in ids) == keep]
        subset["annotations"] = [a for a in val["annotations"] if (a["image_id"] in ids) == keep]
        subset[BUILT_FROM] = source
        write_text_atomically(path, json.dumps(subset))
    return [minival, rest]


def check_coco(root: os.PathLike, expect_full: bool = True) -> list[str]:
    """Every problem with ``<root>/coco``, one line each; an empty list means ready.

    Checks that the jsons parse and hold what Detectron2 reads (no image id, annotation id
    or file listed twice), that every image they list is on disk, that every
    annotation points at a listed image, that the two splits share no image, and (with
    ``expect_full``) that the image counts are those of the full COCO splits.
    """
    layout = find_coco_layout(root)
    if layout is None:
        coco = Path(root) / "coco"
        wanted = "; or ".join(
            ", ".join(str(js.relative_to(coco)) for parts in lay.parts.values() for js, _ in parts)
            for lay in _layouts(coco)
        )
        return [f"{coco} holds no complete COCO layout; expected {wanted} (datasets/README.md)"]
    problems, split_ids = [], {}
    for split, parts in layout.parts.items():
        ids: set[int] = set()
        annotations = 0
        for js, image_root in parts:
            try:
                data = _read_json(js)
            except (OSError, ValueError) as e:
                problems.append(f"{js}: not a readable json ({e})")
                continue
            malformed = coco_json_problem(data) or duplicate_problem(data, js)
            if malformed:
                problems.append(f"{js}: {malformed}")
                continue
            images = {i["id"]: i["file_name"] for i in data["images"]}
            missing = [name for name in images.values() if not (image_root / name).is_file()]
            if missing:
                problems.append(
                    f"{image_root}: {len(missing)} of the {len(images)} images that {js.name} "
                    f"lists are missing (e.g. {missing[0]})"
                )
            orphans = sum(a["image_id"] not in images for a in data["annotations"])
            if orphans:
                problems.append(f"{js}: {orphans} annotations point at images it does not list")
            ids |= set(images)
            annotations += len(data["annotations"])
        split_ids[split] = ids
        if expect_full:
            for what, found, full in (
                ("images", len(ids), FULL_COCO_IMAGES[split]),
                ("annotations", annotations, FULL_COCO_ANNOTATIONS[split]),
            ):
                if found != full:
                    problems.append(
                        f"{split} has {found} {what} in the {layout.form} layout; expected "
                        f"{full} (the full split)"
                    )
    shared = split_ids["coco_2014_trainval35k"] & split_ids["coco_2014_minival"]
    if shared:
        problems.append(f"{len(shared)} images are in both trainval35k and minival; expected none")
    return problems


def _load_split(parts: Iterable[tuple[Path, Path]], name: str) -> list[dict]:
    dicts = []
    for js, image_root in parts:
        dicts.extend(load_coco_json(str(js), str(image_root), name))
    return dicts


def register_coco2014_splits(root: os.PathLike) -> Optional[str]:
    """Register the two splits from whichever layout ``<root>/coco`` holds. Safe to call again.

    Replaces Detectron2's own ``coco_2014_minival`` entry (which knows only the 2014 form).

    Returns:
        The layout's form, or None when ``<root>/coco`` holds none (nothing registered).
    """
    layout = find_coco_layout(root)
    if layout is None:
        return None
    for split, parts in layout.parts.items():
        if split in DatasetCatalog.list():
            DatasetCatalog.remove(split)
            MetadataCatalog.remove(split)
        DatasetCatalog.register(split, lambda parts=parts, split=split: _load_split(parts, split))
        js, image_root = parts[-1] if split == "coco_2014_minival" else parts[0]
        MetadataCatalog.get(split).set(
            json_file=str(js),
            json_files=[str(j) for j, _ in parts],  # every json the split is read from
            image_root=str(image_root),
            evaluator_type="coco",
        )
    return layout.form
