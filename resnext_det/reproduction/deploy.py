"""Deployment through Detectron2's export path: TorchScript by tracing or scripting, ONNX.

The same calls as Detectron2's ``tools/deploy/export_model.py`` (``TracingAdapter``,
``scripting_with_instances``, ``torch.onnx.export`` of the traced adapter), plus the check
it leaves to the user: the exported model runs on sample images beside the eager one and
must give the same detections. What is exported is a copy with each frozen norm folded
into its conv (:func:`~resnext_det.modeling.fuse_frozen_batchnorm`), as deployment
toolkits fuse conv and norm; the layout rule of the ResNeXt modules is an op in the graph.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from ..modeling import fuse_frozen_batchnorm
from ..utils.atomic_io import make_output_dir, write_atomically
from ..utils.errors import ConfigError, MissingFileError
from .data.images import read_image_checked
from .data.sanitize import load_registered

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "DetectionDifference",
    "Exported",
    "compare_detections",
    "export_model",
    "sample_images",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")
# The Instances fields a scripted R-CNN uses (Detectron2's export_model.py).
SCRIPTING_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
    "pred_keypoints": Tensor,
    "pred_keypoint_heatmaps": Tensor,
}


def _eager_inference(model: nn.Module, image: Tensor) -> Instances:
    """The eager model's detections for one image, before resizing to the input size."""
    with torch.no_grad():
        if isinstance(model, GeneralizedRCNN):
            return model.inference([{"image": image}], do_postprocess=False)[0]
        return model([{"image": image}])[0]["instances"]


class _ScriptableAdapter(nn.Module):
    """Returns plain dicts instead of Instances (pytorch issue 46944), as Detectron2's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, inputs: tuple[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


def _tracing_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    def inference(model, inputs):
        # do_postprocess=False, as Detectron2 exports: masks stay per RoI.
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]

    is_rcnn = isinstance(model, GeneralizedRCNN)
    # In eval mode itself: torch.onnx.export restores the adapter's mode, and with it the
    # model's, when it is done.
    return TracingAdapter(model, [{"image": image}], inference if is_rcnn else None).eval()


@dataclass
class Exported:
    """An exported model and how to run it on one image (CHW float tensor) for Instances."""

    path: Path
    run: Callable[[Tensor], Instances]


def export_model(
    model: nn.Module,
    image: Tensor,
    output_dir: str,
    fmt: str = "torchscript",
    method: str = "tracing",
) -> Exported:
    """Export ``model`` (eval mode) as Detectron2's export_model.py does, frozen norms fused.

    Args:
        model: a Detectron2 model (GeneralizedRCNN or RetinaNet).
        image: a sample input, CHW, in the model's input format, already resized.
        output_dir: where ``model.ts`` or ``model.onnx`` is written.
        fmt: 'torchscript' or 'onnx'.
        method: 'tracing' or 'scripting' (TorchScript only).

    Returns:
        The written file and a function that runs it on an image.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not supported; expected one of {EXPORT_FORMATS}")
    if method not in EXPORT_METHODS:
        raise ConfigError(
            f"--export-method {method!r} is not supported; expected one of {EXPORT_METHODS}"
        )
    if fmt == "onnx" and method != "tracing":
        raise ConfigError(f"--format onnx needs --export-method tracing, not {method!r}")
    out = make_output_dir(output_dir, "--output")
    # The exported copy has its frozen norms folded into the convs (the model given is
    # left as it is, and the outputs are compared with it).
    model = fuse_frozen_batchnorm(model.eval())

    if method == "scripting":
        if not isinstance(model, GeneralizedRCNN):
            raise ConfigError(
                f"scripting exports R-CNN models (GeneralizedRCNN), not {type(model).__name__}; "
                "expected --export-method tracing"
            )
        scripted = scripting_with_instances(_ScriptableAdapter(model), SCRIPTING_FIELDS)
        path = out / "model.ts"
        write_atomically(path, lambda f: torch.jit.save(scripted, f))
        dump_torchscript_IR(scripted, str(out))
        loaded = torch.jit.load(str(path))

        def run_scripted(x: Tensor) -> Instances:
            with torch.no_grad():
                fields = loaded(({"image": x},))[0]
            return Instances(tuple(x.shape[-2:]), **_as_boxes(fields))

        return Exported(path, run_scripted)

    adapter = _tracing_adapter(model, image)
    if fmt == "torchscript":
        # Detectron2's models fail torch.jit.trace's re-trace sanity check (module types get
        # new names); the outputs are compared below instead, which is the stronger check.
        traced = torch.jit.trace(adapter, (image,), check_trace=False)
        path = out / "model.ts"
        write_atomically(path, lambda f: torch.jit.save(traced, f))
        dump_torchscript_IR(traced, str(out))
        loaded = torch.jit.load(str(path))

        def run_traced(x: Tensor) -> Instances:
            with torch.no_grad():
                return adapter.outputs_schema(loaded(x))[0]["instances"]

        return Exported(path, run_traced)

    path = out / "model.onnx"
    # The image's height and width stay inputs of the graph rather than the traced image's
    # constants (Detectron2's code computes its shapes traceably), so one file takes every
    # size; compare_detections checks each sample's size against the eager model.
    write_atomically(
        path,
        lambda f: torch.onnx.export(
            adapter,
            (image,),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            dynamic_axes={"image": {1: "height", 2: "width"}},
        ),
    )
    return Exported(path, _onnx_runner(path, adapter))


