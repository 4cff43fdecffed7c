"""Weight conversion into Detectron2 form: exact features, reported keys, refused shapes."""

import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from safetensors.torch import save_file
from torch import nn

from resnext_det.checkpoint import (
    SafeDetectionCheckpointer,
    UnsafePickleError,
    compare_features,
    convert,
    read_weight_file,
    write_detectron2_weights,
)
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.pretrain import Pretrainer, build_pretrain_config

from ._paths import CONFIGS, REPO
from ._photos import make_image_folder

# Conversions are exact up to float32 sums in another order.
EXACT = 1e-5


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm statistics, so that a misplaced or mis-scaled norm shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor, low in [
                (module.weight.data, 0.5),
                (module.bias.data, -0.2),
                (module.running_mean, -0.2),
                (module.running_var, 0.5),
            ]:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + low)
    return model


@pytest.mark.parametrize(
    "name,template",
    [
        ("resnext50_32x4d", "ResNeXt-50 (32x4d"),
        ("resnext101_32x8d", "ResNeXt-101 (32x8d"),
        ("resnext101_64x4d", "ResNeXt-101 (64x4d"),
    ],
)
def test_torchvision_models_convert_to_equal_features(name, template):
    model = _randomize_norms(getattr(torchvision.models, name)(weights=None))
    conversion = convert(model.state_dict())
    assert conversion.source == "torchvision" and str(conversion.spec).startswith(template)
    assert conversion.unmatched == []  # fc is dropped on purpose, not unmatched
    assert conversion.conventions.format == "RGB" and not conversion.conventions.stride_in_1x1
    comparison = compare_features(conversion, model.state_dict(), size=64)
    assert comparison.worst_relative < EXACT, comparison.summary()


def test_timm_weights_convert_from_safetensors(tmp_path):
    model = _randomize_norms(timm.create_model("resnext50_32x4d", pretrained=False))
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    data, guessed = read_weight_file(str(path))
    conversion = convert(data, source="timm")
    assert guessed == "torchvision"  # the same names; --source timm checks with timm's model
    comparison = compare_features(conversion, data, size=64)
    assert comparison.worst_relative < EXACT, comparison.summary()


def test_a_wrong_convention_is_caught_by_the_feature_check():
    model = _randomize_norms(torchvision.models.resnext50_32x4d(weights=None))
    conversion = convert(model.state_dict())
    conversion.spec = dataclasses.replace(conversion.spec, stride_in_1x1=True)
    assert compare_features(conversion, model.state_dict(), size=64).worst_relative > 0.05


def _caffe2_blobs(depth, groups, width, stride_in_1x1):
    """A Detectron2 model-zoo style ImageNet pickle: Caffe2 names, affine-only norms."""
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NUM_GROUPS = groups
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = width
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = stride_in_1x1
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    generator = torch.Generator().manual_seed(0)
    blobs = {"fc1000_w": np.zeros((1000, 2048), np.float32), "fc1000_b": np.zeros(1000, np.float32)}
    for key, value in model.state_dict().items():
        if "running" in key:
            continue
        if ".norm." in key:  # a scale and a shift per channel
            value = torch.rand(value.shape, generator=generator) + (
                0.5 if "weight" in key else -0.5
            )
        name = key.replace("stem.conv1.norm.", "res_conv1_norm.").replace("stem.conv1.", "conv1.")
        for ours, theirs in [
            ("conv1", "branch2a"),
            ("conv2", "branch2b"),
            ("conv3", "branch2c"),
            ("shortcut", "branch1"),
        ]:
            name = name.replace(f".{ours}.", f".{theirs}.")
        name = name.replace("norm.weight", "bn.s").replace("norm.bias", "bn.b")
        blobs[name.replace(".weight", ".w").replace(".", "_")] = value.numpy()
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, np.float32)  # optimizer state, skipped
    return blobs


@pytest.mark.parametrize(
    "groups,width,stride_in_1x1,fmt,std",
    [(1, 64, True, "BGR", 1.0), (32, 4, False, "BGR", 57.375)],
    ids=["MSRA-R50", "FAIR-X50"],
)
def test_detectron2_model_zoo_pickles_convert_exactly(
    tmp_path, groups, width, stride_in_1x1, fmt, std
):
    path = tmp_path / "imagenet.pkl"
    path.write_bytes(pickle.dumps({"blobs": _caffe2_blobs(50, groups, width, stride_in_1x1)}, 2))
    data, guessed = read_weight_file(str(path))
    conversion = convert(data)
    assert guessed == conversion.source == "caffe2"
    conventions = conversion.conventions
    assert (conventions.format, conventions.pixel_std[0]) == (fmt, std)
    assert conversion.spec.stride_in_1x1 == stride_in_1x1
    assert conversion.spec.template == f"{groups}x{width}d"
    # The reference is Detectron2's own ResNet loaded by Detectron2's own Caffe2 renaming.
    comparison = compare_features(conversion, data, size=64)
    assert comparison.worst_relative < EXACT, comparison.summary()


