"""The Detectron2 backbone builders: a ResNeXt trunk (C4) and FPN over it.

Both check, before Detectron2 builds the heads, that the features the heads will ask
for exist, so a mismatch ends in a ValueError naming the keys rather than a KeyError
deep inside a head.
"""

import logging

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import ResNet

from ..errors import ConfigError
from .resnext import ResNeXtSpec, build_resnext, check_out_features
from .roi_heads import ResNeXtRes5ROIHeads, check_c4_inputs

__all__ = ["build_resnext_backbone", "build_resnext_fpn_backbone", "check_head_inputs"]

logger = logging.getLogger(__name__)

DETECTRON2_DEFAULT_FREEZE_AT = 2


def check_head_inputs(cfg, backbone: Backbone) -> None:
    """Raise a ValueError when the C4 head or the RPN would ask for a missing feature."""
    shapes = backbone.output_shape()
    if cfg.MODEL.ROI_HEADS.NAME == ResNeXtRes5ROIHeads.__name__:
        check_c4_inputs(cfg, shapes)
    if cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RPN":
        wanted = list(cfg.MODEL.RPN.IN_FEATURES)
        missing = [name for name in wanted if name not in shapes]
        if missing:
            raise ConfigError(
                f"MODEL.RPN.IN_FEATURES={wanted!r} asks for {missing!r}, but the backbone "
                f"gives only {sorted(shapes)}; expected names among those"
            )


def _build_trunk(cfg, input_shape: ShapeSpec) -> ResNet:
    spec = ResNeXtSpec.from_config(cfg)
    node = cfg.MODEL.RESNEXT
    # A user who changed Detectron2's own key probably meant ours.
    detectron2_freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    if detectron2_freeze_at not in (DETECTRON2_DEFAULT_FREEZE_AT, node.FREEZE_AT):
        logger.warning(
            "MODEL.BACKBONE.FREEZE_AT=%s is not read by the ResNeXt backbones; "
            "MODEL.RESNEXT.FREEZE_AT=%s is used",
            detectron2_freeze_at,
            node.FREEZE_AT,
        )
    return build_resnext(
        spec,
        out_features=node.OUT_FEATURES,
        freeze_at=node.FREEZE_AT,
        in_channels=input_shape.channels,
        fold_frozen_bn=node.FOLD_FROZEN_BN,
        memory_format=node.MEMORY_FORMAT,
    )


def build_resnext_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Detectron2 backbone builder: a ResNeXt trunk from ``cfg.MODEL.RESNEXT``.

    With the default ``OUT_FEATURES: ["res4"]`` this is the C4 trunk (stem to res4) of
    the paper's Faster R-CNN; :class:`ResNeXtRes5ROIHeads` holds res5.
    """
    trunk = _build_trunk(cfg, input_shape)
    check_head_inputs(cfg, trunk)
    return trunk


def build_resnext_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Detectron2 backbone builder: FPN (P2-P6) over a ResNeXt from ``cfg.MODEL.RESNEXT``.

    ``MODEL.FPN.IN_FEATURES`` must be among ``MODEL.RESNEXT.OUT_FEATURES``.
    """
    bottom_up = _build_trunk(cfg, input_shape)
    in_features = check_out_features(cfg.MODEL.FPN.IN_FEATURES, key="MODEL.FPN.IN_FEATURES")
    missing = [name for name in in_features if name not in bottom_up.output_shape()]
    if missing:
        raise ConfigError(
            f"MODEL.FPN.IN_FEATURES={in_features!r} asks for {missing!r}, which "
            f"MODEL.RESNEXT.OUT_FEATURES={list(cfg.MODEL.RESNEXT.OUT_FEATURES)!r} does not "
            "provide; add it there"
        )
    fpn = FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    check_head_inputs(cfg, fpn)
    return fpn
