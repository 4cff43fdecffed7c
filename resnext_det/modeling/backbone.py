"""The Detectron2 backbone builders: a ResNeXt trunk, FPN over it, and RetinaNet's FPN.

Each reads the config exactly as its Detectron2 counterpart (``build_resnet_backbone``,
``build_resnet_fpn_backbone``, ``build_retinanet_resnet_fpn_backbone``) does, so that a
Detectron2 config with only ``MODEL.BACKBONE.NAME`` switched describes the same network,
with the same parameter names and shapes. Builders build: the heads' inputs are checked
by the heads (the C4 head) and by the up-front checks of a run
(:func:`resnext_det.reproduction.engine.validate.check_head_inputs`).
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from ..config import resnext_options
from ..utils.errors import ConfigError
from .resnext import OUT_FEATURES_KEY, ResNeXt, ResNeXtSpec, build_resnext, check_out_features
from .roi_align import check_sparse_roi_align
from .speed import resolve_memory_format

__all__ = [
    "build_resnext_backbone",
    "build_resnext_fpn_backbone",
    "build_resnext_retinanet_fpn_backbone",
]


def build_resnext_backbone(cfg, input_shape: ShapeSpec) -> ResNeXt:
    """Detectron2 backbone builder: the ResNeXt of ``MODEL.RESNETS``.

    Reads ``MODEL.RESNETS`` and ``MODEL.BACKBONE.FREEZE_AT`` as ``build_resnet_backbone``
    does, ``MODEL.RESNEXT`` for the block form and the memory format. With
    ``OUT_FEATURES: ["res4"]`` this is the C4 trunk (stem to res4) of the paper's Faster
    R-CNN, and :class:`~resnext_det.modeling.ResNeXtRes5ROIHeads` holds res5.
    """
    return _build_trunk(cfg, input_shape, fpn=False)


def _build_trunk(cfg, input_shape: ShapeSpec, fpn: bool) -> ResNeXt:
    check_sparse_roi_align(cfg)
    return build_resnext(
        ResNeXtSpec.from_config(cfg),
        out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        in_channels=input_shape.channels,
        memory_format=_memory_format(cfg, fpn),
    )


def _memory_format(cfg, fpn: bool) -> str:
    """``MODEL.RESNEXT.MEMORY_FORMAT``, resolved against every GroupNorm that will run on
    the backbone's maps: its own, the FPN's, and the heads' that read the maps directly
    (RoI heads read pooled features, which both RoIAlign kernels return contiguous)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    norms = [("MODEL.RESNETS.NORM", cfg.MODEL.RESNETS.NORM)]
    if fpn:
        norms.append(("MODEL.FPN.NORM", cfg.MODEL.FPN.NORM))
    if arch in ("SemanticSegmentor", "PanopticFPN"):
        norms.append(("MODEL.SEM_SEG_HEAD.NORM", cfg.MODEL.SEM_SEG_HEAD.NORM))
    if arch == "RetinaNet":
        norms.append(("MODEL.RETINANET.NORM", cfg.MODEL.RETINANET.get("NORM", "")))
    group_norm_key = next((key for key, norm in norms if norm == "GN"), None)
    return resolve_memory_format(resnext_options(cfg)["MEMORY_FORMAT"], group_norm_key)


def _build_fpn(cfg, input_shape: ShapeSpec, top_block: str) -> FPN:
    bottom_up = _build_trunk(cfg, input_shape, fpn=True)
    in_features = check_out_features(cfg.MODEL.FPN.IN_FEATURES, key="MODEL.FPN.IN_FEATURES")
    available = bottom_up.output_shape()
    out_features = list(cfg.MODEL.RESNETS.OUT_FEATURES)
    missing = [name for name in in_features if name not in available]
    if missing:
        raise ConfigError(
            f"MODEL.FPN.IN_FEATURES={in_features!r} asks for {missing!r}, which "
            f"{OUT_FEATURES_KEY}={out_features!r} does not provide; add it there"
        )
    if top_block == "p6p7" and "res5" not in available:
        raise ConfigError(
            f"RetinaNet's FPN computes P6 and P7 from res5, which {OUT_FEATURES_KEY}="
            f"{out_features!r} does not provide; add it there"
        )
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=(
            LastLevelP6P7(available["res5"].channels, out_channels)
            if top_block == "p6p7"
            else LastLevelMaxPool()
        ),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def build_resnext_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Detectron2 backbone builder: FPN (P2-P6, P6 by max pooling) over the ResNeXt.

    The counterpart of ``build_resnet_fpn_backbone``, for Faster, Mask, Cascade, Keypoint
    and Panoptic R-CNN; ``MODEL.FPN.IN_FEATURES`` must be among ``MODEL.RESNETS.OUT_FEATURES``.
    """
    return _build_fpn(cfg, input_shape, top_block="maxpool")


def build_resnext_retinanet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Detectron2 backbone builder: FPN with P6 and P7 computed from res5, for RetinaNet.

    The counterpart of ``build_retinanet_resnet_fpn_backbone`` (P3-P7 over res3-res5).
    """
    return _build_fpn(cfg, input_shape, top_block="p6p7")