def _as_boxes(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: Boxes(v) if k in ("pred_boxes", "proposal_boxes") else v for k, v in fields.items()}


def _onnx_runner(path: Path, adapter: TracingAdapter) -> Callable[[Tensor], Instances]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Instances:
        outputs = session.run(None, {name: x.numpy()})
        return adapter.outputs_schema([torch.from_numpy(o) for o in outputs])[0]["instances"]

    return run


@dataclass
class DetectionDifference:
    """How far an exported model's detections are from the eager model's on one image."""

    count: tuple[int, int]  # (eager, exported)
    max_box_difference: float  # pixels
    max_score_difference: float
    classes_equal: bool

    @property
    def same(self) -> bool:
        return (
            self.count[0] == self.count[1]
            and self.classes_equal
            and self.max_box_difference <= 1e-2
            and self.max_score_difference <= 1e-4
        )

    def __str__(self) -> str:
        return (
            f"{self.count[0]} eager / {self.count[1]} exported detections, boxes within "
            f"{self.max_box_difference:.2g} px, scores within {self.max_score_difference:.2g}, "
            f"classes {'equal' if self.classes_equal else 'DIFFERENT'}"
        )


def compare_detections(
    model: nn.Module, exported: Exported, images: Sequence[Tensor]
) -> list[DetectionDifference]:
    """Run the eager and the exported model on each image and compare their detections.

    Detections are paired by class and nearest box, not by rank: two detections of nearly
    equal score may come out in either order from another runtime's kernels.
    """
    differences = []
    for image in images:
        eager, other = _eager_inference(model, image), exported.run(image)
        differences.append(_difference(eager, other))
    return differences


def _difference(eager: Instances, other: Instances) -> DetectionDifference:
    n, m = len(eager), len(other)
    if n != m:
        return DetectionDifference((n, m), float("inf"), float("inf"), False)
    boxes_e, boxes_x = eager.pred_boxes.tensor.float(), other.pred_boxes.tensor.float()
    classes_e, classes_x = eager.pred_classes, other.pred_classes.to(eager.pred_classes.dtype)
    box_diff = score_diff = 0.0
    unpaired = torch.ones(m, dtype=torch.bool)
    for i in range(n):
        distance = (boxes_x - boxes_e[i]).abs().amax(dim=1)
        distance[~unpaired | (classes_x != classes_e[i])] = float("inf")
        j = int(distance.argmin()) if m else 0
        if not m or not torch.isfinite(distance[j]):
            return DetectionDifference((n, m), float("inf"), float("inf"), False)
        unpaired[j] = False
        box_diff = max(box_diff, distance[j].item())
        score_diff = max(score_diff, abs(eager.scores[i].item() - other.scores[j].item()))
    return DetectionDifference((n, m), box_diff, score_diff, True)


def sample_images(cfg, paths: Optional[Sequence[str]], count: int = 4) -> list[Tensor]:
    """Images resized as Detectron2's predictor does: the given files, else the first
    ``count`` of ``DATASETS.TEST[0]``.

    Raises:
        UserError: in one line: no images to take, a dataset that cannot be loaded, a file
            that is missing or no readable 8-bit image (a decompression bomb included).
    """
    import detectron2.data.transforms as T

    if not paths:
        if not cfg.DATASETS.TEST:
            raise ConfigError(
                "no --sample-image given and DATASETS.TEST is empty; expected sample images"
            )
        paths = [r["file_name"] for r in load_registered(cfg.DATASETS.TEST[0])[:count]]
    resize = T.ResizeShortestEdge(
        [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
    )
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise MissingFileError(f"sample image {path} does not exist; expected an image file")
        original = read_image_checked(path, format=cfg.INPUT.FORMAT)
        resized = resize.get_transform(original).apply_image(original)
        images.append(torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)))
    return images
