"""Put the ResNeXt components into Detectron2's registries (when ``resnext_det`` is imported)."""

from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY
from fvcore.common.registry import Registry

from .modeling import (
    ResNeXtRes5ROIHeads,
    ResNeXtStandardROIHeads,
    build_resnext_backbone,
    build_resnext_fpn_backbone,
    build_resnext_retinanet_fpn_backbone,
)
from .utils.errors import ConfigError

__all__ = ["register_resnext_backbone"]

_COMPONENTS = {
    "BACKBONE": (
        BACKBONE_REGISTRY,
        (build_resnext_backbone, build_resnext_fpn_backbone, build_resnext_retinanet_fpn_backbone),
    ),
    "ROI_HEADS": (ROI_HEADS_REGISTRY, (ResNeXtRes5ROIHeads, ResNeXtStandardROIHeads)),
}


def _register(registry: Registry, label: str, obj: object) -> None:
    name = obj.__name__
    if name not in registry:
        registry.register(obj)
        return
    existing = registry.get(name)
    same = (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__)
    if not same:
        raise ConfigError(
            f"Detectron2's {label} registry already holds a different {name!r} "
            f"(from {existing.__module__}); expected resnext_det's own or none"
        )


def register_resnext_backbone() -> None:
    """Register the ResNeXt backbones and the RoI heads. Safe to call more than once.

    Importing ``resnext_det`` calls it, as Detectron2 projects register on import; it stays
    for code that calls it explicitly. Afterwards a Detectron2 config can name, in place
    of Detectron2's ResNet builders, ``MODEL.BACKBONE.NAME: build_resnext_backbone`` (C4
    and DC5 trunks), ``build_resnext_fpn_backbone`` or
    ``build_resnext_retinanet_fpn_backbone``, and ``MODEL.ROI_HEADS.NAME:
    ResNeXtRes5ROIHeads`` in place of ``Res5ROIHeads`` (and ``ResNeXtStandardROIHeads`` in
    place of ``StandardROIHeads`` to use ``MODEL.RESNEXT.SPARSE_ROI_ALIGN``). The network
    is read from ``MODEL.RESNETS``; :func:`resnext_det.add_resnext_config` adds the few
    keys of ours, whose defaults apply without it.
    """
    for label, (registry, components) in _COMPONENTS.items():
        for component in components:
            _register(registry, label, component)
