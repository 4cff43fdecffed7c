#!/usr/bin/env python
"""Train or evaluate a ResNeXt detector with Detectron2.

The command's code and its full help: resnext_det/reproduction/commands/train_net.py
(installed as ``resnext-train-net``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.train_net import cli

if __name__ == "__main__":
    cli()
