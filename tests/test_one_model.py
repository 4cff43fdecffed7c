"""One model: the plugin's network is Detectron2's, however it is built, changed or run.

Each test holds our model against Detectron2's own model of the same zoo config (the
backbone's name switched), built with the same seed and given the same edit.
"""

import copy

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.model_zoo import get_config_file
from detectron2.modeling import build_model
from torch import nn

from resnext_det import add_resnext_config
from resnext_det.reproduction.engine import Trainer, build_config

from ._models import randomize_norms
from ._paths import CONFIGS, DEMO_CONFIG

SWITCH = {
    "build_resnet_backbone": "build_resnext_backbone",
    "build_resnet_fpn_backbone": "build_resnext_fpn_backbone",
}
FPN = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
C4 = "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"
GN = "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"


def _configs(zoo_name):
    theirs = get_cfg()
    theirs.merge_from_file(get_config_file(zoo_name))
    theirs.MODEL.DEVICE = "cpu"
    theirs.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    ours = add_resnext_config(theirs.clone())
    ours.MODEL.BACKBONE.NAME = SWITCH[theirs.MODEL.BACKBONE.NAME]
    if ours.MODEL.ROI_HEADS.NAME == "Res5ROIHeads":
        ours.MODEL.ROI_HEADS.NAME = "ResNeXtRes5ROIHeads"
    return theirs, ours


def _pair(zoo_name):
    """Detectron2's model and ours, each built after the same seed."""
    models = []
    for cfg in _configs(zoo_name):
        torch.manual_seed(0)
        models.append(build_model(cfg).eval())
    return models


@pytest.mark.parametrize("zoo_name", [FPN, C4])
def test_the_same_seed_initialises_every_tensor_as_detectron2(zoo_name):
    theirs, ours = _pair(zoo_name)
    expected, actual = theirs.state_dict(), ours.state_dict()
    assert list(actual) == list(expected)
    assert [k for k in expected if not torch.equal(actual[k], expected[k])] == []


@pytest.mark.parametrize("zoo_name", [FPN, C4])
def test_modules_are_detectron2_s_but_where_the_plugin_needs_its_own(zoo_name):
    theirs, ours = _pair(zoo_name)
    expected = {name: type(m).__name__ for name, m in theirs.named_modules()}
    actual = {name: type(m).__name__ for name, m in ours.named_modules()}
    assert actual.keys() == expected.keys()
    differ = {
        name: (expected[name], actual[name]) for name in expected if actual[name] != expected[name]
    }
    trunk = "backbone.bottom_up" if zoo_name == FPN else "backbone"
    allowed = {trunk: ("ResNet", "ResNeXt"), "roi_heads": ("Res5ROIHeads", "ResNeXtRes5ROIHeads")}
    assert differ.items() <= allowed.items()


def _image():
    return torch.rand(3, 160, 192, generator=torch.Generator().manual_seed(0)) * 255


def _outputs(model, image, proposals=None):
    """Every stage's output without a cut that float rounding could move (no NMS, no
    score threshold): the features, the RPN head's logits and deltas on every anchor, and
    the box predictor's scores and deltas on the given proposals (default: the model's)."""
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        rpn = model.proposal_generator
        rpn_features = [features[name] for name in rpn.in_features]
        logits, deltas = rpn.rpn_head(rpn_features)
        if proposals is None:
            proposals = rpn(images, features)[0]
        boxes = [p.proposal_boxes for p in proposals]
        heads = model.roi_heads
        if hasattr(heads, "res5"):  # C4
            pooled = heads._shared_roi_transform([features[f] for f in heads.in_features], boxes)
            box_features = pooled.mean(dim=[2, 3])
        else:
            pooled = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
            box_features = heads.box_head(pooled)
        scores, box_deltas = heads.box_predictor(box_features)
    outputs = {**features, "scores": scores, "box_deltas": box_deltas}
    outputs.update({f"rpn_logits{i}": v for i, v in enumerate(logits)})
    outputs.update({f"rpn_deltas{i}": v for i, v in enumerate(deltas)})
    return outputs, proposals


def _assert_same_outputs(ours, theirs, image):
    expected, proposals = _outputs(theirs, image)
    actual, _ = _outputs(ours, image, proposals)
    assert len(proposals[0]) > 0 and actual.keys() == expected.keys()
    for name, value in expected.items():
        scale = value.abs().max()
        torch.testing.assert_close(actual[name], value, rtol=0, atol=3e-5 * scale, msg=name)


def _trunk(model):
    return getattr(model.backbone, "bottom_up", model.backbone)


def _scale_data(model):
    _trunk(model).res3[0].conv2.weight.data.mul_(0.5)


def _shift_frozen_statistics(model):
    _trunk(model).res2[0].conv1.norm.running_mean.data.add_(1.0)
    _trunk(model).stem.conv1.norm.running_var.data.mul_(4.0)


