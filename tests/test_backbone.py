"""The ResNeXt backbone in the paper's terms, checked against Table 1 and Detectron2."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from resnext_det.modeling import (
    BLOCKS_PER_STAGE,
    ResNeXtSpec,
    build_resnext,
    build_resnext_classifier,
)

ALL_FEATURES = ["stem", "res2", "res3", "res4", "res5"]


@pytest.mark.parametrize("depth", [50, 101, 152])
@pytest.mark.parametrize("cardinality,width", [(1, 64), (32, 4), (64, 4), (2, 40), (8, 14)])
def test_stage_channels_strides_and_shapes(depth, cardinality, width):
    spec = ResNeXtSpec(depth=depth, cardinality=cardinality, bottleneck_width=width, norm="BN")
    backbone = build_resnext(spec, out_features=ALL_FEATURES)
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "stem": (64, 4),
        "res2": (256, 4),
        "res3": (512, 8),
        "res4": (1024, 16),
        "res5": (2048, 32),
    }
    for index, stage in enumerate(["res2", "res3", "res4", "res5"]):
        blocks = list(getattr(backbone, stage))
        assert len(blocks) == BLOCKS_PER_STAGE[depth][index]
        # Width rule: C*d in res2, doubled at every stage; C groups in the 3x3 conv.
        conv2 = blocks[0].conv2
        assert conv2.out_channels == cardinality * width * 2**index
        assert conv2.groups == cardinality
        assert blocks[0].stride == (1 if stage == "res2" else 2)
    outputs = backbone(torch.randn(1, 3, 64, 96))
    for name, out in outputs.items():
        stride = shapes[name].stride
        assert out.shape == (1, shapes[name].channels, 64 // stride, 96 // stride)


def test_table1_x50_widths():
    backbone = build_resnext(ResNeXtSpec(), out_features=["res5"])
    # Table 1: conv2 [1x1,128; 3x3,128,C=32; 1x1,256] ... conv5 [1x1,1024; 3x3,1024; 1x1,2048]
    for stage, (mid, out) in {
        "res2": (128, 256),
        "res3": (256, 512),
        "res4": (512, 1024),
        "res5": (1024, 2048),
    }.items():
        block = getattr(backbone, stage)[0]
        assert (block.conv1.out_channels, block.conv2.out_channels, block.conv3.out_channels) == (
            mid,
            mid,
            out,
        )


def test_stride_placement():
    paper = build_resnext(ResNeXtSpec(norm="BN"), out_features=["res3"]).res3[0]
    msra = build_resnext(ResNeXtSpec(norm="BN", stride_in_1x1=True), out_features=["res3"]).res3[0]
    assert paper.conv1.stride == (1, 1) and paper.conv2.stride == (2, 2)
    assert msra.conv1.stride == (2, 2) and msra.conv2.stride == (1, 1)


def test_backbone_stops_at_last_out_feature():
    c4_trunk = build_resnext(ResNeXtSpec(), out_features=["res4"])
    assert hasattr(c4_trunk, "res4") and not hasattr(c4_trunk, "res5")
    assert list(c4_trunk(torch.randn(1, 3, 64, 64))) == ["res4"]


@pytest.mark.parametrize(
    "norm,expected",
    [
        ("FrozenBN", FrozenBatchNorm2d),
        ("BN", nn.BatchNorm2d),
        ("GN", nn.GroupNorm),
        ("SyncBN", nn.SyncBatchNorm),
    ],
)
def test_norm_choice(norm, expected):
    backbone = build_resnext(ResNeXtSpec(norm=norm, depth=50), out_features=["res2"])
    assert isinstance(backbone.res2[0].conv2.norm, expected)
    assert isinstance(backbone.stem.conv1.norm, expected)


def test_freeze_at():
    backbone = build_resnext(ResNeXtSpec(norm="BN"), out_features=["res4"], freeze_at=3)
    frozen = {name.split(".")[0] for name, p in backbone.named_parameters() if not p.requires_grad}
    trained = {name.split(".")[0] for name, p in backbone.named_parameters() if p.requires_grad}
    assert frozen == {"stem", "res2", "res3"} and trained == {"res4"}
    # Frozen stages also freeze their BN statistics.
    assert isinstance(backbone.res3[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(backbone.res4[0].conv1.norm, nn.BatchNorm2d)


def _detectron2_resnet(depth, groups, width, stride_in_1x1=False):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NUM_GROUPS = groups
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = width
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = stride_in_1x1
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize(
    "cardinality,width,stride_in_1x1", [(1, 64, True), (1, 64, False), (32, 4, False)]
)
def test_matches_detectron2_resnet_layer_by_layer(cardinality, width, stride_in_1x1):
    """1x64d is Detectron2's ResNet-50; 32x4d its ResNeXt-50: same names, shapes, outputs."""
    theirs = _detectron2_resnet(50, cardinality, width, stride_in_1x1).eval()
    spec = ResNeXtSpec(
        cardinality=cardinality, bottleneck_width=width, norm="BN", stride_in_1x1=stride_in_1x1
    )
    # Detectron2's layout, so that the same kernels run and outputs agree bit for bit (the
    # faster layouts agree to float precision: test_speed_options.py).
    ours = build_resnext(
        spec, out_features=["res2", "res3", "res4", "res5"], memory_format="contiguous"
    ).eval()
    their_state = theirs.state_dict()
    our_state = ours.state_dict()
    assert list(our_state) == list(their_state)
    assert all(our_state[k].shape == their_state[k].shape for k in their_state)
    # Make the BN statistics non-trivial so that a misplaced layer would show.
    for module in theirs.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        mine, reference = ours.stem(x), theirs.stem(x)
        torch.testing.assert_close(mine, reference, rtol=0, atol=0)
        for stage in ["res2", "res3", "res4", "res5"]:
            for our_block, their_block in zip(getattr(ours, stage), getattr(theirs, stage)):
                mine, reference = our_block(mine), their_block(reference)
                torch.testing.assert_close(mine, reference, rtol=0, atol=0)


@pytest.mark.parametrize("cardinality,width,paper_millions", [(1, 64, 25.5), (32, 4, 25.0)])
def test_classifier_parameter_count_matches_table1(cardinality, width, paper_millions):
    spec = ResNeXtSpec(cardinality=cardinality, bottleneck_width=width, norm="BN")
    model = build_resnext_classifier(spec, num_classes=1000)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - paper_millions) / paper_millions < 0.005, millions
    logits = model(torch.randn(1, 3, 224, 224))["linear"]
    assert logits.shape == (1, 1000)


def test_template_parameters_match_table2():
    """Table 2: a res2 block template C*(256*d + 3*3*d*d + d*256) conv weights, ~70k."""
    for cardinality, width in [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)]:
        spec = ResNeXtSpec(cardinality=cardinality, bottleneck_width=width, norm="BN")
        block = build_resnext(spec, out_features=["res2"]).res2[1]  # identity shortcut
        conv_weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))
        assert conv_weights == cardinality * (256 * width + 9 * width * width + width * 256)
        assert 69_000 <= conv_weights <= 72_000


def test_spec_names_the_template():
    assert ResNeXtSpec().template == "32x4d"
    assert str(ResNeXtSpec(cardinality=1, bottleneck_width=64, depth=101)).startswith(
        "ResNet-101 (1x64d"
    )
