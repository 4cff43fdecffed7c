"""Run a trained detector on image files: drawn images and a JSON of the detections.

What goes wrong: ``MODEL.WEIGHTS`` empty, or weights that do not cover the whole detector
(another network, a trunk only), would predict with random weights and say nothing: they
are refused before any image is read (:func:`~resnext_det.checkpoint.fit.starting_weights`,
which also refuses corrupt, crafted and non-finite files). An image that cannot be read is
skipped, the others are still predicted and written, and the run ends naming the skipped
ones (:attr:`Predictions.skipped`).
"""

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ...checkpoint import SafeDetectionCheckpointer
from ...checkpoint.fit import starting_weights
from ...modeling import fuse_frozen_batchnorm
from ...utils.atomic_io import (
    check_output_dir,
    make_output_dir,
    write_atomically,
    write_text_atomically,
)
from ...utils.errors import ConfigError, DataError, MissingFileError, UserError
from ..data.images import read_image_checked

__all__ = [
    "IMAGE_SUFFIXES",
    "Predictions",
    "Predictor",
    "find_images",
    "predict_images",
    "skipped_error",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Predictor:
    """Detectron2's ``DefaultPredictor``, with weight files loaded without running code.

    Takes an image in the model's ``INPUT.FORMAT``, resizes it as for evaluation
    (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) and returns its detections in the
    original image's pixels.

    Raises:
        ConfigError: ``MODEL.WEIGHTS`` is empty.
        WeightsError: the weights do not provide every tensor of the detector, or cannot
            be read safely, or are not finite.
    """

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg.clone()
        model = build_model(self.cfg).eval()
        # Detectron2 would load what fits and leave the rest random, with a log line only.
        weights = starting_weights(
            model, None, cfg.MODEL.WEIGHTS, whole_model=True, use="the detector would predict with"
        )
        SafeDetectionCheckpointer(model).load(weights)
        # The predictor's own model, for inference only: its frozen norms fold into the
        # convs (the same function, one pass less per norm).
        self.model = fuse_frozen_batchnorm(model, inplace=True)
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Instances:
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(
            np.ascontiguousarray(resized.transpose(2, 0, 1)), dtype=torch.float32
        )
        inputs = {"image": tensor, "height": height, "width": width}
        return self.model([inputs])[0]["instances"].to("cpu")


def find_images(paths: Iterable[os.PathLike]) -> list[Path]:
    """The image files among ``paths``, and in the folders among them (sorted).

    Raises:
        FileNotFoundError: a path does not exist, or no image was found.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise MissingFileError(f"{path} does not exist; expected an image file or a folder")
    if not found:
        raise MissingFileError(
            f"no image ({', '.join(IMAGE_SUFFIXES)}) among {[str(p) for p in paths]}"
        )
    return found


def _detections(instances: Instances, class_names: Sequence[str]) -> list[dict[str, Any]]:
    boxes = instances.pred_boxes.tensor.tolist()
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    return [
        {
            "bbox_xyxy": [round(v, 2) for v in box],
            "score": round(score, 4),
            "category_id": category,
            "category": class_names[category] if category < len(class_names) else str(category),
        }
        for box, score, category in zip(boxes, scores, classes)
    ]


@dataclass
class Predictions:
    """What :func:`predict_images` wrote, and the images it could not read.

    Attributes:
        path: ``detections.json``.
        predicted: how many images it lists.
        skipped: each unreadable image and why (a message naming it).
    """

    path: Path
    predicted: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)


# What PIL and Detectron2 raise for a file that is no readable image (truncated, not an
# image at all, an unknown mode, a decompression bomb).
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _read(path: Path, image_format: str) -> np.ndarray:
    # Detectron2's read_image, refusing what it would misread (a 16-bit image as white).
    image = read_image_checked(path, format=image_format)
    if image.ndim != 3 or 0 in image.shape:
        raise DataError(f"{path} holds an image of shape {image.shape}; expected pixels")
    return image


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``path`` cannot be read, in a message naming it once."""
    if isinstance(error, UserError):  # read_image_checked's own, which names the file
        return " ".join(str(error).split())
    return f"{path} cannot be read as an image ({type(error).__name__}: {error})"


def _drawn_names(images: Sequence[Path]) -> list[str]:
    """``<stem>_pred.png`` for each image, numbered where two would share one: ``x.png``
    and ``x.PNG``, or ``x.png`` of two folders, would otherwise be drawn into one file.
    Compared without case, as some file systems compare names."""
    names, taken = [], set()
    for path in images:
        name, number = f"{path.stem}_pred.png", 1
        while name.casefold() in taken:
            number += 1
            name = f"{path.stem}_{number}_pred.png"
        taken.add(name.casefold())
        names.append(name)
    return names


def _check_score_threshold(score_threshold: float) -> None:
    """Refuse a threshold outside [0, 1]: above 1, or NaN, no detection passes it."""
    if not 0 <= score_threshold <= 1:  # NaN included
        raise ConfigError(
            f"--confidence-threshold={score_threshold!r} is invalid; expected a score from 0 "
            "to 1 (detections scoring less are dropped)"
        )


def _save_png(path: Path, image: np.ndarray) -> None:
    write_atomically(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def predict_images(
    cfg: CfgNode, paths: Iterable[os.PathLike], output_dir: os.PathLike, score_threshold: float
) -> Predictions:
    """Detect objects in every image, draw them, and write ``detections.json``.

    An image that cannot be read is skipped with a warning, and the others are predicted
    and written all the same; the caller reports the skipped ones (``tools/demo.py`` ends
    with one line naming them, and exit code 2).

    Args:
        cfg: the detector's config; ``MODEL.WEIGHTS`` names its trained weights, and the
            metadata of ``DATASETS.TEST[0]`` (if registered) names its classes.
        paths: image files and folders of images.
        output_dir: receives ``<image>_pred.png`` per image (numbered where two images
            share a name: ``x_2_pred.png``) and ``detections.json``.
        score_threshold: detections scoring less are neither drawn nor listed (0 to 1).

    Returns:
        Where ``detections.json`` is (a list of ``{"file_name", "drawn", "height",
        "width", "detections": [{"bbox_xyxy", "score", "category_id", "category"}]}``,
        ``drawn`` naming the drawn image), and the skipped images.

    Raises:
        UserError: before any image is predicted: ``score_threshold`` is not in [0, 1],
            ``output_dir`` cannot be written, an input path does not exist, or the weights
            are refused (:class:`Predictor`).
    """
    _check_score_threshold(score_threshold)
    check_output_dir(output_dir, "--output")
    images = find_images(paths)
    predictor = Predictor(cfg)
    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
    metadata = MetadataCatalog.get(dataset)
    class_names = metadata.get("thing_classes", [])
    output_dir = make_output_dir(output_dir, "--output")
    records, skipped = [], []
    for path, drawn_name in zip(images, _drawn_names(images)):
        try:
            image = _read(path, cfg.INPUT.FORMAT)
        except _UNREADABLE as e:
            reason = _unreadable(path, e)
            logger.warning(f"skipped: {reason}")
            skipped.append((path, reason))
            continue
        instances = predictor(image)
        instances = instances[instances.scores >= score_threshold]
        rgb = convert_image_to_rgb(image, cfg.INPUT.FORMAT)
        drawn = Visualizer(rgb, metadata).draw_instance_predictions(instances)
        _save_png(output_dir / drawn_name, drawn.get_image())
        records.append(
            {
                "file_name": str(path),
                "drawn": drawn_name,
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "detections": _detections(instances, class_names),
            }
        )
    result = output_dir / "detections.json"
    write_text_atomically(result, json.dumps(records, indent=1))
    return Predictions(result, len(records), skipped)


def skipped_error(predictions: Predictions) -> DataError:
    """The one-line error for the images :func:`predict_images` skipped."""
    count = len(predictions.skipped)
    _, reason = predictions.skipped[0]  # it names the image and what was expected
    skipped = f"{count} of {count + predictions.predicted} images"
    skipped += " was skipped" if count == 1 else f" were skipped, this one and {count - 1} more"
    return DataError(
        f"{reason}; {skipped} (the detections of the other {predictions.predicted} are in "
        f"{predictions.path})"
    )
