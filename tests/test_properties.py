"""Property tests: no config value and no COCO json shape makes the loaders crash or hang.

Every input either works or ends in one of our user errors, whose message names what is
wrong; never an unhandled exception.
"""

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnext_det.modeling import ResNeXtSpec, build_resnext
from resnext_det.reproduction.data import check_coco, load_proposal_file
from resnext_det.reproduction.data.sanitize import load_registered, sanitize_annotations
from resnext_det.reproduction.engine import build_config
from resnext_det.utils.errors import ConfigError, DataError, UserError

from ._paths import CONFIGS

settings.register_profile(
    "resnext_det",
    deadline=None,  # a 2-core CI machine is slow now and then
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("resnext_det")

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 5), max_size=3),
)
SPEC_FIELDS = {
    "depth": st.one_of(st.sampled_from([14, 26, 50, 101, 152, 200]), ANY_VALUE),
    "cardinality": st.one_of(st.integers(1, 64), ANY_VALUE),
    "bottleneck_width": st.one_of(st.integers(1, 64), ANY_VALUE),
    "block_form": st.one_of(st.sampled_from(["a", "b", "c"]), ANY_VALUE),
    "stride_in_1x1": ANY_VALUE,
    "norm": st.one_of(st.sampled_from(["FrozenBN", "BN", "SyncBN", "GN"]), ANY_VALUE),
    "stem_out_channels": st.one_of(st.sampled_from([32, 64]), ANY_VALUE),
    "res2_out_channels": st.one_of(st.sampled_from([64, 256]), ANY_VALUE),
}


@settings(max_examples=1000)
@given(st.fixed_dictionaries(SPEC_FIELDS))
def test_any_spec_is_valid_or_a_named_config_error(values):
    try:
        spec = ResNeXtSpec(**values)
    except ConfigError as e:
        assert str(e).startswith(("MODEL.RESNETS.", "MODEL.RESNEXT.")), str(e)
        return
    assert spec.depth in (14, 26, 50, 101, 152, 200) and spec.cardinality >= 1


@settings(max_examples=25)
@given(
    cardinality=st.integers(1, 8),
    width=st.integers(1, 8),
    form=st.sampled_from(["a", "b", "c"]),
    norm=st.sampled_from(["FrozenBN", "BN", "GN"]),
)
def test_small_valid_specs_build_and_run(cardinality, width, form, norm):
    values = dict(depth=14, cardinality=cardinality, bottleneck_width=width, block_form=form)
    try:
        spec = ResNeXtSpec(**values, norm=norm, stem_out_channels=32, res2_out_channels=64)
    except ConfigError as e:  # GN needs channel counts divisible by 32
        assert "GN" in str(e)
        return
    model = build_resnext(spec, out_features=["res2", "res3"]).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 32))
    assert out["res3"].shape == (1, 128, 4, 4)


OVERRIDE_KEYS = [
    "MODEL.RESNETS.DEPTH", "MODEL.RESNETS.NUM_GROUPS", "MODEL.RESNETS.NORM",
    "MODEL.RESNETS.OUT_FEATURES", "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNEXT.MEMORY_FORMAT",
    "SOLVER.BASE_LR", "SOLVER.IMS_PER_BATCH", "MODEL.NOT_A_KEY",
]  # fmt: skip
OVERRIDE_TEXT = st.one_of(
    st.text(alphabet="0123456789.-[]'(),abcresFNBG ", max_size=12),
    st.sampled_from(["50", "-1", "1e9", "nan", "['res9']", "('res4',)", "GN", "True", "[]"]),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(OVERRIDE_KEYS), OVERRIDE_TEXT), max_size=3))
def test_any_override_is_valid_or_a_named_config_error(overrides):
    opts = [item for pair in overrides for item in pair]
    try:
        cfg = build_config(str(CONFIGS / "faster_rcnn_X50_32x4d.yaml"), opts)
        ResNeXtSpec.from_config(cfg)
    except ConfigError as e:
        assert str(e), "an empty message"


