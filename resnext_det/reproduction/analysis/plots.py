"""Figures: training curves from metrics files, and error against complexity (Figs. 5, 7).

They read what a finished run left in its folder (``metrics.json``, ``config.yaml``) and
nothing of the engines, which sit above this package.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import yaml
from fvcore.common.config import CfgNode

# Figure objects without pyplot: files only, and no change to the caller's backend.
from matplotlib.figure import Figure

from ...modeling import ResNeXtSpec
from ...utils.atomic_io import make_output_dir
from ...utils.errors import DataError
from .complexity import cifar_complexity, classifier_complexity
from .paper import PAPER_CIFAR, PAPER_IMAGENET

__all__ = ["complexity_figure", "metrics_figures", "read_metrics"]

DETECTION_AP = ("bbox/AP", "bbox/AP50", "bbox/AP75")
PRETRAIN_ERRORS = ("top1_err", "top5_err", "top1_err_subset", "top5_err_subset")


def read_metrics(path: os.PathLike) -> list[dict[str, Any]]:
    """JSON lines: Detectron2's ``metrics.json`` (detection and pretraining runs).

    Raises:
        ValueError: a line is not a JSON object (the message names the line).
    """
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{number} is not JSON ({e}); expected one object per line"
            ) from e
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number} holds a {type(record).__name__}; expected an object")
        records.append(record)
    return records


def _series(records: Sequence[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(r[x], r[y]) for r in records if x in r and isinstance(r.get(y), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def _plot(path: Path, title: str, xlabel: str, ylabel: str, curves: dict, log: bool = False):
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for label, (xs, ys) in curves.items():
        axes.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def metrics_figures(metrics_path: os.PathLike, output_dir: os.PathLike) -> list[Path]:
    """PNG curves of a training run: losses, lr, and AP (detection) or error (pretraining).

    Returns:
        The written files.

    Raises:
        ValueError: the file holds neither kind of metrics.
    """
    records = read_metrics(metrics_path)
    output_dir = make_output_dir(output_dir, "the plots folder")
    name = Path(metrics_path).parent.name or "run"
    written = []
    losses = sorted({k for r in records for k in r if "loss" in k})
    if losses:
        curves = {k: _series(records, "iteration", k) for k in losses}
        written.append(
            _plot(
                output_dir / "losses.png", f"{name}: losses", "iteration", "loss", curves, log=True
            )
        )
    if any("lr" in r for r in records):
        curves = {"lr": _series(records, "iteration", "lr")}
        written.append(
            _plot(output_dir / "lr.png", f"{name}: learning rate", "iteration", "lr", curves)
        )
    ap = {k: _series(records, "iteration", k) for k in DETECTION_AP if any(k in r for r in records)}
    if ap:
        written.append(_plot(output_dir / "ap.png", f"{name}: COCO AP", "iteration", "AP (%)", ap))
    errors = {
        k: _series(records, "epoch", k) for k in PRETRAIN_ERRORS if any(k in r for r in records)
    }
    if errors:
        written.append(
            _plot(output_dir / "error.png", f"{name}: val error", "epoch", "error (%)", errors)
        )
    if not written:
        raise DataError(
            f"{metrics_path} holds no losses, lr, AP or errors; expected the metrics.json of "
            "a detection or pretraining run"
        )
    return written


# Metrics of a pretraining run folder; metrics.jsonl is what earlier versions wrote.
RUN_METRICS = ("metrics.json", "metrics.jsonl")


class RunPoint(NamedTuple):
    """A pretraining run on the complexity figure."""

    label: str
    arch: str  # "imagenet": x is GFLOPs at the test crop; "cifar": x is parameters (M)
    x: float
    top1_err: float


def _run_config(run_dir: Path) -> CfgNode:
    """The ``config.yaml`` a pretraining run wrote (every key), read as plain yaml."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path} does not exist; expected the folder of a pretraining run")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path} is not valid yaml: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path} holds no mapping; expected the config of a pretraining run")
    return CfgNode(data)


