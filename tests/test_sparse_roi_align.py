"""RoIAlign as sparse products equals torchvision's, in values and gradients, and is used."""

import pytest
import torch
from detectron2.layers import ROIAlign
from detectron2.modeling import build_model
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import roi_align

from resnext_det.modeling import SparseROIAlign, SparseROIPooler
from resnext_det.modeling.roi_align import roi_align_matrix
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.demo_training import DEMO_CONFIG
from resnext_det.reproduction.engine.predictor import Predictor

from ._paths import CONFIGS, TINY_DEMO_OPTS


def _rois(generator, n_images, count, image_size):
    """Boxes of every kind: inside, crossing the border, wholly outside, tiny."""
    corner = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 1.4 - 0.2
    size = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.8
    boxes = torch.cat([corner, corner + size], dim=1) * image_size
    boxes[0] = torch.tensor([-3.0 * image_size] * 2 + [-2.0 * image_size] * 2)  # outside
    boxes[1, 2:] = boxes[1, :2] + 0.1  # a tenth of a pixel
    index = torch.randint(0, n_images, (count, 1), generator=generator).to(torch.float64)
    return torch.cat([index, boxes], dim=1)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_images=st.integers(1, 3),
    count=st.integers(2, 30),
    height=st.integers(1, 19),
    width=st.integers(1, 19),
    output=st.sampled_from([(7, 7), (14, 14), (2, 3)]),
    scale=st.sampled_from([1.0, 0.25, 1 / 32]),
    sampling_ratio=st.integers(0, 3),  # 0: adaptive, a grid per RoI
    aligned=st.booleans(),
    channels_last=st.booleans(),
)
def test_values_and_gradients_equal_torchvision(
    seed, n_images, count, height, width, output, scale, sampling_ratio, aligned, channels_last
):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_images, 5, height, width, generator=generator, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    rois = _rois(generator, n_images, count, max(height, width) / scale)
    args = (output, scale, sampling_ratio, aligned)

    ours = SparseROIAlign(*args)(x, rois)
    expected = roi_align(x, rois, *args)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    (expected_grad,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_matrix_rows_are_the_sampling_points():
    # One RoI covering a 4 x 4 map exactly, one bin, one sampling point: the map's centre
    # (1.5, 1.5) after the half-pixel shift, the mean of the four middle pixels.
    matrix = roi_align_matrix(
        torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), (1, 1, 4, 4), (1, 1), 1.0, 1, aligned=True
    )
    expected = torch.zeros(1, 16)
    expected[0, [5, 6, 9, 10]] = 0.25
    torch.testing.assert_close(matrix.to_dense(), expected)


def test_adaptive_sampling_groups_rois_by_their_grid():
    # Adaptive sampling (ratio 0): ceil(side / bins) points per bin side, so a 1 x 1 RoI
    # on a 1 x 1 output has one point (4 weights), a 3 x 3 one a 3 x 3 grid (36 weights).
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0], [0.0, 1.0, 1.0, 2.0, 2.0]])
    matrix = roi_align_matrix(rois, (1, 1, 4, 4), (1, 1), 1.0, 0, aligned=False)
    assert matrix.crow_indices().diff().tolist() == [36, 4]  # rows in RoI order


def test_no_rois_gives_an_empty_batch():
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    out = SparseROIAlign((7, 7), 0.5, 2, True)(x, torch.zeros(0, 5))
    assert out.shape == (0, 8, 7, 7)
    out.sum().backward()
    assert x.grad.abs().sum() == 0


def test_tracing_keeps_torchvision_s_op():
    # A traced, scripted or exported model holds torchvision's op, which every runtime knows.
    x = torch.randn(1, 4, 10, 10)
    rois = torch.tensor([[0.0, 1.0, 1.0, 30.0, 20.0]])
    traced = torch.jit.trace(SparseROIAlign((7, 7), 0.25, 2, True), (x, rois))
    assert "torchvision::roi_align" in str(traced.graph)
    torch.testing.assert_close(traced(x, rois), roi_align(x, rois, (7, 7), 0.25, 2, True))


def _demo_cfg(*opts):
    return build_config(DEMO_CONFIG, [*TINY_DEMO_OPTS, *opts])


def test_detectron2_s_build_model_builds_it_and_the_option_turns_it_off():
    on = build_model(_demo_cfg())  # the demo's config: ResNeXtStandardROIHeads, the key True
    off = build_model(_demo_cfg("MODEL.RESNEXT.SPARSE_ROI_ALIGN", "False"))
    poolers_on = [m for m in on.modules() if isinstance(m, ROIAlign)]
    poolers_off = [m for m in off.modules() if isinstance(m, ROIAlign)]
    assert len(poolers_on) == len(poolers_off) == 4  # one per FPN level P2-P5
    assert all(type(m) is SparseROIAlign for m in poolers_on)
    assert not any(isinstance(m, SparseROIAlign) for m in poolers_off)
    assert on.state_dict().keys() == off.state_dict().keys()  # checkpoints unchanged


