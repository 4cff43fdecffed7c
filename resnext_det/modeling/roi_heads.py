"""The RoI heads of ours: the paper's C4 head (res5 of the same ResNeXt on every RoI), and
Detectron2's FPN heads with the sparse RoIAlign as a config choice.

Both are in Detectron2's ``ROI_HEADS_REGISTRY`` once ``resnext_det`` is imported.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.structures import Boxes
from torch import nn

from ..config import RESNEXT_DEFAULTS, resnext_options
from ..utils.errors import ConfigError
from .resnext import CONFIG_KEYS, OUT_FEATURES_KEY, ResNeXtSpec
from .roi_align import sparse_roi_align, use_sparse_levels
from .speed import has_group_norm, resolve_memory_format, to_memory_format

__all__ = ["ResNeXtRes5ROIHeads", "ResNeXtStandardROIHeads", "check_c4_inputs"]

C4_FEATURE = "res4"


class ResNeXtRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` whose res5 is the ResNeXt's (``MODEL.RESNETS``).

    The trunk (``build_resnext_backbone``) stops at res4; RoIs pooled from res4 run
    through res5 here, as in the paper (Sec. 5.4, "C4"). Module and parameter names are
    Detectron2's (``roi_heads.res5.0.conv1.weight``, ...); for block form (c) at the
    paper's depths the head is Detectron2's own, initialised alike. At test time res5 runs
    on about a thousand RoIs, the largest input of the model: it gets them in the layout
    that runs it fastest, as the trunk's stages do.

    Args:
        memory_format: ``MODEL.RESNEXT.MEMORY_FORMAT``, the layout rule of res5.
        **kwargs: as Detectron2's ``Res5ROIHeads`` (``res5`` may be a list of blocks, e.g.
            from :func:`~resnext_det.modeling.make_resnext_stage` in a LazyConfig).
    """

    @configurable
    def __init__(self, *, memory_format: str = RESNEXT_DEFAULTS["MEMORY_FORMAT"], **kwargs):
        super().__init__(**kwargs)
        group_norm_key = CONFIG_KEYS["norm"] if has_group_norm(self) else None
        self.memory_format = resolve_memory_format(memory_format, group_norm_key)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        check_c4_inputs(cfg, input_shape)
        ret = super().from_config(cfg, input_shape)
        ret["memory_format"] = resnext_options(cfg)["MEMORY_FORMAT"]
        if sparse_roi_align(cfg):
            use_sparse_levels(ret["pooler"])
        return ret

    @classmethod
    def _build_res5_block(cls, cfg) -> tuple[nn.Sequential, int]:
        spec = ResNeXtSpec.from_config(cfg)
        return nn.Sequential(*spec.make_stage("res5")), spec.stage_out_channels("res5")

    def _shared_roi_transform(self, features: list[torch.Tensor], boxes: list[Boxes]):
        x = self.pooler(features, boxes)
        return self.res5(to_memory_format(x, self.memory_format))


class ResNeXtStandardROIHeads(StandardROIHeads):
    """Detectron2's ``StandardROIHeads`` (FPN) that honours ``MODEL.RESNEXT.SPARSE_ROI_ALIGN``.

    With the key False it is ``StandardROIHeads`` itself; with it True its poolers (box,
    mask, keypoint) compute RoIAlign on the CPU as sparse products
    (:class:`~resnext_det.modeling.roi_align.SparseROIAlign`): the same values, faster.
    """

    # As detectron2.export annotates StandardROIHeads (not its subclasses): scripting then
    # compiles away the branches of the heads a model does not have.
    mask_on: torch.jit.Final[bool]
    keypoint_on: torch.jit.Final[bool]

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        if sparse_roi_align(cfg):
            for key in ("box_pooler", "mask_pooler", "keypoint_pooler"):
                if ret.get(key) is not None:
                    use_sparse_levels(ret[key])
        return ret


def check_c4_inputs(cfg, input_shape: dict[str, ShapeSpec]) -> None:
    """Raise a ValueError naming the keys when the backbone cannot feed the C4 head."""
    head = ResNeXtRes5ROIHeads.__name__
    spec = ResNeXtSpec.from_config(cfg)
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    if in_features != [C4_FEATURE]:
        raise ConfigError(
            f"MODEL.ROI_HEADS.IN_FEATURES={in_features!r} is invalid for the C4 head {head}; "
            f"expected ['{C4_FEATURE}']"
        )
    if C4_FEATURE not in input_shape:
        raise ConfigError(
            f"MODEL.ROI_HEADS.NAME={head!r} (C4) needs the backbone feature '{C4_FEATURE}', "
            f"but the backbone gives only {sorted(input_shape)}; expected {OUT_FEATURES_KEY} "
            f"['{C4_FEATURE}']"
        )
    if "res5" in input_shape:
        out_features = list(cfg.MODEL.RESNETS.OUT_FEATURES)
        raise ConfigError(
            f"{OUT_FEATURES_KEY}={out_features!r} builds res5 in the backbone, but the C4 head "
            f"{head} holds res5 itself; expected ['{C4_FEATURE}']"
        )
    if spec.res5_dilation != 1:
        raise ConfigError(
            f"{CONFIG_KEYS['res5_dilation']}={spec.res5_dilation} has no place in the C4 head "
            f"{head}, whose res5 strides the pooled RoIs by 2 (as Detectron2's Res5ROIHeads); "
            "expected 1 (a dilated res5 belongs in the backbone: the DC5 configs)"
        )
    expected_channels = spec.stage_out_channels(C4_FEATURE)
    if input_shape[C4_FEATURE].channels != expected_channels:
        raise ConfigError(
            f"the backbone's '{C4_FEATURE}' has {input_shape[C4_FEATURE].channels} channels, but "
            f"res5 of {spec} in {head} expects {expected_channels} "
            f"({CONFIG_KEYS['res2_out_channels']} x 4)"
        )
