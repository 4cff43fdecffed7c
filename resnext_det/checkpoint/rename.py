"""Renaming ResNeXt weights from each source into Detectron2's names, and what they describe.

The target names are Detectron2's ResNet names (``stem.conv1.weight``,
``res2.0.conv1.norm.bias``, ``res2.0.shortcut.weight``, ...), which are also our
classifier's and our backbones' names; the classifier's fc layer becomes ``linear.*``.
Each source also fixes its :class:`InputConventions`, the part of a conversion that goes
wrong silently: where the stride of a downsampling block sits, RGB or BGR input, and the
pixel mean and std.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

from ..modeling import BLOCKS_PER_STAGE, FEATURE_NAMES, STAGE_NAMES, ResNeXtSpec
from ..utils.errors import WeightsError
from .safe_load import drop_caffe2_momentum, state_dict_of

__all__ = [
    "INFERRED_FIELDS",
    "SOURCES",
    "InputConventions",
    "Renamed",
    "drop_classifier",
    "infer_spec",
    "to_detectron2_names",
]

SOURCES = ("auto", "resnext_det", "torchvision", "timm", "caffe2")
StateDict = dict[str, torch.Tensor]
FROZEN_BN_EPS = 1e-5  # Detectron2's FrozenBatchNorm2d
CLASSIFIER = "linear"  # our classifier's fc layer, kept only on request
# The fields of ResNeXtSpec that infer_spec reads off the weights; the others keep their
# defaults, but for the norm: FrozenBN, for detection.
INFERRED_FIELDS = (
    "depth",
    "cardinality",
    "bottleneck_width",
    "stride_in_1x1",
    "stem_out_channels",
    "res2_out_channels",
)


@dataclass(frozen=True)
class InputConventions:
    """What the weights expect of their input, in Detectron2's terms (0-255 pixels).

    Attributes:
        format: 'RGB' or 'BGR' (Detectron2's ``INPUT.FORMAT``).
        pixel_mean: subtracted from each channel, in the order of ``format``.
        pixel_std: each channel divided by this after the mean.
        stride_in_1x1: downsampling blocks stride in their first 1x1 conv (MSRA) rather
            than in the 3x3 conv (the paper, torchvision, timm).
    """

    format: str
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    stride_in_1x1: bool

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "InputConventions":
        """The conventions as the converter saves them (``dataclasses.asdict``)."""
        return cls(
            saved["format"],
            tuple(saved["pixel_mean"]),
            tuple(saved["pixel_std"]),
            bool(saved["stride_in_1x1"]),
        )


IMAGENET_RGB = InputConventions(
    "RGB", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), stride_in_1x1=False
)
# Detectron2's model zoo: MSRA's ResNets (Caffe, std 1) and FAIR's Caffe2 ResNeXts.
CAFFE2_MSRA = InputConventions(
    "BGR", (103.53, 116.28, 123.675), (1.0, 1.0, 1.0), stride_in_1x1=True
)
CAFFE2_FAIR = InputConventions(
    "BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395), stride_in_1x1=False
)


class Renamed(NamedTuple):
    """One source's weights in Detectron2 names.

    Attributes:
        weights: ``stem.*``, ``res2.*`` ... ``res5.*`` and ``linear.*`` if the source has it.
        unmatched: source keys that have no Detectron2 name (reported, never silently lost).
        conventions: the input conventions of the source.
    """

    weights: StateDict
    unmatched: list[str]
    conventions: InputConventions


def drop_classifier(weights: Mapping[str, Any]) -> dict[str, Any]:
    """``weights`` without the classifier's ``linear.*``, which a backbone has no use for."""
    return {k: v for k, v in weights.items() if not k.startswith(f"{CLASSIFIER}.")}


def infer_spec(weights: Mapping[str, Any], stride_in_1x1: bool) -> ResNeXtSpec:
    """The ResNeXt that weights in Detectron2 names describe: depth, C x d, widths.

    Depth comes from the number of blocks per stage (Table 1), C and d from the grouped
    conv of the first block (``[C*d, d, 3, 3]``).
    """
    blocks = []
    for stage in STAGE_NAMES:
        indices = {int(k.split(".")[1]) for k in weights if k.startswith(f"{stage}.")}
        blocks.append(len(indices))
    depths = {v: k for k, v in BLOCKS_PER_STAGE.items()}
    if tuple(blocks) not in depths:
        raise WeightsError(
            f"the weights hold {tuple(blocks)} blocks in res2..res5, which is no depth of "
            f"the family; expected one of {sorted(depths)}"
        )
    if "res2.0.conv3.weight" not in weights:  # two 3x3 convs a block: ResNet-18 or -34
        raise WeightsError(
            "the weights are a basic-block ResNet (res2.0 has no conv3: ResNet-18 or -34), "
            "which has no grouped 3x3 conv to make a ResNeXt of; expected bottleneck blocks "
            "(ResNet-50 and deeper, or a ResNeXt)"
        )
    conv2 = weights["res2.0.conv2.weight"]
    width = int(conv2.shape[1])
    return ResNeXtSpec(
        depth=depths[tuple(blocks)],
        cardinality=int(conv2.shape[0]) // width,
        bottleneck_width=width,
        stride_in_1x1=stride_in_1x1,
        norm="FrozenBN",
        stem_out_channels=int(weights["stem.conv1.weight"].shape[0]),
        res2_out_channels=int(weights["res2.0.conv3.weight"].shape[0]),
    )


def to_detectron2_names(
    data: Mapping[str, Any], source: str, caffe2_style: Optional[str] = None
) -> Renamed:
    """Rename a weight file's content from ``source`` (one of :data:`SOURCES` but 'auto').

    Args:
        data: the file's top-level dict.
        source: the code base that wrote it.
        caffe2_style: 'msra' or 'fair' for Caffe2 files (default: MSRA for ResNets,
            FAIR for ResNeXts, as Detectron2's model zoo has them).

    Raises:
        WeightsError: the source is unknown, or a checkpoint of ours is no ImageNet one.
    """
    if source == "resnext_det":
        return _from_resnext_det(data)
    if source in ("torchvision", "timm"):
        return _from_torchvision(state_dict_of(data))
    if source == "caffe2":
        return _from_caffe2(state_dict_of(data), caffe2_style)
    raise WeightsError(
        "cannot tell the format of the weights (keys like "
        f"{list(state_dict_of(data))[:3]}); expected one of {SOURCES[1:]} (pass --source)"
    )


# -- one source each --------------------------------------------------------------------

_BLOCK_PART = re.compile(r"(conv[123]|shortcut)\.(weight|norm\.\w+)")
_OURS = re.compile(rf"^({'|'.join(FEATURE_NAMES)}|{CLASSIFIER})\..+$")


def _torchvision_name(key: str) -> Optional[str]:
    """Detectron2's name of a torchvision/timm ResNet parameter, or None if it has none."""
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if match := re.fullmatch(r"bn1\.(\w+)", key):
        return f"stem.conv1.norm.{match[1]}"
    if match := re.fullmatch(r"fc\.(weight|bias)", key):
        return f"{CLASSIFIER}.{match[1]}"
    if match := re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key):
        part = re.sub(r"^bn([123])\.", r"conv\1.norm.", match[3])
        part = re.sub(r"^downsample\.0\.", "shortcut.", part)
        part = re.sub(r"^downsample\.1\.", "shortcut.norm.", part)
        if _BLOCK_PART.fullmatch(part):
            return f"res{int(match[1]) + 1}.{match[2]}.{part}"
    return None


