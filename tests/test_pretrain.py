"""Classification pretraining on tiny data sets cut from real photos: loss, resume, DDP, CIFAR."""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from resnext_det.modeling import ResNeXtSpec, build_cifar_resnext
from resnext_det.reproduction.pretrain import (
    Pretrainer,
    build_pretrain_config,
    check_pretrain_config,
    get_pretrain_cfg,
    scale_to_world_size,
)
from resnext_det.reproduction.pretrain.data import TrainSampler
from resnext_det.reproduction.pretrain.evaluation import topk_wrong
from resnext_det.utils.errors import ConfigError

from ._paths import CONFIGS, REPO
from ._photos import make_cifar10, make_image_folder
from ._tools import assert_one_line_error, run_cli

X50 = CONFIGS / "imagenet" / "X50_32x4d.yaml"
# The X50 recipe shrunk to seconds on 2 CPU cores: depth 14, 64 px crops, 3 classes.
TINY = [
    "MODEL.RESNETS.DEPTH", "14",
    "MODEL.NUM_CLASSES", "3",
    "DATA.NUM_WORKERS", "0",
    "INPUT.TRAIN_CROP", "64",
    "INPUT.TRAIN_SCALE", "(0.5, 1.0)",
    "INPUT.TEST_RESIZE", "72",
    "INPUT.TEST_CROP", "64",
    "SOLVER.IMS_PER_BATCH", "12",
    "SOLVER.REFERENCE_WORLD_SIZE", "0",
    "SOLVER.BASE_LR", "0.01",
    "TEST.IMS_PER_BATCH", "12",
    "LOG_PERIOD", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"))


def _cfg(folder, out, *opts):
    return build_pretrain_config(
        str(X50), [*TINY, "DATA.ROOT", str(folder), "OUTPUT_DIR", str(out), *opts]
    )


def _train(cfg, resume=False):
    trainer = Pretrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer, trainer.train()


def _records(out, key):
    lines = (out / "metrics.json").read_text().splitlines()
    return [r for r in map(json.loads, lines) if key in r]


def test_a_few_iterations_lower_the_loss(image_folder, tmp_path):
    # 30 steps: at 18 the error was still at chance on an AVX2 CPU with one thread (the same
    # seed takes another path there); by 30 it is 8-25% on AVX2 and AVX-512 alike.
    _, result = _train(_cfg(image_folder, tmp_path, "SOLVER.MAX_ITER", "30"))
    losses = [r["total_loss"] for r in _records(tmp_path, "total_loss")]
    assert len(losses) == 30
    assert sum(losses[-10:]) < sum(losses[:10]), losses
    # 3 balanced classes: chance is 66.7% top-1 error; the model did better.
    assert result["images"] == 12 and result["top1_err"] < 66.0
    evaluations = _records(tmp_path, "top1_err")
    assert [r["epoch"] for r in evaluations] == list(range(1, 11))  # every epoch (3 iterations)
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert saved["iteration"] == 30
    # Detectron2's metrics.json, as its JSONWriter writes it for detection: one object per
    # line with sorted keys, its 0-based iteration, the losses, lr and timings; the
    # evaluations in the record of the step they follow.
    lines = (tmp_path / "metrics.json").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert lines == [json.dumps(r, sort_keys=True) for r in records]
    assert [r["iteration"] for r in records] == list(range(30))
    assert {"total_loss", "lr", "data_time", "epoch"} <= set(records[-1])
    assert [r["iteration"] for r in evaluations] == list(range(2, 30, 3))
    assert saved["resnext_det"]["input"]["format"] == "RGB"
    assert not list(tmp_path.glob("model_00*.pth"))  # model_final supersedes them


def test_resume_continues_from_the_same_step(image_folder, tmp_path):
    """Stopped at iteration 4 and resumed to 6, a run ends with the weights of one that never
    stopped: same batches, same augmentation, same optimizer state and schedule."""
    straight, _ = _train(_cfg(image_folder, tmp_path / "straight", "SOLVER.MAX_ITER", "6"))
    _train(_cfg(image_folder, tmp_path / "resumed", "SOLVER.MAX_ITER", "4"))
    # As if killed after the checkpoint of iteration 4: records of steps the resume redoes.
    with open(tmp_path / "resumed" / "metrics.json", "a") as f:
        for iteration in (4, 5):
            f.write(json.dumps({"iteration": iteration, "total_loss": 99.0}) + "\n")
    resumed, _ = _train(
        _cfg(image_folder, tmp_path / "resumed", "SOLVER.MAX_ITER", "6"), resume=True
    )
    losses = [r["total_loss"] for r in _records(tmp_path / "resumed", "total_loss")]
    # Detectron2's numbering: the record of the first step is iteration 0.
    assert [r["iteration"] for r in _records(tmp_path / "resumed", "total_loss")] == [
        0, 1, 2, 3, 4, 5
    ]  # fmt: skip
    assert losses == [r["total_loss"] for r in _records(tmp_path / "straight", "total_loss")]
    # Evaluations after epochs 1 and 2 and the first launch's last step, each once.
    assert [r["iteration"] for r in _records(tmp_path / "resumed", "top1_err")] == [2, 3, 5]
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)
    # Resumed with a shorter run than the checkpoint's, it would train nothing (Detectron2's
    # loop says nothing then): refused, and the records of the run are kept.
    metrics = (tmp_path / "resumed" / "metrics.json").read_bytes()
    shorter = Pretrainer(_cfg(image_folder, tmp_path / "resumed", "SOLVER.MAX_ITER", "5"))
    with pytest.raises(ConfigError, match=r"the run ends at iteration 5 \(SOLVER\.EPOCHS=100, SOLVER\.MAX_ITER=5\) but the last checkpoint .*model_final\.pth was saved after iteration 6, so resuming would train nothing; expected a run of at least 6 iterations"):  # noqa: E501
        shorter.resume_or_load(resume=True)
    assert (tmp_path / "resumed" / "metrics.json").read_bytes() == metrics


