#!/usr/bin/env python
"""Run a trained detector on images or folders: drawn images and a JSON of the detections.

    python tools/demo.py --config-file configs/demo/faster_rcnn_X14_32x4d_demo.yaml \\
        --input photo.jpg more_photos/ --output output/demo_predictions \\
        MODEL.WEIGHTS output/demo/model_final.pth

Writes <image>_pred.png for each image (boxes, classes and scores drawn by Detectron2's
Visualizer) and detections.json (boxes in the image's pixels, x0 y0 x1 y1). Weight files
are loaded without running code in them.
"""

import argparse

import resnext_det  # noqa: F401 (first: it silences Detectron2's import-time warnings)

# isort: split
from detectron2.utils.logger import setup_logger

from resnext_det.cli import run_tool
from resnext_det.engine import build_config, register_all
from resnext_det.engine.predictor import predict_images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True, help="image files and folders")
    parser.add_argument("--output", default="output/predictions", help="(default: %(default)s)")
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    setup_logger(name="resnext_det")
    register_all()
    cfg = build_config(args.config_file, args.opts)
    path = predict_images(cfg, args.input, args.output, args.confidence_threshold)
    print(f"detections in {path}; drawn images in {path.parent}")


if __name__ == "__main__":
    run_tool(main)