def _drop_statistics_counters(weights: StateDict) -> StateDict:
    # FrozenBN has no num_batches_tracked; BN's counter carries no weight.
    return {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}


def _from_torchvision(state: Mapping[str, Any]) -> Renamed:
    weights, unmatched = {}, []
    for key, value in state.items():
        name = _torchvision_name(key)
        if name is None:
            unmatched.append(key)
        else:
            weights[name] = value
    return Renamed(_drop_statistics_counters(weights), unmatched, IMAGENET_RGB)


def _from_caffe2(blobs: Mapping[str, Any], style: Optional[str]) -> Renamed:
    blobs = drop_caffe2_momentum(blobs)
    names = convert_basic_c2_names(list(blobs))
    ours = tuple(f"{feature}." for feature in FEATURE_NAMES)
    weights, unmatched = {}, []
    for original, name in zip(blobs, names):
        if name.startswith(ours):
            weights[name] = torch.as_tensor(np.asarray(blobs[original]))
        elif name.startswith("fc1000."):
            weights[name.replace("fc1000.", f"{CLASSIFIER}.")] = torch.as_tensor(
                np.asarray(blobs[original])
            )
        else:
            unmatched.append(original)
    # Caffe2's AffineChannel is a norm without statistics: FrozenBN with mean 0 and
    # variance 1 - eps computes exactly x * scale + bias.
    for key in [k for k in weights if k.endswith(".norm.weight")]:
        prefix = key[: -len("weight")]
        weights.setdefault(prefix + "running_mean", torch.zeros_like(weights[key]))
        weights.setdefault(prefix + "running_var", torch.ones_like(weights[key]) - FROZEN_BN_EPS)
    grouped = weights["res2.0.conv2.weight"]
    if style is None:  # MSRA published ResNets only, FAIR's Caffe2 the ResNeXts
        style = "msra" if grouped.shape[0] == grouped.shape[1] else "fair"
    return Renamed(weights, unmatched, {"msra": CAFFE2_MSRA, "fair": CAFFE2_FAIR}[style])


def _from_resnext_det(data: Mapping[str, Any]) -> Renamed:
    meta = data.get("resnext_det", {})
    if meta.get("arch", "imagenet") != "imagenet":
        raise WeightsError(
            f"the checkpoint is a {meta['arch']!r} classifier, whose stem does not fit a "
            "detector; expected an ImageNet classifier (MODEL.ARCH imagenet)"
        )
    state = state_dict_of(data)
    weights = _drop_statistics_counters({k: v for k, v in state.items() if _OURS.match(k)})
    unmatched = [k for k in state if not _OURS.match(k)]
    conventions = IMAGENET_RGB
    if "conventions" in data:  # a file the converter wrote
        conventions = InputConventions.from_dict(data["conventions"])
    elif "input" in meta:
        inputs = meta["input"]
        conventions = InputConventions(
            inputs["format"],
            tuple(round(255 * m, 4) for m in inputs["pixel_mean"]),
            tuple(round(255 * s, 4) for s in inputs["pixel_std"]),
            bool(meta["resnets"]["STRIDE_IN_1X1"]),
        )
    return Renamed(weights, unmatched, conventions)
