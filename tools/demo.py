#!/usr/bin/env python
"""Run a trained detector on images or folders: drawn images and a JSON of the detections.

The command's code and its full help: resnext_det/reproduction/commands/demo.py
(installed as ``resnext-demo``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.demo import cli

if __name__ == "__main__":
    cli()
