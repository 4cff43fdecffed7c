"""The ResNeXt family in the paper's terms, built from Detectron2's ResNet parts.

A network is fixed by its depth and template ``C x d`` (Sec. 3.1, Table 1): C paths of
bottleneck width d in res2, and the paper's two rules fix every other width (blocks of
one stage share hyper-parameters; where the map halves, all widths double). ``1x64d`` is
ResNet, built by the same code.

The backbone is Detectron2's :class:`~detectron2.modeling.backbone.ResNet` holding our
stages, so module and parameter names (``stem.conv1``, ``res2.0.conv1.norm``, ...) are
Detectron2's and its checkpoints load by name. In a config the network is described by
Detectron2's own keys (``MODEL.RESNETS``, ``MODEL.BACKBONE.FREEZE_AT``) with the meaning
its ``build_resnet_backbone`` gives them; ``MODEL.RESNEXT`` adds the block form and the
speed options.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from detectron2.layers import CNNBlockBase
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from torch import nn

from ..config import resnext_options
from ..utils.errors import ConfigError
from ..utils.value_checks import boolean, integer, require
from .block_forms import BLOCK_FORMS
from .blocks import GN_GROUPS, EarlyConcatBlock, SplitTransformSumBlock
from .speed import has_group_norm, resolve_memory_format, to_memory_format

__all__ = [
    "BLOCKS_PER_STAGE",
    "FEATURE_NAMES",
    "NORMS",
    "STAGE_NAMES",
    "ResNeXt",
    "ResNeXtSpec",
    "build_resnext",
    "check_out_features",
    "make_resnext_stage",
    "make_resnext_stages",
]

# Bottleneck blocks per stage (Table 1). Depths 14 and 26 are reduced-depth members of
# the family (same block, same template; as timm's resnet14t/resnet26), for CPU-sized
# work such as the bundled demo; the paper's depths are 50, 101 and 152, and 200 for the
# ResNet-200 of Table 4 (as fb.resnet.torch builds it).
BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    14: (1, 1, 1, 1),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
STAGE_NAMES = ("res2", "res3", "res4", "res5")
FEATURE_NAMES = ("stem",) + STAGE_NAMES
NORMS = ("FrozenBN", "BN", "SyncBN", "GN")
_BLOCK_CLASSES = {"a": SplitTransformSumBlock, "b": EarlyConcatBlock, "c": BottleneckBlock}

# The config key of each field of ResNeXtSpec: Detectron2's own where it has one.
CONFIG_KEYS = {
    "depth": "MODEL.RESNETS.DEPTH",
    "cardinality": "MODEL.RESNETS.NUM_GROUPS",
    "bottleneck_width": "MODEL.RESNETS.WIDTH_PER_GROUP",
    "block_form": "MODEL.RESNEXT.BLOCK_FORM",
    "stride_in_1x1": "MODEL.RESNETS.STRIDE_IN_1X1",
    "norm": "MODEL.RESNETS.NORM",
    "stem_out_channels": "MODEL.RESNETS.STEM_OUT_CHANNELS",
    "res2_out_channels": "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "res5_dilation": "MODEL.RESNETS.RES5_DILATION",
}
OUT_FEATURES_KEY = "MODEL.RESNETS.OUT_FEATURES"
FREEZE_AT_KEY = "MODEL.BACKBONE.FREEZE_AT"
DEFORM_KEY = "MODEL.RESNETS.DEFORM_ON_PER_STAGE"


def _key(field: str) -> str:
    return CONFIG_KEYS[field]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ResNeXtSpec:
    """One member of the ResNeXt family, validated on construction.

    Each field is one config key (:data:`CONFIG_KEYS`): Detectron2's ``MODEL.RESNETS``
    for the architecture, ``MODEL.RESNEXT.BLOCK_FORM`` for the form; errors name the key.

    Attributes:
        depth: 50, 101, 152 or 200 (the paper), or 14/26 (reduced, for small-scale work).
        cardinality: C, the number of paths (groups of the 3x3 conv); ``NUM_GROUPS``.
        bottleneck_width: d, the width of one path in res2; ``WIDTH_PER_GROUP``.
        block_form: 'a' (split-transform-sum), 'b' (early concatenation) or
            'c' (grouped convolution, the fast form and the default).
        stride_in_1x1: put the stride of a downsampling block in its first 1x1 conv
            (MSRA ResNet weights, Detectron2's default) instead of the 3x3 conv (the paper).
        norm: 'FrozenBN', 'BN', 'SyncBN' or 'GN' (32 groups), after every conv.
        stem_out_channels: channels of the 7x7 stem conv.
        res2_out_channels: output channels of res2 (doubled at each later stage).
        res5_dilation: 1, or 2 for a dilated res5 of stride 1 ("DC5").
    """

    depth: int = 50
    cardinality: int = 32
    bottleneck_width: int = 4
    block_form: str = "c"
    stride_in_1x1: bool = False
    norm: str = "FrozenBN"
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    res5_dilation: int = 1

    def __post_init__(self) -> None:
        if self.depth in (18, 34):
            raise ConfigError(
                f"{_key('depth')}={self.depth} is a basic-block ResNet, which has no grouped "
                "3x3 conv to make a ResNeXt of; expected one of "
                f"{', '.join(str(d) for d in BLOCKS_PER_STAGE)} (Detectron2's own "
                "build_resnet_backbone builds depths 18 and 34)"
            )
        if not _is_int(self.depth) or self.depth not in BLOCKS_PER_STAGE:
            allowed = ", ".join(str(d) for d in BLOCKS_PER_STAGE)
            raise ConfigError(
                f"{_key('depth')}={self.depth!r} is not supported; expected one of {allowed}"
            )
        for field in ("cardinality", "bottleneck_width", "stem_out_channels", "res2_out_channels"):
            require(_key(field), getattr(self, field), integer(1))
        if self.block_form not in BLOCK_FORMS:
            raise ConfigError(
                f"{_key('block_form')}={self.block_form!r} is not a block form; expected one of "
                "'a' (split-transform-sum), 'b' (early concatenation), 'c' (grouped convolution)"
            )
        require(_key("stride_in_1x1"), self.stride_in_1x1, boolean())
        if self.norm not in NORMS:
            raise ConfigError(
                f"{_key('norm')}={self.norm!r} is not supported; expected one of {', '.join(NORMS)}"
            )
        if not _is_int(self.res5_dilation) or self.res5_dilation not in (1, 2):
            raise ConfigError(
                f"{_key('res5_dilation')}={self.res5_dilation!r} is not supported; expected 1 or 2"
            )
        if self.norm == "GN":
            self._check_group_norm()

    def _check_group_norm(self) -> None:
        groups_key = f"{_key('cardinality')} x {_key('bottleneck_width').split('.')[-1]}"
        for name, channels in [
            (_key("stem_out_channels"), self.stem_out_channels),
            (_key("res2_out_channels"), self.res2_out_channels),
            (groups_key, self.cardinality * self.bottleneck_width),
        ]:
            if channels % GN_GROUPS:
                raise ConfigError(
                    f"{_key('norm')}='GN' needs channel counts divisible by {GN_GROUPS}, "
                    f"but {name} gives {channels}"
                )
        if self.block_form != "c" and GN_GROUPS % self.cardinality:
            raise ConfigError(
                f"{_key('block_form')}={self.block_form!r} with {_key('norm')}='GN' needs "
                f"{_key('cardinality')} to divide {GN_GROUPS} (each path holds whole GN groups), "
                f"got {self.cardinality}; use BLOCK_FORM 'c'"
            )

    @classmethod
    def from_config(cls, cfg) -> "ResNeXtSpec":
        """Read the spec from ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.RESNEXT``.

        ``MODEL.RESNEXT`` may be absent (a Detectron2 config without
        :func:`~resnext_det.add_resnext_config`): its defaults apply. Deformable stages
        (``MODEL.RESNETS.DEFORM_ON_PER_STAGE``) are refused, not ignored: they need
        Detectron2's compiled ops.
        """
        resnets = cfg.MODEL.RESNETS
        deform = list(resnets.get("DEFORM_ON_PER_STAGE", ()))
        if any(deform):
            raise ConfigError(
                f"{DEFORM_KEY}={deform!r} asks for deformable convolutions, which the ResNeXt "
                "backbones do not build (they need Detectron2's compiled ops); expected "
                "[False, False, False, False]"
            )
        resnext = resnext_options(cfg)
        return cls(
            depth=resnets.DEPTH,
            cardinality=resnets.NUM_GROUPS,
            bottleneck_width=resnets.WIDTH_PER_GROUP,
            block_form=resnext["BLOCK_FORM"],
            stride_in_1x1=resnets.STRIDE_IN_1X1,
            norm=resnets.NORM,
            stem_out_channels=resnets.STEM_OUT_CHANNELS,
            res2_out_channels=resnets.RES2_OUT_CHANNELS,
            res5_dilation=resnets.get("RES5_DILATION", 1),
        )

    @property
    def template(self) -> str:
        """The paper's template notation, e.g. '32x4d'."""
        return f"{self.cardinality}x{self.bottleneck_width}d"

    def __str__(self) -> str:
        family = "ResNet" if self.cardinality == 1 else "ResNeXt"
        return f"{family}-{self.depth} ({self.template}, form {self.block_form}, {self.norm})"

    def stage_out_channels(self, stage: str) -> int:
        """Output channels of ``stage`` ('stem', 'res2', ... 'res5')."""
        if stage == "stem":
            return self.stem_out_channels
        return self.res2_out_channels * 2 ** STAGE_NAMES.index(stage)

    def make_stem(self, in_channels: int = 3) -> BasicStem:
        """The 7x7 stride-2 conv and 3x3 stride-2 max pool of conv1 (Table 1)."""
        return BasicStem(
            in_channels=in_channels, out_channels=self.stem_out_channels, norm=self.norm
        )

    def make_stage(
        self, stage: str, num_blocks: Optional[int] = None, dilation: Optional[int] = None
    ) -> list[CNNBlockBase]:
        """The blocks of one stage ('res2' ... 'res5'), widths by the paper's two rules.

        As Detectron2's ``build_resnet_backbone``: a dilated res5 keeps stride 1.

        Args:
            stage: the stage's name.
            num_blocks: how many blocks; default: as ``depth`` fixes it (Table 1). The CIFAR
                networks (Appendix A) stack their own number of the same blocks.
            dilation: of the 3x3 convs; default: ``res5_dilation`` in res5, else 1.
        """
        index = STAGE_NAMES.index(stage)
        if num_blocks is None:
            num_blocks = BLOCKS_PER_STAGE[self.depth][index]
        if dilation is None:
            dilation = self.res5_dilation if stage == "res5" else 1
        first_stride = 1 if index == 0 or dilation > 1 else 2
        in_channels = (
            self.stem_out_channels
            if index == 0
            else self.stage_out_channels(STAGE_NAMES[index - 1])
        )
        return ResNet.make_stage(
            _BLOCK_CLASSES[self.block_form],
            num_blocks,
            in_channels=in_channels,
            out_channels=self.stage_out_channels(stage),
            bottleneck_channels=self.cardinality * self.bottleneck_width * 2**index,
            num_groups=self.cardinality,
            norm=self.norm,
            stride_in_1x1=self.stride_in_1x1,
            dilation=dilation,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
        )


def make_resnext_stage(
    name: str,
    depth: int = 50,
    num_groups: int = 32,
    width_per_group: int = 4,
    **kwargs: Any,
) -> list[CNNBlockBase]:
    """The blocks of stage ``name`` of a ResNeXt, for LazyConfig (e.g. the C4 head's res5).

    Args:
        name: 'res2' ... 'res5'.
        depth, num_groups, width_per_group: depth, C and d, as ``MODEL.RESNETS`` names them.
        **kwargs: the other fields of :class:`ResNeXtSpec` (``stride_in_1x1``, ``norm``,
            ``block_form``, ``stem_out_channels``, ``res2_out_channels``,
            ``res5_dilation``), and ``dilation`` to set the 3x3 convs' dilation directly.
    """
    dilation = kwargs.pop("dilation", None)
    spec = ResNeXtSpec(depth, num_groups, width_per_group, **kwargs)
    return spec.make_stage(name, dilation=dilation)


def make_resnext_stages(
    depth: int = 50, num_groups: int = 32, width_per_group: int = 4, **kwargs: Any
) -> list[list[CNNBlockBase]]:
    """res2 ... res5 of a ResNeXt, for ``ResNet(stem, stages, ...)`` in a LazyConfig.

    The ResNeXt counterpart of Detectron2's ``ResNet.make_default_stages``, whose
    ``num_groups`` keeps the bottleneck at a quarter of the output (a 32-group R50 there is
    32x2d): here the bottleneck of res2 is ``num_groups x width_per_group`` (C x d) and
    doubles at each stage, as in the paper and in ``build_resnet_backbone``.

    Args: as :func:`make_resnext_stage`.
    """
    return [
        make_resnext_stage(name, depth, num_groups, width_per_group, **kwargs)
        for name in STAGE_NAMES
    ]


def check_out_features(
    out_features: Sequence[str], key: str = OUT_FEATURES_KEY, classifier: bool = False
) -> list[str]:
    """Return ``out_features`` as a list, or raise if one names no stage of the network.

    Args:
        out_features: the names.
        key: how errors name them.
        classifier: the network ends in an fc layer, whose output is named 'linear'.
    """
    out_features = list(out_features)
    names = FEATURE_NAMES + (("linear",) if classifier else ())
    if not out_features:
        raise ConfigError(f"{key}=[] is empty; expected names among {', '.join(names)}")
    for name in out_features:
        if name not in names:
            raise ConfigError(
                f"{key}={out_features!r} names {name!r}, which is no stage of the network; "
                f"expected names among {', '.join(names)}"
            )
    return out_features


class ResNeXt(ResNet):
    """Detectron2's ``ResNet`` holding ResNeXt stages, each stage fed in its fastest layout.

    The same modules, parameter names, initialisation and function as ``ResNet``; its
    forward differs only in the memory format each stage's input is given
    (:func:`~resnext_det.modeling.speed.to_memory_format`), which changes no value. Takes
    ``ResNet``'s arguments, so a LazyConfig builds it as Detectron2's own configs build
    ``ResNet``::

        L(ResNeXt)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(make_resnext_stages)(depth=50, num_groups=32, width_per_group=4),
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=2,
        )

    Args:
        stem, stages, num_classes, out_features, freeze_at: as Detectron2's ``ResNet``.
        memory_format: 'auto' (by each stage's input map on the CPU; contiguous if the
            backbone holds GroupNorm), 'contiguous' or 'channels_last'. GroupNorm in the
            layers after the backbone (an FPN or head with ``NORM: GN``) also wants
            'contiguous': the yaml builders choose it themselves.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: list[list[CNNBlockBase]],
        num_classes: Optional[int] = None,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
        *,
        memory_format: str = "auto",
    ):
        if out_features is not None:
            out_features = check_out_features(out_features, classifier=num_classes is not None)
        if not _is_int(freeze_at) or not 0 <= freeze_at <= len(FEATURE_NAMES):
            raise ConfigError(
                f"{FREEZE_AT_KEY}={freeze_at!r} is invalid; expected an integer in 0..5"
            )
        super().__init__(stem, stages, num_classes, out_features, freeze_at)
        group_norm_key = CONFIG_KEYS["norm"] if has_group_norm(self) else None
        self.memory_format = resolve_memory_format(memory_format, group_norm_key)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detectron2's ``ResNet.forward``, with each stage's input in its layout."""
        assert x.dim() == 4, f"ResNet takes an input of shape (N, C, H, W). Got {x.shape} instead!"
        outputs = {}
        x = self.stem(to_memory_format(x, self.memory_format))
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(to_memory_format(x, self.memory_format))
            if name in self._out_features:
                outputs[name] = x
        if self.num_classes is not None:
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            x = self.linear(x)
            if "linear" in self._out_features:
                outputs["linear"] = x
        return outputs


def build_resnext(
    spec: ResNeXtSpec,
    *,
    out_features: Sequence[str],
    freeze_at: int = 0,
    in_channels: int = 3,
    memory_format: str = "auto",
) -> ResNeXt:
    """Build a ResNeXt backbone that stops at its last requested feature.

    As Detectron2's ``build_resnet_backbone``, the stem is drawn first and then all four
    stages, of which ``ResNet`` keeps those up to the last requested feature: with the
    same seed, the weights are those of Detectron2's ResNet of the same config, and what
    is built after the backbone (a C4 head's res5) draws from the same random stream.

    Args:
        spec: the member of the family.
        out_features: features to return, among 'stem', 'res2' ... 'res5'.
        freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 also res2 ... res{k}
            (Detectron2's convention).
        in_channels: channels of the input image.
        memory_format: the layout rule (see :class:`ResNeXt`).

    Returns:
        A Detectron2 ``ResNet`` (a ``Backbone``) whose forward returns ``out_features``.
    """
    out_features = check_out_features(out_features)
    stem = spec.make_stem(in_channels)
    stages = [spec.make_stage(stage) for stage in STAGE_NAMES]
    return ResNeXt(
        stem, stages, out_features=out_features, freeze_at=freeze_at, memory_format=memory_format
    )
