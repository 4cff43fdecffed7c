"""tools/train_net.py as a user runs it: train, evaluate, resume, evaluate only."""

import json
import os
import re
import subprocess
import sys

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS


def _train_net(demo_root, *args):
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root)}
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "train_net.py"),
            "--config-file",
            str(DEMO_CONFIG),
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def _copypaste_ap(log: str) -> list:
    rows = re.findall(r"copypaste: ([-\d.]+,[-\d.]+,.*)", log)
    assert rows, log[-2000:]
    return rows[-1].split(",")


def test_train_evaluate_resume_and_eval_only(demo_root, tmp_path):
    out = tmp_path / "run"
    common = [*TINY_DEMO_OPTS, "OUTPUT_DIR", str(out)]
    log = _train_net(demo_root, *common)
    assert "Starting training from iteration 0" in log
    trained_ap = _copypaste_ap(log)
    assert (out / "model_final.pth").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("bbox/AP50" in m for m in metrics)

    # --eval-only with the weights of the first run gives its AP again.
    log = _train_net(
        demo_root,
        "--eval-only",
        *common[:-2],
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
    )
    assert _copypaste_ap(log) == trained_ap

    # --resume continues from the last checkpoint, not from scratch.
    log = _train_net(
        demo_root, "--resume", *common[:-2], "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(out)
    )
    assert "Starting training from iteration 2" in log
