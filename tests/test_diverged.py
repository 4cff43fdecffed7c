"""A NaN or infinite loss stops training, names the iteration, and leaves the checkpoint intact."""

import re
import subprocess
import sys

import torch

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS
from ._photos import make_image_folder
from .test_pretrain import TINY, X50


def _finite(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True)["model"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _assert_diverged(run, out):
    output = run.stdout + run.stderr
    assert run.returncode == 3, output[-3000:]
    assert "Traceback" not in output
    last = run.stderr.strip().splitlines()[-1]
    match = re.search(
        r"^error: the (?:loss|weights) became .* (?:at|by) iteration (\d+).* so the weights of "
        r"the last checkpoint \((.*?)\) are intact; expected finite values: lower SOLVER\.BASE_LR",
        last,
    )
    assert match, last
    checkpoint = match.group(2)
    assert checkpoint == str(out / (out / "last_checkpoint").read_text())
    assert _finite(checkpoint)  # the last good weights, untouched
    return int(match.group(1))


def test_train_net_stops_on_a_nan_loss(demo_root, tmp_path):
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(DEMO_CONFIG),
            *TINY_DEMO_OPTS, "SOLVER.BASE_LR", "100000.0", "SOLVER.MAX_ITER", "30",
            "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out),
        ],
        cwd=REPO, env={"DETECTRON2_DATASETS": str(demo_root), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    iteration = _assert_diverged(run, out)
    assert 0 < iteration < 30 and not (out / "model_final.pth").exists()


def test_pretraining_stops_on_a_nan_loss(tmp_path):
    folder = make_image_folder(tmp_path / "imagenet")
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "pretrain_imagenet.py"), "--config-file", str(X50),
            *TINY, "DATA.ROOT", str(folder), "OUTPUT_DIR", str(out), "SOLVER.BASE_LR", "1e12",
            "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD_EPOCHS", "0",
        ],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    iteration = _assert_diverged(run, out)  # Detectron2's numbering, as metrics.json's
    assert 0 < iteration < 30 and not (out / "model_final.pth").exists()
    epoch = iteration // 3 + 1  # 3 iterations an epoch
    assert f"at iteration {iteration} (epoch {epoch})" in run.stderr
