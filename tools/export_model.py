#!/usr/bin/env python
"""Export a trained ResNeXt detector for deployment, as Detectron2's tools/deploy/export_model.py.

The command's code and its full help: resnext_det/reproduction/commands/export_model.py
(installed as ``resnext-export-model``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.export_model import cli

if __name__ == "__main__":
    cli()