def test_unmatched_keys_are_reported_and_shape_mismatches_refused():
    state = torchvision.models.resnext50_32x4d(weights=None).state_dict()
    state["layer1.0.se.fc.weight"] = torch.zeros(8, 8)
    assert convert(state).unmatched == ["layer1.0.se.fc.weight"]

    state["layer2.0.conv3.weight"] = torch.zeros(512, 64, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatches \['res3\.0\.conv3\.weight: \(512, 64"):
        convert(state)
    with pytest.raises(ValueError, match="cannot tell the format of the weights"):
        convert({"backbone.something.weight": torch.zeros(1)})


def test_crafted_pickle_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"conv1_w": Exploit()}))
    with pytest.raises(UnsafePickleError, match=r"refusing to load builtins\.print"):
        read_weight_file(str(path))


def test_tool_writes_weights_snippet_and_the_largest_difference(tmp_path):
    source = tmp_path / "resnext50_32x4d.pth"
    torch.save(
        _randomize_norms(torchvision.models.resnext50_32x4d(weights=None)).state_dict(), source
    )
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "convert_weights.py"),
            str(source),
            str(tmp_path / "X50.pth"),
            "--check-size",
            "64",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "source: torchvision" in run.stdout and "unmatched source keys: 0" in run.stdout
    assert "largest |difference| of the converted features" in run.stdout
    cfg = build_config(str(CONFIGS / "faster_rcnn_X50_32x4d.yaml"))
    cfg.merge_from_file(str(tmp_path / "X50.yaml"))  # the snippet merges into a detector config
    assert cfg.MODEL.WEIGHTS == str((tmp_path / "X50.pth").resolve())
    assert (cfg.INPUT.FORMAT, list(cfg.MODEL.PIXEL_STD)) == ("RGB", [58.395, 57.12, 57.375])


TINY_PRETRAIN = [
    "MODEL.RESNETS.DEPTH", "14", "MODEL.NUM_CLASSES", "3", "DATA.NUM_WORKERS", "0",
    "INPUT.TRAIN_CROP", "64", "INPUT.TEST_RESIZE", "72", "INPUT.TEST_CROP", "64",
    "SOLVER.IMS_PER_BATCH", "12", "SOLVER.REFERENCE_WORLD_SIZE", "0", "SOLVER.BASE_LR", "0.01",
    "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD_EPOCHS", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A classifier pretrained by tools/pretrain_imagenet.py's code, converted by the tool."""
    tmp = tmp_path_factory.mktemp("pretrained")
    folder = make_image_folder(tmp / "imagenet")
    cfg = build_pretrain_config(
        str(CONFIGS / "imagenet" / "X50_32x4d.yaml"),
        [*TINY_PRETRAIN, "DATA.ROOT", str(folder), "OUTPUT_DIR", str(tmp / "out")],
    )
    trainer = Pretrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    data, _ = read_weight_file(str(tmp / "out" / "model_final.pth"))
    conversion = convert(data)
    assert conversion.source == "resnext_det" and conversion.spec.depth == 14
    assert compare_features(conversion, data, size=64).worst_relative < EXACT
    weights, _ = write_detectron2_weights(conversion, str(tmp / "X14_32x4d.pth"))
    return weights, conversion


@pytest.mark.parametrize("design", ["C4", "FPN"])
def test_converted_pretraining_loads_into_detectors_that_train(pretrained, design, demo_root):
    weights, conversion = pretrained
    config = "faster_rcnn_X50_32x4d.yaml" if design == "C4" else "faster_rcnn_X50_32x4d_FPN.yaml"
    cfg = build_config(
        str(CONFIGS / config),
        [
            "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14", "MODEL.WEIGHTS", str(weights),
            "MODEL.ROI_HEADS.NUM_CLASSES", "1", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "INPUT.MIN_SIZE_TRAIN", "(256,)",
            "INPUT.MAX_SIZE_TRAIN", "256", "DATASETS.TRAIN", "('demo_trees_train',)",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
        ],
    )  # fmt: skip
    model = build_model(cfg)
    SafeDetectionCheckpointer(model).load(str(weights))
    # Every converted tensor is in the detector, and every trunk and res5 tensor came from it.
    state = model.state_dict()
    prefix = "backbone.bottom_up." if design == "FPN" else "backbone."
    loaded = {}
    for key, value in conversion.weights.items():
        target = f"roi_heads.{key}" if design == "C4" and key.startswith("res5.") else prefix + key
        assert torch.equal(state[target], value), target
        loaded[target] = value
    trunk = [
        k for k in state if k.startswith((prefix + "stem.", prefix + "res", "roi_heads.res5."))
    ]
    assert sorted(trunk) == sorted(loaded)

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001)
    trainer = SimpleTrainer(model, build_detection_train_loader(cfg), optimizer)
    trainer.train(0, 2)
    losses = trainer.storage.latest()
    assert all(np.isfinite(losses[k][0]) for k in losses if k.startswith("loss"))