# GroupNorm, so that per-process batch statistics play no part.
TWO_PROCESS_OPTS = ["MODEL.RESNETS.NORM", "GN", "SOLVER.MAX_ITER", "2", "SOLVER.BASE_LR", "0.002"]
TOOL = str(REPO / "tools" / "pretrain_imagenet.py")
LAUNCHERS = {
    # Detectron2's launch spawns the processes; gloo, since there is no GPU. A free port,
    # as the default is one per user and tests run side by side.
    "launch": [sys.executable, TOOL, "--num-gpus", "2", "--dist-url", "auto"],
    "torchrun": [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        TOOL,
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def one_process(image_folder, tmp_path_factory):
    """Two steps of one process on the global batch: its initial and final weights, result."""
    trainer = Pretrainer(_cfg(image_folder, tmp_path_factory.mktemp("one"), *TWO_PROCESS_OPTS))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.resume_or_load(resume=False)
    result = trainer.train()
    return initial, trainer.model.state_dict(), result


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_match_one_on_the_same_global_batch(
    launcher, one_process, image_folder, tmp_path
):
    """2 gloo processes of 6 images each, launched by Detectron2's launch (--num-gpus 2)
    or by torchrun, make the updates that 1 process of 12 does."""
    initial, one, one_result = one_process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            *LAUNCHERS[launcher], "--config-file", str(X50), *TINY, "DATA.ROOT", str(image_folder),
            "OUTPUT_DIR", str(tmp_path / "two"), *TWO_PROCESS_OPTS,
        ],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "effective schedule on 2 process(es): batch 12 images (6 per process)" in log
    two = torch.load(tmp_path / "two" / "model_final.pth", weights_only=True)["model"]
    # Float sums in another order change the updates by ~1e-5 of their size after one step
    # and ~1e-3 after two (measured); summed instead of averaged gradients, or other
    # batches, would change them by their whole size.
    names = list(initial)
    update_one = torch.cat([(one[k] - initial[k]).flatten() for k in names])
    update_two = torch.cat([(two[k] - initial[k]).flatten() for k in names])
    assert (update_two - update_one).norm() < 1e-2 * update_one.norm()
    results = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1  # printed by the main process only
    two_result = json.loads(results[0])
    assert two_result["images"] == one_result["images"] == 12  # each val image once
    assert two_result["top1_err"] == pytest.approx(one_result["top1_err"])


def test_eval_only_scores_saved_weights(image_folder, tmp_path):
    _, result = _train(_cfg(image_folder, tmp_path, "SOLVER.MAX_ITER", "3"))
    run = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "pretrain_imagenet.py"), "--eval-only",
            "--config-file", str(X50), *TINY, "DATA.ROOT", str(image_folder),
            "OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
        ],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["top1_err"] == result["top1_err"]


