"""Every tool ends a user error with one line naming the bad value, exit code 2, no traceback."""

import pytest
import torch
import torchvision

from resnext_det.utils.cli import run_tool
from resnext_det.utils.errors import ConfigError

from ._paths import CONFIGS, DEMO_CONFIG, TINY_DEMO_OPTS
from ._tools import assert_one_line_error, run_cli

X50 = str(CONFIGS / "faster_rcnn_X50_32x4d.yaml")
DEMO = str(DEMO_CONFIG)
PRETRAIN = str(CONFIGS / "imagenet" / "X50_32x4d.yaml")


@pytest.fixture(scope="module")
def wrong_weights(tmp_path_factory):
    """torchvision's ResNeXt-101 32x8d converted: fine weights, for another network."""
    tmp = tmp_path_factory.mktemp("weights")
    torch.save(torchvision.models.resnext101_32x8d(weights=None).state_dict(), tmp / "tv.pth")
    run = run_cli("tools/convert_weights.py", tmp / "tv.pth", tmp / "X101.pth", "--check-size", "0")
    assert run.returncode == 0, run.stderr
    return tmp / "X101.pth"


CASES = {
    "unknown key": (
        "tools/train_net.py", ["--config-file", DEMO, "MODEL.RESNEXT.DEPHT", "50"],
        r"unknown config key: MODEL\.RESNEXT\.DEPHT",
    ),
    "missing config": (
        "tools/train_net.py", ["--config-file", "configs/nope.yaml"],
        r"config file configs/nope\.yaml does not exist",
    ),
    "bad depth": (
        "tools/train_net.py", ["--config-file", DEMO, "MODEL.RESNETS.DEPTH", "77"],
        r"MODEL\.RESNETS\.DEPTH=77 is not supported; expected one of 14, 26, 50, 101, 152, 200",
    ),
    "cuda on a cpu machine": (
        "tools/train_net.py", ["--config-file", X50, "MODEL.WEIGHTS", "x.pth"],
        r"MODEL\.DEVICE='cuda' but this machine has no CUDA device",
    ),
    "unregistered dataset": (
        "tools/train_net.py", ["--config-file", DEMO, "DATASETS.TRAIN", "('coco_2099_train',)"],
        r"dataset 'coco_2099_train' is not registered",
    ),
    "checkpoint period 0": (
        "tools/train_net.py", ["--config-file", DEMO, "SOLVER.CHECKPOINT_PERIOD", "0"],
        r"SOLVER\.CHECKPOINT_PERIOD=0 is invalid; expected an integer >= 1",
    ),
    "missing weights": (
        "tools/train_net.py", ["--config-file", DEMO, *TINY_DEMO_OPTS, "MODEL.WEIGHTS", "nope.pth"],
        r"MODEL\.WEIGHTS='nope\.pth' does not exist",
    ),
    "eval without weights": (
        "tools/train_net.py", ["--config-file", DEMO, "--eval-only", *TINY_DEMO_OPTS],
        r"MODEL\.WEIGHTS is empty, so --eval-only would evaluate random weights",
    ),
    "appendix b rpn config": (
        "tools/train_appendix_b.py",
        ["--rpn-config-file", DEMO, "--config-file", str(CONFIGS / "demo" / "appendix_b_fast_rcnn.yaml")],
        r"MODEL\.META_ARCHITECTURE='GeneralizedRCNN'; expected 'ProposalNetwork'",
    ),
    "pretraining data root": (
        "tools/pretrain_imagenet.py",
        ["--config-file", PRETRAIN, "DATA.ROOT", "/nonexistent", "OUTPUT_DIR", "/nonexistent/run"],
        r"DATA\.ROOT='/nonexistent' has no train/ folder",
    ),
    "convert a missing file": (
        "tools/convert_weights.py", ["nope.pth", "out.pth"], r"nope\.pth does not exist",
    ),
    "analyze a bad override": (
        "tools/analyze_model.py", ["--config-file", X50, "MODEL.RESNETS.NORM", "LN"],
        r"MODEL\.RESNETS\.NORM='LN' is not supported",
    ),
    "demo on a missing image": (
        "tools/demo.py", ["--config-file", DEMO, "--input", "nope.jpg"],
        r"nope\.jpg does not exist; expected an image file or a folder",
    ),
    "gpu check on a machine without cuda": (
        "tools/gpu_check.py", ["--output", "/tmp/unused_gpu_check"],
        r"make gpu-check needs a CUDA GPU, and torch\.cuda\.is_available\(\) is False",
    ),
    "prepare demo with a bad tile size": (
        "datasets/prepare_demo.py", ["--tile-size", "0", "--root", "/tmp/unused"],
        r"tile_size=0 is invalid; expected an integer >= 1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_tool_reports_a_user_error_in_one_line(case, demo_root, tmp_path):
    tool, args, pattern = CASES[case]
    run = run_cli(tool, *args, env={"DETECTRON2_DATASETS": str(demo_root)})
    assert_one_line_error(run, pattern)


def test_a_refused_pretraining_run_leaves_no_output_folder(tmp_path):
    out = tmp_path / "run"
    run = run_cli(
        "tools/pretrain_imagenet.py", "--config-file", PRETRAIN, "DATA.ROOT", "/nonexistent",
        "OUTPUT_DIR", out,
    )  # fmt: skip
    assert_one_line_error(run, r"DATA\.ROOT='/nonexistent' has no train/ folder")
    assert not out.exists()


def test_weights_of_another_network_are_refused_before_training(wrong_weights, demo_root):
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO, *TINY_DEMO_OPTS,
        "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "2",
        "MODEL.WEIGHTS", wrong_weights, env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert_one_line_error(
        run,
        r"MODEL\.WEIGHTS='.*X101\.pth' does not fit the model: of the 80 tensors it must "
        r"provide, 75 have another shape \(e\.g\. \['backbone\.bottom_up\.res2\.0\.conv1\.weight "
        r"\(256, 64, 1, 1\) vs \(128, 64, 1, 1\)'",
    )


def test_internal_errors_keep_their_traceback():
    def bug():
        raise KeyError("a bug of ours")

    with pytest.raises(KeyError, match="a bug of ours"):
        run_tool(bug)

    def user_error():
        raise ConfigError("X=1 is invalid; expected 2")

    with pytest.raises(SystemExit) as ended:
        run_tool(user_error)
    assert ended.value.code == 2
