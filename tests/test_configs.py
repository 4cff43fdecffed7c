"""Every yaml under configs/ loads and builds a detector with the backbone it names."""

import pytest
from detectron2.modeling import build_model

from resnext_det.modeling import ResNeXtSpec
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.pretrain import build_classifier, build_pretrain_config

from ._paths import CONFIGS

PRETRAIN_FOLDERS = ("imagenet", "cifar")  # classification pretraining, not Detectron2 configs
ALL_CONFIGS = sorted(
    p for p in CONFIGS.rglob("*.yaml") if p.relative_to(CONFIGS).parts[0] not in PRETRAIN_FOLDERS
)
PRETRAIN_CONFIGS = sorted(
    p for folder in PRETRAIN_FOLDERS for p in (CONFIGS / folder).glob("*.yaml")
)
PAPER_SET = {
    "R50": (50, 1, 64),
    "X50_32x4d": (50, 32, 4),
    "R101": (101, 1, 64),
    "X101_32x4d": (101, 32, 4),
    "X101_64x4d": (101, 64, 4),
    "X101_32x8d": (101, 32, 8),
    "X152_32x8d": (152, 32, 8),
}


def test_the_paper_set_is_complete():
    names = {p.name for p in ALL_CONFIGS}
    for model in PAPER_SET:
        assert f"faster_rcnn_{model}.yaml" in names
        assert f"faster_rcnn_{model}_FPN.yaml" in names
    assert {"Base-RCNN-C4-ResNeXt.yaml", "Base-RCNN-FPN-ResNeXt.yaml"} <= names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_builds(path):
    cfg = build_config(str(path), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    spec = ResNeXtSpec.from_config(cfg)
    model_name = path.stem.replace("faster_rcnn_", "")
    for suffix in ("_FPN", "_rpn", "_fast_rcnn"):
        model_name = model_name.removesuffix(suffix)
    if model_name in PAPER_SET:
        assert (spec.depth, spec.cardinality, spec.bottleneck_width) == PAPER_SET[model_name]
    fpn = cfg.MODEL.BACKBONE.NAME == "build_resnext_fpn_backbone"
    trunk = model.backbone.bottom_up if fpn else model.backbone
    assert trunk.res2[0].conv2.groups == spec.cardinality
    if not fpn:  # C4: trunk stops at res4, res5 runs in the RoI head (none in an RPN-only model)
        assert not hasattr(trunk, "res5")
        if cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
            assert len(model.roi_heads.res5) == 3
            assert model.roi_heads.res5[0].conv2.groups == spec.cardinality


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_pretraining_config_loads_and_builds(path):
    cfg = build_pretrain_config(str(path))
    model = build_classifier(cfg)
    assert model.linear.out_features == cfg.MODEL.NUM_CLASSES


def test_paper_configs_are_thin_children():
    for path in CONFIGS.glob("faster_rcnn_*.yaml"):
        text = path.read_text()
        assert text.startswith('_BASE_: "Base-RCNN-'), path
        assert len(text.splitlines()) <= 10, path