def test_a_val_split_of_fewer_classes_is_also_scored_as_a_subset(image_folder, tmp_path):
    """Table 6: a model of more classes scored as a K-way classifier on K classes' images."""
    root = tmp_path / "subset"
    (root / "val").mkdir(parents=True)
    os.symlink(image_folder / "train", root / "train")
    for name in ("florida", "yellowstone"):  # val holds 2 of the 3 training classes
        os.symlink(image_folder / "val" / name, root / "val" / name)
    trainer = Pretrainer(_cfg(root, tmp_path / "out", "SOLVER.MAX_ITER", "1"))
    assert trainer.data.classes == ["florida", "portrait", "yellowstone"]
    assert trainer.data.val_classes == [0, 2]
    errors = trainer.evaluate()
    assert errors["images"] == 8
    assert errors["top1_err_subset"] <= errors["top1_err"]


RENAMED = [("SOLVER.STEPS", "SOLVER.STEP_EPOCHS"), ("TEST.EVAL_PERIOD", "TEST.EVAL_PERIOD_EPOCHS")]


@pytest.mark.parametrize("old,new", RENAMED, ids=[old for old, _ in RENAMED])
def test_detectron2_s_iteration_keys_are_refused_naming_the_epoch_keys(old, new, tmp_path):
    """Detectron2's keys of these names count iterations; read as epochs, a detection habit
    such as SOLVER.STEPS (60000, 80000) would never lower the lr."""
    section, key = old.split(".")
    (tmp_path / "old.yaml").write_text(f"_BASE_: {X50}\n{section}:\n  {key}: (60000, 80000)\n")
    expected = (
        rf"Key {old} was renamed to {new}; please update your config\. Note: pretraining "
        rf"counts its .* in epochs; expected {new} \(epochs\), not Detectron2's {old} "
        r"\(iterations\)"
    )
    with pytest.raises(ConfigError, match=rf"old\.yaml: {expected}"):
        build_pretrain_config(str(tmp_path / "old.yaml"))
    run = run_cli("tools/pretrain_imagenet.py", "--config-file", X50, old, "(60000, 80000)")
    assert_one_line_error(run, rf"^error: command-line override: {expected}$")


def test_a_step_schedule_past_the_run_s_epochs_is_refused():
    cfg = build_pretrain_config(str(X50), ["SOLVER.STEP_EPOCHS", "(60000, 80000)"])
    with pytest.raises(
        ConfigError,
        match=r"^SOLVER\.STEP_EPOCHS=\(60000, 80000\) reaches past the run's SOLVER\.EPOCHS=100; "
        r"expected epochs below 100 \(they count epochs, not iterations\)$",
    ):
        check_pretrain_config(cfg)
    # A step at the last epoch is never reached either; one before it is.
    for steps, refused in (("(30, 100)", True), ("(30, 99)", False)):
        cfg = build_pretrain_config(str(X50), ["SOLVER.STEP_EPOCHS", steps])
        with pytest.raises(ConfigError) if refused else contextlib.nullcontext():
            check_pretrain_config(cfg)


