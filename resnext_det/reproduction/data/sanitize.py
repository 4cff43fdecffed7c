"""What a faulty detection dataset does to a run: one policy, applied before it starts.

- A COCO json that Detectron2 would misread: an image id or a file listed twice, an
  annotation id used twice (except in the published minival jsons), a missing
  ``categories`` list or a missing field: fail at start, naming the id or the entry.
- An image file missing, or not an image (no readable header): fail at start.
- An image whose size, as Detectron2 reads it (turned by its EXIF orientation), differs
  from its annotated width/height, or an annotated size that is not a number: fail at start.
- A 16- or 32-bit image (which Detectron2 would read as a white image), or a header
  claiming more pixels than PIL opens (a decompression bomb): fail at start.
- An unknown category id: fail at start (Detectron2's COCO loader finds it; reworded).
- A box with a width or height <= 0, or not 4 finite numbers: dropped, counted.
- A box reaching outside its image: clipped to it, counted; dropped if nothing is left.
- An image without annotations: training skips it (``FILTER_EMPTY_ANNOTATIONS``, counted
  by Detectron2); evaluation keeps it.
- Image data corrupt past its header (found only when decoded): training skips the image
  with a warning naming it; evaluation fails, naming it. When every training image has
  been skipped, training fails, naming a few of them.

Failing at start means before the first iteration, with one line naming the dataset, how
many images are affected and a few of them. Nothing is skipped silently.
"""

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode

from ...utils.errors import ConfigError, DataError, UserError
from .coco_json import EXPECTED, check_coco_json, coco_json_problem, read_coco_json
from .images import DecompressionBomb, header_problem

__all__ = [
    "DataReport",
    "SkippingDatasetMapper",
    "check_dataset_jsons",
    "check_image_files",
    "check_same_classes",
    "dataset_json_files",
    "load_registered",
    "sanitize_annotations",
]

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """What :func:`sanitize_annotations` changed, per kind of fault."""

    dataset: str
    images: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, fault: str, example: Any) -> None:
        self.counts[fault] += 1
        examples = self.examples.setdefault(fault, [])
        if len(examples) < 3:
            examples.append(example)

    def summary(self) -> str:
        if not self.counts:
            return f"{self.dataset}: {self.images} images, no annotation needed fixing"
        parts = [
            f"{n} {fault} (e.g. image {self.examples[fault]})" for fault, n in self.counts.items()
        ]
        return f"{self.dataset}: {self.images} images; " + "; ".join(parts)


def _xyxy(annotation: dict) -> Optional[np.ndarray]:
    box = annotation.get("bbox")
    mode = annotation.get("bbox_mode", BoxMode.XYWH_ABS)
    try:
        values = np.asarray(BoxMode.convert(list(box), mode, BoxMode.XYXY_ABS), dtype=np.float64)
    except (TypeError, ValueError, AssertionError):
        return None
    return values if values.shape == (4,) else None


