#!/usr/bin/env python
"""The bundled demo: tree-crown tiles -> ResNeXt Faster R-CNN trained on the CPU -> COCO AP.

The command's code and its full help: resnext_det/reproduction/commands/train_demo.py
(installed as ``resnext-train-demo``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.train_demo import cli

if __name__ == "__main__":
    cli()
