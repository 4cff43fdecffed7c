"""What only a CUDA device can show; run by `make gpu-check` (pytest -m gpu), deselected
elsewhere (pyproject.toml's addopts)."""

import os
import subprocess
import sys

import pytest
import torch

from resnext_det.modeling import FEATURE_NAMES, ResNeXtSpec, build_resnext

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS

pytestmark = pytest.mark.gpu


def test_backbone_on_cuda_equals_the_cpu_with_the_speed_options():
    torch.manual_seed(0)
    cpu = build_resnext(ResNeXtSpec(depth=26), out_features=FEATURE_NAMES, freeze_at=2).eval()
    with torch.no_grad():
        for name, buffer in cpu.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
        x = torch.randn(2, 3, 128, 160)
        reference = cpu(x)
        gpu = cpu.cuda()
        for fmt in ("auto", "channels_last"):
            for module in gpu.modules():
                if hasattr(module, "memory_format"):
                    module.memory_format = fmt
            out = gpu(x.cuda())
            for name in reference:
                scale = reference[name].abs().max()
                # TF32 convolutions on Ampere and later: about 1e-3 relative.
                assert (out[name].cpu() - reference[name]).abs().max() <= 5e-3 * scale


def test_train_net_trains_with_amp_on_cuda(demo_root, tmp_path):
    run = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", str(DEMO_CONFIG),
         *TINY_DEMO_OPTS, "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True",
         "OUTPUT_DIR", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file()
