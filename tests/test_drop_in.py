"""The plugin inside other projects: shipped configs, LazyConfig, a pip install, your own data."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ROIAlign
from detectron2.modeling import build_model

from resnext_det import model_zoo
from resnext_det.modeling import SparseROIAlign
from resnext_det.utils.errors import MissingFileError

from ._paths import CONFIGS, DEMO_CONFIG, REPO, TINY_DEMO_OPTS

LAZY_TWINS = {
    "faster_rcnn_X50_32x4d_FPN.py": "faster_rcnn_X50_32x4d_FPN.yaml",
    "faster_rcnn_X50_32x4d.py": "faster_rcnn_X50_32x4d.yaml",
    "mask_rcnn_X101_32x8d_FPN.py": "mask_rcnn_X101_32x8d_FPN.yaml",
}


def test_shipped_configs_are_found_in_the_package():
    path = model_zoo.get_config_file("faster_rcnn_X50_32x4d.yaml")
    assert path.endswith("resnext_det/model_zoo/configs/faster_rcnn_X50_32x4d.yaml")
    shipped = set(model_zoo.list_configs())
    in_checkout = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")}
    assert in_checkout <= shipped and set(LAZY_TWINS) <= shipped
    with pytest.raises(MissingFileError, match=r"'faster_rcnn_X51\.yaml' is not a shipped config"):
        model_zoo.get_config_file("faster_rcnn_X51.yaml")


def test_get_config_serves_every_listed_config_as_its_own_kind():
    from fvcore.common.config import CfgNode as PlainCfgNode
    from omegaconf import DictConfig

    names = model_zoo.list_configs()
    assert any(n.startswith("imagenet/") for n in names) and any(
        n.startswith("cifar/") for n in names
    )
    for name in names:
        cfg = model_zoo.get_config(name)
        if name.endswith(".py"):
            assert isinstance(cfg, DictConfig), name
        elif name.startswith(("imagenet/", "cifar/")):  # pretraining: its own config type
            assert type(cfg) is PlainCfgNode and "ARCH" in cfg.MODEL, name
        else:
            assert "RESNEXT" in cfg.MODEL and "ROI_HEADS" in cfg.MODEL, name


def test_get_config_serves_nothing_outside_the_shipped_tree(tmp_path):
    outside = tmp_path / "evil.py"
    outside.write_text("raise SystemExit('ran code from outside the model zoo')\n")
    for name in [
        str(outside),
        "../../../" + str(outside),
        "../configs/faster_rcnn_X50_32x4d.yaml",
        "demo/../../setup.py",
        "/etc/passwd",
    ]:
        with pytest.raises(MissingFileError, match="is not a shipped config"):
            model_zoo.get_config(name)


def test_get_config_yaml_describes_the_network_in_detectron2_keys():
    cfg = model_zoo.get_config("faster_rcnn_X101_32x8d_FPN.yaml")
    resnets = cfg.MODEL.RESNETS
    assert (resnets.DEPTH, resnets.NUM_GROUPS, resnets.WIDTH_PER_GROUP) == (101, 32, 8)
    assert resnets.STRIDE_IN_1X1 is False and cfg.MODEL.BACKBONE.FREEZE_AT == 2
    assert set(cfg.MODEL.RESNEXT) == {"BLOCK_FORM", "MEMORY_FORMAT", "SPARSE_ROI_ALIGN"}


@pytest.mark.parametrize("lazy_name", sorted(LAZY_TWINS))
def test_lazy_config_survives_save_and_load_and_equals_its_yaml_twin(lazy_name, tmp_path):
    lazy = model_zoo.get_config(lazy_name)
    LazyConfig.save(lazy, str(tmp_path / "saved.yaml"))
    model = instantiate(LazyConfig.load(str(tmp_path / "saved.yaml")).model)
    cfg = model_zoo.get_config(LAZY_TWINS[lazy_name])
    cfg.MODEL.DEVICE = "cpu"
    twin = build_model(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    # Its poolers run sparse, as the yaml twin's do when our Trainer builds it.
    poolers = [m for m in model.modules() if isinstance(m, ROIAlign)]
    assert poolers and all(type(m) is SparseROIAlign for m in poolers)


def test_use_resnext_swaps_detectron2_s_own_c4_model_in_one_line():
    from detectron2.model_zoo import get_config

    from resnext_det.modeling import ResNeXt, ResNeXtRes5ROIHeads, use_resnext

    lazy = get_config("common/models/mask_rcnn_c4.py").model  # masks on: both head widths
    use_resnext(lazy, depth=14, num_groups=32, width_per_group=4)
    model = instantiate(lazy)
    assert type(model.backbone) is ResNeXt and type(model.roi_heads) is ResNeXtRes5ROIHeads
    assert model.roi_heads.res5[0].conv2.weight.shape == (1024, 32, 3, 3)  # 32 groups of 32
    assert model.roi_heads.box_predictor.cls_score.in_features == 2048
    assert model.roi_heads.mask_head.deconv.in_channels == 2048
    # Detectron2's conventions of that model stay: BGR, stride in the 1x1 conv.
    assert model.backbone.res2[0].conv1.stride == (1, 1) and lazy.input_format == "BGR"
    assert model.backbone.res3[0].conv1.stride == (2, 2)


def test_lazy_stage_builder_is_a_resnext_not_detectron2s_32x2d():
    from detectron2.modeling.backbone import ResNet

    from resnext_det.modeling import make_resnext_stages

    ours = make_resnext_stages(depth=50, num_groups=32, width_per_group=4)
    theirs = ResNet.make_default_stages(depth=50, num_groups=32)
    # res2's grouped conv: C x d = 128 channels in ours (the paper), 64 in Detectron2's.
    assert ours[0][0].conv2.weight.shape == (128, 4, 3, 3)
    assert theirs[0][0].conv2.weight.shape == (64, 2, 3, 3)


def _run(args, cwd, env=None):
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )


LAZY_TINY = [
    "train.device=cpu", "train.max_iter=2", "train.eval_period=2",
    # From scratch (the shipped weights are for depth 50): every layer trains, GroupNorm.
    "train.init_checkpoint=''", "model.backbone.bottom_up.freeze_at=0",
    "model.backbone.bottom_up.stem.norm=GN", "model.backbone.bottom_up.stages.norm=GN",
    "model.backbone.bottom_up.stages.depth=14", "model.roi_heads.num_classes=1",
    "dataloader.train.dataset.names=demo_trees_train",
    "dataloader.test.dataset.names=demo_trees_val",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[256]",
    "dataloader.train.mapper.augmentations.0.max_size=256",
    "dataloader.test.mapper.augmentations.0.short_edge_length=256",
    "dataloader.test.mapper.augmentations.0.max_size=256",
    "model.proposal_generator.post_nms_topk=[200,100]", "model.roi_heads.batch_size_per_image=64",
    "model.roi_heads.box_head.fc_dims=[128,128]",
    "model.roi_heads.box_predictor.input_shape.channels=128",
]  # fmt: skip


def test_lazyconfig_train_net_trains_and_evaluates_your_coco_json(demo_root, tmp_path):
    data = demo_root / "demo_trees"
    run = _run(
        [sys.executable, "tools/lazyconfig_train_net.py", "--config-file",
         str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.py"),
         "--coco-dataset", "mine", str(data / "annotations" / "instances_train.json"),
         str(data / "train"),
         "--coco-dataset", "mine_val", str(data / "annotations" / "instances_val.json"),
         str(data / "val"),
         *LAZY_TINY, "dataloader.train.dataset.names=mine",
         "dataloader.test.dataset.names=mine_val", f"train.output_dir={tmp_path}"],
        cwd=REPO, env={"DETECTRON2_DATASETS": str(tmp_path / "no_datasets_here")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file()
    assert "copypaste: AP,AP50" in run.stdout + run.stderr


def test_coco_dataset_flag_trains_on_your_own_json(demo_root, tmp_path):
    data = demo_root / "demo_trees"
    run = _run(
        [sys.executable, "tools/train_net.py", "--config-file", str(DEMO_CONFIG),
         "--coco-dataset", "my_trees_train", str(data / "annotations" / "instances_train.json"),
         str(data / "train"),
         "--coco-dataset", "my_trees_val", str(data / "annotations" / "instances_val.json"),
         str(data / "val"),
         *TINY_DEMO_OPTS, "DATASETS.TRAIN", "('my_trees_train',)",
         "DATASETS.TEST", "('my_trees_val',)", "OUTPUT_DIR", str(tmp_path)],
        cwd=REPO, env={"DETECTRON2_DATASETS": str(tmp_path / "no_datasets_here")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Evaluation results for bbox" in run.stdout + run.stderr
    assert (tmp_path / "inference" / "my_trees_val").is_dir()


def test_coco_dataset_flag_with_a_missing_json_is_one_line(tmp_path):
    run = _run(
        [sys.executable, "tools/train_net.py", "--config-file", str(DEMO_CONFIG),
         "--coco-dataset", "mine", str(tmp_path / "nope.json"), str(tmp_path)],
        cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: --coco-dataset mine: {tmp_path / 'nope.json'} does not exist; "
        "expected a COCO json file"
    )


USER_PROJECT = """
    import sys
    import resnext_det
    assert resnext_det.__file__.startswith(sys.argv[1]), resnext_det.__file__
    from detectron2.data.datasets import register_coco_instances
    from resnext_det import model_zoo
    from resnext_det.reproduction.engine import Trainer

    register_coco_instances("my_train", {}, sys.argv[2], sys.argv[3])
    register_coco_instances("my_val", {}, sys.argv[4], sys.argv[5])
    cfg = model_zoo.get_config("faster_rcnn_X50_32x4d_FPN.yaml")
    cfg.merge_from_list(sys.argv[6:])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    print("AP50", results["bbox"]["AP50"])
