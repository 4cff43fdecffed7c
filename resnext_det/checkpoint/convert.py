"""Exact conversion of ResNeXt weights from other code bases into Detectron2 form.

Sources: this project's pretraining checkpoints, torchvision and timm ResNet/ResNeXt state
dicts, and Detectron2's model-zoo ImageNet ``.pkl`` files (Caffe2 names). The target
names are Detectron2's ResNet names (``stem.conv1.weight``, ``res2.0.conv1.norm.bias``,
``res2.0.shortcut.weight``, ...), which are also our classifier's and our backbones' names,
so the result loads into ``build_resnext_backbone`` (stem..res4), the C4 head (res5 as
``roi_heads.res5``) and the FPN backbone (``backbone.bottom_up``), by Detectron2's usual
suffix matching of ImageNet weights.

Conversions that go wrong silently do so by convention, not by name: where the stride of
a downsampling block sits, RGB or BGR input, and the pixel mean and std. Every
:class:`Conversion` therefore carries its :class:`InputConventions`, and
:func:`compare_features` checks that the converted backbone computes the source model's
features on a test input.
"""

import dataclasses
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import (
    align_and_update_state_dicts,
    convert_basic_c2_names,
)
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from ..modeling import BLOCKS_PER_STAGE, STAGE_NAMES, ResNeXtSpec, build_resnext
from ..utils.atomic_io import (
    check_output_dir,
    make_output_dir,
    write_atomically,
    write_text_atomically,
)
from ..utils.errors import OutputError, WeightsError
from .safe_load import check_finite_weights, load_weight_file

__all__ = [
    "SOURCES",
    "Conversion",
    "FeatureComparison",
    "InputConventions",
    "check_outputs",
    "compare_features",
    "convert",
    "infer_spec",
    "read_weight_file",
    "write_detectron2_weights",
]

SOURCES = ("auto", "resnext_det", "torchvision", "timm", "caffe2")
StateDict = dict[str, torch.Tensor]
FEATURES = ["stem", "res2", "res3", "res4", "res5"]
FROZEN_BN_EPS = 1e-5  # Detectron2's FrozenBatchNorm2d


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


@dataclass
class Conversion:
    """Weights in Detectron2 names, the network they describe, and their conventions.

    Attributes:
        weights: ``stem.*`` and ``res2.*`` ... ``res5.*`` (and ``linear.*`` if kept).
        spec: the ResNeXt the weights describe (norm: FrozenBN, for detection).
        conventions: their input conventions.
        source: the source format.
        unmatched: source keys that were not converted (reported, never silently lost).
    """

    weights: StateDict
    spec: ResNeXtSpec
    conventions: InputConventions
    source: str
    unmatched: list[str] = field(default_factory=list)


def read_weight_file(path: str) -> tuple[dict[str, Any], str]:
    """Read a weight file without running code in it.

    Read by its content (:func:`~resnext_det.checkpoint.safe_load.load_weight_file`): a
    ``.pkl`` with the restricted unpickler (numpy arrays and plain containers only), a
    safetensors file with the safetensors reader (whatever its suffix), anything else with
    ``torch.load(weights_only=True)``. Its weights must be finite.

    Returns:
        The file's top-level dict and the format guessed from its layout.

    Raises:
        WeightsError: in one line naming the file: not a weight file, corrupt, holding
            code, holding no dict, or non-finite values (naming the tensor).
    """
    data = load_weight_file(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path} holds a {type(data).__name__}; expected a dict of weights")
    check_finite_weights(_state_of(data), str(path))
    return dict(data), _guess_source(data)


def _guess_source(data: Mapping) -> str:
    if "resnext_det" in data:
        return "resnext_det"
    state = _state_of(data)
    keys = set(state)
    if "conv1_w" in keys or "blobs" in data:
        return "caffe2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"  # timm's ResNets use the same names
    if "stem.conv1.weight" in keys:
        return "resnext_det"
    return "unknown"


def _state_of(data: Mapping) -> Mapping:
    for key in ("model", "state_dict", "blobs"):
        if isinstance(data.get(key), Mapping):
            return data[key]
    return data


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


# -- renaming ---------------------------------------------------------------------------

_BLOCK_PART = re.compile(r"(conv[123]|shortcut)\.(weight|norm\.\w+)")


def _torchvision_name(key: str) -> Optional[str]:
    """Detectron2's name of a torchvision/timm ResNet parameter, or None if it has none."""
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if match := re.fullmatch(r"bn1\.(\w+)", key):
        return f"stem.conv1.norm.{match[1]}"
    if match := re.fullmatch(r"fc\.(weight|bias)", key):
        return f"linear.{match[1]}"
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


