#!/usr/bin/env python
"""Pretrain a ResNeXt classifier (ImageNet, Sec. 4; CIFAR, Appendix A), as train_net.py

The command's code and its full help: resnext_det/reproduction/commands/pretrain_imagenet.py
(installed as ``resnext-pretrain-imagenet``; ``--help`` prints it).
"""

from resnext_det.reproduction.commands.pretrain_imagenet import cli

if __name__ == "__main__":
    cli()
