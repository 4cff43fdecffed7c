"""The speed options (frozen-BN folding, memory format) leave every output unchanged."""

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from resnext_det.engine import build_config
from resnext_det.modeling import ResNeXtSpec, build_resnext
from resnext_det.modeling.speed import (
    CHANNELS_LAST_MIN_SIDE,
    FoldedFrozenNormConv2d,
    LayoutConv2d,
    to_memory_format,
)

from ._paths import CONFIGS

FEATURES = ["stem", "res2", "res3", "res4", "res5"]
PLAIN = {"fold_frozen_bn": False, "memory_format": "contiguous"}


def _randomize_frozen_norms(model):
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            for tensor, low in [
                (module.weight, 0.5),
                (module.bias, -0.2),
                (module.running_mean, -0.2),
                (module.running_var, 0.5),
            ]:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + low)
    return model


def _pair(options, freeze_at=0, norm="FrozenBN"):
    spec = ResNeXtSpec(depth=14, norm=norm)
    plain = _randomize_frozen_norms(
        build_resnext(spec, out_features=FEATURES, freeze_at=freeze_at, **PLAIN)
    )
    fast = build_resnext(spec, out_features=FEATURES, freeze_at=freeze_at, **options)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last", "auto"])
@pytest.mark.parametrize("batch,size", [(1, 64), (4, 256)])
def test_inference_outputs_are_unchanged(memory_format, batch, size):
    plain, fast = _pair({"fold_frozen_bn": True, "memory_format": memory_format})
    assert list(fast.state_dict()) == list(plain.state_dict())  # checkpoints load as before
    assert sum(isinstance(m, FoldedFrozenNormConv2d) for m in fast.modules()) == 1 + 4 * (
        3 + 1
    )  # stem; 3 convs + shortcut per block
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        expected, actual = plain.eval()(x), fast.eval()(x)
    for name in FEATURES:
        scale = expected[name].abs().max()
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-4 * scale)


def test_training_gradients_are_unchanged():
    """Frozen stages (stem, res2) run folded; trainable convs keep conv-then-norm, so the
    gradients of every trainable weight are Detectron2's."""
    plain, fast = _pair({"fold_frozen_bn": True, "memory_format": "contiguous"}, freeze_at=2)
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, fast):
        model.train()
        model(x)["res5"].square().mean().backward()
    folded_stages = {
        name.split(".")[0]
        for name, m in fast.named_modules()
        if isinstance(m, FoldedFrozenNormConv2d) and not m.weight.requires_grad
    }
    assert folded_stages == {"stem", "res2"}
    grads = {name: p.grad for name, p in plain.named_parameters() if p.requires_grad}
    for name, parameter in fast.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter.grad, grads[name], rtol=1e-4, atol=1e-7)


def test_folded_weights_follow_in_place_updates():
    plain, fast = _pair({"fold_frozen_bn": True, "memory_format": "contiguous"})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast.eval()(x)  # fills the cache
        for model in (plain, fast):  # an optimizer step and a new statistic, in place
            model.res3[0].conv2.weight.mul_(1.5)
            model.res3[0].conv2.norm.running_var.add_(0.25)
        torch.testing.assert_close(fast(x)["res5"], plain.eval()(x)["res5"], rtol=1e-4, atol=1e-5)


def test_bn_and_gn_models_are_left_as_they_are():
    for norm in ("BN", "GN"):
        model = build_resnext(ResNeXtSpec(depth=14, norm=norm), out_features=["res5"])
        assert not any(isinstance(m, FoldedFrozenNormConv2d) for m in model.modules())
        assert any(type(m) is LayoutConv2d for m in model.modules())


def test_memory_format_by_map_size():
    small, large = torch.zeros(8, 64, 7, 7), torch.zeros(1, 64, 14, 14)
    assert CHANNELS_LAST_MIN_SIDE == 14
    assert to_memory_format(small, "auto").is_contiguous()
    assert to_memory_format(large, "auto").is_contiguous(memory_format=torch.channels_last)
    assert to_memory_format(large, "contiguous").is_contiguous()
    assert to_memory_format(small, "channels_last").is_contiguous(memory_format=torch.channels_last)


def test_auto_runs_each_conv_in_its_layout():
    """One 224 px image: convs on maps of 14 px and more in channels_last, res5's 7 px ones
    contiguous (its first block's conv1, conv2 and shortcut still see the 14 px map)."""
    model = build_resnext(ResNeXtSpec(depth=26), out_features=FEATURES, memory_format="auto")
    layouts = {}

    def record(name):
        def hook(module, args, output):  # a conv's output keeps its input's layout
            layouts[name] = output.is_contiguous(memory_format=torch.channels_last)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(record(name))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    contiguous = sorted(name for name, channels_last in layouts.items() if not channels_last)
    assert contiguous == ["res5.0.conv3", "res5.1.conv1", "res5.1.conv2", "res5.1.conv3"]


@pytest.mark.parametrize("config", ["faster_rcnn_X50_32x4d.yaml", "faster_rcnn_X50_32x4d_FPN.yaml"])
def test_whole_detectors_detect_the_same_boxes(config):
    opts = [
        "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14", "MODEL.RPN.POST_NMS_TOPK_TEST", "300",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # random weights score every class ~1/81
    ]  # fmt: skip
    plain_cfg = build_config(
        str(CONFIGS / config),
        [
            *opts,
            "MODEL.RESNEXT.FOLD_FROZEN_BN",
            "False",
            "MODEL.RESNEXT.MEMORY_FORMAT",
            "contiguous",
        ],
    )
    torch.manual_seed(0)
    plain = _randomize_frozen_norms(build_model(plain_cfg)).eval()
    fast = build_model(build_config(str(CONFIGS / config), opts)).eval()
    fast.load_state_dict(plain.state_dict())
    assert any(isinstance(m, FoldedFrozenNormConv2d) for m in fast.roi_heads.modules()) == (
        "FPN" not in config
    )
    image = torch.rand(3, 320, 480) * 255
    with torch.no_grad():
        expected = plain([{"image": image}])[0]["instances"]
        actual = fast([{"image": image}])[0]["instances"]
    assert len(actual) == len(expected) > 0
    torch.testing.assert_close(actual.scores, expected.scores, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(
        actual.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=1e-3, atol=1e-2
    )


def test_bad_speed_options_are_named():
    with pytest.raises(ValueError, match=r"MODEL\.RESNEXT\.MEMORY_FORMAT='nhwc' is not supported"):
        build_resnext(ResNeXtSpec(depth=14), out_features=["res2"], memory_format="nhwc")
    with pytest.raises(
        ValueError,
        match=r"MODEL\.RESNEXT\.FOLD_FROZEN_BN='yes' is a string; expected True or False",
    ):
        build_resnext(ResNeXtSpec(depth=14), out_features=["res2"], fold_frozen_bn="yes")
