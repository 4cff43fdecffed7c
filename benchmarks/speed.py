#!/usr/bin/env python
"""Speed of the ResNeXt family, measured side by side as ratios. Run on demand:

    .venv/bin/python benchmarks/speed.py                 # all, writes docs/results/benchmarks.md
    .venv/bin/python benchmarks/speed.py --only detector --repeats 3 --output /tmp/b.md

Every comparison runs its cases interleaved (A, B, A, B, ...) after a warm-up and reports
the median of the repeats, so that drift of the machine (clock, other load) hits all cases
alike; the result is the ratio of medians. On a GPU (when one is present) it also measures
training throughput and peak memory, in float32 and bfloat16 autocast.
"""

# First: importing resnext_det imports Detectron2 with its own import-time warnings quieted.
import resnext_det  # noqa: F401  isort: skip

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from detectron2.config import get_cfg
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resnext_det import register_resnext_backbone  # noqa: E402
from resnext_det.modeling import (  # noqa: E402
    ResNeXtSpec,
    SparseROIAlign,
    build_resnext,
    build_resnext_classifier,
    convert_block_form,
    fuse_frozen_batchnorm,
)
from resnext_det.reproduction.analysis.machine import cpu_isa, machine_description  # noqa: E402
from resnext_det.reproduction.engine import build_config  # noqa: E402

X50, R50 = (32, 4), (1, 64)
MODELS = (("R50", R50), ("X50", X50))
FEATURES = ["res2", "res3", "res4", "res5"]


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per case; the cases alternate, after one warm-up call each."""
    for run in cases.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class Report:
    """Collects result tables (as data, for the side-by-side rendering of several ISAs)."""

    def __init__(self):
        # {"title", "note", "rows": [(setting, {case: seconds}, baseline case)]}
        self.tables: list[dict] = []

    def table(self, title: str, note: str, rows: list[tuple[str, dict[str, float], str]]) -> None:
        """rows: (setting, {case: seconds}, baseline case name)."""
        self.tables.append({"title": title, "note": note, "rows": rows})
        print(render_tables([("this run", self.tables[-1:])])[0], "\n", flush=True)


def _ratios(times: dict[str, float], baseline: str) -> dict[str, float]:
    return {n: t / times[baseline] for n, t in times.items() if n != baseline}


def render_tables(runs: list[tuple[str, list[dict]]]) -> list[str]:
    """One markdown section per table, the runs (one per instruction set) side by side."""
    sections = []
    for index, table in enumerate(runs[0][1]):
        lines = [f"### {table['title']}", "", table["note"], ""]
        header = "| setting |" + "".join(f" {isa}: ms | {isa}: ratio |" for isa, _ in runs)
        lines += [header, "|---|" + "---|---|" * len(runs)]
        for row_index, (setting, _, _) in enumerate(table["rows"]):
            cells = ""
            for _, tables in runs:
                _, times, baseline = tables[index]["rows"][row_index]
                ms = " / ".join(f"{n} {1000 * t:.1f}" for n, t in times.items())
                ratio = ", ".join(
                    f"{n}/{baseline} {r:.2f}" for n, r in _ratios(times, baseline).items()
                )
                cells += f" {ms} | {ratio} |"
            lines.append(f"| {setting} |{cells}")
        sections.append("\n".join(lines))
    return sections


def _frozen_bn_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial frozen statistics, as pretrained weights have (no effect on speed)."""
    generator = torch.Generator().manual_seed(0)
    for name, buffer in model.named_buffers():
        if name.endswith(("running_var", "weight")):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    return model


def detectron2_backbone(cardinality: int, width: int, out_features, freeze_at: int = 2):
    """Detectron2's built-in ResNet/ResNeXt of the same shape (FrozenBN, as in detection)."""
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.NUM_GROUPS = cardinality
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = width
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = list(out_features)
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    return build_resnet_backbone(cfg, ShapeSpec(channels=3))


def ours(template, out_features=FEATURES, freeze_at=2, **options):
    spec = ResNeXtSpec(50, *template, norm="FrozenBN")
    return build_resnext(spec, out_features=out_features, freeze_at=freeze_at, **options)


