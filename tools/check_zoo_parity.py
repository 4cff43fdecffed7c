#!/usr/bin/env python
"""Detectron2's zoo configs with only the backbone switched to ours: same keys, same outputs.

The command's code and its full help: resnext_det/reproduction/commands/check_zoo_parity.py
(installed as ``resnext-check-zoo-parity``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.check_zoo_parity import cli

if __name__ == "__main__":
    cli()
