"""The ResNeXt block in the paper's three equivalent forms (Fig. 3).

Form (c), one 1x1 of width C*d, a grouped 3x3 with C groups, one 1x1, is exactly
Detectron2's :class:`~detectron2.modeling.backbone.resnet.BottleneckBlock` with
``num_groups=C``; we use it as is, so form (c) has Detectron2's module and
parameter names and loads Detectron2 checkpoints by name.

Forms (a) and (b) spell the C paths out. They exist to show the equivalence the
paper claims and to check it numerically; :mod:`resnext_det.modeling.block_forms`
maps weights between the forms. Normalization follows the paper's rule (Sec. 4):
a norm after every conv of (c) is the same as a norm after each path's first two
convs, and, for (a), one norm after the aggregation, before the shortcut add.
"""

from typing import Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from torch import nn

__all__ = ["SplitTransformSumBlock", "EarlyConcatBlock", "path_norm"]

GN_GROUPS = 32  # Detectron2's GroupNorm uses 32 groups (get_norm("GN", ...)).


def path_norm(norm: str, path_width: int, cardinality: int) -> Optional[nn.Module]:
    """The norm of one path's ``path_width`` channels, equal to the grouped form's norm.

    Per-channel norms (BN, SyncBN, FrozenBN) split across paths as they are. GroupNorm
    with 32 groups over ``C*d`` channels equals GroupNorm with ``32 / C`` groups on each
    path when ``C`` divides 32 (checked when the model is configured).
    """
    if norm == "GN":
        return nn.GroupNorm(GN_GROUPS // cardinality, path_width)
    return get_norm(norm, path_width)


def _projection_shortcut(
    in_channels: int, out_channels: int, stride: int, norm: str
) -> Optional[Conv2d]:
    """Type-B shortcut of the paper: a 1x1 projection where the shape changes."""
    if in_channels == out_channels and stride == 1:
        return None
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size=1,
        stride=stride,
        bias=False,
        norm=get_norm(norm, out_channels),
    )


class _Path(nn.Module):
    """One of the C transformations: [1x1, d] -> [3x3, d] (-> [1x1, out] in form (a))."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: Optional[int],
        *,
        cardinality: int,
        stride: int,
        norm: str,
        stride_in_1x1: bool,
        dilation: int = 1,
    ):
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels,
            width,
            kernel_size=1,
            stride=stride_1x1,
            bias=False,
            norm=path_norm(norm, width, cardinality),
        )
        self.conv2 = Conv2d(
            width,
            width,
            kernel_size=3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            bias=False,
            norm=path_norm(norm, width, cardinality),
        )
        # Form (a) ends each path in its own 1x1; its norm comes after the sum.
        self.conv3 = (
            None if out_channels is None else Conv2d(width, out_channels, kernel_size=1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        return x if self.conv3 is None else self.conv3(x)


class _MultiPathBlock(CNNBlockBase):
    """What forms (a) and (b) share: C explicit paths and the shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        num_groups: int = 1,
        stride: int = 1,
        norm: str = "BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
        path_out_channels: Optional[int],
    ):
        super().__init__(in_channels, out_channels, stride)
        width = bottleneck_channels // num_groups
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        self.paths = nn.ModuleList(
            _Path(
                in_channels,
                width,
                path_out_channels,
                cardinality=num_groups,
                stride=stride,
                norm=norm,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
            )
            for _ in range(num_groups)
        )

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                weight_init.c2_msra_fill(module)

    def _add_shortcut(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + shortcut)


class SplitTransformSumBlock(_MultiPathBlock):
    """Form (a): C paths of [1x1, d; 3x3, d; 1x1, out], summed, then a norm.

    Takes the same arguments as Detectron2's ``BottleneckBlock`` (``num_groups`` is C,
    ``bottleneck_channels`` is C*d).
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str = "BN", **kwargs):
        super().__init__(
            in_channels, out_channels, norm=norm, path_out_channels=out_channels, **kwargs
        )
        self.aggregation_norm = get_norm(norm, out_channels)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.paths[0](x)
        for path in self.paths[1:]:
            out = out + path(x)
        return self._add_shortcut(self.aggregation_norm(out), x)


class EarlyConcatBlock(_MultiPathBlock):
    """Form (b): C paths of [1x1, d; 3x3, d], concatenated, then one [1x1, out].

    Takes the same arguments as Detectron2's ``BottleneckBlock``; ``conv3`` has the
    same name and shape as in form (c).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        norm: str = "BN",
        **kwargs,
    ):
        super().__init__(
            in_channels,
            out_channels,
            bottleneck_channels=bottleneck_channels,
            norm=norm,
            path_out_channels=None,
            **kwargs,
        )
        self.conv3 = Conv2d(
            bottleneck_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([path(x) for path in self.paths], dim=1)
        return self._add_shortcut(self.conv3(out), x)
