#!/usr/bin/env python
"""Sort the ILSVRC2012 val images into class folders and verify ImageNet for pretraining.

The command's code and its full help: resnext_det/reproduction/commands/prepare_imagenet.py
(installed as ``resnext-prepare-imagenet``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.prepare_imagenet import cli

if __name__ == "__main__":
    cli()
