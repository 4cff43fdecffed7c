"""ResNeXt models: block forms, backbones, the C4 head, the classifier."""

from .backbone import build_resnext_backbone, build_resnext_fpn_backbone
from .block_forms import convert_block_form, from_grouped_form, to_grouped_form
from .blocks import EarlyConcatBlock, SplitTransformSumBlock
from .classifier import CIFAR_BLOCKS_PER_STAGE, build_cifar_resnext, build_resnext_classifier
from .resnext import (
    BLOCKS_PER_STAGE,
    FEATURE_NAMES,
    NORMS,
    STAGE_NAMES,
    ResNeXtSpec,
    build_resnext,
)
from .roi_heads import ResNeXtRes5ROIHeads

__all__ = [
    "BLOCKS_PER_STAGE",
    "CIFAR_BLOCKS_PER_STAGE",
    "FEATURE_NAMES",
    "NORMS",
    "STAGE_NAMES",
    "EarlyConcatBlock",
    "ResNeXtRes5ROIHeads",
    "ResNeXtSpec",
    "SplitTransformSumBlock",
    "build_cifar_resnext",
    "build_resnext",
    "build_resnext_backbone",
    "build_resnext_classifier",
    "build_resnext_fpn_backbone",
    "convert_block_form",
    "from_grouped_form",
    "to_grouped_form",
]
