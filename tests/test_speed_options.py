"""The speed options change no output and no module: the layout rule and the fuse step."""

import pytest
import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model

from resnext_det.modeling import ResNeXtSpec, build_resnext, fuse_frozen_batchnorm
from resnext_det.modeling.speed import CHANNELS_LAST_MIN_SIDE, to_memory_format
from resnext_det.reproduction.engine import build_config

from ._models import randomize_norms
from ._paths import CONFIGS

FEATURES = ["stem", "res2", "res3", "res4", "res5"]


def _trunk(memory_format="auto", norm="FrozenBN", depth=14):
    torch.manual_seed(0)
    model = build_resnext(
        ResNeXtSpec(depth=depth, norm=norm), out_features=FEATURES, memory_format=memory_format
    )
    return randomize_norms(model).eval()


def _assert_features_close(actual, expected):
    for name in expected:
        scale = expected[name].abs().max()
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("memory_format", ["channels_last", "auto"])
@pytest.mark.parametrize("batch,size", [(1, 64), (2, 224)])
def test_a_layout_changes_no_value(memory_format, batch, size):
    plain, fast = _trunk("contiguous"), _trunk(memory_format)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        _assert_features_close(fast(x), plain(x))


def test_auto_gives_each_stage_its_layout():
    """Stages whose input map is 14 px or more run in channels_last, smaller ones contiguous
    (a 128 px image: res5's input is 8 px)."""
    model = _trunk("auto", depth=26)
    layouts = {}

    def record(name):
        def hook(module, args):
            layouts[name] = args[0].is_contiguous(memory_format=torch.channels_last)

        return hook

    for name in ("stem", "res2", "res3", "res4", "res5"):
        getattr(model, name).register_forward_pre_hook(record(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 128, 128))
    assert layouts == {"stem": True, "res2": True, "res3": True, "res4": True, "res5": False}


def test_memory_format_by_map_size():
    small, large = torch.zeros(8, 64, 7, 7), torch.zeros(1, 64, 14, 14)
    assert CHANNELS_LAST_MIN_SIDE == 14
    assert to_memory_format(small, "auto").is_contiguous()
    assert to_memory_format(large, "auto").is_contiguous(memory_format=torch.channels_last)
    assert to_memory_format(large, "contiguous").is_contiguous()
    assert to_memory_format(small, "channels_last").is_contiguous(memory_format=torch.channels_last)


def test_fusing_keeps_the_function_and_leaves_the_model_alone():
    model = _trunk()
    fused = fuse_frozen_batchnorm(model)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())  # a copy was fused
    assert all(type(m) is Conv2d for m in fused.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        _assert_features_close(fused(x), model(x))
    assert fuse_frozen_batchnorm(model, inplace=True) is model


def test_a_fused_model_follows_its_parameters():
    """Nothing is cached: the fused weights are the parameters, and edits reach the output."""
    fused = fuse_frozen_batchnorm(_trunk())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = fused(x)["res5"]
        fused.res3[0].conv2.weight.data.mul_(0.5)
        after = fused(x)["res5"]
    assert not torch.allclose(before, after)


def test_group_norm_models_run_contiguous_and_refuse_channels_last():
    gn = _trunk("auto", norm="GN")
    assert gn.memory_format == "contiguous"
    with pytest.raises(
        ValueError,
        match=r"MODEL\.RESNEXT\.MEMORY_FORMAT='channels_last' with MODEL\.RESNETS\.NORM='GN' would "
        r"lose float32 precision",
    ):
        _trunk("channels_last", norm="GN")
    # GroupNorm after the backbone: the FPN of a FrozenBN trunk.
    cfg = build_config(
        str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14", "MODEL.FPN.NORM", "GN"],
    )
    assert build_model(cfg).backbone.bottom_up.memory_format == "contiguous"
    cfg.MODEL.RESNEXT.MEMORY_FORMAT = "channels_last"
    with pytest.raises(ValueError, match=r"with MODEL\.FPN\.NORM='GN' would lose"):
        build_model(cfg)
    cfg.MODEL.FPN.NORM = ""
    assert build_model(cfg).backbone.bottom_up.memory_format == "channels_last"


def test_bad_memory_format_is_named():
    with pytest.raises(ValueError, match=r"MODEL\.RESNEXT\.MEMORY_FORMAT='nhwc' is not supported"):
        build_resnext(ResNeXtSpec(depth=14), out_features=["res2"], memory_format="nhwc")


@pytest.mark.parametrize("config", ["faster_rcnn_X50_32x4d.yaml", "faster_rcnn_X50_32x4d_FPN.yaml"])
def test_whole_detectors_detect_the_same_boxes_with_every_option(config):
    opts = [
        "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14", "MODEL.RPN.POST_NMS_TOPK_TEST", "300",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # random weights score every class ~1/81
    ]  # fmt: skip
    plain_cfg = build_config(
        str(CONFIGS / config),
        [
            *opts,
            "MODEL.RESNEXT.MEMORY_FORMAT",
            "contiguous",
            "MODEL.RESNEXT.SPARSE_ROI_ALIGN",
            "False",
        ],
    )
    torch.manual_seed(0)
    plain = randomize_norms(build_model(plain_cfg)).eval()
    fast = build_model(build_config(str(CONFIGS / config), opts)).eval()
    fast.load_state_dict(plain.state_dict())
    image = torch.rand(3, 320, 480) * 255
    with torch.no_grad():
        expected = plain([{"image": image}])[0]["instances"]
        for model in (fast, fuse_frozen_batchnorm(fast)):
            actual = model([{"image": image}])[0]["instances"]
            assert len(actual) == len(expected) > 0
            torch.testing.assert_close(actual.scores, expected.scores, rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(
                actual.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=1e-3, atol=1e-2
            )
