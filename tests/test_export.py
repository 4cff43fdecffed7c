"""Deployment: the backbone scripts and exports; a detector goes through Detectron2's export path."""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from resnext_det.modeling import (
    FEATURE_NAMES,
    ResNeXtSpec,
    build_resnext,
    fuse_frozen_batchnorm,
)
from resnext_det.reproduction.deploy import compare_detections, export_model, sample_images
from resnext_det.reproduction.engine import build_config

from ._models import randomize_norms
from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS


def _backbone_with_trained_like_norms():
    """The default layout rule ('auto': channels_last from 14 px), frozen norms of a trained
    network."""
    torch.manual_seed(0)
    model = build_resnext(ResNeXtSpec(depth=14), out_features=FEATURE_NAMES, freeze_at=2).eval()
    return randomize_norms(model)


def _assert_same_features(ours, reference):
    assert ours.keys() == reference.keys()
    for name in reference:
        scale = reference[name].abs().max()
        assert (ours[name] - reference[name]).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("fused", [False, True])
def test_backbone_scripts_with_the_layout_rule_and_fused(fused):
    import detectron2.export  # noqa: F401 (Detectron2's scripting patch for ResNet's stages)

    model = _backbone_with_trained_like_norms()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        eager = model(x)
        scripted = torch.jit.script(fuse_frozen_batchnorm(model) if fused else model)
        _assert_same_features(scripted(x), eager)
        # The scripted model reads its parameters: changing one changes its output.
        scripted.stages[0][0].conv1.weight.mul_(4)  # res2.0 (scripting lists stages)
        assert not torch.allclose(scripted(x)["res2"], eager["res2"])


def test_backbone_exports_with_torch_export():
    model = fuse_frozen_batchnorm(_backbone_with_trained_like_norms())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        eager = model(x)
    program = torch.export.export(model, (x,))
    _assert_same_features(program.module()(x), eager)
    # The layout rule is in the graph: channels_last copies for the large maps.
    assert any("contiguous" in str(node.target) for node in program.graph.nodes)


@pytest.fixture(scope="module")
def demo_model(demo_root, tmp_path_factory):
    """The demo detector (tiny sizes), keeping every detection so that there are many to
    compare, with its weights in a Detectron2 checkpoint."""
    opts = [*TINY_DEMO_OPTS, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    cfg = build_config(str(DEMO_CONFIG), opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    folder = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(model, save_dir=str(folder)).save("model")
    return cfg, model, opts, folder / "model.pth"


@pytest.mark.parametrize(
    "fmt,method", [("torchscript", "tracing"), ("torchscript", "scripting"), ("onnx", "tracing")]
)
def test_demo_detector_exports_with_the_same_detections(demo_model, tmp_path, fmt, method):
    cfg, model, _, _ = demo_model
    images = sample_images(cfg, None, count=2)  # demo val tiles
    exported = export_model(model, images[0], str(tmp_path), fmt, method)
    assert exported.path.is_file() and exported.path.stat().st_size > 1e6
    differences = compare_detections(model, exported, images)
    assert all(d.count[0] > 10 for d in differences)
    assert all(d.same for d in differences), [str(d) for d in differences]


def test_export_tool(demo_model, demo_root, tmp_path):
    _, _, opts, weights = demo_model
    result = subprocess.run(
        [sys.executable, "tools/export_model.py", "--config-file", str(DEMO_CONFIG),
         "--format", "torchscript", "--export-method", "scripting", "--output", str(tmp_path),
         *opts, "MODEL.WEIGHTS", str(weights)],
        cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "same detections as the eager model" in result.stdout
    assert (tmp_path / "model.ts").is_file()


def test_export_tool_refuses_random_weights(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/export_model.py", "--config-file", str(DEMO_CONFIG),
         "--output", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: MODEL.WEIGHTS is empty")
