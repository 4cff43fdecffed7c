"""ResNeXt models: block forms, backbones, the RoI heads, the classifier, speed options."""

from .backbone import (
    build_resnext_backbone,
    build_resnext_fpn_backbone,
    build_resnext_retinanet_fpn_backbone,
)
from .block_forms import convert_block_form, from_grouped_form, to_grouped_form
from .blocks import EarlyConcatBlock, SplitTransformSumBlock
from .classifier import CIFAR_BLOCKS_PER_STAGE, build_cifar_resnext, build_resnext_classifier
from .lazy import use_resnext
from .resnext import (
    BLOCKS_PER_STAGE,
    FEATURE_NAMES,
    NORMS,
    STAGE_NAMES,
    ResNeXt,
    ResNeXtSpec,
    build_resnext,
    make_resnext_stage,
    make_resnext_stages,
)
from .roi_align import SparseROIAlign, SparseROIPooler
from .roi_heads import ResNeXtRes5ROIHeads, ResNeXtStandardROIHeads
from .speed import fuse_frozen_batchnorm

__all__ = [
    "BLOCKS_PER_STAGE",
    "CIFAR_BLOCKS_PER_STAGE",
    "FEATURE_NAMES",
    "NORMS",
    "STAGE_NAMES",
    "EarlyConcatBlock",
    "ResNeXt",
    "ResNeXtRes5ROIHeads",
    "ResNeXtStandardROIHeads",
    "ResNeXtSpec",
    "SparseROIAlign",
    "SparseROIPooler",
    "SplitTransformSumBlock",
    "build_cifar_resnext",
    "build_resnext",
    "build_resnext_backbone",
    "build_resnext_classifier",
    "build_resnext_fpn_backbone",
    "build_resnext_retinanet_fpn_backbone",
    "convert_block_form",
    "from_grouped_form",
    "fuse_frozen_batchnorm",
    "make_resnext_stage",
    "make_resnext_stages",
    "to_grouped_form",
    "use_resnext",
]
