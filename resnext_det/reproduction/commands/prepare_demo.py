"""Build the demo dataset: deepforest's tree-crown photos as COCO-format tiles.

    python datasets/prepare_demo.py                 # -> datasets/demo_trees
    python datasets/prepare_demo.py --root /data --tile-size 300 --overwrite

The result is registered as demo_trees_train / demo_trees_val by
resnext_det.reproduction.data.register_demo_datasets (tools/train_net.py does it itself).
"""

import argparse
import logging

from resnext_det.reproduction.data import TilingSettings, prepare_demo_dataset
from resnext_det.utils.cli import run_tool
from resnext_det.utils.paths import datasets_root


def main() -> None:
    defaults = TilingSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=datasets_root(), help="datasets root (default: %(default)s)"
    )
    parser.add_argument("--tile-size", type=int, default=defaults.tile_size)
    parser.add_argument("--train-stride", type=int, default=defaults.train_stride)
    parser.add_argument("--val-stride", type=int, default=defaults.val_stride)
    parser.add_argument("--min-visible", type=float, default=defaults.min_visible)
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = TilingSettings(args.tile_size, args.train_stride, args.val_stride, args.min_visible)
    print(prepare_demo_dataset(args.root, settings, overwrite=args.overwrite))


def cli() -> None:
    """The command line (``python datasets/prepare_demo.py``, ``resnext-prepare-demo``)."""
    run_tool(main)
