"""Export a trained ResNeXt detector for deployment, as Detectron2's tools/deploy/export_model.py.

    python tools/export_model.py --config-file configs/demo/faster_rcnn_X14_32x4d_demo.yaml \\
        --format torchscript --export-method tracing --output output/export \\
        MODEL.WEIGHTS output/demo/model_final.pth
    python tools/export_model.py ... --format torchscript --export-method scripting
    python tools/export_model.py ... --format onnx --export-method tracing

Writes model.ts (TorchScript, with its IR dumped beside it) or model.onnx (taking images
of any height and width) to --output, then runs the exported model beside the eager one
on the sample images (--sample-image, else the first images of DATASETS.TEST[0]) and
prints how far their detections are apart; exits 1 if they differ. The speed options
(MODEL.RESNEXT) export as they are.

Refused in one line (exit code 2) before the export: MODEL.WEIGHTS empty, weights that
do not provide the whole detector, a weight file that is corrupt, holds code or holds
NaN/inf, an --output that is a file or cannot be written, a sample image that is missing
or no readable 8-bit image (a decompression bomb included), and test data that cannot be
loaded. model.ts / model.onnx are written whole or not at all.
"""

import argparse

from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.checkpoint.fit import starting_weights
from resnext_det.reproduction.deploy import (
    EXPORT_FORMATS,
    EXPORT_METHODS,
    compare_detections,
    export_model,
    sample_images,
)
from resnext_det.reproduction.engine import build_config, register_all
from resnext_det.reproduction.engine.validate import check_inputs
from resnext_det.utils.atomic_io import check_output_dir
from resnext_det.utils.cli import run_tool


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    parser.add_argument("--export-method", choices=EXPORT_METHODS, default="tracing")
    parser.add_argument("--sample-image", nargs="*", default=None, help="images to check on")
    parser.add_argument("--output", default="output/export", help="(default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    setup_logger(name="resnext_det")
    register_all()
    cfg = build_config(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    check_inputs(cfg, training=False)  # what evaluation's numbers need, anchors included
    check_output_dir(args.output, "--output")
    model = build_model(cfg).eval()
    weights = starting_weights(
        model, None, cfg.MODEL.WEIGHTS, whole_model=True, use="the export would hold"
    )
    SafeDetectionCheckpointer(model).load(weights)
    images = sample_images(cfg, args.sample_image)

    exported = export_model(model, images[0], args.output, args.format, args.export_method)
    print(f"exported {args.format} ({args.export_method}) to {exported.path}")
    differences = compare_detections(model, exported, images)
    for index, difference in enumerate(differences):
        print(f"sample {index}: {difference}")
    same = all(d.same for d in differences)
    print("same detections as the eager model" if same else "DETECTIONS DIFFER from eager")
    return 0 if same else 1


def cli() -> None:
    """The command line (``python tools/export_model.py``, ``resnext-export-model``)."""
    run_tool(main)