def test_the_launcher_checks_the_run_before_it_starts_workers(image_folder, tmp_path):
    """Refused in the launching process, in one line and before any folder is made: a
    worker's error would come from another process (and from each of them)."""
    out = tmp_path / "run"
    run = run_cli(
        "tools/pretrain_imagenet.py", "--num-gpus", "2", "--config-file", X50, *TINY,
        "DATA.ROOT", tmp_path / "nothing", "OUTPUT_DIR", out,
    )  # fmt: skip
    assert_one_line_error(run, r"DATA\.ROOT='.*nothing' has no train/ folder")
    run = run_cli(
        "tools/pretrain_imagenet.py", "--num-gpus", "2", "--config-file", X50, *TINY,
        "SOLVER.IMS_PER_BATCH", "13", "DATA.ROOT", image_folder, "OUTPUT_DIR", out,
    )  # fmt: skip
    assert_one_line_error(run, r"SOLVER\.IMS_PER_BATCH=13 .*2 processes")
    run = run_cli(
        "tools/pretrain_imagenet.py", "--eval-only", "--config-file", X50, *TINY,
        "DATA.ROOT", image_folder, "OUTPUT_DIR", out,
    )  # fmt: skip
    assert_one_line_error(run, r"MODEL\.WEIGHTS is empty, so --eval-only would evaluate random")
    # Under torchrun, whose processes are the workers, the launch flags are torchrun's.
    run = run_cli(
        "tools/pretrain_imagenet.py", "--num-gpus", "2", "--config-file", X50, *TINY,
        "DATA.ROOT", image_folder, "OUTPUT_DIR", out, env={"RANK": "0", "WORLD_SIZE": "1"},
    )  # fmt: skip
    assert_one_line_error(run, r"--num-gpus 2 --num-machines 1 under torchrun, .*expected 1")
    assert not out.exists()


def test_topk_errors_on_known_predictions():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],  # target 1: top-1 hit
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 1: top-1 miss, top-2 hit
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],  # target 5: ranked last, a top-5 miss
            [0.0, 0.0, 0.0, 0.1, 0.9, 0.2],  # target 3: third
        ]
    )
    targets = torch.tensor([1, 1, 5, 3])
    assert topk_wrong(logits, targets, ks=(1, 2, 5)).tolist() == [3.0, 2.0, 1.0]
    # As a 3-way classifier over classes {1, 3, 5}: row 1 -> 1 wins; row 2 -> 1 wins (0.1 vs
    # 0); row 3 -> 1 (0.4) beats 5 (0.0); row 4 -> 5 (0.2) beats 3 (0.1).
    assert topk_wrong(logits, targets, ks=(1, 2), classes=[1, 3, 5]).tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="outside the class subset"):
        topk_wrong(logits, targets, classes=[0, 1])


def test_batches_do_not_depend_on_the_number_of_processes():
    one = list(TrainSampler(50, 12, rank=0, world_size=1, seed=3))
    shards = [list(TrainSampler(50, 12, rank=r, world_size=4, seed=3)) for r in range(4)]
    for k in range(50 // 12):
        together = [key for shard in shards for key in shard[3 * k : 3 * k + 3]]
        assert together == one[12 * k : 12 * k + 12]
    resumed = TrainSampler(50, 12, rank=0, world_size=1, seed=3)
    resumed.set_epoch(0, start_iter=2)
    assert list(resumed) == one[24:]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainSampler(5, 12, rank=0, world_size=1, seed=0)


def test_schedule_scales_linearly_from_eight_processes():
    cfg = build_pretrain_config(str(X50))
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (256, 0.1)
    two = scale_to_world_size(cfg, 2)
    assert (two.SOLVER.IMS_PER_BATCH, two.SOLVER.BASE_LR) == (64, 0.025)
    assert tuple(two.SOLVER.STEP_EPOCHS) == (30, 60, 90) and two.SOLVER.EPOCHS == 100


@pytest.mark.parametrize("config", sorted((CONFIGS / "imagenet").glob("[RX]*.yaml")), ids=str)
def test_imagenet_configs_hold_the_paper_recipe(config):
    cfg = build_pretrain_config(str(config))
    solver = cfg.SOLVER
    assert (solver.IMS_PER_BATCH, solver.REFERENCE_WORLD_SIZE, solver.BASE_LR) == (256, 8, 0.1)
    assert (solver.MOMENTUM, solver.WEIGHT_DECAY, solver.GAMMA) == (0.9, 1e-4, 0.1)
    assert tuple(solver.STEP_EPOCHS) == (30, 60, 90) and solver.EPOCHS > 90
    assert (cfg.INPUT.TRAIN_CROP, cfg.INPUT.TEST_RESIZE, cfg.INPUT.TEST_CROP) == (224, 256, 224)
    spec = ResNeXtSpec.from_config(cfg)
    depth, _, template = config.stem[1:].partition("_")
    assert (spec.depth, spec.template) == (int(depth), template or "1x64d")


def test_imagenet_config_set_is_tables_3_and_4():
    names = {p.stem for p in (CONFIGS / "imagenet").glob("[RX]*.yaml")}
    assert names == {
        "R50", "X50_2x40d", "X50_4x24d", "X50_8x14d", "X50_32x4d",
        "R101", "X101_32x4d", "X101_2x64d", "X101_64x4d",
    }  # fmt: skip


@pytest.mark.parametrize("cardinality,paper_millions", [(8, 34.4), (16, 68.1)])
def test_cifar_resnext29_parameter_counts_match_table7(cardinality, paper_millions):
    cfg = build_pretrain_config(str(CONFIGS / "cifar" / f"resnext29_{cardinality}x64d.yaml"))
    stages = ["res2", "res3", "res4"]
    model = build_cifar_resnext(ResNeXtSpec.from_config(cfg), 10, out_features=[*stages, "linear"])
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - paper_millions) / paper_millions < 0.005, millions
    assert [len(getattr(model, s)) for s in stages] == [3, 3, 3]
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(1, 3, 32, 32))
    assert [tuple(outputs[s].shape[1:]) for s in stages] == [
        (256, 32, 32),
        (512, 16, 16),
        (1024, 8, 8),
    ]
    assert outputs["linear"].shape == (1, 10)


