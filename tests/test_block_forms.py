"""The paper's three block forms compute the same function once weights are mapped."""

import pytest
import torch
from torch import nn

from resnext_det.modeling import (
    EarlyConcatBlock,
    ResNeXtSpec,
    SplitTransformSumBlock,
    build_resnext,
    convert_block_form,
)

FEATURES = ["res2", "res3", "res4", "res5"]


def _randomize_norms(model: nn.Module) -> None:
    """Non-trivial norm parameters and statistics, so a mis-mapped channel shows."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(module, name, None)
            if isinstance(module, (nn.Conv2d, nn.Linear)) or tensor is None:
                continue
            low = 0.5 if name in ("weight", "running_var") else -0.2
            with torch.no_grad():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + low)


def _pair(form, norm, cardinality=8, width=4, depth=14):
    grouped = build_resnext(
        ResNeXtSpec(depth=depth, cardinality=cardinality, bottleneck_width=width, norm=norm),
        out_features=FEATURES,
    )
    _randomize_norms(grouped)
    other = build_resnext(
        ResNeXtSpec(
            depth=depth, cardinality=cardinality, bottleneck_width=width, norm=norm, block_form=form
        ),
        out_features=FEATURES,
    )
    other.load_state_dict(convert_block_form(grouped.state_dict(), source="c", target=form))
    return grouped, other


@pytest.mark.parametrize("form", ["a", "b"])
@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "GN"])
def test_forms_give_the_same_outputs(form, norm):
    torch.manual_seed(0)
    grouped, other = _pair(form, norm)
    x = torch.randn(2, 3, 64, 64)
    for mode in ("eval", "train"):  # train: BN normalises with batch statistics
        getattr(grouped, mode)()
        getattr(other, mode)()
        with torch.no_grad():
            ours, reference = other(x), grouped(x)
        for name in FEATURES:
            torch.testing.assert_close(ours[name], reference[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("form", ["a", "b"])
def test_forms_give_the_same_gradients(form):
    torch.manual_seed(0)
    grouped, other = _pair(form, "BN", cardinality=4, width=8)
    x = torch.randn(2, 3, 64, 64)
    grouped(x)["res5"].square().mean().backward()
    other(x)["res5"].square().mean().backward()
    grads = {k: p.grad for k, p in other.named_parameters()}
    mapped = convert_block_form(grads, source=form, target="c")
    for name, parameter in grouped.named_parameters():
        # Sums run in another order in each form: compare at float32 precision of the scale.
        scale = parameter.grad.abs().max().item()
        torch.testing.assert_close(mapped[name], parameter.grad, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("form", ["a", "b"])
def test_mapping_round_trips_exactly(form):
    grouped, other = _pair(form, "BN")
    back = convert_block_form(other.state_dict(), source=form, target="c")
    reference = grouped.state_dict()
    assert set(back) == set(reference)
    for key, value in reference.items():
        assert torch.equal(back[key], value), key
    a_to_b = convert_block_form(
        convert_block_form(other.state_dict(), source=form, target="a"), source="a", target="b"
    )
    assert set(a_to_b) == set(convert_block_form(reference, source="c", target="b"))


def test_block_modules_of_each_form():
    a = build_resnext(ResNeXtSpec(depth=14, block_form="a"), out_features=["res2"]).res2[0]
    b = build_resnext(ResNeXtSpec(depth=14, block_form="b"), out_features=["res2"]).res2[0]
    assert isinstance(a, SplitTransformSumBlock) and len(a.paths) == 32
    assert isinstance(b, EarlyConcatBlock) and len(b.paths) == 32
    # Form (a): every path ends in its own 1x1 to the block's output width.
    assert a.paths[0].conv3.weight.shape == (256, 4, 1, 1)
    # Form (b): paths stop after the 3x3; one 1x1 takes the concatenation.
    assert a.paths[0].conv2.weight.shape == b.paths[0].conv2.weight.shape == (4, 4, 3, 3)
    assert b.conv3.weight.shape == (256, 128, 1, 1)


def test_mapping_leaves_other_keys_alone():
    grouped, _ = _pair("a", "BN")
    state = {f"backbone.bottom_up.{k}": v for k, v in grouped.state_dict().items()}
    state["roi_heads.box_predictor.cls_score.weight"] = torch.randn(2, 8)
    mapped = convert_block_form(state, source="c", target="a")
    assert torch.equal(
        mapped["roi_heads.box_predictor.cls_score.weight"],
        state["roi_heads.box_predictor.cls_score.weight"],
    )
    assert torch.equal(
        mapped["backbone.bottom_up.stem.conv1.weight"],
        state["backbone.bottom_up.stem.conv1.weight"],
    )
    assert "backbone.bottom_up.res2.0.paths.7.conv3.weight" in mapped


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match=r"target='d' .*expected one of 'a', 'b', 'c'"):
        convert_block_form({}, source="c", target="d")
