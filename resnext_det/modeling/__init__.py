"""ResNeXt models: block forms, backbones, the C4 head, the classifier, speed options."""

from .backbone import (
    build_resnext_backbone,
    build_resnext_fpn_backbone,
    build_resnext_retinanet_fpn_backbone,
)
from .block_forms import convert_block_form, from_grouped_form, to_grouped_form
from .blocks import EarlyConcatBlock, SplitTransformSumBlock
from .classifier import CIFAR_BLOCKS_PER_STAGE, build_cifar_resnext, build_resnext_classifier
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
from .roi_align import SparseROIAlign, SparseROIPooler, use_sparse_roi_align
from .roi_heads import ResNeXtRes5ROIHeads
from .speed import apply_speed_options

__all__ = [
    "BLOCKS_PER_STAGE",
    "CIFAR_BLOCKS_PER_STAGE",
    "FEATURE_NAMES",
    "NORMS",
    "STAGE_NAMES",
    "EarlyConcatBlock",
    "ResNeXt",
    "ResNeXtRes5ROIHeads",
    "ResNeXtSpec",
    "SparseROIAlign",
    "SparseROIPooler",
    "SplitTransformSumBlock",
    "apply_speed_options",
    "build_cifar_resnext",
    "build_resnext",
    "build_resnext_backbone",
    "build_resnext_classifier",
    "build_resnext_fpn_backbone",
    "build_resnext_retinanet_fpn_backbone",
    "convert_block_form",
    "from_grouped_form",
    "make_resnext_stage",
    "make_resnext_stages",
    "to_grouped_form",
    "use_sparse_roi_align",
]
