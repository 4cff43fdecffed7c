"""Parameters and FLOPs of the ResNeXt family, counted the paper's way.

FLOPs are multiply-adds of the convolution and fully-connected layers (Sec. 3.1: "FLOPs
(floating-point operations, in # of multiply-adds)"), as fvcore counts them; the small
costs of norms, pooling and activations are left out, as the paper leaves them out.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis as DetectronFlopCountAnalysis
from fvcore.nn import FlopCountAnalysis
from torch import nn

from ...modeling import (
    ResNeXtSpec,
    build_cifar_resnext,
    build_resnext,
    build_resnext_classifier,
)

__all__ = [
    "PAPER_FLOP_OPERATORS",
    "Complexity",
    "backbone_complexity",
    "cifar_complexity",
    "classifier_complexity",
    "detector_complexity",
    "parameter_count",
    "template_complexity",
]

PAPER_FLOP_OPERATORS = ("conv", "linear")


@dataclass(frozen=True)
class Complexity:
    """Size and cost of a model on one input.

    Attributes:
        params: number of parameters.
        flops: multiply-adds of conv and fc layers on that input (the paper's FLOPs).
        all_flops: fvcore's total, norms and pooling included.
    """

    params: int
    flops: float
    all_flops: float

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "params_m": round(self.params_m, 3),
            "gflops": round(self.gflops, 4),
            "all_gflops": round(self.all_flops / 1e9, 4),
        }


def _quietly(analysis):
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def parameter_count(model: nn.Module) -> int:
    """Parameters, the affine weights of frozen norms included (they are the same numbers
    as BN's, only frozen), so that a detector and its classifier count alike."""
    frozen = sum(
        m.weight.numel() + m.bias.numel()
        for m in model.modules()
        if isinstance(m, FrozenBatchNorm2d)
    )
    return sum(p.numel() for p in model.parameters()) + frozen


def _count(model: nn.Module, analysis) -> Complexity:
    # fvcore logs each operator it does not count (relu, max_pool2d, ...); the paper does
    # not count them either.
    logging.getLogger("fvcore.nn.jit_handles").setLevel(logging.ERROR)
    by_operator = _quietly(analysis).by_operator()
    return Complexity(
        params=parameter_count(model),
        flops=float(sum(by_operator.get(op, 0) for op in PAPER_FLOP_OPERATORS)),
        all_flops=float(analysis.total()),
    )


@torch.no_grad()
def _tensor_complexity(model: nn.Module, inputs: torch.Tensor) -> Complexity:
    model.eval()
    return _count(model, FlopCountAnalysis(model, inputs))


def classifier_complexity(
    spec: ResNeXtSpec, size: int = 224, num_classes: int = 1000
) -> Complexity:
    """The ImageNet classifier of Table 1 on one ``size`` x ``size`` image."""
    model = build_resnext_classifier(spec, num_classes)
    return _tensor_complexity(model, torch.zeros(1, 3, size, size))


def cifar_complexity(spec: ResNeXtSpec, num_classes: int = 10) -> Complexity:
    """ResNeXt-29 (Appendix A) on one 32 x 32 image."""
    return _tensor_complexity(build_cifar_resnext(spec, num_classes), torch.zeros(1, 3, 32, 32))


def backbone_complexity(
    spec: ResNeXtSpec, height: int, width: int, out_features: Sequence[str] = ("res5",)
) -> Complexity:
    """The detection backbone (stem to the last of ``out_features``) on one image."""
    model = build_resnext(spec, out_features=list(out_features))
    return _tensor_complexity(model, torch.zeros(1, 3, height, width))


def template_complexity(cardinality: int, width: int, size: int = 56) -> Complexity:
    """One conv2 block of the template (Table 2), an identity-shortcut block on ``size``^2.

    Its parameters are C * (256*d + 3*3*d*d + d*256) (Eqn. 4); its FLOPs those times 56^2.
    """
    spec = ResNeXtSpec(depth=50, cardinality=cardinality, bottleneck_width=width, norm="BN")
    block = spec.make_stage("res2")[1]  # the first block has a projection shortcut
    convs = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))
    complexity = _tensor_complexity(block, torch.zeros(1, spec.res2_out_channels, size, size))
    return Complexity(convs, complexity.flops, complexity.all_flops)


@torch.no_grad()
def detector_complexity(cfg: CfgNode, height: int, width: int) -> Complexity:
    """A whole detector of ``cfg`` (inference) on one ``height`` x ``width`` image.

    The RoI head's cost depends on how many proposals reach it: with random weights the
    RPN keeps about ``POST_NMS_TOPK_TEST`` of them, as a trained one does on busy images.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    image = torch.zeros(3, height, width)
    inputs = [{"image": image, "height": height, "width": width}]
    return _count(model, DetectronFlopCountAnalysis(model, inputs))
