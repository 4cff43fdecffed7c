"""Speed without changing the math: frozen norms folded into convs, memory format by size.

Measured on a 2-core AVX-512 CPU (``docs/speed.md``): a frozen BN after a conv is a
separate pass over memory, removable exactly since ``conv(x, w) * s + b == conv(x, w * s)
+ b``; and oneDNN runs convolutions on maps of 14 x 14 pixels and more 1.1-6x faster in
channels_last, those on 7 x 7 maps (res5 of a 224 px image, the C4 head's RoIs) 1.2-3x
slower, whatever the batch. Both are options (``MODEL.RESNEXT.FOLD_FROZEN_BN``,
``MEMORY_FORMAT``). Parameter names and checkpoints are unchanged.
"""

from typing import Any, Optional

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from ..utils.errors import ConfigError
from ..utils.value_checks import boolean, require

__all__ = [
    "CHANNELS_LAST_MIN_SIDE",
    "MEMORY_FORMATS",
    "FoldedFrozenNormConv2d",
    "LayoutConv2d",
    "apply_speed_options",
    "check_speed_options",
    "to_memory_format",
]

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
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


class LayoutConv2d(Conv2d):
    """Detectron2's ``Conv2d`` that first gives its input the memory format that runs it fastest.

    A module, not a forward hook, so that TorchScript, ``torch.export`` and tracing see it.
    It shares the wrapped conv's parameters and norm: names and checkpoints are unchanged.
    """

    memory_format: str = "contiguous"

    @classmethod
    def wrap(cls, conv: Conv2d, memory_format: str) -> "LayoutConv2d":
        """A conv of this class sharing ``conv``'s parameters, norm and activation."""
        # Built on the meta device (as torch.nn.utils.skip_init does): no weights are drawn,
        # so the random stream of what is built after the backbone does not depend on this.
        wrapped = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
        ).to_empty(device=conv.weight.device)
        wrapped.weight = conv.weight
        wrapped.bias = conv.bias
        wrapped.norm = conv.norm
        wrapped.activation = conv.activation
        wrapped.memory_format = memory_format
        return wrapped.train(conv.training)

    def _conv(
        self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        x = to_memory_format(x, self.memory_format)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv(x, self.weight, self.bias)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class FoldedFrozenNormConv2d(LayoutConv2d):
    """Detectron2's ``Conv2d`` + ``FrozenBatchNorm2d``, computed as one conv where exact.

    Where no gradient flows into the conv's weight (inference, or a frozen stage), the
    frozen norm's scale and shift are folded into the weight and bias: one convolution,
    no extra pass over the output. Where the weight trains, it runs conv then norm as
    Detectron2 does, so gradients are the same. In eager mode the folded weights are
    cached until the weight or a norm statistic changes (in place, as an optimizer or a
    checkpoint load does); scripted, traced or exported, the fold is part of the graph, so
    the exported model still reads its parameters. Parameters and buffers are those of the
    wrapped conv: checkpoints load as before.
    """

    __jit_ignored_attributes__ = ["_cache"]
    _cache: Optional[tuple[tuple, torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad and torch.is_grad_enabled():
            x = self.norm(self._conv(x, self.weight, self.bias))
        else:
            weight, bias = self.folded_weight_and_bias()
            x = self._conv(x, weight, bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def folded_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``w * s`` and ``b * s + shift``, with ``s``, ``shift`` the frozen norm's affine."""
        if not torch.jit.is_scripting():
            if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
                return self._cached_fold()
        return self._fold()

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.norm
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        shift = norm.bias - norm.running_mean * scale
        weight = self.weight * scale.reshape(-1, 1, 1, 1).to(self.weight.dtype)
        bias = shift
        if self.bias is not None:
            bias = self.bias * scale + shift
        return weight, bias.to(self.weight.dtype)

    @torch.jit.unused
    def _cached_fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.norm
        tensors = (self.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        if self.bias is not None:
            tensors += (self.bias,)
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, *self._fold())
        return self._cache[1], self._cache[2]


def check_speed_options(fold_frozen_bn: Any, memory_format: Any) -> None:
    """Raise a ValueError naming the key of an invalid speed option."""
    require("MODEL.RESNEXT.FOLD_FROZEN_BN", fold_frozen_bn, boolean())
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(
            f"MODEL.RESNEXT.MEMORY_FORMAT={memory_format!r} is not supported; expected one of "
            f"{', '.join(MEMORY_FORMATS)}"
        )


def apply_speed_options(module: nn.Module, fold_frozen_bn: bool, memory_format: str) -> int:
    """Check the speed options and apply them to every Detectron2 ``Conv2d`` in ``module``.

    Each conv becomes a :class:`LayoutConv2d` that takes its input in ``memory_format``
    ('auto': chosen per conv by its map size, so one network runs its early stages in
    channels_last and its 7 x 7 res5 convs contiguous; a conversion costs one copy, only
    where the map size crosses the threshold), or, with ``fold_frozen_bn`` and a
    ``FrozenBatchNorm2d`` after it, a :class:`FoldedFrozenNormConv2d`. Apply after
    ``freeze()``, which turns the frozen stages' BN into FrozenBN.

    Returns:
        How many convs were folded.
    """
    check_speed_options(fold_frozen_bn, memory_format)
    folded = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            # Exactly Detectron2's Conv2d: a subclass may compute something else.
            if type(child) is not Conv2d:  # noqa: E721
                continue
            fold = fold_frozen_bn and isinstance(child.norm, FrozenBatchNorm2d)
            cls = FoldedFrozenNormConv2d if fold else LayoutConv2d
            setattr(parent, name, cls.wrap(child, memory_format))
            folded += fold
    return folded
