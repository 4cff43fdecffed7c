"""The C4 RoI head of the paper's Faster R-CNN: res5 of the same ResNeXt runs on every RoI."""

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from ..errors import ConfigError
from .resnext import ResNeXtSpec, apply_speed_options

__all__ = ["ResNeXtRes5ROIHeads", "check_c4_inputs"]

C4_FEATURE = "res4"


class ResNeXtRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` whose res5 is built from ``cfg.MODEL.RESNEXT``.

    The trunk (``build_resnext_backbone``) stops at res4; RoIs pooled from res4 run
    through res5 here, as in the paper (Sec. 5.4, "C4"). Parameter names are
    Detectron2's (``roi_heads.res5.0.conv1.weight``, ...). The speed options of the trunk
    (``FOLD_FROZEN_BN``, ``MEMORY_FORMAT``) apply here too: at test time res5 runs on
    about a thousand RoIs, the largest input of the model.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        check_c4_inputs(cfg, input_shape)
        return super().from_config(cfg, input_shape)

    @classmethod
    def _build_res5_block(cls, cfg) -> tuple[nn.Sequential, int]:
        spec = ResNeXtSpec.from_config(cfg)
        node = cfg.MODEL.RESNEXT
        res5 = nn.Sequential(*spec.make_stage("res5"))
        apply_speed_options(res5, node.FOLD_FROZEN_BN, node.MEMORY_FORMAT)
        return res5, spec.stage_out_channels("res5")


def check_c4_inputs(cfg, input_shape: dict[str, ShapeSpec]) -> None:
    """Raise a ValueError naming the keys when the backbone cannot feed the C4 head."""
    head = ResNeXtRes5ROIHeads.__name__
    spec = ResNeXtSpec.from_config(cfg)
    out_features = list(cfg.MODEL.RESNEXT.OUT_FEATURES)
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    if in_features != [C4_FEATURE]:
        raise ConfigError(
            f"MODEL.ROI_HEADS.IN_FEATURES={in_features!r} is invalid for the C4 head {head}; "
            f"expected ['{C4_FEATURE}']"
        )
    if C4_FEATURE not in input_shape:
        raise ConfigError(
            f"MODEL.ROI_HEADS.NAME={head!r} (C4) needs the backbone feature '{C4_FEATURE}', "
            f"but the backbone gives only {sorted(input_shape)} "
            f"(MODEL.RESNEXT.OUT_FEATURES={out_features!r}); expected ['{C4_FEATURE}']"
        )
    if "res5" in input_shape:
        raise ConfigError(
            f"MODEL.RESNEXT.OUT_FEATURES={out_features!r} builds res5 in the backbone, but the "
            f"C4 head {head} holds res5 itself; expected ['{C4_FEATURE}']"
        )
    expected_channels = spec.stage_out_channels(C4_FEATURE)
    if input_shape[C4_FEATURE].channels != expected_channels:
        raise ConfigError(
            f"the backbone's '{C4_FEATURE}' has {input_shape[C4_FEATURE].channels} channels, but "
            f"res5 of {spec} in {head} expects {expected_channels} "
            "(MODEL.RESNEXT.RES2_OUT_CHANNELS x 4)"
        )
