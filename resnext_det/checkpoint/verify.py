"""Does the converted backbone compute the source model's features? Checked on a test input.

Conversions that go wrong silently do so by convention, not by name (the stride's place,
RGB or BGR, the pixel statistics), so names and shapes are not enough:
:func:`compare_features` builds the source model with its own code (torchvision, timm,
Detectron2's ResNet for Caffe2 files, our classifier), loads it by its own names, and
compares its features with the converted backbone's.
"""

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from ..modeling import BLOCKS_PER_STAGE, FEATURE_NAMES, STAGE_NAMES, ResNeXtSpec, build_resnext
from ..modeling.resnext import CONFIG_KEYS, FREEZE_AT_KEY, OUT_FEATURES_KEY
from .convert import Conversion
from .rename import INFERRED_FIELDS, drop_classifier
from .safe_load import drop_caffe2_momentum, state_dict_of

__all__ = ["TOLERANCE", "FeatureComparison", "compare_features"]

FEATURES = list(FEATURE_NAMES)  # what both models return: the stem and every stage
# Float32 sums in another order differ by about 1e-6 of the feature scale; a wrong
# convention or a misplaced weight differs by its whole scale.
TOLERANCE = 1e-4


@dataclass
class FeatureComparison:
    """The largest difference between converted and source features, per feature map."""

    max_abs_diff: dict[str, float]
    max_abs_value: dict[str, float]

    @property
    def worst_relative(self) -> float:
        """The largest difference relative to its feature's scale; NaN if any is NaN."""
        ratios = [
            self.max_abs_diff[k] / max(self.max_abs_value[k], 1e-12) for k in self.max_abs_diff
        ]
        return math.nan if any(math.isnan(r) for r in ratios) else max(ratios)

    @property
    def exact(self) -> bool:
        """Whether the features agree within :data:`TOLERANCE` of their scale (NaN: never)."""
        return self.worst_relative <= TOLERANCE

    def summary(self) -> str:
        # max() skips a NaN that comes first: rank NaN above every number.
        worst = max(self.max_abs_diff, key=lambda k: _nan_first(self.max_abs_diff[k]))
        return (
            f"largest |difference| of the converted features: {self.max_abs_diff[worst]:.3g} "
            f"(at {worst}, whose values reach {self.max_abs_value[worst]:.3g}); relative "
            f"{self.worst_relative:.2g}"
        )


def _nan_first(value: float) -> float:
    return math.inf if math.isnan(value) else value


@torch.no_grad()
def compare_features(
    conversion: Conversion, data: Mapping[str, Any], size: int = 224, seed: int = 0
) -> FeatureComparison:
    """Run the source model and the converted backbone on one test input and compare.

    The input is random, in the already-normalized space both models take.
    """
    source = _reference_model(conversion, data).eval()
    target = build_resnext(conversion.spec, out_features=FEATURES).eval()
    target.load_state_dict(drop_classifier(conversion.weights), strict=True)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    ours, theirs = target(x), source(x)
    return FeatureComparison(
        {k: (ours[k] - theirs[k]).abs().max().item() for k in FEATURES},
        {k: theirs[k].abs().max().item() for k in FEATURES},
    )


def _reference_model(conversion: Conversion, data: Mapping[str, Any]) -> nn.Module:
    """The source model, built by its own code and loaded by its own names.

    Returns a module whose forward gives a dict of the features in :data:`FEATURES`.
    """
    spec = conversion.spec
    state = state_dict_of(data)
    if conversion.source in ("torchvision", "timm"):
        return _TorchvisionFeatures(spec, state, use_timm=conversion.source == "timm")
    if conversion.source == "caffe2":
        return _detectron2_caffe2_resnet(spec, state)
    # Our own classifier, with BN in eval mode, as the pretraining evaluated it.
    model = build_resnext(dataclasses.replace(spec, norm="BN"), out_features=FEATURES)
    _load_own_names(model, drop_classifier(state))
    return model


def _load_own_names(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Load ``state`` into the source model by the model's names: every one must be given;
    keys it does not have (which the converter reports as not converted) are left out."""
    own = model.state_dict().keys()
    kept = OrderedDict((key, value) for key, value in state.items() if key in own)
    if hasattr(state, "_metadata"):  # the norms' versions, as torch saved them
        kept._metadata = state._metadata  # type: ignore[attr-defined]
    model.load_state_dict(kept, strict=True)


class _TorchvisionFeatures(nn.Module):
    def __init__(self, spec: ResNeXtSpec, state: Mapping[str, Any], use_timm: bool):
        super().__init__()
        layers = list(BLOCKS_PER_STAGE[spec.depth])
        # The file's own classifier (a fine-tuned one may have other than 1000 classes).
        fc = state.get("fc.weight")
        num_classes = int(fc.shape[0]) if fc is not None else 1000
        if use_timm:
            from timm.models.resnet import Bottleneck as TimmBottleneck
            from timm.models.resnet import ResNet as TimmResNet

            self.net = TimmResNet(
                TimmBottleneck,
                layers,
                cardinality=spec.cardinality,
                base_width=spec.bottleneck_width,
                num_classes=num_classes,
            )
        else:
            from torchvision.models.resnet import Bottleneck, ResNet

            self.net = ResNet(
                Bottleneck,
                layers,
                groups=spec.cardinality,
                width_per_group=spec.bottleneck_width,
                num_classes=num_classes,
            )
        _load_own_names(self.net, state)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self.net
        activation = net.act1 if hasattr(net, "act1") else net.relu  # timm / torchvision
        x = net.maxpool(activation(net.bn1(net.conv1(x))))
        out = {"stem": x}
        for index, stage in enumerate(STAGE_NAMES):
            x = getattr(net, f"layer{index + 1}")(x)
            out[stage] = x
        return out


def _set(cfg: CfgNode, key: str, value: Any) -> None:
    """Set a dotted config key (``MODEL.RESNETS.DEPTH``)."""
    *path, leaf = key.split(".")
    for name in path:
        cfg = getattr(cfg, name)
    setattr(cfg, leaf, value)


def _detectron2_caffe2_resnet(spec: ResNeXtSpec, blobs: Mapping[str, Any]) -> nn.Module:
    cfg = get_cfg()
    for name in INFERRED_FIELDS:
        _set(cfg, CONFIG_KEYS[name], getattr(spec, name))
    _set(cfg, CONFIG_KEYS["norm"], "FrozenBN")
    _set(cfg, OUT_FEATURES_KEY, FEATURES)
    _set(cfg, FREEZE_AT_KEY, 0)
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    own = model.state_dict()
    tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in drop_caffe2_momentum(blobs).items()}
    matched = OrderedDict(align_and_update_state_dicts(own, tensors, c2_conversion=True))
    # Keep FrozenBN's version so that it keeps its Caffe2-exact statistics (0, 1 - eps)
    # where the file has none, as Detectron2 intends for Caffe2 weights.
    matched._metadata = own._metadata  # type: ignore[attr-defined]
    model.load_state_dict(matched, strict=False)
    return model
