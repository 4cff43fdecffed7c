"""ILSVRC2012 (ImageNet-1K) in the ImageFolder layout the pretraining reads.

The training archive unpacks into ``train/<wnid>/*.JPEG`` (after extracting its 1000
per-class archives); the validation archive is flat (``ILSVRC2012_val_00000001.JPEG``
...). :func:`sort_val_images` moves each val image into ``val/<wnid>/`` using the
devkit's ground truth, and :func:`check_imagenet` verifies both splits.
"""

import io
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from ...utils.errors import DataError, MissingFileError

__all__ = [
    "FULL_IMAGENET",
    "check_imagenet",
    "read_devkit",
    "sort_val_images",
]

# ILSVRC2012: 1000 classes, 1,281,167 training and 50,000 validation images (50 a class).
FULL_IMAGENET = {"classes": 1000, "train": 1_281_167, "val": 50_000}
META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
VAL_IMAGE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _read_devkit_file(devkit: Path, member: str) -> bytes:
    """A file of the devkit, from its folder or from its archive (nothing else is unpacked)."""
    if devkit.is_dir():
        path = devkit / member
        if not path.is_file():
            raise MissingFileError(f"{path} is missing; expected the ILSVRC2012 devkit")
        return path.read_bytes()
    if not devkit.is_file():
        raise MissingFileError(f"{devkit} does not exist; expected the ILSVRC2012 devkit")
    with tarfile.open(devkit) as archive:
        for info in archive.getmembers():
            if info.isfile() and info.name.endswith(member):
                return archive.extractfile(info).read()
    raise MissingFileError(f"{devkit} holds no {member}; expected the ILSVRC2012 devkit")


def read_devkit(devkit: os.PathLike) -> tuple[dict[int, str], list[int]]:
    """The devkit's class ids and the val ground truth.

    Args:
        devkit: ``ILSVRC2012_devkit_t12/`` or ``ILSVRC2012_devkit_t12.tar.gz``.

    Returns:
        ``{ILSVRC2012_ID: wnid}`` of the 1000 leaf classes, and the ILSVRC2012_ID of each
        val image in file order (image ``i`` is ``ILSVRC2012_val_{i:08d}.JPEG``).
    """
    from scipy.io import loadmat  # MATLAB files; scipy reads them without running code

    devkit = Path(devkit)
    synsets = loadmat(io.BytesIO(_read_devkit_file(devkit, META)), squeeze_me=True)["synsets"]
    classes = {
        int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0
    }
    truth = _read_devkit_file(devkit, GROUND_TRUTH).decode().split()
    labels = [int(label) for label in truth]
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(
            f"{devkit}: the val ground truth names class ids {unknown[:5]} that {META} lacks; "
            "expected ids of its leaf synsets"
        )
    return classes, labels


def sort_val_images(root: os.PathLike, devkit: os.PathLike) -> int:
    """Move the flat val images of ``<root>/val`` into ``<root>/val/<wnid>/``.

    Each move is an atomic rename within ``val/``, so an interrupted run leaves every image
    either in place or sorted, and running again finishes the job.

    Returns:
        The number of images moved (0 when ``val/`` is already sorted).
    """
    classes, labels = read_devkit(devkit)
    val = Path(root) / "val"
    if not val.is_dir():
        raise MissingFileError(f"{val} does not exist; expected the unpacked val images")
    moved = 0
    for entry in sorted(os.scandir(val), key=lambda e: e.name):
        match = VAL_IMAGE.fullmatch(entry.name)
        if not entry.is_file() or match is None:
            continue
        number = int(match[1])
        if not 1 <= number <= len(labels):
            raise DataError(
                f"{entry.path}: image number {number} is outside the ground truth's "
                f"1..{len(labels)}; expected the ILSVRC2012 val images"
            )
        target = val / classes[labels[number - 1]]
        target.mkdir(exist_ok=True)
        os.replace(entry.path, target / entry.name)
        moved += 1
    return moved


def _count_images(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES))


def _class_counts(split: Path) -> dict[str, int]:
    return {e.name: _count_images(Path(e.path)) for e in os.scandir(split) if e.is_dir()}


def check_imagenet(root: os.PathLike, expect_full: bool = True) -> list[str]:
    """Every problem with ``<root>/train`` and ``<root>/val``, one line each; [] means ready.

    Args:
        root: the ImageNet folder.
        expect_full: also require ILSVRC2012's class and image counts.
    """
    root = Path(root)
    problems: list[str] = []
    counts: dict[str, Optional[dict[str, int]]] = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            problems.append(f"{folder} does not exist; expected {split}/<wnid>/<image>")
            counts[split] = None
            continue
        archives = [e.name for e in os.scandir(folder) if e.name.endswith(".tar")]
        if archives:
            problems.append(
                f"{folder} holds {len(archives)} unextracted class archives (e.g. {archives[0]}); "
                f"expected each extracted into {split}/<wnid>/"
            )
        flat = [e.name for e in os.scandir(folder) if e.is_file() and VAL_IMAGE.fullmatch(e.name)]
        if flat:
            problems.append(
                f"{folder} holds {len(flat)} unsorted images (e.g. {flat[0]}); expected them in "
                "class folders: run datasets/prepare_imagenet.py --devkit ..."
            )
        counts[split] = _class_counts(folder)
        empty = sorted(name for name, n in counts[split].items() if n == 0)
        if empty:
            problems.append(f"{folder}: {len(empty)} class folders hold no image (e.g. {empty[0]})")
    train, val = counts["train"], counts["val"]
    if train is not None and val is not None:
        extra = sorted(set(val) - set(train))
        if extra:
            problems.append(
                f"{root / 'val'} has {len(extra)} classes that train lacks (e.g. {extra[0]}); "
                "expected the val classes among the training classes"
            )
    if expect_full:
        problems += _full_count_problems(root, train, val)
    return problems


def _full_count_problems(
    root: Path, train: Optional[dict[str, int]], val: Optional[dict[str, int]]
) -> Iterable[str]:
    for split, found in (("train", train), ("val", val)):
        if found is None:
            continue
        if len(found) != FULL_IMAGENET["classes"]:
            yield (
                f"{root / split} has {len(found)} class folders; expected "
                f"{FULL_IMAGENET['classes']} (ILSVRC2012)"
            )
        if sum(found.values()) != FULL_IMAGENET[split]:
            yield (
                f"{root / split} has {sum(found.values())} images; expected "
                f"{FULL_IMAGENET[split]} (ILSVRC2012)"
            )
