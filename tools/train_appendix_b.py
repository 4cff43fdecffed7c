#!/usr/bin/env python
"""The paper's two-step detection recipe (Appendix B) in one resumable command.

The command's code and its full help: resnext_det/reproduction/commands/train_appendix_b.py
(installed as ``resnext-train-appendix-b``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.train_appendix_b import cli

if __name__ == "__main__":
    cli()
