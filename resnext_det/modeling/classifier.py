"""ResNeXt as a classifier: ImageNet (Table 1) and CIFAR (Appendix A), from the same stages.

Both are Detectron2 ``ResNet`` modules (:class:`~resnext_det.modeling.ResNeXt`) whose
stages come from :meth:`ResNeXtSpec.make_stage`, the very blocks of the detection
backbone, so a trained classifier's ``stem.*`` and ``res*.*`` weights are the backbone's
by name. Their forward returns a dict; the logits
are under ``"linear"``.
"""

from collections.abc import Sequence
from typing import Optional

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from torch import Tensor

from .resnext import STAGE_NAMES, ResNeXt, ResNeXtSpec

__all__ = [
    "CIFAR_BLOCKS_PER_STAGE",
    "CifarStem",
    "build_cifar_resnext",
    "build_resnext_classifier",
]

# ResNeXt-29 (Appendix A): 3 stages of 3 bottleneck blocks, 3 x 3 x 3 + 2 = 29 layers.
CIFAR_BLOCKS_PER_STAGE = (3, 3, 3)


def build_resnext_classifier(
    spec: ResNeXtSpec,
    num_classes: int = 1000,
    out_features: Optional[Sequence[str]] = None,
    memory_format: str = "auto",
) -> ResNeXt:
    """Stem, res2-res5, global average pool and a ``num_classes``-way fc (Table 1).

    Args:
        spec: the member of the family (its ``norm`` is BN for ImageNet training).
        num_classes: outputs of the fc layer.
        out_features: what forward returns, among 'stem', 'res2' ... 'res5', 'linear'
            (default: only 'linear', the logits).
        memory_format: the layout rule (see :class:`~resnext_det.modeling.ResNeXt`).
    """
    stem = spec.make_stem()
    stages = [spec.make_stage(stage) for stage in STAGE_NAMES]
    return ResNeXt(
        stem,
        stages,
        num_classes=num_classes,
        out_features=list(out_features) if out_features else None,
        memory_format=memory_format,
    )


class CifarStem(CNNBlockBase):
    """Appendix A's first layer: one 3x3 conv of 64 filters, stride 1, no pooling."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        weight_init.c2_msra_fill(self.conv1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu_(self.conv1(x))


def build_cifar_resnext(
    spec: ResNeXtSpec,
    num_classes: int = 10,
    out_features: Optional[Sequence[str]] = None,
    memory_format: str = "auto",
) -> ResNeXt:
    """ResNeXt-29 for 32x32 inputs (Appendix A): maps of 32, 16 and 8 pixels.

    The stages are ``spec``'s res2-res4 with three blocks each: res2's template is
    ``[1x1, C*d; 3x3, C*d, C groups; 1x1, 256]`` (``RES2_OUT_CHANNELS``), widths doubling
    at each later stage, so 8x64d has 34.4M parameters and 16x64d 68.1M (Table 7).
    ``spec.depth`` is not used.
    """
    stem = CifarStem(out_channels=spec.stem_out_channels, norm=spec.norm)
    stages = [
        spec.make_stage(stage, num_blocks=blocks)
        for stage, blocks in zip(STAGE_NAMES, CIFAR_BLOCKS_PER_STAGE)
    ]
    return ResNeXt(
        stem,
        stages,
        num_classes=num_classes,
        out_features=list(out_features) if out_features else None,
        memory_format=memory_format,
    )