def _mean_teacher_update(model, momentum=0.5):
    student = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    for tensor in [*student.parameters(), *student.buffers()]:
        if tensor.is_floating_point():
            tensor.data.mul_(1 + 0.2 * torch.rand(tensor.shape, generator=generator))
    teacher_tensors = [*model.parameters(), *model.buffers()]
    for t, s in zip(teacher_tensors, [*student.parameters(), *student.buffers()]):
        if t.is_floating_point():
            t.data.mul_(momentum).add_(s.data, alpha=1 - momentum)


def _weight_surgery(model):
    _trunk(model).res4[0].conv1.weight.data[:16] = 0.0


def _copy_in_place(model):
    with torch.no_grad():
        conv = _trunk(model).stem.conv1
        conv.weight.copy_(conv.weight.flip(0))


def _swap_a_tensor(model):
    conv = _trunk(model).res2[1].conv3
    conv.weight = nn.Parameter(conv.weight.detach() * 0.8)


def _load_state_dict(model):
    state = model.state_dict()
    key = next(k for k in state if k.endswith("res3.0.conv1.norm.bias"))
    state[key] = state[key] + 0.5
    model.load_state_dict(state)


def _optimizer_step(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for name, parameter in model.named_parameters():
        parameter.grad = torch.full_like(parameter, 0.01 * (len(name) % 5))
    optimizer.step()


EDITS = [
    _scale_data,
    _shift_frozen_statistics,
    _mean_teacher_update,
    _weight_surgery,
    _copy_in_place,
    _swap_a_tensor,
    _load_state_dict,
    _optimizer_step,
]


def test_every_edit_between_two_evaluations_reaches_the_output():
    """The edits users make between evaluations, one after another, each followed by an
    evaluation of both models (the fold cache of old missed the .data edits)."""
    theirs, ours = _pair(FPN)
    randomize_norms(theirs)
    ours.load_state_dict(theirs.state_dict())
    image = _image()
    _assert_same_outputs(ours, theirs, image)  # the first evaluation, without gradients
    for edit in EDITS:
        for model in (theirs, ours):
            edit(model)
        try:
            _assert_same_outputs(ours, theirs, image)
        except AssertionError as e:
            raise AssertionError(f"after {edit.__name__}: {e}") from None


def test_a_dtype_change_reaches_the_output():
    # Detectron2's heads do not run in float64 (its anchors stay float32): the backbones do.
    theirs, ours = _pair(C4)
    randomize_norms(theirs)
    ours.load_state_dict(theirs.state_dict())
    image = _image()
    _assert_same_outputs(ours, theirs, image)
    x = image[None].double()
    with torch.no_grad():
        expected, actual = theirs.backbone.double()(x), ours.backbone.double()(x)
    for name, value in expected.items():
        assert actual[name].dtype == torch.float64
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-9 * value.abs().max())


def test_group_norm_runs_where_it_is_accurate():
    """Detectron2's GN zoo model: our features are as close to the float64 result as
    Detectron2's own (a channels-last GroupNorm was 3x further)."""
    theirs, ours = _pair(GN)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in theirs.modules():  # GN layers of a trained network, maps with a mean
            if isinstance(module, nn.GroupNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator))
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(1, 3, 256, 320, generator=generator) * 255
    with torch.no_grad():
        x = (x - theirs.pixel_mean) / theirs.pixel_std
        expected, actual = theirs.backbone(x), ours.backbone(x)
        reference = copy.deepcopy(theirs).double().backbone(x.double())
    for name, exact in reference.items():
        scale = exact.abs().max()
        their_error = (expected[name].double() - exact).abs().max() / scale
        our_error = (actual[name].double() - exact).abs().max() / scale
        assert our_error <= 1.5 * their_error + 1e-8, (name, float(our_error), float(their_error))


SHIPPED = [
    CONFIGS / "faster_rcnn_X50_32x4d.yaml",
    CONFIGS / "faster_rcnn_X50_32x4d_FPN.yaml",
    CONFIGS / "appendix_b" / "X50_32x4d_fast_rcnn.yaml",
    DEMO_CONFIG,
]


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_detectron2_s_build_model_is_our_trainer_s(config):
    cfg = build_config(str(config), ["MODEL.DEVICE", "cpu", "MODEL.RPN.POST_NMS_TOPK_TEST", "50"])
    cfg.MODEL.LOAD_PROPOSALS = False  # the Appendix-B step 2 model, on its own proposals
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    models = []
    for build in (build_model, Trainer.build_model):
        torch.manual_seed(0)
        models.append(build(cfg).eval())
    theirs, ours = models
    assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
    expected = theirs.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())
    _assert_same_outputs(ours, theirs, _image())
