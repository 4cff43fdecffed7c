"""Using the plugin from another Detectron2 project: register, write a config, train."""

import subprocess
import sys
import textwrap

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, build_model

import resnext_det
from resnext_det.modeling import (
    ResNeXtRes5ROIHeads,
    ResNeXtStandardROIHeads,
    build_resnext_backbone,
    build_resnext_fpn_backbone,
)


def test_importing_registers_as_detectron2_projects_do():
    # A yaml naming our components builds after a bare import, with no call of ours.
    code = (
        "import resnext_det\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, build_model\n"
        "names = ['build_resnext_backbone', 'build_resnext_fpn_backbone',\n"
        "         'build_resnext_retinanet_fpn_backbone']\n"
        "assert all(name in BACKBONE_REGISTRY for name in names)\n"
        "assert 'ResNeXtRes5ROIHeads' in ROI_HEADS_REGISTRY\n"
        "assert 'ResNeXtStandardROIHeads' in ROI_HEADS_REGISTRY\n"
        "cfg = get_cfg()\n"
        "cfg.MODEL.DEVICE = 'cpu'\n"
        "cfg.MODEL.BACKBONE.NAME = 'build_resnext_backbone'\n"
        "cfg.MODEL.ROI_HEADS.NAME = 'ResNeXtRes5ROIHeads'\n"
        "print(type(build_model(cfg).backbone).__name__)\n"
        "resnext_det.register_resnext_backbone()  # stays, and may be called again\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["ResNeXt"]


def test_register_twice_is_safe():
    resnext_det.register_resnext_backbone()
    resnext_det.register_resnext_backbone()
    assert BACKBONE_REGISTRY.get("build_resnext_backbone") is build_resnext_backbone
    assert BACKBONE_REGISTRY.get("build_resnext_fpn_backbone") is build_resnext_fpn_backbone
    assert ROI_HEADS_REGISTRY.get("ResNeXtRes5ROIHeads") is ResNeXtRes5ROIHeads
    assert ROI_HEADS_REGISTRY.get("ResNeXtStandardROIHeads") is ResNeXtStandardROIHeads


def test_a_foreign_object_under_our_name_is_refused():
    from detectron2.utils.registry import Registry

    from resnext_det.registration import _register

    registry = Registry("TEST")

    def build_resnext_backbone(cfg, input_shape):  # someone else's, same name
        raise AssertionError

    registry.register(build_resnext_backbone)
    with pytest.raises(ValueError, match="already holds a different 'build_resnext_backbone'"):
        _register(registry, "TEST", resnext_det.modeling.build_resnext_backbone)


# A config as a user would write it in their own project: no _BASE_ of ours.
EXTERNAL_CONFIGS = {
    "fpn": """
        MODEL:
          META_ARCHITECTURE: GeneralizedRCNN
          DEVICE: cpu
          BACKBONE: {NAME: build_resnext_fpn_backbone, FREEZE_AT: 0}
          RESNETS:
            DEPTH: 14
            NUM_GROUPS: 32
            WIDTH_PER_GROUP: 4
            STRIDE_IN_1X1: False
            NORM: GN
            OUT_FEATURES: [res2, res3, res4, res5]
          FPN: {IN_FEATURES: [res2, res3, res4, res5], OUT_CHANNELS: 64}
          ANCHOR_GENERATOR: {SIZES: [[16], [32], [64], [128], [256]]}
          RPN: {IN_FEATURES: [p2, p3, p4, p5, p6]}
          ROI_HEADS: {NAME: StandardROIHeads, IN_FEATURES: [p2, p3, p4, p5], NUM_CLASSES: 1, BATCH_SIZE_PER_IMAGE: 64}
          ROI_BOX_HEAD: {NAME: FastRCNNConvFCHead, NUM_FC: 2, FC_DIM: 256, POOLER_RESOLUTION: 7}
        """,
    "c4": """
        MODEL:
          META_ARCHITECTURE: GeneralizedRCNN
          DEVICE: cpu
          BACKBONE: {NAME: build_resnext_backbone, FREEZE_AT: 0}
          RESNETS: {DEPTH: 14, NUM_GROUPS: 32, WIDTH_PER_GROUP: 4, NORM: BN}
          ROI_HEADS: {NAME: ResNeXtRes5ROIHeads, NUM_CLASSES: 1, BATCH_SIZE_PER_IMAGE: 16}
          RPN: {POST_NMS_TOPK_TRAIN: 200}
        """,
}
COMMON = """
    INPUT: {MIN_SIZE_TRAIN: [256], MAX_SIZE_TRAIN: 256}
    DATASETS: {TRAIN: [demo_trees_train], TEST: []}
    DATALOADER: {NUM_WORKERS: 0}
    SOLVER: {IMS_PER_BATCH: 2, BASE_LR: 0.01}
    """


@pytest.mark.parametrize("design", sorted(EXTERNAL_CONFIGS))
def test_external_config_trains(design, tmp_path, demo_root):
    path = tmp_path / f"my_project_{design}.yaml"
    path.write_text(textwrap.dedent(EXTERNAL_CONFIGS[design]) + textwrap.dedent(COMMON))

    resnext_det.register_resnext_backbone()
    cfg = resnext_det.add_resnext_config(get_cfg())
    cfg.merge_from_file(str(path))
    model = build_model(cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.SOLVER.BASE_LR, momentum=0.9)
    trainer = SimpleTrainer(model, build_detection_train_loader(cfg), optimizer)
    trainer.train(0, 3)

    losses = trainer.storage.latest()
    assert all(torch.isfinite(torch.tensor(losses[k][0])) for k in losses if k.startswith("loss"))
    stem = (
        "backbone.bottom_up.stem.conv1.weight" if design == "fpn" else "backbone.stem.conv1.weight"
    )
    assert not torch.equal(before[stem], model.state_dict()[stem])
    head = "roi_heads.res5.0.conv2.weight" if design == "c4" else "roi_heads.box_head.fc1.weight"
    assert not torch.equal(before[head], model.state_dict()[head])
