"""Sort the ILSVRC2012 val images into class folders and verify ImageNet for pretraining.

    python datasets/prepare_imagenet.py --root datasets/imagenet \\
        --devkit ILSVRC2012_devkit_t12.tar.gz     # sorts val/, then checks
    python datasets/prepare_imagenet.py --root datasets/imagenet          # checks only
    python datasets/prepare_imagenet.py --root /data/tiny --allow-subset  # not the full set

Expects train/<wnid>/*.JPEG (the training archive's 1000 class archives extracted) and the
val images, flat as in their archive or already in val/<wnid>/. Moving a val image is an
atomic rename, so an interrupted run can simply be run again. Prints one line per problem
and exits 2 if there is any. See datasets/README.md.
"""

import argparse
import sys

from resnext_det.reproduction.pretrain.imagenet import check_imagenet, sort_val_images
from resnext_det.utils.cli import run_tool


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="datasets/imagenet", help="(default: %(default)s)")
    parser.add_argument(
        "--devkit", default=None, help="ILSVRC2012_devkit_t12 folder or .tar.gz (to sort val/)"
    )
    parser.add_argument(
        "--allow-subset", action="store_true", help="do not require the full class/image counts"
    )
    args = parser.parse_args()

    if args.devkit:
        moved = sort_val_images(args.root, args.devkit)
        print(f"sorted {moved} val images into class folders")
    problems = check_imagenet(args.root, expect_full=not args.allow_subset)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.root}: train/ and val/ are ready for tools/pretrain_imagenet.py")
    return 0


def cli() -> None:
    """The command line (``python datasets/prepare_imagenet.py``, ``resnext-prepare-imagenet``)."""
    run_tool(main)
