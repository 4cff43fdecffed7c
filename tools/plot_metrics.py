#!/usr/bin/env python
"""Plot training curves and error against complexity, to PNG files.

The command's code and its full help: resnext_det/reproduction/commands/plot_metrics.py
(installed as ``resnext-plot-metrics``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.plot_metrics import cli

if __name__ == "__main__":
    cli()
