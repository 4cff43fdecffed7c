"""Draw a detector's predictions on dataset images."""

import os
from pathlib import Path

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer
from torch import nn

__all__ = ["draw_predictions"]

PREDICTION_COLOR = (0.0, 1.0, 0.3)


@torch.no_grad()
def draw_predictions(
    model: nn.Module,
    cfg: CfgNode,
    dataset_name: str,
    out_dir: os.PathLike,
    num_images: int = 4,
    score_threshold: float = 0.5,
) -> list[Path]:
    """Run ``model`` on the first ``num_images`` images of a dataset and save them with boxes.

    Images are prepared exactly as for evaluation (Detectron2's test-time mapper).

    Returns:
        The paths of the written PNG files.
    """
    mapper = DatasetMapper(cfg, is_train=False)
    metadata = MetadataCatalog.get(dataset_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    written = []
    try:
        for record in DatasetCatalog.get(dataset_name)[:num_images]:
            inputs = mapper(record)
            instances = model([inputs])[0]["instances"].to("cpu")
            instances = instances[instances.scores >= score_threshold]
            # Predictions are in the original image's coordinates: draw on the original.
            image = read_image(record["file_name"], format="RGB")
            drawn = Visualizer(image, metadata).overlay_instances(
                boxes=instances.pred_boxes, assigned_colors=[PREDICTION_COLOR] * len(instances)
            )
            path = out_dir / f"{Path(record['file_name']).stem}_pred.png"
            drawn.save(str(path))
            written.append(path)
    finally:
        model.train(was_training)
    return written
