"""The ResNeXt family in the paper's terms, built from Detectron2's ResNet parts.

A network is fixed by its depth and template ``C x d`` (Sec. 3.1, Table 1): C paths of
bottleneck width d in res2, and the paper's two rules fix every other width (blocks of
one stage share hyper-parameters; where the map halves, all widths double). ``1x64d`` is
ResNet, built by the same code.

The backbone is Detectron2's :class:`~detectron2.modeling.backbone.ResNet` holding our
stages, so module and parameter names (``stem.conv1``, ``res2.0.conv1.norm``, ...) are
Detectron2's and its checkpoints load by name.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Optional

from detectron2.layers import CNNBlockBase
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from torch import nn

from ..errors import ConfigError
from .block_forms import BLOCK_FORMS
from .blocks import GN_GROUPS, EarlyConcatBlock, SplitTransformSumBlock
from .speed import MEMORY_FORMATS, fold_frozen_norms, set_memory_format

__all__ = [
    "BLOCKS_PER_STAGE",
    "FEATURE_NAMES",
    "NORMS",
    "STAGE_NAMES",
    "ResNeXtSpec",
    "build_resnext",
    "check_out_features",
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

_CONFIG_KEYS = {
    "depth": "DEPTH",
    "cardinality": "CARDINALITY",
    "bottleneck_width": "BOTTLENECK_WIDTH",
    "block_form": "BLOCK_FORM",
    "stride_in_1x1": "STRIDE_IN_1X1",
    "norm": "NORM",
    "stem_out_channels": "STEM_OUT_CHANNELS",
    "res2_out_channels": "RES2_OUT_CHANNELS",
}


def _key(name: str) -> str:
    return f"MODEL.RESNEXT.{name}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_positive_int(key: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{_key(key)}={value!r} is invalid; expected an integer >= 1")


@dataclass(frozen=True)
class ResNeXtSpec:
    """One member of the ResNeXt family, validated on construction.

    Each field is one key of the ``MODEL.RESNEXT`` config node (see
    :func:`resnext_det.add_resnext_config`); errors name that key.

    Attributes:
        depth: 50, 101, 152 or 200 (the paper), or 14/26 (reduced, for small-scale work).
        cardinality: C, the number of paths (groups of the 3x3 conv).
        bottleneck_width: d, the width of one path in res2.
        block_form: 'a' (split-transform-sum), 'b' (early concatenation) or
            'c' (grouped convolution, the fast form and the default).
        stride_in_1x1: put the stride of a downsampling block in its first 1x1 conv
            (MSRA ResNet weights) instead of the 3x3 conv (the paper).
        norm: 'FrozenBN', 'BN', 'SyncBN' or 'GN' (32 groups), after every conv.
        stem_out_channels: channels of the 7x7 stem conv.
        res2_out_channels: output channels of res2 (doubled at each later stage).
    """

    depth: int = 50
    cardinality: int = 32
    bottleneck_width: int = 4
    block_form: str = "c"
    stride_in_1x1: bool = False
    norm: str = "FrozenBN"
    stem_out_channels: int = 64
    res2_out_channels: int = 256

    def __post_init__(self) -> None:
        if not _is_int(self.depth) or self.depth not in BLOCKS_PER_STAGE:
            allowed = ", ".join(str(d) for d in BLOCKS_PER_STAGE)
            raise ConfigError(
                f"{_key('DEPTH')}={self.depth!r} is not supported; expected one of {allowed}"
            )
        _require_positive_int("CARDINALITY", self.cardinality)
        _require_positive_int("BOTTLENECK_WIDTH", self.bottleneck_width)
        _require_positive_int("STEM_OUT_CHANNELS", self.stem_out_channels)
        _require_positive_int("RES2_OUT_CHANNELS", self.res2_out_channels)
        if self.block_form not in BLOCK_FORMS:
            raise ConfigError(
                f"{_key('BLOCK_FORM')}={self.block_form!r} is not a block form; expected one of "
                "'a' (split-transform-sum), 'b' (early concatenation), 'c' (grouped convolution)"
            )
        if not isinstance(self.stride_in_1x1, bool):
            raise ConfigError(
                f"{_key('STRIDE_IN_1X1')}={self.stride_in_1x1!r} is invalid; expected True or False"
            )
        if self.norm not in NORMS:
            raise ConfigError(
                f"{_key('NORM')}={self.norm!r} is not supported; expected one of {', '.join(NORMS)}"
            )
        if self.norm == "GN":
            self._check_group_norm()

    def _check_group_norm(self) -> None:
        for name, channels in [
            ("STEM_OUT_CHANNELS", self.stem_out_channels),
            ("RES2_OUT_CHANNELS", self.res2_out_channels),
            ("CARDINALITY x BOTTLENECK_WIDTH", self.cardinality * self.bottleneck_width),
        ]:
            if channels % GN_GROUPS:
                raise ConfigError(
                    f"{_key('NORM')}='GN' needs channel counts divisible by {GN_GROUPS}, "
                    f"but {_key(name)} gives {channels}"
                )
        if self.block_form != "c" and GN_GROUPS % self.cardinality:
            raise ConfigError(
                f"{_key('BLOCK_FORM')}={self.block_form!r} with {_key('NORM')}='GN' needs "
                f"{_key('CARDINALITY')} to divide {GN_GROUPS} (each path holds whole GN groups), "
                f"got {self.cardinality}; use BLOCK_FORM 'c'"
            )

    @classmethod
    def from_config(cls, cfg) -> "ResNeXtSpec":
        """Read the spec from ``cfg.MODEL.RESNEXT`` (see :func:`add_resnext_config`)."""
        node = cfg.MODEL.get("RESNEXT")
        if node is None:
            raise ConfigError(
                "the config has no MODEL.RESNEXT node; call resnext_det.add_resnext_config(cfg) "
                "before merging a ResNeXt config"
            )
        return cls(**{f.name: node[_CONFIG_KEYS[f.name]] for f in fields(cls)})

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

    def make_stage(self, stage: str, num_blocks: Optional[int] = None) -> list[CNNBlockBase]:
        """The blocks of one stage ('res2' ... 'res5'), widths by the paper's two rules.

        Args:
            stage: the stage's name.
            num_blocks: how many blocks; default: as ``depth`` fixes it (Table 1). The CIFAR
                networks (Appendix A) stack their own number of the same blocks.
        """
        index = STAGE_NAMES.index(stage)
        if num_blocks is None:
            num_blocks = BLOCKS_PER_STAGE[self.depth][index]
        first_stride = 1 if index == 0 else 2
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
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
        )


def check_out_features(out_features: Sequence[str], key: str = _key("OUT_FEATURES")) -> list[str]:
    """Return ``out_features`` as a list, or raise if one names no stage of the network."""
    out_features = list(out_features)
    if not out_features:
        raise ConfigError(f"{key}=[] is empty; expected names among {', '.join(FEATURE_NAMES)}")
    for name in out_features:
        if name not in FEATURE_NAMES:
            raise ConfigError(
                f"{key}={out_features!r} names {name!r}, which is no stage of the network; "
                f"expected names among {', '.join(FEATURE_NAMES)}"
            )
    return out_features


def check_speed_options(fold_frozen_bn: Any, memory_format: Any) -> None:
    """Raise a ValueError naming the key of an invalid speed option."""
    if not isinstance(fold_frozen_bn, bool):
        raise ConfigError(
            f"{_key('FOLD_FROZEN_BN')}={fold_frozen_bn!r} is invalid; expected True or False"
        )
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(
            f"{_key('MEMORY_FORMAT')}={memory_format!r} is not supported; expected one of "
            f"{', '.join(MEMORY_FORMATS)}"
        )


def apply_speed_options(module: nn.Module, fold_frozen_bn: Any, memory_format: Any) -> None:
    """Check the speed options (``FOLD_FROZEN_BN``, ``MEMORY_FORMAT``) and apply them to
    ``module``: after ``freeze()``, which turns the frozen stages' BN into FrozenBN."""
    check_speed_options(fold_frozen_bn, memory_format)
    if fold_frozen_bn:
        fold_frozen_norms(module)
    set_memory_format(module, memory_format)


