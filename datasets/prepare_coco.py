#!/usr/bin/env python
"""Check a COCO directory and provide the paper's splits, coco_2014_trainval35k and minival.

The command's code and its full help: resnext_det/reproduction/commands/prepare_coco.py
(installed as ``resnext-prepare-coco``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.prepare_coco import cli

if __name__ == "__main__":
    cli()