def inference(model, x):
    model.eval()

    def run():
        with torch.no_grad():
            model(x)

    return run


def training_step(model, x, loss_of=lambda out: sum(v.float().mean() for v in out.values())):
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-5, momentum=0.9)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss_of(model(x)).backward()
        optimizer.step()

    return run


INFERENCE_SIZES = [(1, 224, 224), (8, 224, 224), (1, 800, 1344)]


def _repeats_at(height: int, repeats: int) -> int:
    """Half the repeats (at least 3) for detection-sized inputs, which take seconds each."""
    return max(3, repeats // 2) if height > 300 else repeats


def bench_backbone_vs_detectron2(report: Report, repeats: int) -> None:
    rows = []
    for batch, height, width in INFERENCE_SIZES:
        theirs = _frozen_bn_statistics(detectron2_backbone(*X50, FEATURES)).eval()
        mine = ours(X50)
        mine.load_state_dict(theirs.state_dict())
        mine = fuse_frozen_batchnorm(mine)  # as the predictor and export run it
        x = torch.randn(batch, 3, height, width)
        reps = _repeats_at(height, repeats)
        times = interleaved({"detectron2": inference(theirs, x), "ours": inference(mine, x)}, reps)
        rows.append((f"inference, batch {batch} at {height}x{width}", times, "detectron2"))
    for batch, size in [(2, 512), (8, 224)]:
        theirs = detectron2_backbone(*X50, FEATURES)
        mine = ours(X50)
        mine.load_state_dict(theirs.state_dict())
        x = torch.randn(batch, 3, size, size)
        times = interleaved(
            {"detectron2": training_step(theirs, x), "ours": training_step(mine, x)}, repeats
        )
        rows.append((f"training step, batch {batch} at {size}x{size}", times, "detectron2"))
    report.table(
        "Our ResNeXt-50 32x4d backbone against Detectron2's built-in one",
        "Same shape, same weights; FrozenBN and FREEZE_AT 2 as in detection; res2-res5 "
        "outputs. Ours with its default layout rule (MEMORY_FORMAT auto); in inference, "
        "frozen norms fused (fuse_frozen_batchnorm), as the predictor and export run it.",
        rows,
    )


def bench_x50_vs_r50(report: Report, repeats: int) -> None:
    rows = []
    for batch, height, width in INFERENCE_SIZES:
        x = torch.randn(batch, 3, height, width)
        reps = _repeats_at(height, repeats)
        cases = {}
        for name, template in (("R50", R50), ("X50", X50)):
            model = fuse_frozen_batchnorm(_frozen_bn_statistics(ours(template)))
            cases[name] = inference(model, x)
        rows.append(
            (
                f"backbone inference, batch {batch} at {height}x{width}",
                interleaved(cases, reps),
                "R50",
            )
        )
    for batch, height, width in INFERENCE_SIZES:
        x = torch.randn(batch, 3, height, width)
        cases = {name: training_step(ours(template), x) for name, template in MODELS}
        rows.append(
            (
                f"backbone training step (FrozenBN, FREEZE_AT 2), batch {batch} at "
                f"{height}x{width}",
                interleaved(cases, _repeats_at(height, repeats)),
                "R50",
            )
        )
    x = torch.randn(8, 3, 224, 224)
    cases = {}
    for name, template in MODELS:
        classifier = build_resnext_classifier(ResNeXtSpec(50, *template, norm="BN"))
        cases[name] = training_step(classifier, x, lambda out: out["linear"].logsumexp(1).mean())
    rows.append(
        ("classifier training step (BN), batch 8 at 224x224", interleaved(cases, repeats), "R50")
    )
    report.table(
        "Our ResNeXt-50 32x4d against our ResNet-50",
        "FLOP ratio 4.23 / 4.09 = 1.035 (multiply-adds, 224 px). Both with the same defaults "
        "(inference fused).",
        rows,
    )


def bench_block_forms(report: Report, repeats: int) -> None:
    rows = []
    x = torch.randn(1, 3, 224, 224)
    reference = _frozen_bn_statistics(ours(X50, freeze_at=0))
    cases = {"c": inference(reference, x)}
    for form in ("a", "b"):
        spec = ResNeXtSpec(50, *X50, block_form=form, norm="FrozenBN")
        model = build_resnext(spec, out_features=FEATURES)
        model.load_state_dict(convert_block_form(reference.state_dict(), source="c", target=form))
        cases[form] = inference(model, x)
    rows.append(("inference, batch 1 at 224x224", interleaved(cases, max(3, repeats // 2)), "c"))
    report.table(
        "Block forms (Fig. 3) of ResNeXt-50 32x4d",
        "(a) split-transform-sum, (b) early concatenation, (c) grouped convolution; the same "
        "function (weights mapped between forms).",
        rows,
    )


def bench_memory_format_and_fusing(report: Report, repeats: int) -> None:
    rows = []
    for batch, height, width in INFERENCE_SIZES:
        x = torch.randn(batch, 3, height, width)
        reps = _repeats_at(height, repeats)
        base = _frozen_bn_statistics(ours(X50, memory_format="contiguous"))
        cases = {"contiguous": inference(base, x)}
        for name, (memory_format, fused) in {
            "channels_last": ("channels_last", False),
            "fused": ("contiguous", True),
            "fused+auto": ("auto", True),
        }.items():
            model = ours(X50, memory_format=memory_format)
            model.load_state_dict(base.state_dict())
            cases[name] = inference(fuse_frozen_batchnorm(model) if fused else model, x)
        rows.append(
            (
                f"inference, batch {batch} at {height}x{width}",
                interleaved(cases, reps),
                "contiguous",
            )
        )
    x = torch.randn(8, 3, 224, 224)
    cases = {}
    for memory_format in ("contiguous", "auto"):
        classifier = build_resnext_classifier(
            ResNeXtSpec(50, *X50, norm="BN"), memory_format=memory_format
        )
        cases[memory_format] = training_step(
            classifier, x, lambda out: out["linear"].logsumexp(1).mean()
        )
    rows.append(
        (
            "classifier training step (BN), batch 8 at 224x224",
            interleaved(cases, repeats),
            "contiguous",
        )
    )
    report.table(
        "Memory format and frozen-BN fusing, our ResNeXt-50 32x4d",
        "Backbone with FrozenBN; 'auto' gives each stage its input in channels_last when the "
        "map is 14 x 14 pixels or more, contiguous otherwise; 'fused' is the inference copy "
        "of fuse_frozen_batchnorm.",
        rows,
    )


def _detector(config: str, template, d2_builtin: bool):
    opts = ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "128"]
    cfg = build_config(str(REPO / "configs" / config), opts)
    cfg.MODEL.RESNETS.NUM_GROUPS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP = template
    if d2_builtin:
        fpn = "FPN" in config
        cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone" if fpn else "build_resnet_backbone"
        cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads" if fpn else "Res5ROIHeads"
        resnets = cfg.MODEL.RESNETS
        resnets.DEPTH, resnets.NUM_GROUPS, resnets.WIDTH_PER_GROUP = 50, *template
        resnets.STRIDE_IN_1X1 = False
        resnets.OUT_FEATURES = FEATURES if fpn else ["res4"]
        return build_model(cfg).eval()
    return build_model(cfg).eval()  # the sparse RoIAlign, as the config asks


def bench_detectors(report: Report, repeats: int) -> None:
    rows = []
    image = torch.rand(3, 800, 1333) * 255
    inputs = [{"image": image, "height": 800, "width": 1333}]
    for config, design in (
        ("faster_rcnn_X50_32x4d.yaml", "C4"),
        ("faster_rcnn_X50_32x4d_FPN.yaml", "FPN"),
    ):
        mine = _frozen_bn_statistics(_detector(config, X50, d2_builtin=False))
        theirs = _detector(config, X50, d2_builtin=True)
        theirs.load_state_dict(mine.state_dict())  # same weights: same proposals, same work
        fused = fuse_frozen_batchnorm(mine)  # as the predictor runs it
        times = interleaved(
            {"detectron2": inference(theirs, inputs), "ours": inference(fused, inputs)},
            max(3, repeats // 3),
        )
        rows.append(
            (f"{design} Faster R-CNN X50-32x4d, inference, one 800x1333 image", times, "detectron2")
        )
        batch = _training_batch()
        times = interleaved(
            {"detectron2": _detector_step(theirs, batch), "ours": _detector_step(mine, batch)},
            max(3, repeats // 3),
        )
        rows.append(
            (f"{design} Faster R-CNN X50-32x4d, training step, one 384x512 image", times,
             "detectron2")
        )  # fmt: skip
    report.table(
        "Whole detectors: ours against Detectron2's built-in ResNeXt-50 32x4d",
        "Same weights (so the same ~1000 proposals reach the RoI head in inference); training "
        "steps with FrozenBN and FREEZE_AT 2, as the configs train, and 128 sampled RoIs. Ours "
        "as build_model builds it from the shipped config: its backbone and, on the CPU, "
        "RoIAlign as sparse products (the RoIAlign table); in inference, fused as the "
        "predictor runs it.",
        rows,
    )


def _training_batch() -> list[dict]:
    from detectron2.structures import Boxes, Instances

    generator = torch.Generator().manual_seed(0)
    batch = []
    instances = Instances((384, 512))
    corners = torch.rand(10, 2, generator=generator) * torch.tensor([430.0, 300.0])
    instances.gt_boxes = Boxes(torch.cat([corners, corners + 80], dim=1))
    instances.gt_classes = torch.randint(0, 80, (10,), generator=generator)
    image = torch.rand(3, 384, 512, generator=generator) * 255
    batch.append({"image": image, "instances": instances, "height": 384, "width": 512})
    return batch


def _detector_step(model, batch):
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-5, momentum=0.9)

    def run():
        from detectron2.utils.events import EventStorage

        torch.manual_seed(0)  # the same sampled anchors and RoIs for both models
        with EventStorage(0):
            loss = sum(model(batch).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def bench_roi_align(report: Report, repeats: int) -> None:
    rows = []
    generator = torch.Generator().manual_seed(0)
    # (setting, batch, channels, map side, RoIs, image pixels per map pixel, sampling ratio,
    # output side): the demo's P2 level in training, and an FPN level and the C4 head of the
    # paper's detectors at 800x1333, with Detectron2's default adaptive sampling.
    for setting, n, c, side, count, stride, ratio, out in (
        ("demo, P2: 4 x 128 x 64 x 64 map, 300 RoIs, sampling 2", 4, 128, 64, 300, 4, 2, 7),
        ("FPN P3: 1 x 256 x 100 x 168 map, 256 RoIs, adaptive", 1, 256, 100, 256, 8, 0, 7),
        ("C4 res4: 1 x 1024 x 50 x 84 map, 128 RoIs, adaptive", 1, 1024, 50, 128, 16, 0, 14),
    ):
        x = torch.randn(n, c, side, side * 168 // 100 if n == 1 else side, generator=generator)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        image_h, image_w = x.shape[2] * stride, x.shape[3] * stride
        corner = torch.rand(count, 2, generator=generator) * torch.tensor([image_w, image_h])
        size = (torch.rand(count, 2, generator=generator) * 0.3 + 0.02) * image_h
        boxes = torch.cat([corner, corner + size], dim=1)
        index = torch.randint(0, n, (count, 1), generator=generator).float()
        rois = torch.cat([index, boxes], dim=1)
        cases = {}
        for name, cls in (("torchvision", ROIAlign), ("sparse", SparseROIAlign)):
            module = cls((out, out), 1 / stride, ratio, aligned=True)

            def run(module=module, x=x, rois=rois):
                module(x, rois).sum().backward()

            cases[name] = run
        rows.append((f"forward + backward, {setting}", interleaved(cases, repeats), "torchvision"))
    report.table(
        "RoIAlign on the CPU: sparse products against torchvision's kernel",
        "MODEL.RESNEXT.SPARSE_ROI_ALIGN (True in the shipped detection configs); "
        "channels_last maps, as MEMORY_FORMAT auto gives the FPN; same values "
        "(tests/test_sparse_roi_align.py).",
        rows,
    )


def bench_coco_eval(report: Report, repeats: int) -> None:
    import contextlib
    import io

    import numpy as np
    from faster_coco_eval import COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    images, annotations, detections = [], [], []
    for image_id in range(1, 501):
        images.append({"id": image_id, "width": 640, "height": 480})
        boxes = rng.uniform(0, 400, (15, 2))
        for i, (x, y) in enumerate(boxes):
            w, h = rng.uniform(10, 200, 2)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + i % 5,
                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
            for _ in range(6):
                jitter = rng.normal(0, 8, 4)
                detections.append(
                    {"image_id": image_id, "category_id": 1 + i % 5,
                     "bbox": [x + jitter[0], y + jitter[1], abs(w + jitter[2]), abs(h + jitter[3])],
                     "score": float(rng.uniform())}
                )  # fmt: skip
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i} for i in range(1, 6)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(detections)

    def evaluate(cocoeval):
        def run():
            with contextlib.redirect_stdout(io.StringIO()):
                e = cocoeval(gt, dt, "bbox")
                e.evaluate()
                e.accumulate()
                e.summarize()

        return run

    times = interleaved(
        {"pycocotools": evaluate(COCOeval), "faster-coco-eval": evaluate(COCOeval_faster)},
        max(3, repeats // 2),
    )
    report.table(
        "COCO bbox evaluation",
        "500 images, 7500 ground-truth boxes, 45000 detections; evaluate + accumulate + "
        "summarize. Same AP (tests/test_inference_tools.py).",
        [("bbox AP", times, "pycocotools")],
    )


def bench_gpu(report: Report, repeats: int) -> None:
    device = torch.device("cuda")
    rows, memory = [], {}
    for dtype in (None, torch.bfloat16):
        cases = {}
        for name, template in (("R50", R50), ("X50", X50)):
            model = build_resnext_classifier(ResNeXtSpec(50, *template, norm="BN")).to(device)
            model.to(memory_format=torch.channels_last)
            x = torch.randn(64, 3, 224, 224, device=device).contiguous(
                memory_format=torch.channels_last
            )
            step = training_step(model, x, lambda out: out["linear"].logsumexp(1).mean())

            def run(step=step, dtype=dtype):
                with torch.autocast(
                    "cuda", dtype=dtype or torch.float32, enabled=dtype is not None
                ):
                    step()
                torch.cuda.synchronize()

            torch.cuda.reset_peak_memory_stats()
            run()
            memory[(name, dtype)] = torch.cuda.max_memory_allocated() / 2**30
            cases[name] = run
        times = interleaved(cases, repeats)
        label = "bfloat16 autocast" if dtype else "float32"
        rows.append((f"training step, batch 64 at 224, {label}", times, "R50"))
        for name in times:
            peak = memory[(name, dtype)]
            print(f"{name} {label}: {64 / times[name]:.0f} images/s, peak {peak:.2f} GiB")
    report.table(
        "GPU: our ResNeXt-50 32x4d against our ResNet-50, classifier training",
        "Peak memory and images/s: see the run log. The paper: 1.36x for ResNeXt-101 vs "
        "ResNet-101 on 8 M40s.",
        rows,
    )


# The project's speed targets: (what, the ratios it bounds (by substring of "title: setting"),
# the bound).
TARGETS = [
    ("our backbone vs Detectron2's built-in one", "Detectron2's built-in one: ", 1.00),
    ("ResNeXt-50 / ResNet-50, inference", "our ResNet-50: backbone inference", 1.08),
    ("ResNeXt-50 / ResNet-50, training step", "our ResNet-50: backbone training", 1.15),
    ("whole detectors vs Detectron2's built-in ones", "Whole detectors", 1.00),
    ("GPU: ResNeXt-50 / ResNet-50 training step", "GPU:", 1.15),
]


def targets_section(runs: list[tuple[str, list[dict]]]) -> str:
    """The targets table: each bounded ratio on each instruction set."""
    lines = [
        "### Targets",
        "",
        "| target | setting | bound | " + " | ".join(isa for isa, _ in runs) + " | met |",
        "|---|---|---|" + "---|" * (len(runs) + 1),
    ]
    for what, pattern, bound in TARGETS:
        found = False
        for index, table in enumerate(runs[0][1]):
            for row_index, (setting, _, _) in enumerate(table["rows"]):
                if pattern not in f"{table['title']}: {setting}":
                    continue
                found = True
                measured = []
                for _, tables in runs:
                    _, times, baseline = tables[index]["rows"][row_index]
                    measured.append(max(_ratios(times, baseline).values()))
                met = "yes" if all(r <= bound for r in measured) else "no"
                cells = " | ".join(f"{r:.2f}" for r in measured)
                lines.append(f"| {what} | {setting} | <= {bound:.2f} | {cells} | {met} |")
        if not found:
            missing = " - |" * len(runs)
            lines.append(f"| {what} | - | <= {bound:.2f} |{missing} not measured |")
    return "\n".join(lines)


BENCHMARKS = {
    "backbone": bench_backbone_vs_detectron2,
    "x50_r50": bench_x50_vs_r50,
    "forms": bench_block_forms,
    "memory": bench_memory_format_and_fusing,
    "detector": bench_detectors,
    "roi_align": bench_roi_align,
    "coco_eval": bench_coco_eval,
}


AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def run_one(args: argparse.Namespace) -> list[dict]:
    register_resnext_backbone()
    torch.manual_seed(0)
    report = Report()
    selected = args.only or list(BENCHMARKS) + (["gpu"] if torch.cuda.is_available() else [])
    for name in selected:
        (bench_gpu if name == "gpu" else BENCHMARKS[name])(report, args.repeats)
    return report.tables


def run_isa(isa: str, argv: list[str]) -> tuple[str, list[dict]]:
    """This script in a subprocess on one instruction set; its tables and the ISA's name."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tables.json"
        env = {**os.environ, **(AVX2_ENV if isa == "avx2" else {})}
        command = [sys.executable, __file__, *argv, "--isa", isa, "--json", str(out)]
        subprocess.run(command, env=env, check=True)
        data = json.loads(out.read_text())
    return data["isa"], data["tables"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=[*BENCHMARKS, "gpu"], default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default=str(REPO / "docs" / "results" / "benchmarks.md"))
    parser.add_argument(
        "--isa",
        choices=["both", "native", "avx2"],
        default="both",
        help="native, AVX2 emulated (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), or both",
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a subprocess's tables
    args = parser.parse_args()

    if args.json:  # one instruction set, in this process
        tables = run_one(args)
        Path(args.json).write_text(json.dumps({"isa": cpu_isa(), "tables": tables}))
        return
    argv = [*(["--only", *args.only] if args.only else []), "--repeats", str(args.repeats)]
    wanted = ["native", "avx2"] if args.isa == "both" else [args.isa]
    if "native" in wanted and "avx2" in wanted and not cpu_isa().startswith("AVX-512"):
        wanted = ["native"]  # an AVX2 machine: emulating AVX2 on it would measure it twice
    runs = [run_isa(isa, argv) for isa in wanted]
    header = (
        f"# Measured speed ({datetime.date.today().isoformat()})\n\n"
        f"Machine: {machine_description()}.\n\n"
        f"Generated by `benchmarks/speed.py --repeats {args.repeats}`: each comparison runs "
        "natively and with AVX2 emulated (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`), "
        "in separate processes; medians of interleaved repeats, ratios of medians; lower is "
        "faster. Where the time goes, and why some targets are out of reach: "
        "`docs/design/speed.md`.\n"
    )
    sections = [targets_section(runs), *render_tables(runs)]
    Path(args.output).write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