BOX_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(10**6), 10**6),
)
ANNOTATION = st.fixed_dictionaries(
    {
        "bbox": st.one_of(st.lists(BOX_NUMBER, max_size=6), st.none(), st.text(max_size=3)),
        "bbox_mode": st.sampled_from([BoxMode.XYWH_ABS, BoxMode.XYXY_ABS]),
        "category_id": st.integers(0, 3),
    }
)
RECORD = st.fixed_dictionaries(
    {
        "image_id": st.integers(0, 100),
        "width": st.one_of(st.none(), st.integers(1, 2000)),
        "height": st.one_of(st.none(), st.integers(1, 2000)),
        "annotations": st.lists(ANNOTATION, max_size=6),
    }
)


@settings(max_examples=1000)
@given(st.lists(RECORD, max_size=5))
def test_sanitized_boxes_are_finite_positive_and_inside(records):
    cleaned, report = sanitize_annotations(records, "random")
    assert len(cleaned) == len(records) == report.images
    for record in cleaned:
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            assert annotation["bbox_mode"] == BoxMode.XYXY_ABS
            assert all(math.isfinite(v) for v in (x0, y0, x1, y1))
            assert x1 > x0 and y1 > y0
            if record["width"] and record["height"]:
                assert 0 <= x0 and x1 <= record["width"] and 0 <= y0 and y1 <= record["height"]


JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
COCO_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "images": st.one_of(
            JSON_VALUE,
            st.lists(
                st.fixed_dictionaries(
                    {"id": st.integers(0, 3)},
                    optional={"file_name": st.one_of(st.text(max_size=6), JSON_VALUE)},
                ),
                max_size=3,
            ),
        ),
        "annotations": st.one_of(
            JSON_VALUE,
            st.lists(
                st.fixed_dictionaries(
                    {"image_id": st.integers(0, 3)},
                    optional={
                        "bbox": st.lists(st.integers(-5, 50), max_size=5),
                        "category_id": st.integers(0, 3),
                    },
                ),
                max_size=3,
            ),
        ),
        "categories": st.just([{"id": 1, "name": "thing"}]),
    },
)


@settings(max_examples=300)
@given(train=st.one_of(COCO_LIKE, JSON_VALUE), val=st.one_of(COCO_LIKE, JSON_VALUE))
def test_check_coco_reports_any_json_shape_as_problems(tmp_path_factory, train, val):
    root = tmp_path_factory.mktemp("coco")
    (root / "coco" / "annotations").mkdir(parents=True)
    for split, data in (("train2017", train), ("val2017", val)):
        (root / "coco" / split).mkdir()
        (root / "coco" / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    problems = check_coco(root, expect_full=False)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)


@settings(max_examples=200)
@given(data=COCO_LIKE)
def test_loading_any_coco_json_gives_records_or_a_data_error(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("dataset")
    (root / "instances.json").write_text(json.dumps(data))
    name = f"property_{root.name}"
    register_coco_instances(name, {}, str(root / "instances.json"), str(root))
    try:
        records = load_registered(name)
        assert isinstance(records, list)
    except UserError as e:
        assert isinstance(e, (DataError, ConfigError)) and str(e)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


PROPOSAL_LIKE = st.one_of(
    JSON_VALUE,
    st.fixed_dictionaries(
        {
            "ids": st.lists(st.integers(0, 5), max_size=3),
            "boxes": st.lists(st.just(np.zeros((2, 4), np.float32)), max_size=3),
            "objectness_logits": st.lists(st.just(np.zeros(2, np.float32)), max_size=3),
        },
        optional={"bbox_mode": st.sampled_from([0, 1, 7, "x"])},
    ),
)


@settings(max_examples=300)
@given(data=PROPOSAL_LIKE)
def test_any_proposal_file_loads_or_is_a_data_error(tmp_path_factory, data):
    path = Path(tmp_path_factory.mktemp("proposals")) / "p.pkl"
    path.write_bytes(pickle.dumps(data))
    try:
        loaded = load_proposal_file(path)
    except DataError as e:
        assert str(e)
        return
    assert len(loaded["ids"]) == len(loaded["boxes"]) == len(loaded["objectness_logits"])


@pytest.fixture(autouse=True)
def _quiet_sanitize_warnings(caplog):
    caplog.set_level("ERROR", logger="resnext_det.reproduction.data.sanitize")
