"""Drop-in parity with Detectron2: its model-zoo configs with only the backbone switched.

For a zoo config whose backbone is a ResNet, :func:`compare_zoo_config` builds
Detectron2's model and ours (the same config with ``MODEL.BACKBONE.NAME`` switched to our
builder, and ``Res5ROIHeads`` to :class:`~resnext_det.modeling.ResNeXtRes5ROIHeads`), and
checks that ours

1. has exactly Detectron2's state_dict keys and shapes,
2. loads a Detectron2 checkpoint of that config strictly, and
3. computes the same outputs on the same images: the backbone's features and every head's
   output (RPN, box, mask and keypoint predictors, RetinaNet's and the semantic head),
   with every option of ours (:data:`VARIANTS`: the defaults, each memory format, the
   sparse RoIAlign, the fused inference copy), within the float32 noise of Detectron2's
   own model.

That noise is measured per config, two ways: Detectron2's model against itself run in
channels_last (the same function, another summation order), and Detectron2's backbone
against its float64 result. The tolerance is :data:`NOISE_FACTOR` times the larger.

Heads are compared on equal inputs: where a model makes a discrete choice (top-k and NMS
of proposals, the detections a mask head runs on), ours is handed Detectron2's choice, so
that a difference in the last float bit cannot change which boxes are compared.
"""

import copy
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...config import add_resnext_config
from ...modeling import fuse_frozen_batchnorm
from ...modeling.roi_align import SPARSE_ROI_HEADS
from ...utils.errors import UserError

__all__ = [
    "BACKBONE_SWAP",
    "NOISE_FACTOR",
    "VARIANTS",
    "ParityResult",
    "compare_zoo_config",
    "parity_table",
    "switch_to_resnext",
    "zoo_config_names",
]

logger = logging.getLogger(__name__)

# Detectron2's ResNet builders and the drop-in replacement of each.
BACKBONE_SWAP = {
    "build_resnet_backbone": "build_resnext_backbone",
    "build_resnet_fpn_backbone": "build_resnext_fpn_backbone",
    "build_retinanet_resnet_fpn_backbone": "build_resnext_retinanet_fpn_backbone",
}
ROI_HEADS_SWAP = {"Res5ROIHeads": "ResNeXtRes5ROIHeads"}
# The RoI heads of ours that run the sparse RoIAlign in place of Detectron2's.
SPARSE_SWAP = {"Res5ROIHeads": "ResNeXtRes5ROIHeads", "StandardROIHeads": "ResNeXtStandardROIHeads"}

# Each option of ours, as the overrides of our config; "fused" is the default model given
# to fuse_frozen_batchnorm, as the predictor and export run it.
VARIANTS = {
    "defaults": [],
    "contiguous": ["MODEL.RESNEXT.MEMORY_FORMAT", "contiguous"],
    "channels_last": ["MODEL.RESNEXT.MEMORY_FORMAT", "channels_last"],
    "sparse RoIAlign": ["MODEL.RESNEXT.SPARSE_ROI_ALIGN", "True"],
    "fused": [],
}
# Ours may differ from Detectron2's by this many times Detectron2's own float32 noise.
NOISE_FACTOR = 3.0

# Modules whose outputs are compared, and those whose outputs ours takes from Detectron2's
# (the discrete choices). A name with "*" stands for each index of a cascade's stages.
COMPARED = (
    "backbone",
    "backbone.bottom_up",
    "proposal_generator.rpn_head",
    "roi_heads.res5",
    "roi_heads.box_head",
    "roi_heads.box_head.*",
    "roi_heads.box_predictor",
    "roi_heads.box_predictor.*",
    "roi_heads.mask_head.predictor",
    "roi_heads.keypoint_head.score_lowres",
    "sem_seg_head",
    "head",
)
PINNED = (
    "proposal_generator",
    "roi_heads.box_predictor",
    "roi_heads.box_predictor.*",
    "roi_heads.mask_head",
    "roi_heads.keypoint_head",
    "sem_seg_head",
    "head",
)


