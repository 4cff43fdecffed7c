#!/usr/bin/env python
"""Convert ResNeXt weights into Detectron2 weights for the ResNeXt backbones, exactly.

The command's code and its full help: resnext_det/reproduction/commands/convert_weights.py
(installed as ``resnext-convert-weights``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.convert_weights import cli

if __name__ == "__main__":
    cli()
