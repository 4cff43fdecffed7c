"""A run killed at any moment resumes: checkpoints are never left half-written."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.modeling import ResNeXtSpec, build_resnext

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = build_resnext(ResNeXtSpec(depth=14, norm="BN"), out_features=["res3"])
    checkpointer = SafeDetectionCheckpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)

    def killed_mid_write(data, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002", iteration=2)
    monkeypatch.undo()

    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_0000002.pth").exists()
    resumed = SafeDetectionCheckpointer(model, save_dir=str(tmp_path)).resume_or_load("")
    assert resumed["iteration"] == 1


def _train_net(*flags: str, out):
    return [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--config-file",
        str(DEMO_CONFIG),
        *flags,
        *TINY_DEMO_OPTS,
        "SOLVER.MAX_ITER",
        "8",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
    ]


def test_kill_9_then_resume_reaches_the_final_iteration(demo_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root)}
    run = subprocess.Popen(
        _train_net(out=out), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        tag = out / "last_checkpoint"
        while not (tag.exists() and tag.read_text() in {"model_0000003.pth", "model_0000005.pth"}):
            assert run.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert not (out / "model_final.pth").exists()  # killed part-way

    resumed = subprocess.run(
        _train_net("--resume", out=out), cwd=REPO, env=env, capture_output=True, text=True
    )
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    start = int(re.search(r"Starting training from iteration (\d+)", log).group(1))
    assert 4 <= start < 8
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 7
