"""The four training loops (detection yaml, LazyConfig, Appendix B, pretraining) are one
TrainingLoop: the same divergence error, checkpoints and resume, the same refusals."""

import os
import re
import signal
import subprocess
import sys
import time

import torch
from detectron2.config import LazyConfig

from resnext_det.reproduction.engine import Trainer, build_config
from resnext_det.reproduction.engine.lazy_train import LazyTrainer, apply_overrides
from resnext_det.reproduction.pretrain import Pretrainer
from resnext_det.reproduction.training.hooks import FiniteWeightsCheckpointer
from resnext_det.reproduction.training.loop import TrainingLoop

from ._paths import CONFIGS, DEMO_CONFIG, REPO, TINY_DEMO_OPTS
from ._tools import assert_one_line_error, run_cli
from .test_diverged import _assert_diverged
from .test_drop_in import LAZY_TINY

LAZY = CONFIGS / "faster_rcnn_X50_32x4d_FPN.py"


def test_every_loop_is_the_training_loop_and_checkpoints_finite_weights(demo_root, tmp_path):
    assert all(issubclass(loop, TrainingLoop) for loop in (Trainer, LazyTrainer, Pretrainer))
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS, "OUTPUT_DIR", str(tmp_path / "yaml")])
    lazy = apply_overrides(
        LazyConfig.load(str(LAZY)), [*LAZY_TINY, f"train.output_dir={tmp_path / 'lazy'}"]
    )
    for trainer in (Trainer(cfg), LazyTrainer(lazy)):
        # Each loop's hooks pass TrainingLoop.register_hooks: Detectron2's periodic
        # checkpointer arrives as the one that refuses to save non-finite weights.
        kinds = [type(hook) for hook in trainer._hooks]
        assert FiniteWeightsCheckpointer in kinds, kinds


def _lazy(*extra, out, flags=()):
    return [
        sys.executable, str(REPO / "tools" / "lazyconfig_train_net.py"), "--config-file",
        str(LAZY), *flags, *LAZY_TINY, "train.eval_period=0", f"train.output_dir={out}", *extra,
    ]  # fmt: skip


def test_lazyconfig_training_stops_on_a_nan_loss(demo_root, tmp_path):
    out = tmp_path / "run"
    run = subprocess.run(
        _lazy("optimizer.lr=1e12", "train.max_iter=30", "train.checkpointer.period=1", out=out),
        cwd=REPO, env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
        capture_output=True, text=True,
    )  # fmt: skip
    iteration = _assert_diverged(run, out)
    assert 0 < iteration < 30 and not (out / "model_final.pth").exists()


def test_lazyconfig_kill_9_then_resume_reaches_the_final_iteration(demo_root, tmp_path):
    out = tmp_path / "run"
    command = _lazy("train.max_iter=8", "train.checkpointer.period=2", out=out)
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root)}
    run = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
    assert not (out / "model_final.pth").exists()
    resumed = subprocess.run(
        _lazy("train.max_iter=8", "train.checkpointer.period=2", out=out, flags=["--resume"]),
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    start = int(re.search(r"Starting training from iteration (\d+)", log).group(1))
    assert 4 <= start < 8
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 7


def test_lazyconfig_refuses_an_override_key_the_config_lacks(tmp_path):
    run = run_cli(
        "tools/lazyconfig_train_net.py", "--config-file", LAZY, "train.max_itr=5",
        f"train.output_dir={tmp_path}",
    )  # fmt: skip
    assert_one_line_error(
        run, r"override 'train\.max_itr=5': train has no key 'max_itr'; expected one of .*max_iter"
    )
    assert not (tmp_path / "log.txt").exists()


def test_lazyconfig_refuses_frozen_layers_from_random_weights(demo_root, tmp_path):
    run = run_cli(
        "tools/lazyconfig_train_net.py", "--config-file", LAZY,
        "train.init_checkpoint=''", "train.device=cpu", "model.roi_heads.num_classes=1",
        "dataloader.train.dataset.names=demo_trees_train",
        "dataloader.test.dataset.names=demo_trees_val", f"train.output_dir={tmp_path}",
        env={"DETECTRON2_DATASETS": demo_root},
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"train\.init_checkpoint is empty, so the model starts from random weights, but \d+ of "
        r"its parameters and norms are frozen \(e\.g\. backbone\.bottom_up\.stem\.conv1\.weight\)",
    )


def test_appendix_b_stops_on_a_nan_loss(demo_root, tmp_path):
    out = tmp_path / "recipe"
    run = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "train_appendix_b.py"),
            "--rpn-config-file", str(CONFIGS / "demo" / "appendix_b_rpn.yaml"),
            "--config-file", str(CONFIGS / "demo" / "appendix_b_fast_rcnn.yaml"),
            "--output-dir", str(out), *TINY_DEMO_OPTS, "SOLVER.BASE_LR", "100000.0",
            "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "1",
        ],
        cwd=REPO, env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
        capture_output=True, text=True,
    )  # fmt: skip
    iteration = _assert_diverged(run, out / "rpn")
    assert 0 < iteration < 30