"""


def test_pip_install_outside_the_checkout_loads_builds_trains_and_evaluates(demo_root, tmp_path):
    # Build from a copy, so that the checkout gets no build/ or egg-info.
    source = tmp_path / "source"
    shutil.copytree(REPO / "configs", source / "configs")
    shutil.copy(REPO / "setup.py", source / "setup.py")
    shutil.copytree(
        REPO / "resnext_det",
        source / "resnext_det",
        ignore=shutil.ignore_patterns("__pycache__", "configs"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source], REPO)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("resnext_det-*.whl"))
    install = _run([*pip, "install", "--no-deps", "--target", site, wheel], REPO)
    assert install.returncode == 0, install.stderr[-2000:]
    assert (site / "resnext_det" / "model_zoo" / "configs" / "faster_rcnn_X50_32x4d.py").is_file()
    # The tools come as commands.
    command = _run(
        [site / "bin" / "resnext-convert-weights", "--help"], tmp_path, {"PYTHONPATH": str(site)}
    )
    assert command.returncode == 0 and "Convert ResNeXt weights" in command.stdout, command.stderr
    refused = _run(
        [site / "bin" / "resnext-convert-weights", tmp_path / "missing.pth", tmp_path / "out.pth"],
        tmp_path,
        {"PYTHONPATH": str(site)},
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: "), refused.stderr

    project = tmp_path / "my_project"
    project.mkdir()
    (project / "train.py").write_text(textwrap.dedent(USER_PROJECT))
    data = demo_root / "demo_trees"
    tiny = [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", "0",
        "MODEL.RESNETS.NORM", "GN",
        "MODEL.FPN.NORM", "GN", "MODEL.ROI_HEADS.NUM_CLASSES", "1",
        "DATASETS.TRAIN", "('my_train',)", "DATASETS.TEST", "('my_val',)",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(project / "output"),
        *TINY_DEMO_OPTS,
    ]  # fmt: skip
    run = _run(
        [sys.executable, "train.py", str(site),
         data / "annotations" / "instances_train.json", data / "train",
         data / "annotations" / "instances_val.json", data / "val", *tiny],
        cwd=project, env={"PYTHONPATH": str(site)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "AP50" in run.stdout
    assert (project / "output" / "model_final.pth").is_file()
