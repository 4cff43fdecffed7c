"""Bad values end in one clear ValueError naming the key, the value and what is allowed."""

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from resnext_det import add_resnext_config
from resnext_det.modeling import ResNeXtSpec
from resnext_det.reproduction.engine import build_config, check_can_train
from resnext_det.reproduction.engine.validate import check_head_inputs

from ._paths import CONFIGS

TINY = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14"]


def _build(config: str, *opts):
    """As the tools build: the heads' inputs checked up front, then the model."""
    cfg = build_config(str(CONFIGS / config), [*TINY, *opts])
    check_head_inputs(cfg)
    return build_model(cfg)


@pytest.mark.parametrize(
    "opts,message",
    [
        (
            ("MODEL.RESNETS.DEPTH", "77"),
            r"MODEL\.RESNETS\.DEPTH=77 is not supported; expected one of 14, 26, 50, 101, 152, 200",
        ),
        (
            ("MODEL.RESNETS.NUM_GROUPS", "0"),
            r"MODEL\.RESNETS\.NUM_GROUPS=0 is invalid; expected an integer >= 1",
        ),
        (
            ("MODEL.RESNETS.WIDTH_PER_GROUP", "-4"),
            r"MODEL\.RESNETS\.WIDTH_PER_GROUP=-4 is invalid; expected an integer >= 1",
        ),
        (
            ("MODEL.RESNEXT.BLOCK_FORM", "d"),
            r"MODEL\.RESNEXT\.BLOCK_FORM='d' is not a block form; expected one of 'a'",
        ),
        (
            ("MODEL.RESNETS.NORM", "LN"),
            r"MODEL\.RESNETS\.NORM='LN' is not supported; expected one of FrozenBN, BN, SyncBN, GN",
        ),
        (
            ("MODEL.RESNETS.OUT_FEATURES", "['res6']"),
            r"MODEL\.RESNETS\.OUT_FEATURES=\['res6'\] names 'res6', which is no stage.*expected names among stem, res2, res3, res4, res5",
        ),
        (
            ("MODEL.RESNETS.OUT_FEATURES", "['res3']"),
            r"MODEL\.RPN\.IN_FEATURES=\['res4'\] asks for \['res4'\], but the backbone gives only \['res3'\]",
        ),
        (
            ("MODEL.RESNETS.OUT_FEATURES", "['res4', 'res5']"),
            r"builds res5 in the backbone, but the C4 head .* holds res5 itself",
        ),
        (
            ("MODEL.BACKBONE.FREEZE_AT", "9"),
            r"MODEL\.BACKBONE\.FREEZE_AT=9 is invalid; expected an integer in 0\.\.5",
        ),
        (
            (
                "MODEL.RESNETS.NORM",
                "GN",
                "MODEL.RESNETS.NUM_GROUPS",
                "2",
                "MODEL.RESNETS.WIDTH_PER_GROUP",
                "40",
            ),
            r"NORM='GN' needs channel counts divisible by 32, but MODEL\.RESNETS\.NUM_GROUPS x WIDTH_PER_GROUP gives 80",
        ),
        (
            (
                "MODEL.RESNETS.NORM",
                "GN",
                "MODEL.RESNEXT.BLOCK_FORM",
                "a",
                "MODEL.RESNETS.NUM_GROUPS",
                "64",
            ),
            r"BLOCK_FORM='a' with MODEL\.RESNETS\.NORM='GN' needs MODEL\.RESNETS\.NUM_GROUPS to divide 32",
        ),
        (
            ("MODEL.ROI_HEADS.IN_FEATURES", "['res3']"),
            r"MODEL\.ROI_HEADS\.IN_FEATURES=\['res3'\] is invalid for the C4 head ResNeXtRes5ROIHeads; expected \['res4'\]",
        ),
    ],
)
def test_c4_bad_values(opts, message):
    with pytest.raises(ValueError, match=message):
        _build("faster_rcnn_X50_32x4d.yaml", *opts)