def _from_torchvision(state: Mapping[str, Any], source: str) -> Conversion:
    weights, unmatched = {}, []
    for key, value in state.items():
        name = _torchvision_name(key)
        if name is None:
            unmatched.append(key)
        else:
            weights[name] = value
    weights = _drop_statistics_counters(weights)
    return Conversion(weights, infer_spec(weights, False), IMAGENET_RGB, source, unmatched)


def _from_caffe2(blobs: Mapping[str, Any], style: Optional[str]) -> Conversion:
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    names = convert_basic_c2_names(list(blobs))
    weights, unmatched = {}, []
    for original, name in zip(blobs, names):
        if name.startswith(("stem.", "res2.", "res3.", "res4.", "res5.")):
            weights[name] = torch.as_tensor(np.asarray(blobs[original]))
        elif name.startswith("fc1000."):
            weights[name.replace("fc1000.", "linear.")] = torch.as_tensor(
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
    conventions = {"msra": CAFFE2_MSRA, "fair": CAFFE2_FAIR}[style]
    spec = infer_spec(weights, conventions.stride_in_1x1)
    return Conversion(weights, spec, conventions, "caffe2", unmatched)


def _from_resnext_det(data: Mapping[str, Any]) -> Conversion:
    meta = data.get("resnext_det", {})
    if meta.get("arch", "imagenet") != "imagenet":
        raise WeightsError(
            f"the checkpoint is a {meta['arch']!r} classifier, whose stem does not fit a "
            "detector; expected an ImageNet classifier (MODEL.ARCH imagenet)"
        )
    state = _state_of(data)
    pattern = r"^(stem|res[2-5]|linear)\..+$"
    weights = _drop_statistics_counters({k: v for k, v in state.items() if re.match(pattern, k)})
    unmatched = [k for k in state if not re.match(pattern, k)]
    conventions = IMAGENET_RGB
    if "conventions" in data:  # a file this module wrote
        saved = data["conventions"]
        conventions = InputConventions(
            saved["format"],
            tuple(saved["pixel_mean"]),
            tuple(saved["pixel_std"]),
            bool(saved["stride_in_1x1"]),
        )
    elif "input" in meta:
        inputs = meta["input"]
        conventions = InputConventions(
            inputs["format"],
            tuple(round(255 * m, 4) for m in inputs["pixel_mean"]),
            tuple(round(255 * s, 4) for s in inputs["pixel_std"]),
            bool(meta["resnets"]["STRIDE_IN_1X1"]),
        )
    spec = infer_spec(weights, conventions.stride_in_1x1)
    return Conversion(weights, spec, conventions, "resnext_det", unmatched)


def convert(
    data: Mapping[str, Any],
    source: str = "auto",
    caffe2_style: Optional[str] = None,
    keep_classifier: bool = False,
) -> Conversion:
    """Convert a weight file's content (see :func:`read_weight_file`) to Detectron2 names.

    Args:
        data: the file's top-level dict.
        source: one of :data:`SOURCES`; 'auto' guesses from the keys.
        caffe2_style: 'msra' or 'fair' for Caffe2 files (default: MSRA for ResNets,
            FAIR for ResNeXts, as Detectron2's model zoo has them).
        keep_classifier: keep the fc layer as ``linear.*`` (for our classifier); a
            detector has no use for it.

    Raises:
        ValueError: the format is unknown, or the weights describe no ResNeXt.
    """
    if source not in SOURCES:
        raise WeightsError(f"source={source!r} is not supported; expected one of {SOURCES}")
    if source == "auto":
        source = _guess_source(data)
    if source == "resnext_det":
        conversion = _from_resnext_det(data)
    elif source in ("torchvision", "timm"):
        conversion = _from_torchvision(_state_of(data), source)
    elif source == "caffe2":
        conversion = _from_caffe2(_state_of(data), caffe2_style)
    else:
        raise WeightsError(
            "cannot tell the format of the weights (keys like "
            f"{list(_state_of(data))[:3]}); expected one of {SOURCES[1:]} (pass --source)"
        )
    if not keep_classifier:
        conversion.weights = {
            k: v for k, v in conversion.weights.items() if not k.startswith("linear.")
        }
    _check_shapes(conversion)
    return conversion


def _check_shapes(conversion: Conversion) -> None:
    """Refuse weights whose shapes or names differ from the network they describe."""
    model = build_resnext(conversion.spec, out_features=["res5"])
    expected = model.state_dict()
    problems = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in conversion.weights.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = sorted(set(expected) - set(conversion.weights))
    extra = sorted(
        k for k in set(conversion.weights) - set(expected) if not k.startswith("linear.")
    )
    if problems or missing or extra:
        raise WeightsError(
            f"the weights do not fit {conversion.spec}: shape mismatches {problems[:3]}, "
            f"missing {missing[:3]}, unexpected {extra[:3]}; expected exactly its parameters"
        )


# -- writing and checking ---------------------------------------------------------------


SNIPPET_HEADER = "# Input conventions of "


def _snippet_of(output: Path) -> Path:
    return output.with_suffix(".yaml")


def _is_our_snippet(snippet: Path, output: Path) -> bool:
    """Whether ``snippet`` is the config snippet a conversion to ``output`` wrote."""
    try:
        text = snippet.read_text(errors="replace")
    except OSError:
        return False
    return text.startswith(SNIPPET_HEADER) and f'WEIGHTS: "{output.resolve()}"' in text


def _is_our_weights(output: Path) -> bool:
    """Whether ``output`` is a file :func:`write_detectron2_weights` wrote (read lazily)."""
    try:
        data = torch.load(str(output), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (any file that is not ours, in any way)
        return False
    return (
        isinstance(data, dict)
        and data.get("__author__") == "resnext_det"
        and ("conventions" in data)
    )


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def check_outputs(
    output: str, source: Optional[str] = None, overwrite: bool = False
) -> tuple[Path, Path]:
    """Where a conversion will write: the weights and, beside them, their config snippet.

    The rule: the source is never written; the weights never share their snippet's path
    (an output named ``*.yaml``); and an existing file is replaced only if an earlier
    conversion wrote it (weights saved by this module, or the snippet of a conversion to
    the same output), or with ``overwrite``.

    Raises:
        OutputError: a path breaks the rule, or the output's folder cannot be written.
    """
    out = Path(output)
    snippet = _snippet_of(out)
    if out.is_dir():
        raise OutputError(f"output={output!r} is a folder; expected a weight file name in it")
    if snippet == out:
        raise OutputError(
            f"output={output!r} would be overwritten by its own config snippet ({snippet.name}); "
            f"expected a weight file name such as {out.with_suffix('.pth').name}"
        )
    if source is not None:
        for path, role in ((out, "output"), (snippet, "its config snippet")):
            if _same_file(path, Path(source)):
                raise OutputError(
                    f"output={output!r}: {role} {path} is the source file; expected another "
                    "output name (the source is never overwritten)"
                )
    if not overwrite:
        if out.exists() and not _is_our_weights(out):
            raise OutputError(
                f"output={output!r} exists and was not written by this tool; expected a new "
                "file name, or --overwrite to replace it"
            )
        if snippet.exists() and not _is_our_snippet(snippet, out):
            raise OutputError(
                f"{snippet} exists and is not the config snippet of a conversion to {out.name}; "
                "expected another output name (the snippet is <output name>.yaml), or "
                "--overwrite to replace it"
            )
    check_output_dir(out.parent, "the output's folder")
    return out, snippet


def write_detectron2_weights(
    conversion: Conversion, path: str, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write the weights as a Detectron2 checkpoint and, beside it, a config snippet.

    The checkpoint is ``{"model": weights, "__author__": "resnext_det",
    "matching_heuristics": True}``: Detectron2 matches ImageNet weights by name suffix, so
    ``res5.*`` lands in the C4 head's ``roi_heads.res5`` or FPN's ``bottom_up.res5``.
    Existing files are replaced only as :func:`check_outputs` allows.

    Returns:
        The checkpoint's path and the snippet's (``<name>.yaml``).
    """
    out, snippet = check_outputs(path, overwrite=overwrite)
    make_output_dir(out.parent, "the output's folder")
    data = {
        "model": {k: v.contiguous() for k, v in conversion.weights.items()},
        "__author__": "resnext_det",
        "matching_heuristics": True,
        "conventions": asdict(conversion.conventions),
    }
    write_atomically(out, lambda f: torch.save(data, f))
    write_text_atomically(snippet, config_snippet(conversion, out))
    return out, snippet


def config_snippet(conversion: Conversion, weights_path: Path) -> str:
    """The Detectron2 config keys the weights need, as yaml with the overrides in a comment."""
    spec, conv = conversion.spec, conversion.conventions
    mean, std = list(conv.pixel_mean), list(conv.pixel_std)
    overrides = (
        f"MODEL.WEIGHTS {weights_path.resolve()} INPUT.FORMAT {conv.format} "
        f"MODEL.PIXEL_MEAN '{mean}' MODEL.PIXEL_STD '{std}' "
        f"MODEL.RESNETS.DEPTH {spec.depth} MODEL.RESNETS.NUM_GROUPS {spec.cardinality} "
        f"MODEL.RESNETS.WIDTH_PER_GROUP {spec.bottleneck_width} "
        f"MODEL.RESNETS.STRIDE_IN_1X1 {spec.stride_in_1x1}"
    )
    return (
        f"{SNIPPET_HEADER}{weights_path.name}: {spec}, converted from {conversion.source}\n"
        "# weights by tools/convert_weights.py. Merge these keys into a detection config,\n"
        "# or give them to tools/train_net.py as trailing overrides:\n"
        f"#   {overrides}\n"
        "MODEL:\n"
        f'  WEIGHTS: "{weights_path.resolve()}"\n'
        f"  PIXEL_MEAN: {mean}\n"
        f"  PIXEL_STD: {std}\n"
        "  RESNETS:\n"
        f"    DEPTH: {spec.depth}\n"
        f"    NUM_GROUPS: {spec.cardinality}\n"
        f"    WIDTH_PER_GROUP: {spec.bottleneck_width}\n"
        f"    STRIDE_IN_1X1: {spec.stride_in_1x1}\n"
        f"    STEM_OUT_CHANNELS: {spec.stem_out_channels}\n"
        f"    RES2_OUT_CHANNELS: {spec.res2_out_channels}\n"
        "INPUT:\n"
        f'  FORMAT: "{conv.format}"\n'
    )


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


def _reference_model(conversion: Conversion, data: Mapping[str, Any]) -> nn.Module:
    """The source model, built by its own code and loaded by its own names.

    Returns a module whose forward gives a dict of the features in :data:`FEATURES`.
    """
    spec = conversion.spec
    state = _state_of(data)
    if conversion.source in ("torchvision", "timm"):
        return _TorchvisionFeatures(spec, state, use_timm=conversion.source == "timm")
    if conversion.source == "caffe2":
        return _detectron2_caffe2_resnet(spec, state)
    # Our own classifier, with BN in eval mode, as the pretraining evaluated it.
    model = build_resnext(dataclasses.replace(spec, norm="BN"), out_features=FEATURES)
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("linear.")}, strict=True
    )
    return model


class _TorchvisionFeatures(nn.Module):
    def __init__(self, spec: ResNeXtSpec, state: Mapping[str, Any], use_timm: bool):
        super().__init__()
        layers = list(BLOCKS_PER_STAGE[spec.depth])
        if use_timm:
            from timm.models.resnet import Bottleneck as TimmBottleneck
            from timm.models.resnet import ResNet as TimmResNet

            self.net = TimmResNet(
                TimmBottleneck,
                layers,
                cardinality=spec.cardinality,
                base_width=spec.bottleneck_width,
            )
        else:
            from torchvision.models.resnet import Bottleneck, ResNet

            self.net = ResNet(
                Bottleneck, layers, groups=spec.cardinality, width_per_group=spec.bottleneck_width
            )
        self.net.load_state_dict(state, strict=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self.net
        activation = net.act1 if hasattr(net, "act1") else net.relu  # timm / torchvision
        x = net.maxpool(activation(net.bn1(net.conv1(x))))
        out = {"stem": x}
        for index, stage in enumerate(STAGE_NAMES):
            x = getattr(net, f"layer{index + 1}")(x)
            out[stage] = x
        return out


def _detectron2_caffe2_resnet(spec: ResNeXtSpec, blobs: Mapping[str, Any]) -> nn.Module:
    cfg = get_cfg()
    resnets = cfg.MODEL.RESNETS
    resnets.DEPTH = spec.depth
    resnets.NUM_GROUPS = spec.cardinality
    resnets.WIDTH_PER_GROUP = spec.bottleneck_width
    resnets.STRIDE_IN_1X1 = spec.stride_in_1x1
    resnets.NORM = "FrozenBN"
    resnets.STEM_OUT_CHANNELS = spec.stem_out_channels
    resnets.RES2_OUT_CHANNELS = spec.res2_out_channels
    resnets.OUT_FEATURES = FEATURES
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    own = model.state_dict()
    tensors = {
        k: torch.as_tensor(np.asarray(v)) for k, v in blobs.items() if not k.endswith("_momentum")
    }
    matched = OrderedDict(align_and_update_state_dicts(own, tensors, c2_conversion=True))
    # Keep FrozenBN's version so that it keeps its Caffe2-exact statistics (0, 1 - eps)
    # where the file has none, as Detectron2 intends for Caffe2 weights.
    matched._metadata = own._metadata  # type: ignore[attr-defined]
    model.load_state_dict(matched, strict=False)
    return model


@torch.no_grad()
def compare_features(
    conversion: Conversion, data: Mapping[str, Any], size: int = 224, seed: int = 0
) -> FeatureComparison:
    """Run the source model and the converted backbone on one test input and compare.

    The input is random, in the already-normalized space both models take.
    """
    source = _reference_model(conversion, data).eval()
    target = build_resnext(conversion.spec, out_features=FEATURES).eval()
    target.load_state_dict(
        {k: v for k, v in conversion.weights.items() if not k.startswith("linear.")}, strict=True
    )
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    ours, theirs = target(x), source(x)
    return FeatureComparison(
        {k: (ours[k] - theirs[k]).abs().max().item() for k in FEATURES},
        {k: theirs[k].abs().max().item() for k in FEATURES},
    )