def _run_point(run_dir: Path) -> Optional[RunPoint]:
    """A pretraining run folder's point (None if it has not evaluated yet).

    Raises:
        DataError: the folder lacks its config or metrics, or the run is one the figure has
            no axes for (a CIFAR network trained on anything but CIFAR-10).
    """
    metrics = next((run_dir / n for n in RUN_METRICS if (run_dir / n).is_file()), None)
    if metrics is None:
        raise DataError(
            f"{run_dir} holds no metrics.json; expected the folder of a pretraining run"
        )
    evaluations = [r for r in read_metrics(metrics) if "top1_err" in r]
    if not evaluations:
        return None
    cfg = _run_config(run_dir)
    try:
        spec = ResNeXtSpec.from_config(cfg)
        arch, num_classes = cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES
        if arch == "cifar":
            if cfg.DATA.FORMAT != "cifar10":
                raise DataError(
                    f"{run_dir} is a CIFAR network trained on DATA.FORMAT={cfg.DATA.FORMAT!r}; "
                    "expected a CIFAR-10 run (the figure's CIFAR axes hold CIFAR-10 errors, "
                    "Table 7)"
                )
            x = cifar_complexity(spec, num_classes).params_m
        else:
            x = classifier_complexity(spec, cfg.INPUT.TEST_CROP, num_classes).gflops
    except (AttributeError, KeyError) as e:
        raise DataError(
            f"{run_dir / 'config.yaml'} lacks a key ({e}); expected the full config a "
            "pretraining run writes"
        ) from e
    return RunPoint(f"{run_dir.name} (ours)", arch, x, evaluations[-1]["top1_err"])


def complexity_figure(
    output: os.PathLike, runs: Sequence[os.PathLike] = (), with_paper: bool = True
) -> Path:
    """Top-1 error against FLOPs: the paper's ImageNet models (Tables 3, 4) at our computed
    complexity, CIFAR error against model size (Table 7, as Fig. 7), and any of our own
    pretraining runs (their folders: config.yaml and metrics.json), each on the axes of its
    kind: ImageNet-layout networks against FLOPs, CIFAR-10 ones against parameters.

    Raises:
        DataError: a run folder lacks its files, or is a CIFAR run on other data than
            CIFAR-10 (the message names it).
    """
    figure = Figure(figsize=(12, 4.8))
    imagenet, cifar = figure.subplots(1, 2)
    if with_paper:
        for model in PAPER_IMAGENET:
            spec = ResNeXtSpec(model.depth, model.cardinality, model.width, norm="BN")
            gflops = classifier_complexity(spec).gflops
            marker = "s" if model.cardinality == 1 else "o"
            imagenet.scatter(gflops, model.top1_err, marker=marker, color="tab:blue")
            imagenet.annotate(
                f"{model.name} {model.template}", (gflops, model.top1_err), fontsize=7,
                xytext=(4, 2), textcoords="offset points",
            )  # fmt: skip
        for model in PAPER_CIFAR:
            spec = ResNeXtSpec(cardinality=model.cardinality, bottleneck_width=model.width)
            params = cifar_complexity(spec).params_m
            cifar.scatter(params, model.top1_err, color="tab:blue")
            cifar.annotate(f"{model.template}", (params, model.top1_err), fontsize=8)
    points = [p for p in map(_run_point, map(Path, runs)) if p is not None]  # all checked first
    for point in points:
        axes = cifar if point.arch == "cifar" else imagenet
        axes.scatter(point.x, point.top1_err, marker="*", s=90, color="tab:red")
        axes.annotate(point.label, (point.x, point.top1_err), fontsize=7, color="tab:red")
    imagenet.set(
        title="ImageNet-1K: top-1 error vs complexity (paper's errors)",
        xlabel="GFLOPs (multiply-adds, 224 px)",
        ylabel="top-1 error (%)",
    )
    cifar.set(
        title="CIFAR-10: test error vs model size (Table 7)",
        xlabel="parameters (M)",
        ylabel="test error (%)",
    )
    for axes in (imagenet, cifar):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    output = Path(output)
    make_output_dir(output.parent, "the plots folder")
    figure.savefig(output, dpi=110)
    return output
