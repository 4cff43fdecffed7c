"""Hostile weight files, through every reader of weights: one line naming the file, no code run.

The readers: the converter (``read_weight_file``), the up-front fit check of train_net,
train_appendix_b, export_model, pretraining and lazyconfig_train_net
(``check_weights_fit``), the checkpointer every tool loads with, and the predictor of
tools/demo.py. Every kind of bad file goes through each, in-process; a few real tool runs
check what the user sees (one line, exit code 2, no traceback).
"""

import json
import os
import pickle
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig
from detectron2.modeling import build_model
from PIL import Image
from safetensors.torch import save_file

from resnext_det.checkpoint import (
    FeatureComparison,
    SafeDetectionCheckpointer,
    read_weight_file,
)
from resnext_det.checkpoint.fit import check_weights_fit
from resnext_det.modeling import ResNeXtSpec, build_resnext
from resnext_det.reproduction.engine import Trainer, build_config
from resnext_det.reproduction.engine.lazy_train import do_train
from resnext_det.reproduction.engine.predictor import Predictor, predict_images
from resnext_det.reproduction.engine.validate import check_detection_run
from resnext_det.reproduction.pretrain import Pretrainer, build_pretrain_config
from resnext_det.utils.errors import ConfigError, UserError

from ._paths import CONFIGS, DEMO_CONFIG, TINY_DEMO_OPTS
from ._photos import make_image_folder
from ._tools import assert_one_line_error, run_cli, run_cli_in_subprocess

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """The tiny demo detector and its real checkpoint (model_final.pth)."""
    tmp = tmp_path_factory.mktemp("detector")
    cfg = build_config(str(DEMO_CONFIG), TINY_DEMO_OPTS)
    model = build_model(cfg)
    SafeDetectionCheckpointer(model, save_dir=str(tmp)).save("model_final")
    return cfg, model, tmp / "model_final.pth"


def _with_bad_value(state, value):
    state = {k: v.clone() for k, v in state.items()}
    key = "backbone.bottom_up.res2.0.conv2.weight"
    state[key].view(-1)[:3] = value
    return state


@pytest.fixture(scope="module")
def hostile(detector, tmp_path_factory):
    """One file of each hostile kind, made from the detector's real checkpoint."""
    _, model, good = detector
    tmp = tmp_path_factory.mktemp("hostile")
    state = model.state_dict()
    data = good.read_bytes()
    files = {
        "url": "http://example.com/model_final.pth",
        "missing": str(tmp / "nope.pth"),
        "folder": str(tmp),
    }

    def write(name, content):
        (tmp / name).write_bytes(content)
        files[name] = str(tmp / name)

    write("text.pth", b"MODEL:\n  WEIGHTS: model_final.pth\n")
    write("empty.pth", b"")
    write("truncated.pth", data[: len(data) // 2])
    write("truncated.pkl", pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}})[:999])
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
    files["model.safetensors"] = str(tmp / "model.safetensors")
    write("safetensors_inside.pth", (tmp / "model.safetensors").read_bytes())
    torch.save({"model": {"x": _Exploit(tmp / "pwned")}}, tmp / "crafted.pth")
    files["crafted.pth"] = str(tmp / "crafted.pth")
    write("crafted.pkl", pickle.dumps({"model": {"x": _Exploit(tmp / "pwned")}, "__author__": "x"}))
    torch.save({"model": _with_bad_value(state, float("nan"))}, tmp / "nan.pth")
    files["nan.pth"] = str(tmp / "nan.pth")
    torch.save({"model": _with_bad_value(state, float("inf"))}, tmp / "inf.pth")
    files["inf.pth"] = str(tmp / "inf.pth")
    arrays = {k: v.numpy() for k, v in _with_bad_value(state, float("nan")).items()}
    write("nan.pkl", pickle.dumps({"model": arrays, "__author__": "Detectron2 zoo"}))
    return files