def test_fpn_in_feature_missing_from_backbone():
    with pytest.raises(
        ValueError,
        match=r"MODEL\.FPN\.IN_FEATURES=\['res3', 'res4', 'res5'\] asks for \['res5'\].*MODEL\.RESNETS\.OUT_FEATURES=\['res3', 'res4'\]",
    ):
        _build(
            "faster_rcnn_X50_32x4d_FPN.yaml",
            "MODEL.RESNETS.OUT_FEATURES",
            "['res3', 'res4']",
            "MODEL.FPN.IN_FEATURES",
            "['res3', 'res4', 'res5']",
        )


def test_wrong_types_are_named():
    # In a yaml or on the command line, yacs already refuses a value of the wrong type.
    with pytest.raises(
        ValueError, match=r"MODEL\.RESNETS\.DEPTH=fifty is a string; expected an integer like the"
    ):
        _build("faster_rcnn_X50_32x4d.yaml", "MODEL.RESNETS.DEPTH", "fifty")
    # From Python, the spec checks types itself.
    with pytest.raises(
        ValueError, match=r"MODEL\.RESNETS\.STRIDE_IN_1X1='yes' is a string; expected True or False"
    ):
        ResNeXtSpec(stride_in_1x1="yes")
    with pytest.raises(ValueError, match=r"MODEL\.RESNETS\.DEPTH=50\.0 is not supported"):
        ResNeXtSpec(depth=50.0)
    with pytest.raises(
        ValueError, match=r"MODEL\.RESNETS\.NUM_GROUPS=True is a boolean; expected an integer >= 1"
    ):
        ResNeXtSpec(cardinality=True)


def test_rpn_asking_for_a_missing_feature():
    with pytest.raises(
        ValueError,
        match=r"MODEL\.RPN\.IN_FEATURES=\['p2', 'p9'\] asks for \['p9'\], but the backbone gives only \['p2', 'p3', 'p4', 'p5', 'p6'\]",
    ):
        check_head_inputs(
            build_config(
                str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.yaml"),
                [*TINY, "MODEL.RPN.IN_FEATURES", "['p2', 'p9']"],
            )
        )


def test_a_detectron2_config_without_our_node_builds_what_it_describes():
    # Detectron2's defaults describe its R50 (1x64d, stride in the 1x1); MODEL.RESNEXT's
    # defaults (form c, the speed options) apply without add_resnext_config.
    spec = ResNeXtSpec.from_config(get_cfg())
    assert spec == ResNeXtSpec(50, 1, 64, block_form="c", stride_in_1x1=True)


def test_add_resnext_config_is_idempotent():
    cfg = add_resnext_config(get_cfg())
    cfg.MODEL.RESNETS.DEPTH = 101
    add_resnext_config(cfg)
    assert cfg.MODEL.RESNETS.DEPTH == 101


def test_training_frozen_random_layers_is_refused():
    # The shipped config names its ImageNet weights; without them:
    cfg = build_config(str(CONFIGS / "faster_rcnn_X50_32x4d.yaml"), ["MODEL.WEIGHTS", ""])
    with pytest.raises(ValueError, match=r"MODEL\.WEIGHTS is empty.*FREEZE_AT=2.*NORM='FrozenBN'"):
        check_can_train(cfg)
    cfg.MODEL.WEIGHTS = "imagenet_x50.pth"
    check_can_train(cfg)  # pretrained weights: fine
    demo = build_config(str(CONFIGS / "demo" / "faster_rcnn_X14_32x4d_demo.yaml"))
    check_can_train(demo)  # from scratch with GN and nothing frozen: fine


def test_every_rule_names_a_key_detectron2_has():
    """The up-front rules name Detectron2's own keys; a release that renames one fails here,
    not as a KeyError in a user's run."""
    from resnext_det.reproduction.engine import validate
    from resnext_det.utils.value_checks import lookup

    cfg = add_resnext_config(get_cfg())
    rules = [
        *validate.SOLVER_RULES,
        *validate.TRAIN_INPUT_RULES,
        *validate.INPUT_RULES,
        *(("SOLVER.CLIP_GRADIENTS." + k, None) for k in ("CLIP_TYPE", "CLIP_VALUE")),
        *((key, None) for keys in validate.CLASS_COUNT_KEYS.values() for key in keys),
    ]
    assert len(rules) > 30
    for key, _ in rules:
        lookup(cfg, key)  # KeyError if Detectron2 no longer has it