def sanitize_annotations(
    dataset_dicts: Sequence[dict], dataset: str
) -> tuple[list[dict], DataReport]:
    """Drop degenerate boxes and clip boxes to their image, as the policy above says.

    Records are copied, never changed in place; boxes are rewritten in ``XYXY_ABS``.

    Returns:
        The cleaned records and a report of every change.
    """
    report = DataReport(dataset, images=len(dataset_dicts))
    cleaned = []
    for record in dataset_dicts:
        width, height = record.get("width"), record.get("height")
        annotations = []
        for annotation in record.get("annotations", []):
            box = _xyxy(annotation)
            if box is None or not np.isfinite(box).all():
                report.add(
                    "degenerate boxes dropped (not 4 finite numbers)", record.get("image_id")
                )
                continue
            x0, y0, x1, y1 = box
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                report.add(
                    "degenerate boxes dropped (width or height <= 0)", record.get("image_id")
                )
                continue
            if width and height:
                clipped = np.clip(box, 0, [width, height, width, height])
                if not np.array_equal(clipped, box):
                    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
                        report.add(
                            "boxes dropped (entirely outside the image)", record.get("image_id")
                        )
                        continue
                    report.add("boxes clipped to the image", record.get("image_id"))
                    box = clipped
            annotations.append({**annotation, "bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS})
        cleaned.append(
            {**record, "annotations": annotations} if "annotations" in record else dict(record)
        )
    if report.counts:
        logger.warning(report.summary())
    return cleaned, report


def _header_problem(record: dict) -> Optional[str]:
    """Why the image of ``record`` cannot be used, from its file header; None if it can."""
    return header_problem(record.get("file_name"), record.get("width"), record.get("height"))


def check_image_files(dataset_dicts: Iterable[dict], dataset: str, workers: int = 8) -> int:
    """Check that every image exists, has a readable header and the annotated size.

    Reads only the file headers (a fraction of a millisecond each), in ``workers`` threads;
    sizes are compared as Detectron2 will read the images, after their EXIF orientation
    (:mod:`resnext_det.reproduction.data.images`).

    Returns:
        The number of images checked.

    Raises:
        DataError: naming how many images fail and a few of them.
    """
    records = list(dataset_dicts)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(_header_problem, records) if p is not None]
    if problems:
        raise DataError(
            f"dataset {dataset!r}: {len(problems)} of {len(records)} images cannot be used "
            f"({'; '.join(problems[:3])}); expected every listed image on disk, readable, "
            "8-bit, of the annotated size"
        )
    return len(records)


class SkippingDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` that skips an image whose data turns out corrupt.

    Returning None makes Detectron2's training loader draw another image (it warns after
    three in a row); each skip is logged with the file and counted here. Once every one
    of the ``num_images`` training images has failed (set it to the dataset's size), the
    mapper raises: Detectron2 would otherwise fail with a bare ``ValueError`` from
    ``random.sample`` (an empty pool), or retry forever.
    """

    skipped = 0
    num_images: Optional[int] = None

    def __call__(self, dataset_dict: dict) -> Optional[dict]:
        try:
            return super().__call__(dataset_dict)
        except (OSError, SizeMismatchError, ValueError, SyntaxError, DecompressionBomb) as e:
            if not self.is_train:
                raise DataError(
                    f"image {dataset_dict.get('file_name')} cannot be decoded ({e}); "
                    "expected a readable image (evaluation does not skip images)"
                ) from e
            type(self).skipped += 1
            logger.warning(
                f"skipping image {dataset_dict.get('file_name')} (corrupt: {e}); "
                f"{type(self).skipped} skipped so far in this process"
            )
            self._count_unusable(dataset_dict.get("file_name"), e)
            return None

    def _count_unusable(self, file_name: Optional[str], error: Exception) -> None:
        if "_unusable" not in self.__dict__:
            self._unusable: dict[Optional[str], str] = {}
        self._unusable[file_name] = str(error)
        if self.num_images and len(self._unusable) >= self.num_images:
            examples = "; ".join(
                f"{name} ({why})" for name, why in list(self._unusable.items())[:2]
            )
            raise DataError(
                f"all {self.num_images} training images failed to decode and were skipped "
                f"(e.g. {examples}); expected readable images (check INPUT.* as well: every "
                "image goes through the same resizing and cropping)"
            )


def dataset_json_files(name: str) -> list[str]:
    """The COCO instances jsons a registered dataset is read from, as far as its metadata
    tells (``evaluator_type`` 'coco', as ``register_coco_instances`` sets it: an LVIS or
    panoptic json has other fields); those that exist (a missing one is the loader's to
    report)."""
    metadata = MetadataCatalog.get(name)
    if metadata.get("evaluator_type", None) != "coco":
        return []
    files = metadata.get("json_files", None) or [metadata.get("json_file", None)]
    return [str(f) for f in files if f and os.path.isfile(f)]


def check_dataset_jsons(name: str) -> None:
    """Refuse a registered dataset whose COCO json Detectron2 would misread or fail on.

    Raises:
        DataError: naming the dataset, the file, and the repeated id or bad entry.
    """
    for json_file in dataset_json_files(name):
        try:
            check_coco_json(json_file)
        except UserError as e:
            raise type(e)(f"dataset {name!r}: {e}") from e


def check_same_classes(names: Sequence[str]) -> None:
    """The datasets ``names`` (those loaded, whose classes are known) have the same classes
    in the same order: class k of a model is the k-th category, by id, of every dataset it
    trains or is scored on.

    Detectron2's loader checks the datasets it loads together
    (``check_metadata_consistency``); a run's training and test sets must agree too. Two
    training sets of other classes (``tree``, ``bush``) would otherwise train as one class,
    and a test set listing the same classes under other ids would be scored with its
    classes swapped.

    Raises:
        DataError: naming two datasets that differ and their classes.
    """
    known = [(name, MetadataCatalog.get(name).get("thing_classes", None)) for name in names]
    known = [(name, list(classes)) for name, classes in known if classes is not None]
    for name, classes in known[1:]:
        first, first_classes = known[0]
        if classes != first_classes:
            raise DataError(
                f"dataset {name!r} has the classes {classes} where dataset {first!r} has "
                f"{first_classes} (in the order of their category ids); expected the same "
                "classes in the same order in every dataset of a run (the model's class k is "
                "category k of each)"
            )


def load_registered(name: str) -> list[dict]:
    """A registered dataset's records, with loader errors turned into one-line errors.

    Raises:
        ConfigError: ``name`` is not registered.
        DataError: the dataset cannot be loaded, or holds no image (Detectron2's loader
            refuses an empty dataset too).
    """
    if name not in DatasetCatalog.list():
        some = ", ".join(sorted(DatasetCatalog.list())[:8])
        raise ConfigError(
            f"dataset {name!r} is not registered; expected a name such as {some}, ... "
            "(see datasets/README.md for the COCO splits and the demo data)"
        )
    try:
        records = DatasetCatalog.get(name)
    except FileNotFoundError as e:
        raise DataError(
            f"dataset {name!r}: {e.filename or e} does not exist; expected its annotation "
            "file (see datasets/README.md)"
        ) from e
    except (KeyError, ValueError, TypeError, AssertionError) as e:  # bad json, unknown id, ...
        raise DataError(f"dataset {name!r} cannot be loaded: {_loader_reason(name, e)}") from e
    if not records:
        raise DataError(f"dataset {name!r} holds no image; expected a dataset with images")
    return records


def _loader_reason(name: str, error: Exception) -> str:
    """What made Detectron2's loader fail, in words: the json's own problem when there is
    one (a bare ``KeyError: 'categories'`` says neither what nor where), else the error."""
    for json_file in dataset_json_files(name):
        try:
            data = read_coco_json(json_file)
        except UserError as e:
            return str(e)
        problem = coco_json_problem(data)
        if problem:
            return f"{json_file}: {problem}"
    reason = str(error.args[0] if error.args else error)
    if isinstance(error, KeyError) and " " not in reason:  # a bare key, not a sentence
        return f"an entry lacks the key {reason!r}; {EXPECTED}"
    return reason