# kind -> what the error says (after the file's name), for a reader of Detectron2 weights.
KINDS = {
    "url": r"is a URL; expected a local weight file",
    "missing": r"does not exist; expected a weight file",
    "folder": r"is a folder; expected a weight file",
    "text.pth": r"is not a weight file \(it begins with b'MODEL:",
    "empty.pth": r"is empty; expected a torch checkpoint",
    "truncated.pth": r"is corrupt or truncated \(PytorchStreamReader failed reading zip archive",
    "truncated.pkl": r"cannot be read as a pickle of arrays \(pickle data was truncated\)",
    "model.safetensors": r"is a safetensors file; expected a Detectron2 checkpoint",
    "safetensors_inside.pth": r"is a safetensors file; expected a Detectron2 checkpoint",
    "crafted.pth": r"refusing to load (posix|os)\.system from .*: the file holds Python objects",
    "crafted.pkl": r"refusing to load (posix|os)\.system from .*: the file holds Python objects",
    "nan.pth": r"holds NaN values in 'backbone\.bottom_up\.res2\.0\.conv2\.weight' \(3 of its",
    "inf.pth": r"holds infinite values in 'backbone\.bottom_up\.res2\.0\.conv2\.weight'",
    "nan.pkl": r"holds NaN values in 'backbone\.bottom_up\.res2\.0\.conv2\.weight'",
}
# The converter reads safetensors by content, whatever the suffix.
CONVERTER_READS = {"model.safetensors", "safetensors_inside.pth"}


def _readers(detector):
    cfg, model, _ = detector

    def predictor(path):
        demo = cfg.clone()
        demo.MODEL.WEIGHTS = path
        Predictor(demo)

    return {
        "convert_weights": read_weight_file,
        "fit check (train_net, eval, export, pretraining)": lambda p: check_weights_fit(model, p),
        "checkpointer (every tool's load)": lambda p: SafeDetectionCheckpointer(model).load(p),
        "demo predictor": predictor,
    }


READERS = [
    "convert_weights",
    "fit check (train_net, eval, export, pretraining)",
    "checkpointer (every tool's load)",
    "demo predictor",
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_hostile_weight_file_ends_in_one_line_naming_it(detector, hostile, kind, reader):
    path = hostile[kind]
    read = _readers(detector)[reader]
    if reader == "convert_weights" and kind in CONVERTER_READS:
        data, _ = read(path)
        assert "backbone.bottom_up.stem.conv1.weight" in data
        return
    with pytest.raises(UserError) as refused:
        read(path)
    message = str(refused.value)
    assert "\n" not in message
    assert path in message and re.search(KINDS[kind], message), message
    assert "weights_only" not in message  # never torch's advice to run a crafted file
    assert not (Path(hostile["folder"]) / "pwned").exists()


@pytest.mark.parametrize("reader", READERS[1:])  # the converter tells its formats apart
@pytest.mark.parametrize("name", ["hand.pkl", "lists.pth"])
def test_weights_that_are_no_tensors_end_in_one_line_naming_them(detector, tmp_path, name, reader):
    """A small hand-made file: Detectron2 would fail with 'Unsupported type found in checkpoint'."""
    path = tmp_path / name
    if name.endswith(".pkl"):  # read as Caffe2 blobs, as Detectron2 reads a .pkl without __author__
        path.write_bytes(pickle.dumps({"conv1.weight": [[1.0, 2.0]]}))
    else:
        torch.save({"model": {"conv1.weight": [[1.0, 2.0]]}}, path)
    with pytest.raises(UserError) as refused:
        _readers(detector)[reader](str(path))
    message = str(refused.value)
    assert "\n" not in message and re.search(
        rf"{name}.* holds 'conv1\.weight' as a list, not a tensor or array; expected", message
    ), message


def test_the_fit_check_names_the_config_key(detector, hostile):
    _, model, _ = detector
    with pytest.raises(UserError, match=r"^the last checkpoint='.*nan\.pth' holds NaN values"):
        check_weights_fit(model, hostile["nan.pth"], what="the last checkpoint")


def test_good_weights_still_load_everywhere(detector):
    cfg, model, good = detector
    read_weight_file(str(good))
    assert check_weights_fit(model, str(good)) > 0
    SafeDetectionCheckpointer(model).load(str(good))
    demo = cfg.clone()
    demo.MODEL.WEIGHTS = str(good)
    Predictor(demo)


@pytest.mark.parametrize("eval_only", [False, True], ids=["training", "evaluation"])
def test_non_finite_weights_are_refused_before_a_run(detector, hostile, demo_root, eval_only):
    """Training would blame the learning rate; evaluation would report AP nan, exit 0."""
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS, "MODEL.WEIGHTS", hostile["nan.pth"]])
    with pytest.raises(UserError, match=r"MODEL\.WEIGHTS='.*nan\.pth' holds NaN values in"):
        check_detection_run(cfg, eval_only=eval_only)


