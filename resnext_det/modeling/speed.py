"""Speed without hidden state: the memory format by map size, and an explicit fuse step.

Measured on 2-core AVX-512 and AVX2 CPUs (``docs/design/speed.md``):

- oneDNN runs convolutions on maps of 14 x 14 pixels and more 1.1-6x faster in
  channels_last, those on 7 x 7 maps (res5 of a 224 px image, the C4 head's RoIs) 1.2-3x
  slower. The ResNeXt modules hand each block its input in the faster layout
  (``MODEL.RESNEXT.MEMORY_FORMAT``); a layout is not a value, so outputs are unchanged,
  except in PyTorch's channels-last GroupNorm kernel on the CPU, which loses float32
  precision on maps with a large mean: 'auto' keeps a model with GroupNorm contiguous.
- A frozen BN after a conv is a separate pass over memory. :func:`fuse_frozen_batchnorm`
  folds it into the conv (``conv(x, w) * s + b == conv(x, w * s) + b``) in a model used
  for inference only: the predictor's, the exported one, the benchmarks'. The fused
  model holds the folded weights as its parameters, so nothing can go stale; the model
  that trains keeps Detectron2's modules.
"""

import copy
from typing import Any, Optional

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from ..utils.errors import ConfigError

__all__ = [
    "CHANNELS_LAST_MIN_SIDE",
    "MEMORY_FORMATS",
    "check_memory_format",
    "fuse_frozen_batchnorm",
    "has_group_norm",
    "resolve_memory_format",
    "to_memory_format",
]

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
MEMORY_FORMAT_KEY = "MODEL.RESNEXT.MEMORY_FORMAT"
# The smallest map side from which channels_last is the faster layout (see above).
CHANNELS_LAST_MIN_SIDE = 14


def to_memory_format(
    x: torch.Tensor, memory_format: str, min_side: int = CHANNELS_LAST_MIN_SIDE
) -> torch.Tensor:
    """``x`` in the memory format that runs the convolutions on it fastest.

    Args:
        x: an ``(N, C, H, W)`` batch.
        memory_format: 'contiguous', 'channels_last', or 'auto': on the CPU, channels_last
            when both sides of the map are at least ``min_side`` pixels (a rule measured
            with oneDNN); elsewhere ``x`` as it comes.
        min_side: the threshold of 'auto' (an argument: TorchScript reads no globals).
    """
    if memory_format == "auto":
        if x.device.type != "cpu":
            return x
        large = min(x.shape[-2], x.shape[-1]) >= min_side
        memory_format = "channels_last" if large else "contiguous"
    if memory_format == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def check_memory_format(memory_format: Any, group_norm_key: Optional[str] = None) -> None:
    """Raise a ConfigError naming ``MODEL.RESNEXT.MEMORY_FORMAT`` for a value it cannot take.

    Args:
        memory_format: the value.
        group_norm_key: the config key that puts GroupNorm on the maps, if any:
            channels_last is refused there, since PyTorch's channels-last GroupNorm loses
            float32 precision on the CPU.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(
            f"{MEMORY_FORMAT_KEY}={memory_format!r} is not supported; expected one of "
            f"{', '.join(MEMORY_FORMATS)}"
        )
    if memory_format == "channels_last" and group_norm_key:
        raise ConfigError(
            f"{MEMORY_FORMAT_KEY}='channels_last' with {group_norm_key}='GN' would lose float32 "
            "precision (PyTorch's channels-last GroupNorm on the CPU); expected 'auto' or "
            "'contiguous', which run GroupNorm models contiguous"
        )


def resolve_memory_format(memory_format: str, group_norm_key: Optional[str] = None) -> str:
    """The layout rule a model runs by: 'auto' is 'contiguous' where GroupNorm runs.

    Args:
        memory_format: 'auto', 'contiguous' or 'channels_last'.
        group_norm_key: the config key that puts GroupNorm on the maps, if any.
    """
    check_memory_format(memory_format, group_norm_key)
    return "contiguous" if memory_format == "auto" and group_norm_key else memory_format


def has_group_norm(module: nn.Module) -> bool:
    """Whether any GroupNorm layer is in ``module``."""
    return any(isinstance(m, nn.GroupNorm) for m in module.modules())


def fuse_frozen_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every ``FrozenBatchNorm2d`` that follows a Detectron2 ``Conv2d`` into the conv.

    For inference: the fused model computes the same function with one pass less per
    frozen norm. Its folded weights are its parameters (the conv gains a bias, its
    ``norm`` is gone), so it reads no cache and follows any later change of them; fuse
    after loading weights (a checkpoint of the unfused model no longer loads into it).

    Args:
        model: a model in Detectron2's modules, e.g. from ``build_model`` with its weights.
        inplace: fuse ``model`` itself; by default a deep copy is fused and returned, as
            ``torch.ao.quantization.fuse_modules`` does.

    Returns:
        The fused model.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, Conv2d) and isinstance(module.norm, FrozenBatchNorm2d):
            _fold_into(module)
    return model


@torch.no_grad()
def _fold_into(conv: Conv2d) -> None:
    norm = conv.norm
    # In float64, so that folding adds no rounding of its own.
    scale = norm.weight.double() * (norm.running_var.double() + norm.eps).rsqrt()
    shift = norm.bias.double() - norm.running_mean.double() * scale
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.norm = None
