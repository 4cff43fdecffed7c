"""A run killed at any moment resumes: nothing is left half-written, runs end as if never killed."""

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


def _wait_for(path_check, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not path_check():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run never reached the point to kill it"
        time.sleep(0.05)


def test_kill_9_during_the_fast_rcnn_step_then_the_same_command_finishes(demo_root, tmp_path):
    """Appendix B: killed in step 2, the rerun skips step 1 and the proposals, resumes step 2
    from its last checkpoint, and evaluates."""
    out = tmp_path / "recipe"
    command = [
        sys.executable, str(REPO / "tools" / "train_appendix_b.py"),
        "--rpn-config-file", str(REPO / "configs" / "demo" / "appendix_b_rpn.yaml"),
        "--config-file", str(REPO / "configs" / "demo" / "appendix_b_fast_rcnn.yaml"),
        "--output-dir", str(out), *TINY_DEMO_OPTS,
        "MODEL.RPN.POST_NMS_TOPK_TEST", "300", "SOLVER.MAX_ITER", "10",
        "SOLVER.CHECKPOINT_PERIOD", "2",
    ]  # fmt: skip
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root)}
    run = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tag = out / "fast_rcnn" / "last_checkpoint"
    try:
        _wait_for(lambda: tag.exists() and tag.read_text() >= "model_0000003.pth", run)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert not (out / "fast_rcnn" / "stage_done.json").exists()

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert "stage 'rpn': complete, skipped" in log and "stage 'proposals': complete, skipped" in log
    start = int(re.search(r"Starting training from iteration (\d+)", log).group(1))
    assert 4 <= start < 10
    final = torch.load(out / "fast_rcnn" / "model_final.pth", weights_only=True)
    assert final["iteration"] == 9
    assert (out / "evaluate" / "stage_done.json").is_file()


def test_kill_9_then_resume_pretraining_ends_as_an_uninterrupted_run(tmp_path):
    from ._photos import make_image_folder
    from .test_pretrain import TINY, X50

    folder = make_image_folder(tmp_path / "imagenet")

    def command(out, *flags):
        return [
            sys.executable, str(REPO / "tools" / "pretrain_imagenet.py"), *flags,
            "--config-file", str(X50), *TINY, "DATA.ROOT", str(folder), "OUTPUT_DIR", str(out),
            "SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD_EPOCHS", "0",
        ]  # fmt: skip

    straight = subprocess.run(
        command(tmp_path / "straight"), cwd=REPO, capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    run = subprocess.Popen(
        command(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tag = out / "last_checkpoint"
    try:
        _wait_for(lambda: tag.exists() and tag.read_text() >= "model_0000004.pth", run)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert not (out / "model_final.pth").exists()
    resumed = subprocess.run(command(out, "--resume"), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(
        r"resumed from .*model_00000(0[4-9]|1[01])\.pth", resumed.stdout + resumed.stderr
    )

    expected = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)
    actual = torch.load(out / "model_final.pth", weights_only=True)
    assert actual["iteration"] == expected["iteration"] == 12
    for name, value in expected["model"].items():
        torch.testing.assert_close(actual["model"][name], value, rtol=0, atol=0, msg=name)


def test_kill_9_while_preparing_the_demo_data_then_a_rerun_completes_it(tmp_path):
    from resnext_det.reproduction.data import is_prepared, prepare_demo_dataset

    code = "import sys; from resnext_det.reproduction.data import prepare_demo_dataset; prepare_demo_dataset(sys.argv[1])"
    run = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO)
    try:
        _wait_for(lambda: any(tmp_path.glob(".demo_trees-*/*/*.png")), run)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert not is_prepared(tmp_path) and any(tmp_path.glob(".demo_trees-*"))  # half-built
    prepare_demo_dataset(tmp_path)
    assert is_prepared(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_trees"]  # the leftover is gone
