#!/usr/bin/env python
"""Train or evaluate a detector from a LazyConfig (``.py``) config, Detectron2's new style.

The command's code and its full help: resnext_det/reproduction/commands/lazyconfig_train_net.py
(installed as ``resnext-lazyconfig-train-net``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.lazyconfig_train_net import cli

if __name__ == "__main__":
    cli()
