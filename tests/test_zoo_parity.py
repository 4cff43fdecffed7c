"""Detectron2's own zoo configs, backbone switched: same state_dict, strict load, same outputs."""

import pytest

from resnext_det.reproduction.analysis.zoo_parity import (
    VARIANTS,
    compare_zoo_config,
    parity_table,
    zoo_config_names,
)

# Fewer proposals and detections than the zoo's 1000 / 100: the same code, seconds per config.
SMALL = ["MODEL.RPN.POST_NMS_TOPK_TEST", "30", "TEST.DETECTIONS_PER_IMAGE", "5"]

# Each with the options a user runs it with by default: our model as built, and the fused
# copy the predictor and export run; the two with every option (the table runs all).
DEFAULTS = ("defaults", "fused")
REPRESENTATIVE = {
    "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml": tuple(VARIANTS),  # our trunk + C4 head
    "COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml": DEFAULTS,  # dilated res5
    "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml": DEFAULTS,  # NUM_GROUPS, WIDTH, depth
    "COCO-Detection/retinanet_R_50_FPN_1x.yaml": DEFAULTS,  # P3-P7, no RPN
    "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml": DEFAULTS,  # three box stages
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml": DEFAULTS,
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml": DEFAULTS,  # semantic head too
    "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml": tuple(VARIANTS),  # GroupNorm in the backbone
}
GN = "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_zoo_config_with_our_backbone_matches_detectron2(name):
    result = compare_zoo_config(name, opts=SMALL, variants=REPRESENTATIVE[name])
    assert result.status == "matched", result.reason
    assert set(result.variants) <= set(REPRESENTATIVE[name]) and "defaults" in result.variants
    # Every head of the model was compared, not only the backbone.
    assert "backbone" in result.differences and len(result.differences) >= 2
    # Within Detectron2's own float32 noise, measured on this config.
    assert 0 < result.self_noise < 1e-4 and 0 < result.float64_noise < 1e-4
    assert all(difference <= result.tolerance for difference in result.differences.values())
    if name == GN:  # GroupNorm refuses channels_last, and runs where it is exact
        assert result.variants["channels_last"].startswith(
            "refused: MODEL.RESNEXT.MEMORY_FORMAT='channels_last' with MODEL.RESNETS.NORM='GN'"
        )
        assert result.variants["defaults"] <= result.float64_noise


def test_a_key_we_cannot_honour_is_refused_not_ignored():
    result = compare_zoo_config("Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml", opts=SMALL)
    assert result.status == "refused"
    assert result.reason.startswith("MODEL.RESNETS.DEFORM_ON_PER_STAGE=[False, True, True, True]")


def test_the_zoo_is_listed_and_tabled():
    names = zoo_config_names()
    assert len(names) > 60 and "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml" in names
    assert not any(n.startswith("quick_schedules") for n in names)
    result = compare_zoo_config("COCO-Detection/rpn_R_50_C4_1x.yaml", opts=SMALL)
    table = parity_table([result])
    assert "| `COCO-Detection/rpn_R_50_C4_1x.yaml` | ProposalNetwork | matched |" in table
    assert "1 configs: 1 matched" in table
