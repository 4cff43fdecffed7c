"""tools/analyze_model.py and the complexity counts, pinned to the paper's tables."""

import json
import subprocess
import sys

import pytest

from resnext_det.modeling import ResNeXtSpec
from resnext_det.reproduction.analysis import (
    backbone_complexity,
    cifar_complexity,
    classifier_complexity,
    detector_complexity,
    template_complexity,
)
from resnext_det.reproduction.analysis.tables import Table, render_markdown
from resnext_det.reproduction.engine import build_config

from ._paths import CONFIGS, REPO
from ._tools import run_cli


@pytest.mark.parametrize(
    "cardinality,width,params,gflops",
    [(1, 64, 25_557_032, 4.0892), (32, 4, 25_028_904, 4.2305)],
    ids=["ResNet-50", "ResNeXt-50-32x4d"],
)
def test_table1_classifiers(cardinality, width, params, gflops):
    """Table 1: 25.5M / 4.1 GFLOPs and 25.0M / 4.2 GFLOPs (multiply-adds of conv and fc)."""
    complexity = classifier_complexity(ResNeXtSpec(50, cardinality, width, norm="BN"))
    assert complexity.params == params
    assert complexity.gflops == pytest.approx(gflops, abs=1e-4)
    assert complexity.all_flops > complexity.flops  # norms and pooling come on top


@pytest.mark.parametrize("cardinality,width", [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)])
def test_table2_templates(cardinality, width):
    """Table 2: C * (256d + 9d^2 + 256d) parameters (~70k), those x 56^2 FLOPs (~0.22 G)."""
    complexity = template_complexity(cardinality, width)
    assert complexity.params == cardinality * (256 * width + 9 * width * width + width * 256)
    assert complexity.flops == complexity.params * 56 * 56


def test_table7_cifar_and_a_detection_backbone():
    cifar = cifar_complexity(ResNeXtSpec(cardinality=8, bottleneck_width=64))
    assert round(cifar.params_m, 1) == 34.4
    c4_trunk = backbone_complexity(ResNeXtSpec(), 800, 1344, out_features=["res4"])
    full = backbone_complexity(ResNeXtSpec(), 800, 1344, out_features=["res5"])
    assert c4_trunk.params < full.params and c4_trunk.flops < full.flops
    # The classifier is the full backbone plus its fc layer (2048 x 1000 weights and biases).
    classifier = classifier_complexity(ResNeXtSpec(norm="FrozenBN"))
    assert classifier.params - full.params == 2048 * 1000 + 1000


def test_whole_detector(tmp_path):
    cfg = build_config(
        str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14"],
    )
    detector = detector_complexity(cfg, 256, 256)
    backbone = backbone_complexity(ResNeXtSpec(depth=14), 256, 256, ["res5"])
    assert detector.params > backbone.params and detector.flops > backbone.flops


def test_markdown_rendering():
    table = Table("T", ["a", "b"], [[1, None]])
    assert render_markdown([table]) == "### T\n\n| a | b |\n|---|---|\n| 1 | - |\n"


def _tool(*args):
    run = run_cli("tools/analyze_model.py", *args)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_tool_classifier_backbone_and_json():
    assert "25.03 M parameters, 4.23 GFLOPs" in _tool("--depth", "50", "--template", "32x4d")
    record = json.loads(_tool("--depth", "14", "--backbone", "--input-size", "256x256", "--json"))
    assert record["model"].startswith("backbone ResNeXt-14 (32x4d")
    assert record["params"] == backbone_complexity(ResNeXtSpec(depth=14), 256, 256).params


def test_tool_prints_the_papers_tables_beside_ours():
    tables = json.loads(_tool("--paper", "--json"))
    imagenet = tables["ImageNet-1K classifiers at 224 px (Tables 1, 3, 4)"]
    rows = {(r["model"], r["template"]): r for r in imagenet}
    assert rows[("ResNet-50", "1x64d")]["params (M)"] == 25.56
    assert rows[("ResNeXt-50", "32x4d")]["GFLOPs"] == 4.23
    assert rows[("ResNeXt-101", "64x4d")]["GFLOPs"] == 15.46  # Table 4: ~15 billion
    assert len(imagenet) == 14
    cifar = tables["CIFAR-10 ResNeXt-29 at 32 px (Table 7)"]
    assert [r["params (M)"] for r in cifar] == [34.43, 68.16]
    templates = tables["conv2 templates of ~equal complexity (Table 2), one block on 56 x 56"]
    assert [r["group conv width"] for r in templates] == [64, 80, 96, 112, 128]


def test_tool_refuses_a_bad_template():
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "analyze_model.py"), "--template", "32x4"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "'32x4' is no template; expected C x d as in 32x4d" in run.stderr