def test_resuming_pretraining_from_a_non_finite_checkpoint_is_refused(tmp_path):
    folder = make_image_folder(tmp_path / "imagenet", train=4, val=2, size=72)
    cfg = build_pretrain_config(
        str(CONFIGS / "imagenet" / "X50_32x4d.yaml"),
        [
            "MODEL.RESNETS.DEPTH", "14", "MODEL.NUM_CLASSES", "3", "DATA.NUM_WORKERS", "0",
            "INPUT.TRAIN_CROP", "64", "INPUT.TEST_RESIZE", "72", "INPUT.TEST_CROP", "64",
            "SOLVER.IMS_PER_BATCH", "6", "SOLVER.REFERENCE_WORLD_SIZE", "0",
            "DATA.ROOT", str(folder), "OUTPUT_DIR", str(tmp_path / "out"),
        ],
    )  # fmt: skip
    trainer = Pretrainer(cfg)
    with torch.no_grad():
        trainer.model.stem.conv1.weight[0, 0, 0, 0] = float("nan")
    (tmp_path / "out").mkdir()
    trainer.checkpointer.save("model_0000004", iteration=4, global_batch=6)
    resumed = Pretrainer(cfg)
    with pytest.raises(UserError, match=r"the last checkpoint='.*model_0000004\.pth' holds NaN"):
        resumed.resume_or_load(resume=True)


