"""The ResNeXt in a Detectron2 LazyConfig model, in one line."""

from typing import Any

from detectron2.config import LazyCall as L
from omegaconf import DictConfig

from .resnext import ResNeXt, ResNeXtSpec, make_resnext_stage, make_resnext_stages
from .roi_heads import ResNeXtRes5ROIHeads

__all__ = ["use_resnext"]


def use_resnext(
    model: DictConfig,
    depth: int = 50,
    num_groups: int = 32,
    width_per_group: int = 4,
    **spec: Any,
) -> DictConfig:
    """Put a ResNeXt in place of the ResNet of a LazyConfig R-CNN model, in place.

    For Detectron2's common models (``common/models/*.py``): with FPN the trunk is
    ``backbone.bottom_up``; with C4 it is ``backbone``, and the RoI head becomes
    :class:`~resnext_det.modeling.ResNeXtRes5ROIHeads` with the same ResNeXt's res5 (its
    fields follow the trunk's ``stages`` by interpolation), and the box predictor and mask
    head read res5's width. The stem, the output features and ``freeze_at`` stay; the
    stages keep the model's ``norm`` and ``stride_in_1x1`` unless given::

        model = model_zoo.get_config("common/models/mask_rcnn_c4.py").model
        use_resnext(model, depth=101, num_groups=32, width_per_group=8)

    Args:
        model: the LazyConfig node of a ``GeneralizedRCNN``.
        depth, num_groups, width_per_group: the depth, C and d (``MODEL.RESNETS`` names).
        **spec: other fields of :class:`~resnext_det.modeling.ResNeXtSpec`
            (``stride_in_1x1``, ``norm``, ``block_form``, ``res2_out_channels``, ...).

    Returns:
        ``model``, for chaining.
    """
    in_fpn = "bottom_up" in model.backbone
    parent, key = (model.backbone, "bottom_up") if in_fpn else (model, "backbone")
    resnet = parent[key]
    for name in ("norm", "stride_in_1x1"):
        if name not in spec and name in resnet.stages:
            spec[name] = resnet.stages[name]
    stages = L(make_resnext_stages)(
        depth=depth, num_groups=num_groups, width_per_group=width_per_group, **spec
    )
    parent[key] = L(ResNeXt)(
        stem=resnet.stem,
        stages=stages,
        out_features=resnet.out_features,
        freeze_at=resnet.get("freeze_at", 0),
    )
    if not in_fpn and "res5" in model.roi_heads:
        heads = model.roi_heads
        heads._target_ = ResNeXtRes5ROIHeads
        # res5 follows the trunk: a later model.backbone.stages.depth = 101 changes both.
        fields = [name for name in stages if name != "_target_"]
        heads.res5 = L(make_resnext_stage)(
            name="res5", **{name: f"${{...backbone.stages.{name}}}" for name in fields}
        )
        channels = ResNeXtSpec(depth, num_groups, width_per_group, **spec).stage_out_channels(
            "res5"
        )
        heads.box_predictor.input_shape.channels = channels
        if heads.get("mask_head") is not None:
            heads.mask_head.input_shape.channels = channels
    return model
