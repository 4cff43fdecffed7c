#!/usr/bin/env python
"""Build the demo dataset: deepforest's tree-crown photos as COCO-format tiles.

The command's code and its full help: resnext_det/reproduction/commands/prepare_demo.py
(installed as ``resnext-prepare-demo``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.prepare_demo import cli

if __name__ == "__main__":
    cli()
