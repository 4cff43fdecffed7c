"""Check a COCO directory and provide the paper's splits, coco_2014_trainval35k and minival.

    python datasets/prepare_coco.py                     # checks ./datasets/coco
    python datasets/prepare_coco.py --root /data        # checks /data/coco
    python datasets/prepare_coco.py --allow-subset      # a partial copy of COCO is fine

Accepts COCO 2014 with the minival / valminusminival jsons, COCO 2014 with
instances_val2014.json and a list of the 5000 minival ids (the two jsons are built from
it, and rebuilt whenever the list or the val json changes: each records the sha256 of
both), or COCO 2017; see datasets/README.md. An empty or malformed id list is refused.
Prints one line per problem and exits 2 if there is any, else says which layout will be
used. Training tools register the splits themselves
(resnext_det.reproduction.data.register_coco2014_splits).
"""

import argparse
import sys

from resnext_det.reproduction.data import build_minival_jsons, check_coco, find_coco_layout
from resnext_det.utils.cli import run_tool
from resnext_det.utils.paths import datasets_root


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=datasets_root(), help="datasets root holding coco/ (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-subset", action="store_true", help="do not require the full split sizes"
    )
    args = parser.parse_args()

    try:  # whenever the id list is there: the jsons may be missing or stale
        for path in build_minival_jsons(args.root):
            print(f"wrote {path}")
    except FileNotFoundError:
        pass  # not the 2014-ids form: check_coco says what is expected
    problems = check_coco(args.root, expect_full=not args.allow_subset)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    layout = find_coco_layout(args.root)
    print(f"COCO {layout.form} layout: coco_2014_trainval35k and coco_2014_minival are ready")
    return 0


def cli() -> None:
    """The command line (``python datasets/prepare_coco.py``, ``resnext-prepare-coco``)."""
    run_tool(main)