def test_lazyconfig_training_refuses_weights_of_another_network(detector, demo_root, tmp_path):
    """The demo detector's GroupNorm trunk is no FrozenBN trunk: Detectron2 would load the
    convolutions that match and train the norms from scratch, saying so in its log only."""
    _, _, good = detector
    cfg = LazyConfig.load(str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.py"))
    cfg = LazyConfig.apply_overrides(
        cfg,
        [
            "train.device=cpu", "model.backbone.bottom_up.stages.depth=14",
            "dataloader.train.dataset.names=demo_trees_train", "dataloader.train.num_workers=0",
            "dataloader.train.total_batch_size=2", "train.max_iter=1", "train.eval_period=0",
            "dataloader.test.dataset.names=demo_trees_val", "dataloader.test.num_workers=0",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[256]",
            "dataloader.train.mapper.augmentations.0.max_size=256",
            "dataloader.test.mapper.augmentations.0.short_edge_length=256",
            "dataloader.test.mapper.augmentations.0.max_size=256",
            f"train.output_dir={tmp_path}", f"train.init_checkpoint={good}",
        ],
    )  # fmt: skip
    with pytest.raises(UserError, match=r"train\.init_checkpoint='.*' does not fit the model"):
        do_train(cfg)


def test_the_feature_comparison_does_not_skip_nan():
    """max() keeps a number met before a NaN: the converter's check passed NaN features."""
    comparison = FeatureComparison({"stem": 1e-7, "res2": float("nan")}, {"stem": 1, "res2": 1})
    assert np.isnan(comparison.worst_relative)
    assert "at res2" in comparison.summary()


def test_an_empty_weights_key_is_refused_by_the_predictor(detector):
    cfg, _, _ = detector
    with pytest.raises(ConfigError, match=r"MODEL\.WEIGHTS is empty, so the detector would"):
        Predictor(cfg)


# -- what the user sees: real tool runs ---------------------------------------------------


def test_eval_only_with_nan_weights_ends_in_one_line(hostile, demo_root, tmp_path):
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, "--eval-only", *TINY_DEMO_OPTS,
        "MODEL.WEIGHTS", hostile["nan.pth"], "OUTPUT_DIR", tmp_path / "out",
        env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert_one_line_error(
        run, r"MODEL\.WEIGHTS='.*nan\.pth' holds NaN values in 'backbone\.bottom_up\.res2"
    )


def _resume(demo_root, out, *opts):
    return run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, "--resume", *TINY_DEMO_OPTS, *opts,
        "OUTPUT_DIR", out, env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip


def _trainer_checkpoint(out, iteration, optimizer_value=None):
    """A checkpoint as a train_net run writes it (``Trainer``'s own checkpointer), its
    optimizer's momentum set to ``optimizer_value`` where given."""
    cfg = build_config(str(DEMO_CONFIG), [*TINY_DEMO_OPTS, "OUTPUT_DIR", str(out)])
    trainer = Trainer(cfg)
    if optimizer_value is not None:
        for group in trainer.optimizer.param_groups:
            for param in group["params"]:
                trainer.optimizer.state[param]["momentum_buffer"] = torch.full_like(
                    param, optimizer_value
                )
    trainer.iter = iteration
    trainer.checkpointer.save(f"model_{iteration:07d}", iteration=iteration)


def test_resuming_with_max_iter_below_the_checkpoint_s_iteration_is_refused(demo_root, tmp_path):
    """It would train nothing and say nothing."""
    _trainer_checkpoint(tmp_path / "out", iteration=9)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    run = _resume(demo_root, tmp_path / "out", "SOLVER.MAX_ITER", "5")
    assert_one_line_error(
        run,
        r"SOLVER\.MAX_ITER=5 but the last checkpoint .*model_0000009\.pth was saved after iteration 10, so resuming would train nothing; expected SOLVER\.MAX_ITER above 10 to train on from it \(or a new OUTPUT_DIR, without --resume\)",
    )
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before


def test_resuming_from_a_non_finite_optimizer_state_is_refused_not_blamed_on_the_lr(
    demo_root, tmp_path
):
    """Every step would turn the weights NaN, whatever the learning rate: the divergence
    message's advice (lower the lr, resume) would fail again and again."""
    _trainer_checkpoint(tmp_path / "out", iteration=0, optimizer_value=float("nan"))
    run = _resume(demo_root, tmp_path / "out", "SOLVER.MAX_ITER", "3")
    assert_one_line_error(
        run,
        r"the last checkpoint .*model_0000000\.pth holds NaN values in its training state \('trainer\._trainer\.optimizer\.state\.0\.momentum_buffer', \d+ of \d+\); expected finite values: resuming would make every step NaN, whatever the learning rate; resume from an earlier checkpoint \(name it in .*last_checkpoint\) or train without --resume",
    )


def test_converting_a_crafted_pth_ends_in_our_line_not_torchs_advice(hostile, tmp_path):
    run = run_cli("tools/convert_weights.py", hostile["crafted.pth"], tmp_path / "out.pth")
    assert_one_line_error(run, r"refusing to load (posix|os)\.system from .*crafted\.pth")
    assert "weights_only" not in run.stdout + run.stderr
    assert not (Path(hostile["folder"]) / "pwned").exists()
    assert not (tmp_path / "out.pth").exists()


@pytest.fixture()
def trunk_file(tmp_path):
    """A real ResNeXt (depth 14) state dict, as a .pth to convert."""
    model = build_resnext(ResNeXtSpec(depth=14, norm="FrozenBN"), out_features=["res5"])
    torch.save(model.state_dict(), tmp_path / "X14.pth")
    return tmp_path / "X14.pth"


def test_the_converter_reports_extra_source_keys_and_still_checks_the_features(trunk_file):
    state = torch.load(trunk_file, weights_only=True)
    state["head.extra.weight"] = torch.zeros(3)  # a key no ResNeXt has
    torch.save(state, trunk_file)
    output = trunk_file.with_name("converted.pth")
    run = run_cli("tools/convert_weights.py", trunk_file, output)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "not converted: head.extra.weight" in run.stdout
    assert "largest |difference| of the converted features" in run.stdout
    assert output.is_file()


def test_the_converter_refuses_a_negative_check_size_before_any_work(trunk_file):
    output = trunk_file.with_name("converted.pth")
    run = run_cli("tools/convert_weights.py", trunk_file, output, "--check-size", "-5")
    assert_one_line_error(
        run, r"--check-size=-5 is invalid; expected an integer >= 0 \(0: no check\)"
    )
    assert not output.exists()


def test_demo_refuses_weights_of_another_network(detector, tmp_path):
    _, _, good = detector
    run = run_cli(
        "tools/demo.py", "--config-file", DEMO_CONFIG, "--input", PORTRAIT,
        "--output", tmp_path / "out", *TINY_DEMO_OPTS, "MODEL.RESNETS.DEPTH", "26",
        "MODEL.WEIGHTS", good,
    )  # fmt: skip
    assert_one_line_error(run, r"MODEL\.WEIGHTS='.*model_final\.pth' does not fit the model")
    assert not (tmp_path / "out").exists()


def test_a_bad_image_in_the_demo_keeps_the_other_detections(detector, demo_root, tmp_path):
    _, _, good = detector
    folder = tmp_path / "photos"
    folder.mkdir()
    val = sorted((demo_root / "demo_trees" / "val").iterdir())[:2]
    for path in val:
        (folder / path.name).write_bytes(path.read_bytes())
    with Image.open(val[0]) as image:
        image.convert("RGB").save(folder / "cut.jpg", quality=90)
    cut = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(cut[: len(cut) // 3])  # truncated mid-scan
    (folder / "notes.png").write_text("not an image\n")
    # A new process: the log line of each skipped image is part of what is checked.
    run = run_cli_in_subprocess(
        "tools/demo.py", "--config-file", DEMO_CONFIG, "--input", folder, "--output", tmp_path / "out",
        "--confidence-threshold", "0.0", *TINY_DEMO_OPTS, "MODEL.WEIGHTS", good,
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"cut\.jpg cannot be read as an image \(.*\); expected an image file PIL reads \(JPEG, "
        r"PNG, \.\.\.\); 2 of 4 images were skipped, this one and 1 more \(the detections of the "
        r"other 2 are in .*detections\.json\)",
    )
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [Path(d["file_name"]).name for d in detections] == [p.name for p in val]
    for path in val:
        assert (tmp_path / "out" / f"{path.stem}_pred.png").is_file()
    log = run.stdout + run.stderr
    assert re.search(r"skipped: .*notes\.png cannot be read as an image", log)  # in the log


def test_an_unreadable_demo_image_is_named_once_in_its_message(detector, tmp_path):
    _, _, good = detector
    (tmp_path / "notes.png").write_text("not an image\n")
    run = run_cli(
        "tools/demo.py", "--config-file", DEMO_CONFIG, "--input", tmp_path / "notes.png", PORTRAIT,
        "--output", tmp_path / "out", *TINY_DEMO_OPTS, "MODEL.WEIGHTS", good,
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"^error: \S*notes\.png cannot be read as an image \(UnidentifiedImageError: [^()]*\); "
        r"expected an image file PIL reads \(JPEG, PNG, \.\.\.\); 1 of 2 images was skipped "
        r"\(the detections of the other 1 are in \S*detections\.json\)$",
    )
    assert run.stderr.strip().splitlines()[-1].count("notes.png") == 1


def test_predict_images_returns_the_skipped_images(detector, tmp_path):
    cfg, _, good = detector
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = str(good)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = predict_images(cfg, [tmp_path / "bad.jpg"], tmp_path / "out", 0.5)
    assert result.predicted == 0 and [p.name for p, _ in result.skipped] == ["bad.jpg"]
    assert json.loads(result.path.read_text()) == []


def test_the_converter_refuses_a_basic_block_resnet_in_one_line(tmp_path):
    """torchvision's ResNet-18 (two 3x3 convs a block) has no grouped conv: it was a
    KeyError on res2.0.conv3."""
    import torchvision

    source = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), source)
    run = run_cli("tools/convert_weights.py", source, tmp_path / "out.pth")
    assert_one_line_error(run, r"the weights are a basic-block ResNet \(res2\.0 has no conv3")
    assert not (tmp_path / "out.pth").exists()