def test_a_detector_trains_and_predicts_the_same_with_it():
    # The demo's detector, one real training step on the demo tiles' kind of input: the
    # same losses and gradients with and without, then the same detections.
    torch.manual_seed(0)
    plain = build_model(_demo_cfg("MODEL.RESNEXT.SPARSE_ROI_ALIGN", "False"))
    sparse = build_model(_demo_cfg())
    sparse.load_state_dict(plain.state_dict())
    generator = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(2):
        instances = Instances((128, 128))
        corner = torch.rand(6, 2, generator=generator) * 96
        instances.gt_boxes = Boxes(torch.cat([corner, corner + 8 + corner.flip(1) / 4], 1))
        instances.gt_classes = torch.zeros(6, dtype=torch.long)
        image = torch.rand(3, 128, 128, generator=generator) * 255
        batch.append({"image": image, "instances": instances})
    results = []
    for model in (plain, sparse):
        torch.manual_seed(1)  # the same sampled RoIs
        with EventStorage():
            losses = model(batch)
        sum(losses.values()).backward()
        results.append((losses, {n: p.grad for n, p in model.named_parameters()}))
    (plain_losses, plain_grads), (sparse_losses, sparse_grads) = results
    for name in plain_losses:
        torch.testing.assert_close(sparse_losses[name], plain_losses[name], rtol=1e-5, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)

    images = [{"image": b["image"]} for b in batch]
    with torch.no_grad():
        expected = plain.eval()(images)[0]["instances"]
        actual = sparse.eval()(images)[0]["instances"]
    assert len(actual) == len(expected)
    torch.testing.assert_close(actual.pred_boxes.tensor, expected.pred_boxes.tensor)


def test_a_bad_option_value_is_named():
    cfg = _demo_cfg()
    cfg.MODEL.RESNEXT.SPARSE_ROI_ALIGN = "yes"  # as a LazyConfig or code could set it
    with pytest.raises(
        ValueError,
        match=r"MODEL\.RESNEXT\.SPARSE_ROI_ALIGN='yes' is a string; expected True or False",
    ):
        build_model(cfg)


def test_heads_that_would_ignore_it_are_refused_and_models_without_heads_accept_it():
    cfg = _demo_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads")
    with pytest.raises(
        ValueError,
        match=r"MODEL\.RESNEXT\.SPARSE_ROI_ALIGN=True is honoured by the RoI heads "
        r"ResNeXtRes5ROIHeads and ResNeXtStandardROIHeads, but MODEL\.ROI_HEADS\.NAME="
        r"'StandardROIHeads'; expected one of them, or MODEL\.RESNEXT\.SPARSE_ROI_ALIGN False",
    ):
        build_model(cfg)
    # An RPN alone pools nothing: the key changes nothing there.
    rpn = build_model(_demo_cfg("MODEL.META_ARCHITECTURE", "ProposalNetwork"))
    assert not any(isinstance(m, ROIAlign) for m in rpn.modules())


def test_the_c4_head_pools_with_it():
    cfg = build_config(
        str(CONFIGS / "faster_rcnn_X50_32x4d.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14"],
    )
    on = build_model(cfg)
    cfg.MODEL.RESNEXT.SPARSE_ROI_ALIGN = False
    off = build_model(cfg)
    assert [type(m) for m in on.roi_heads.pooler.level_poolers] == [SparseROIAlign]
    assert [type(m) for m in off.roi_heads.pooler.level_poolers] == [ROIAlign]


def test_the_lazyconfig_pooler_pools_as_detectron2_s():
    args = dict(output_size=7, scales=(1 / 4, 1 / 8), sampling_ratio=0, pooler_type="ROIAlignV2")
    plain, sparse = ROIPooler(**args), SparseROIPooler(**args)
    assert all(type(m) is SparseROIAlign for m in sparse.level_poolers)
    features = [torch.randn(2, 8, 32, 32), torch.randn(2, 8, 16, 16)]
    boxes = [Boxes(torch.tensor([[4.0, 4.0, 100.0, 60.0], [10.0, 20.0, 30.0, 26.0]]))] * 2
    torch.testing.assert_close(sparse(features, boxes), plain(features, boxes))


def test_predictor_uses_it(tmp_path):
    cfg = _demo_cfg("MODEL.WEIGHTS", str(tmp_path / "model.pth"))
    model = build_model(cfg)
    torch.save({"model": model.state_dict()}, tmp_path / "model.pth")
    predictor = Predictor(cfg)
    assert any(type(m) is SparseROIAlign for m in predictor.model.modules())


def test_a_scripted_pooler_runs_torchvision_s_op():
    module = SparseROIAlign((7, 7), 0.25, 2, True)
    scripted = torch.jit.script(module)
    x = torch.randn(1, 4, 10, 10)
    rois = torch.tensor([[0.0, 1.0, 1.0, 30.0, 20.0]])
    assert "torchvision::roi_align" in str(scripted.inlined_graph)
    torch.testing.assert_close(scripted(x, rois), module(x, rois))
