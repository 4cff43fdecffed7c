"""ResNeXt as an ImageNet classifier (Table 1): the same stages, global pool, one fc."""

from detectron2.modeling.backbone.resnet import ResNet

from .resnext import STAGE_NAMES, ResNeXtSpec

__all__ = ["build_resnext_classifier"]


def build_resnext_classifier(spec: ResNeXtSpec, num_classes: int = 1000) -> ResNet:
    """Stem, res2-res5, global average pool and a ``num_classes``-way fc.

    The stages are the very modules of the detection backbone, so a trained classifier's
    ``stem.*`` and ``res*.*`` weights load into it by name.
    """
    stages = [spec.make_stage(stage) for stage in STAGE_NAMES]
    # out_features=None: Detectron2 then returns "linear" and keeps every stage.
    return ResNet(spec.make_stem(), stages, num_classes=num_classes, out_features=None)