def test_cifar_recipe_and_pickle_batches(tmp_path):
    cfg = build_pretrain_config(str(CONFIGS / "cifar" / "resnext29_8x64d.yaml"))
    solver = cfg.SOLVER
    assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.WEIGHT_DECAY) == (128, 0.1, 5e-4)
    assert (tuple(solver.STEP_EPOCHS), solver.EPOCHS, cfg.INPUT.PADDING) == ((150, 225), 300, 4)

    root = make_cifar10(tmp_path / "cifar")
    small = [
        "MODEL.RESNETS.NUM_GROUPS", "2", "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
        "DATA.ROOT", str(root), "DATA.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "12", "SOLVER.REFERENCE_WORLD_SIZE", "0",
        "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(tmp_path / "out"),
    ]  # fmt: skip
    trainer, result = _train(
        build_pretrain_config(str(CONFIGS / "cifar" / "resnext29_8x64d.yaml"), small)
    )
    assert trainer.data.classes[:3] == ["florida", "portrait", "yellowstone"]
    assert len(trainer.data.train) == 60 and result["images"] == 18
    image, label = trainer.data.train[0]
    assert image.size == (32, 32) and label == 0
    # The 10-way model scored on the 3 classes the test batch holds, too.
    assert "top1_err_subset" in result


def test_defaults_are_the_papers():
    cfg = get_pretrain_cfg()
    assert cfg.MODEL.RESNETS.NORM == "BN" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert cfg.SOLVER.MOMENTUM == 0.9 and cfg.SOLVER.WEIGHT_DECAY == 1e-4


def test_a_corrupt_image_is_skipped_in_training_and_refused_in_evaluation(
    image_folder, tmp_path, caplog
):
    from resnext_det.reproduction.pretrain.data import AugmentedDataset, build_classification_data
    from resnext_det.utils.errors import DataError

    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    broken = sorted((root / "train" / "florida").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:300])  # a JPEG cut short
    data = build_classification_data(_cfg(root, tmp_path / "out"))
    train = AugmentedDataset(data.train, data.train_transform, seed=0)
    with caplog.at_level("WARNING", logger="resnext_det.reproduction.pretrain.data"):
        images = [train[(0, i)][0] for i in range(len(train))]
    assert len(images) == 36 and all(x.shape == (3, 64, 64) for x in images)
    assert any(broken.name in r.getMessage() for r in caplog.records)
    evaluation = AugmentedDataset(data.train, data.test_transform, seed=0, skip_unreadable=False)
    index = [str(path) for path, _ in data.train.samples].index(str(broken))
    with pytest.raises(DataError, match=rf"unreadable image .*{broken.name}"):
        evaluation[index]
