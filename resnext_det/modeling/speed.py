"""Speed without changing the math: frozen norms folded into convs, memory format by size.

Measured on a 2-core AVX-512 CPU (``docs/speed.md``): a frozen BN after a conv is a
separate pass over memory, removable exactly since ``conv(x, w) * s + b == conv(x, w * s)
+ b``; and oneDNN runs convolutions on maps of 14 x 14 pixels and more 1.1-6x faster in
channels_last, those on 7 x 7 maps (res5 of a 224 px image, the C4 head's RoIs) 1.2-3x
slower, whatever the batch. Both are options (``MODEL.RESNEXT.FOLD_FROZEN_BN``,
``MEMORY_FORMAT``). Parameter names and checkpoints are unchanged.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

__all__ = [
    "CHANNELS_LAST_MIN_SIDE",
    "MEMORY_FORMATS",
    "FoldedFrozenNormConv2d",
    "fold_frozen_norms",
    "set_memory_format",
    "to_memory_format",
]

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
# The smallest map side from which channels_last is the faster layout (see above).
CHANNELS_LAST_MIN_SIDE = 14


def to_memory_format(x: torch.Tensor, memory_format: str) -> torch.Tensor:
    """``x`` in the memory format that runs the convolutions on it fastest.

    Args:
        x: an ``(N, C, H, W)`` batch.
        memory_format: 'contiguous', 'channels_last', or 'auto': on the CPU, channels_last
            when both sides of the map are at least :data:`CHANNELS_LAST_MIN_SIDE` pixels
            (a rule measured with oneDNN); elsewhere ``x`` as it comes.
    """
    if memory_format == "auto":
        if x.device.type != "cpu":
            return x
        large = min(x.shape[-2:]) >= CHANNELS_LAST_MIN_SIDE
        memory_format = "channels_last" if large else "contiguous"
    if memory_format == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


class _MemoryFormatHook:
    """A forward pre-hook giving a conv its input in the chosen memory format."""

    def __init__(self, memory_format: str):
        self.memory_format = memory_format

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (to_memory_format(args[0], self.memory_format), *args[1:])


def set_memory_format(module: nn.Module, memory_format: str) -> int:
    """Let every convolution in ``module`` take its input in ``memory_format``.

    With 'auto' the layout is chosen per convolution, by the size of its input map, so one
    network runs its early stages in channels_last and its 7 x 7 res5 convs contiguous
    (a conversion costs one copy, only where the map size crosses the threshold). The
    parameters stay as they are.

    Returns:
        The number of convolutions that now choose their input's layout.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        conv.register_forward_pre_hook(_MemoryFormatHook(memory_format))
    return len(convs)


class FoldedFrozenNormConv2d(Conv2d):
    """Detectron2's ``Conv2d`` + ``FrozenBatchNorm2d``, computed as one conv where exact.

    Where no gradient flows into the conv's weight (inference, or a frozen stage), the
    frozen norm's scale and shift are folded into the weight and bias: one convolution,
    no extra pass over the output. Where the weight trains, it runs conv then norm as
    Detectron2 does, so gradients are the same. The folded weights are cached until the
    weight or a norm statistic changes (in place, as an optimizer or a checkpoint load does).
    Parameters and buffers are those of the wrapped conv: checkpoints load as before.
    """

    _cache: Optional[tuple[tuple, torch.Tensor, torch.Tensor]] = None

    @classmethod
    def wrap(cls, conv: Conv2d) -> "FoldedFrozenNormConv2d":
        """A folded conv sharing ``conv``'s parameters and norm."""
        # Built on the meta device (as torch.nn.utils.skip_init does): no weights are drawn,
        # so the random stream of what is built after the backbone does not depend on this.
        folded = cls(
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
        folded.weight = conv.weight
        folded.bias = conv.bias
        folded.norm = conv.norm
        folded.activation = conv.activation
        return folded.train(conv.training)

    def _version_key(self) -> tuple:
        norm = self.norm
        tensors = (self.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        if self.bias is not None:
            tensors += (self.bias,)
        return tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)

    def folded_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``w * s`` and ``b * s + shift``, with ``s``, ``shift`` the frozen norm's affine."""
        key = self._version_key()
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                norm = self.norm
                scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
                shift = norm.bias - norm.running_mean * scale
                weight = self.weight * scale.reshape(-1, 1, 1, 1).to(self.weight.dtype)
                bias = shift if self.bias is None else self.bias * scale + shift
            self._cache = (key, weight, bias.to(self.weight.dtype))
        return self._cache[1], self._cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad and torch.is_grad_enabled():
            return super().forward(x)
        weight, bias = self.folded_weight_and_bias()
        x = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return x if self.activation is None else self.activation(x)


def fold_frozen_norms(module: nn.Module) -> int:
    """Replace each Detectron2 ``Conv2d`` followed by a ``FrozenBatchNorm2d`` in ``module``
    with a :class:`FoldedFrozenNormConv2d` sharing its parameters.

    Returns:
        How many convs were replaced.
    """
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (
                type(child) is Conv2d  # noqa: E721 (subclasses may compute something else)
                and isinstance(child.norm, FrozenBatchNorm2d)
            ):
                setattr(parent, name, FoldedFrozenNormConv2d.wrap(child))
                replaced += 1
    return replaced