@dataclass
class ParityResult:
    """What the comparison of one zoo config found.

    Attributes:
        config: the zoo config's name, e.g. 'COCO-Detection/faster_rcnn_R_50_C4_1x.yaml'.
        status: 'matched', 'mismatch', 'refused' (our builder refuses a key it cannot
            honour), 'detectron2 fails' (Detectron2's own model does not build or run
            here), or 'not a ResNet' (nothing to switch).
        reason: why, for any status but 'matched'.
        meta_architecture, backbone: of the config.
        tensors: state_dict tensors compared.
        differences: the largest relative difference per compared output, over the variants.
        variants: the largest relative difference of each variant run ('refused: ...' for
            one our builder refuses, e.g. channels_last with GroupNorm).
        self_noise: Detectron2's model against itself in channels_last (largest relative).
        float64_noise: Detectron2's backbone against its float64 result.
        tolerance: what ours may differ by (``NOISE_FACTOR`` times the larger noise).
    """

    config: str
    status: str
    reason: str = ""
    meta_architecture: str = ""
    backbone: str = ""
    tensors: int = 0
    differences: dict[str, float] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    self_noise: float = 0.0
    float64_noise: float = 0.0
    tolerance: float = 0.0
    seconds: float = 0.0

    @property
    def worst(self) -> tuple[str, float]:
        """The compared output with the largest relative difference, and that difference."""
        if not self.differences:
            return "", 0.0
        name = max(self.differences, key=lambda k: self.differences[k])
        return name, self.differences[name]


def zoo_config_names() -> list[str]:
    """Every yaml config of Detectron2's model zoo but its quick test schedules."""
    root = Path(model_zoo.get_config_file("Base-RCNN-FPN.yaml")).parent
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.yaml")
        if path.relative_to(root).parts[0] != "quick_schedules"
    )


def load_zoo_config(name: str) -> CfgNode:
    """A zoo config as Detectron2 loads it, on the CPU, without weights."""
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    # Keep every detection, so that the mask and keypoint heads have boxes to run on
    # (random weights score each class near 1 / num_classes, below the usual 0.05).
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    return cfg


def switch_to_resnext(cfg: CfgNode) -> CfgNode:
    """``cfg`` with Detectron2's ResNet builders (and C4 head) switched for ours: nothing else.

    Raises:
        KeyError: the config's backbone is not a Detectron2 ResNet.
    """
    cfg = add_resnext_config(cfg.clone())
    cfg.defrost()
    cfg.MODEL.BACKBONE.NAME = BACKBONE_SWAP[cfg.MODEL.BACKBONE.NAME]
    cfg.MODEL.ROI_HEADS.NAME = ROI_HEADS_SWAP.get(
        cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.ROI_HEADS.NAME
    )
    return cfg


_NORM_TYPES = (FrozenBatchNorm2d, nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)