def build_resnext(
    spec: ResNeXtSpec,
    *,
    out_features: Sequence[str],
    freeze_at: int = 0,
    in_channels: int = 3,
    fold_frozen_bn: bool = True,
    memory_format: str = "auto",
) -> ResNet:
    """Build a ResNeXt backbone that stops at its last requested feature.

    Args:
        spec: the member of the family.
        out_features: features to return, among 'stem', 'res2' ... 'res5'.
        freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 also res2 ... res{k}
            (Detectron2's convention).
        in_channels: channels of the input image.
        fold_frozen_bn: compute each conv + frozen BN as one conv where no gradient flows
            into the conv (inference, frozen stages); the same function, less work.
        memory_format: the memory format each block runs in ('auto': by its map size).

    Returns:
        A Detectron2 ``ResNet`` (a ``Backbone``) whose forward returns ``out_features``.
    """
    out_features = check_out_features(out_features)
    if not _is_int(freeze_at) or not 0 <= freeze_at <= len(FEATURE_NAMES):
        raise ConfigError(
            f"{_key('FREEZE_AT')}={freeze_at!r} is invalid; expected an integer in 0..5"
        )
    last = max(FEATURE_NAMES.index(name) for name in out_features)
    stages = [spec.make_stage(stage) for stage in STAGE_NAMES[:last]]
    model = ResNet(
        spec.make_stem(in_channels), stages, out_features=out_features, freeze_at=freeze_at
    )
    apply_speed_options(model, fold_frozen_bn, memory_format)
    return model
