"""The bundled demo: tree-crown tiles -> ResNeXt Faster R-CNN trained on the CPU -> COCO AP.

Prepares the demo dataset if missing (datasets/demo_trees), trains the demo config from
scratch, evaluates COCO AP on the val photo, and draws predictions on a few val tiles.

    python tools/train_demo.py                      # what `make demo` runs
    python tools/train_demo.py SOLVER.MAX_ITER 20   # trailing KEY VALUE overrides
"""

import argparse

from resnext_det.reproduction.engine.demo_training import DEMO_CONFIG, train_demo
from resnext_det.utils.cli import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", default=DEMO_CONFIG, help="detector config (default: the demo's)"
    )
    parser.add_argument(
        "--datasets-root", default=None, help="default: $DETECTRON2_DATASETS or ./datasets"
    )
    parser.add_argument(
        "--num-images", type=int, default=4, help="val images to draw predictions on"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    result = train_demo(
        args.config_file, args.opts, root=args.datasets_root, num_images=args.num_images
    )
    print(result.summary())


def cli() -> None:
    """The command line (``python tools/train_demo.py``, ``resnext-train-demo``)."""
    run_tool(main)
