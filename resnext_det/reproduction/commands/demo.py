"""Run a trained detector on images or folders: drawn images and a JSON of the detections.

    python tools/demo.py --config-file configs/demo/faster_rcnn_X14_32x4d_demo.yaml \\
        --input photo.jpg more_photos/ --output output/demo_predictions \\
        MODEL.WEIGHTS output/demo/model_final.pth

Writes <image>_pred.png for each image (boxes, classes and scores drawn by Detectron2's
Visualizer; numbered, x_2_pred.png, where two images share a name, as x.png and x.PNG or
x.png of two folders do) and detections.json (boxes in the image's pixels, x0 y0 x1 y1;
"drawn" names each image's drawing). Weight files are loaded without running code in them.

Refused in one line (exit code 2) before any image is read: a --confidence-threshold
outside 0 to 1 (NaN included), MODEL.WEIGHTS empty, or
weights that do not provide the whole detector (another network; an ImageNet trunk), or
a weight file that is corrupt, holds code, or holds NaN/inf; an --output that is a file
or cannot be written. An image that cannot be read is skipped and the others are
predicted and written; the tool then ends with one line naming it, and exit code 2.
"""

import argparse

from detectron2.utils.logger import setup_logger

from resnext_det.reproduction.engine import build_config, register_all
from resnext_det.reproduction.engine.predictor import predict_images, skipped_error
from resnext_det.reproduction.engine.validate import check_inputs
from resnext_det.utils.cli import run_tool


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
    check_inputs(cfg, training=False)  # what evaluation's numbers need, anchors included
    predictions = predict_images(cfg, args.input, args.output, args.confidence_threshold)
    path = predictions.path
    print(f"detections in {path}; drawn images in {path.parent}")
    if predictions.skipped:
        raise skipped_error(predictions)


def cli() -> None:
    """The command line (``python tools/demo.py``, ``resnext-demo``)."""
    run_tool(main)
