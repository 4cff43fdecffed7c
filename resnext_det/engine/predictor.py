"""Run a trained detector on image files: drawn images and a JSON of the detections."""

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

from ..atomic_io import write_text_atomically
from ..checkpoint import SafeDetectionCheckpointer
from ..errors import MissingFileError

__all__ = ["IMAGE_SUFFIXES", "Predictor", "find_images", "predict_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Predictor:
    """Detectron2's ``DefaultPredictor``, with weight files loaded without running code.

    Takes an image in the model's ``INPUT.FORMAT``, resizes it as for evaluation
    (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) and returns its detections in the
    original image's pixels.
    """

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        SafeDetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
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


def predict_images(
    cfg: CfgNode, paths: Iterable[os.PathLike], output_dir: os.PathLike, score_threshold: float
) -> Path:
    """Detect objects in every image, draw them, and write ``detections.json``.

    Args:
        cfg: the detector's config; ``MODEL.WEIGHTS`` names its trained weights, and the
            metadata of ``DATASETS.TEST[0]`` (if registered) names its classes.
        paths: image files and folders of images.
        output_dir: receives ``<image>_pred.png`` per image and ``detections.json``.
        score_threshold: detections scoring less are neither drawn nor listed.

    Returns:
        The path of ``detections.json``: a list of ``{"file_name", "height", "width",
        "detections": [{"bbox_xyxy", "score", "category_id", "category"}]}``.
    """
    images = find_images(paths)
    predictor = Predictor(cfg)
    dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
    metadata = MetadataCatalog.get(dataset)
    class_names = metadata.get("thing_classes", [])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for path in images:
        image = read_image(str(path), format=cfg.INPUT.FORMAT)
        instances = predictor(image)
        instances = instances[instances.scores >= score_threshold]
        rgb = convert_image_to_rgb(image, cfg.INPUT.FORMAT)
        drawn = Visualizer(rgb, metadata).draw_instance_predictions(instances)
        drawn.save(str(output_dir / f"{path.stem}_pred.png"))
        records.append(
            {
                "file_name": str(path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "detections": _detections(instances, class_names),
            }
        )
    result = output_dir / "detections.json"
    write_text_atomically(result, json.dumps(records, indent=1))
    return result