@torch.no_grad()
def _calibrate_norms(model: nn.Module, inputs: list[dict], seed: int) -> None:
    """Give the norms statistics and affine values like those of a trained network.

    Detectron2 starts norms at weight 1, bias 0, mean 0, variance 1: an untrained network
    then lets its activations grow stage by stage until no proposal survives, and folding
    a unit norm tests nothing. Here each BN takes the mean of its input on ``inputs`` and
    the variance averaged over its channels (a channel that happens to be nearly constant
    on two random images would otherwise scale its rounding up by orders of magnitude), a
    random scale in [0.5, 1.5] and shift; the last norm of each residual branch a scale in
    [0.1, 0.3], as trained ResNets have them. Without that, a random network at unit branch
    scale is chaotic: Detectron2's own float32 result then differs from float64 by 7e-5 at
    res5 of an R50, and by less than 1e-5 with it.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    def randomize_affine(module: nn.Module, name: str) -> None:
        if getattr(module, "weight", None) is None:
            return
        low, high = (0.1, 0.3) if name.endswith("conv3.norm") else (0.5, 1.5)
        module.weight.copy_(uniform(module.weight.shape, low, high))
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))

    def calibrate(module: nn.Module, args: tuple) -> None:
        x = args[0]
        if x.numel():
            module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            module.running_var.fill_(x.var(dim=(0, 2, 3), unbiased=False).mean().item())

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _NORM_TYPES):
            randomize_affine(module, name)
            if hasattr(module, "running_mean"):
                handles.append(module.register_forward_pre_hook(calibrate))
    try:
        model([dict(record) for record in inputs])
    finally:
        for handle in handles:
            handle.remove()


def _inputs(cfg: CfgNode, sizes: Sequence[tuple[int, int]], seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for height, width in sizes:
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        record: dict[str, Any] = {"image": image, "height": height, "width": width}
        if cfg.MODEL.LOAD_PROPOSALS:  # Fast R-CNN: proposals come with the images
            corners = torch.rand(50, 2, 2, generator=generator) * torch.tensor([width, height])
            boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values + 4], dim=1)
            proposals = Instances((height, width))
            proposals.proposal_boxes = Boxes(boxes)
            proposals.objectness_logits = torch.randn(50, generator=generator)
            record["proposals"] = proposals
        inputs.append(record)
    return inputs


def _tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a module's output, each under a path ('res4', '0.scores', ...)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Boxes):
        yield prefix, value.tensor
    elif isinstance(value, Instances):
        for name, field_value in sorted(value.get_fields().items()):
            yield from _tensors(field_value, f"{prefix}.{name}".strip("."))
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _tensors(value[key], f"{prefix}.{key}".strip("."))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{prefix}.{index}".strip("."))


def _clone(value: Any) -> Any:
    """A deep copy whose tensors are detached clones (post-processing scales boxes in place)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _matching_modules(model: nn.Module, patterns: Sequence[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    found = {}
    for pattern in patterns:
        if pattern.endswith(".*"):
            parent = pattern[:-2]
            found.update(
                {
                    n: m
                    for n, m in modules.items()
                    if n.rpartition(".")[0] == parent and n.rpartition(".")[2].isdigit()
                }
            )
        elif pattern in modules:
            found[pattern] = modules[pattern]
    return found


@torch.no_grad()
def _run(model: nn.Module, inputs: list[dict], pins: Optional[dict[str, Any]]) -> tuple[dict, dict]:
    """Run ``model``; record the outputs of the compared modules and of the pinned ones.

    With ``pins``, each pinned module's output is replaced by the recorded one.
    """
    compared: dict[str, dict[str, torch.Tensor]] = {}
    pinned: dict[str, Any] = {}
    handles = []

    def record(name: str):
        def hook(module, args, output):
            compared[name] = {path: t.detach().clone() for path, t in _tensors(output)}

        return hook

    def pin(name: str):
        def hook(module, args, output):
            if pins is None:
                pinned[name] = _clone(output)
                return None
            return _clone(pins[name])

        return hook

    for name, module in _matching_modules(model, COMPARED).items():
        handles.append(module.register_forward_hook(record(name)))
    # Registered after the recording hooks, so that what is recorded is the module's own.
    for name, module in _matching_modules(model, PINNED).items():
        handles.append(module.register_forward_hook(pin(name)))
    try:
        model([dict(record) for record in inputs])
    finally:
        for handle in handles:
            handle.remove()
    return compared, pinned


def _relative_differences(ours: dict, theirs: dict) -> tuple[dict[str, float], list[str]]:
    differences, problems = {}, []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours or name not in theirs:
            problems.append(f"{name} runs in only one of the models")
            continue
        worst = 0.0
        for path in sorted(set(ours[name]) | set(theirs[name])):
            a, b = ours[name].get(path), theirs[name].get(path)
            label = f"{name}:{path}" if path else name
            if a is None or b is None or a.shape != b.shape:
                problems.append(f"{label} differs in structure or shape")
                continue
            if not b.numel():
                problems.append(f"{label} is empty: nothing to compare")
                continue
            if not b.is_floating_point():
                if not torch.equal(a, b):
                    problems.append(f"{label} differs")
                continue
            diff = (a - b).abs().max().item()
            worst = max(worst, diff / max(b.abs().max().item(), 1e-12))
            if not math.isfinite(diff):
                problems.append(f"{label} is not finite")
        differences[name] = worst
    return differences, problems


def _worst(differences: dict[str, float]) -> float:
    return max(differences.values(), default=0.0)


@torch.no_grad()
def _float64_noise(model: nn.Module, inputs: list[dict]) -> float:
    """How far Detectron2's float32 backbone is from its float64 result (its heads do not
    run in float64: Detectron2 decodes boxes in float32)."""
    # As the meta-architectures preprocess (ProposalNetwork has no preprocess_image).
    normalized = [(r["image"] - model.pixel_mean) / model.pixel_std for r in inputs]
    images = ImageList.from_tensors(
        normalized,
        model.backbone.size_divisibility,
        padding_constraints=model.backbone.padding_constraints,
    ).tensor
    features = model.backbone(images)
    exact = copy.deepcopy(model.backbone).double()(images.double())
    return max(
        ((features[k].double() - v).abs().max() / v.abs().max().clamp(min=1e-12)).item()
        for k, v in exact.items()
    )


def _variant_config(cfg: CfgNode, overrides: Sequence[str]) -> Optional[CfgNode]:
    """Our config of a variant, or None where the variant does not apply (the sparse
    RoIAlign where Detectron2's config has RoI heads of another kind, or none)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(list(overrides))
    if cfg.MODEL.RESNEXT.SPARSE_ROI_ALIGN:
        heads = SPARSE_SWAP.get(cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.ROI_HEADS.NAME)
        if cfg.MODEL.META_ARCHITECTURE not in ("GeneralizedRCNN", "PanopticFPN"):
            return None
        if heads not in SPARSE_ROI_HEADS:
            return None
        cfg.MODEL.ROI_HEADS.NAME = heads
    return cfg


def compare_zoo_config(
    name: str,
    *,
    sizes: Sequence[tuple[int, int]] = ((96, 128), (128, 96)),
    seed: int = 0,
    opts: Sequence[str] = (),
    variants: Sequence[str] = tuple(VARIANTS),
) -> ParityResult:
    """Compare Detectron2's model of zoo config ``name`` with ours (see the module doc).

    Args:
        name: a zoo config, as :func:`zoo_config_names` lists them.
        sizes: (height, width) of the test images, one batch.
        seed: of the images and the norms' random values.
        opts: ``KEY VALUE`` overrides applied to both configs (e.g. to shrink a test).
        variants: which of :data:`VARIANTS` to run.
    """
    start = time.perf_counter()
    cfg = load_zoo_config(name)
    cfg.merge_from_list(list(opts))
    result = ParityResult(
        name, "", meta_architecture=cfg.MODEL.META_ARCHITECTURE, backbone=cfg.MODEL.BACKBONE.NAME
    )

    def done(status: str, reason: str = "") -> ParityResult:
        result.status, result.reason = status, " ".join(reason.split())
        result.seconds = time.perf_counter() - start
        return result

    if cfg.MODEL.BACKBONE.NAME not in BACKBONE_SWAP:
        return done("not a ResNet", f"backbone {cfg.MODEL.BACKBONE.NAME}")
    try:
        our_cfg = switch_to_resnext(cfg)
        ours = build_model(our_cfg).eval()
    except UserError as e:  # a key we cannot honour, refused in one line
        return done("refused", str(e))
    inputs = _inputs(cfg, sizes, seed)
    try:
        torch.manual_seed(seed)
        theirs = build_model(cfg).eval()
        _calibrate_norms(theirs, inputs, seed)
        reference, pins = _run(theirs, inputs, pins=None)
        in_channels_last = copy.deepcopy(theirs).to(memory_format=torch.channels_last)
        result.self_noise = _worst(
            _relative_differences(_run(in_channels_last, inputs, pins)[0], reference)[0]
        )
        result.float64_noise = _float64_noise(theirs, inputs)
    except Exception as e:  # noqa: BLE001 (any failure of Detectron2's own model)
        return done("detectron2 fails", f"{type(e).__name__}: {e}")
    result.tolerance = NOISE_FACTOR * max(result.self_noise, result.float64_noise)

    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    result.tensors = len(their_shapes)
    if their_shapes != our_shapes:
        missing = sorted(set(their_shapes) - set(our_shapes))
        extra = sorted(set(our_shapes) - set(their_shapes))
        shapes = [k for k in their_shapes if k in our_shapes and their_shapes[k] != our_shapes[k]]
        return done(
            "mismatch",
            f"{len(missing)} keys missing (e.g. {missing[:2]}), {len(extra)} extra "
            f"(e.g. {extra[:2]}), {len(shapes)} of other shapes (e.g. {shapes[:2]})",
        )
    with tempfile.TemporaryDirectory() as tmp:
        DetectionCheckpointer(theirs, save_dir=tmp).save("detectron2")
        state = torch.load(Path(tmp) / "detectron2.pth", map_location="cpu", weights_only=True)

    problems = []
    for variant in variants:
        variant_cfg = _variant_config(our_cfg, VARIANTS[variant])
        if variant_cfg is None:
            continue
        try:
            model = build_model(variant_cfg).eval()
        except UserError as e:  # e.g. channels_last with GroupNorm
            result.variants[variant] = f"refused: {e}"
            continue
        model.load_state_dict(state["model"], strict=True)
        if variant == "fused":
            model = fuse_frozen_batchnorm(model, inplace=True)
        outputs, _ = _run(model, inputs, pins=pins)
        differences, found = _relative_differences(outputs, reference)
        problems += [f"{variant}: {p}" for p in found]
        result.variants[variant] = _worst(differences)
        for output, difference in differences.items():
            result.differences[output] = max(result.differences.get(output, 0.0), difference)
    if problems:
        return done("mismatch", "; ".join(problems[:3]))
    worst_variant = max(
        (v for v in result.variants if isinstance(result.variants[v], float)),
        key=lambda v: result.variants[v],
    )
    worst = result.variants[worst_variant]
    if not worst <= result.tolerance:
        return done(
            "mismatch",
            f"{worst_variant}: {result.worst[0]} differs by {worst:.2g} (relative), more than "
            f"{NOISE_FACTOR:g}x Detectron2's own noise {result.tolerance / NOISE_FACTOR:.2g}",
        )
    return done("matched")


def parity_table(results: Sequence[ParityResult]) -> str:
    """Markdown: one row per config, then the totals."""
    rows = [
        "| config | meta-architecture | status | tensors | Detectron2 vs itself "
        "(channels_last) | Detectron2 vs float64 (backbone) | tolerance | ours, worst option "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        measured = {v: d for v, d in r.variants.items() if isinstance(d, float)}
        if measured:
            variant = max(measured, key=measured.get)
            ours = f"{measured[variant]:.1e} ({variant}, {r.worst[0]})"
        else:
            ours = "-"
        refused = [f"{v} refused" for v, d in r.variants.items() if not isinstance(d, float)]
        note = "; ".join([r.reason, *refused]).strip("; ").replace("|", "/")
        noise = [f"{x:.1e}" if r.tolerance else "-" for x in (r.self_noise, r.float64_noise)]
        rows.append(
            f"| `{r.config}` | {r.meta_architecture} | {r.status} | {r.tensors or '-'} | "
            f"{noise[0]} | {noise[1]} | {f'{r.tolerance:.1e}' if r.tolerance else '-'} | "
            f"{ours} | {note} |"
        )
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    totals = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    rows += [
        "",
        f"{len(results)} configs: {totals} (tolerance: {NOISE_FACTOR:g}x the larger of "
        "Detectron2's two noises, relative).",
    ]
    return "\n".join(rows) + "\n"
