#!/usr/bin/env python
"""Parameters and FLOPs (multiply-adds of conv and fc layers, the paper's count).

The command's code and its full help: resnext_det/reproduction/commands/analyze_model.py
(installed as ``resnext-analyze-model``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.analyze_model import cli

if __name__ == "__main__":
    cli()
