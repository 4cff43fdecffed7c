"""Put the ResNeXt components into Detectron2's registries, on request only."""

from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY

from .modeling import (
    ResNeXtRes5ROIHeads,
    build_resnext_backbone,
    build_resnext_fpn_backbone,
    build_resnext_retinanet_fpn_backbone,
)

__all__ = ["register_resnext_backbone"]


def _register(registry, obj) -> None:
    name = obj.__name__
    if name not in registry:
        registry.register(obj)
        return
    existing = registry.get(name)
    same = (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__)
    if not same:
        raise ValueError(
            f"Detectron2's {registry._name} registry already holds a different {name!r} "
            f"(from {existing.__module__}); expected resnext_det's own or none"
        )


def register_resnext_backbone() -> None:
    """Register the ResNeXt backbones and the C4 RoI head. Safe to call more than once.

    After this call a Detectron2 config can name, in place of Detectron2's ResNet builders,
    ``MODEL.BACKBONE.NAME: build_resnext_backbone`` (C4 and DC5 trunks),
    ``build_resnext_fpn_backbone`` or ``build_resnext_retinanet_fpn_backbone``, and
    ``MODEL.ROI_HEADS.NAME: ResNeXtRes5ROIHeads`` in place of ``Res5ROIHeads``. The
    network is read from ``MODEL.RESNETS``; :func:`resnext_det.add_resnext_config` adds
    the few keys of ours (block form, speed options), whose defaults apply without it.
    """
    _register(BACKBONE_REGISTRY, build_resnext_backbone)
    _register(BACKBONE_REGISTRY, build_resnext_fpn_backbone)
    _register(BACKBONE_REGISTRY, build_resnext_retinanet_fpn_backbone)
    _register(ROI_HEADS_REGISTRY, ResNeXtRes5ROIHeads)
