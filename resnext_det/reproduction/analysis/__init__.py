"""Measuring the family: parameters and FLOPs, and the paper's numbers to hold them against."""

from .complexity import (
    Complexity,
    backbone_complexity,
    cifar_complexity,
    classifier_complexity,
    detector_complexity,
    template_complexity,
)
from .paper import PAPER_CIFAR, PAPER_IMAGENET, PAPER_TABLE_2, PAPER_TABLE_8, PaperModel
from .tables import Table, paper_tables, render_markdown

__all__ = [
    "PAPER_CIFAR",
    "PAPER_IMAGENET",
    "PAPER_TABLE_2",
    "PAPER_TABLE_8",
    "Complexity",
    "PaperModel",
    "Table",
    "backbone_complexity",
    "cifar_complexity",
    "classifier_complexity",
    "detector_complexity",
    "paper_tables",
    "render_markdown",
    "template_complexity",
]
