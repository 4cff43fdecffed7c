"""Hostile config files and values: each ends in one line naming what is wrong, or works.

Table-driven over yaml shapes (for the detection and the pretraining config, which share
``merge_config``) and over numbers (detection and pretraining rules); property-based over
arbitrary yaml documents and override values; and a handful of real tool runs for the
one-line-and-exit-code contract.
"""

import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.validate import check_inputs, check_solver
from resnext_det.reproduction.pretrain import (
    build_pretrain_config,
    check_pretrain_config,
    scale_to_world_size,
)
from resnext_det.utils.errors import ConfigError
from resnext_det.utils.value_checks import lookup

from ._paths import CONFIGS, DEMO_CONFIG
from ._tools import assert_one_line_error, run_cli

PRETRAIN = CONFIGS / "imagenet" / "X50_32x4d.yaml"
BUILDERS = {"detection": build_config, "pretraining": build_pretrain_config}

# name -> (files to write {name: text}, the file to load, what the one line must say)
YAML_CASES = {
    "empty file": ({"c.yaml": ""}, "c.yaml", r"config file .*c\.yaml is empty; expected a mapping of config keys"),
    "only a comment": ({"c.yaml": "# MODEL: {}\n"}, "c.yaml", r"c\.yaml is empty; expected a mapping"),
    "a list": ({"c.yaml": "- MODEL\n- SOLVER\n"}, "c.yaml", r"c\.yaml holds a list \(\['MODEL', 'SOLVER'\]\); expected a mapping of config keys"),
    "a number": ({"c.yaml": "42\n"}, "c.yaml", r"c\.yaml holds an integer \(42\); expected a mapping"),
    "a string": ({"c.yaml": "MODEL.WEIGHTS x.pth\n"}, "c.yaml", r"c\.yaml holds a string \('MODEL\.WEIGHTS x\.pth'\); expected a mapping"),
    "a base that is itself": ({"c.yaml": "_BASE_: c.yaml\n"}, "c.yaml", r"config files .*c\.yaml -> .*c\.yaml form a _BASE_ cycle; expected a _BASE_ chain that ends"),
    "a base cycle of two": (
        {"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, "a.yaml",
        r"config files .*a\.yaml -> .*b\.yaml -> .*a\.yaml form a _BASE_ cycle",
    ),
    "a base cycle below a good base": (
        {"a.yaml": "_BASE_: [ok.yaml, b.yaml]\n", "ok.yaml": "SEED: 3\n", "b.yaml": "_BASE_: b.yaml\n"}, "a.yaml",
        r"config files .*b\.yaml -> .*b\.yaml form a _BASE_ cycle",
    ),
    "a null base": ({"c.yaml": "_BASE_:\n"}, "c.yaml", r"c\.yaml: _BASE_=None is invalid; expected the path of a base config file"),
    "a numeric base": ({"c.yaml": "_BASE_: 3\n"}, "c.yaml", r"_BASE_=3 is invalid; expected the path of a base config file"),
    "a missing base": ({"c.yaml": "_BASE_: gone.yaml\n"}, "c.yaml", r"config file .*gone\.yaml \(the _BASE_ of .*c\.yaml\) does not exist"),
    "an empty base": ({"c.yaml": "_BASE_: e.yaml\n", "e.yaml": ""}, "c.yaml", r"config file .*e\.yaml is empty"),
    "a node given as a list": ({"c.yaml": "MODEL: [1, 2]\n"}, "c.yaml", r"c\.yaml: MODEL holds a list \(\[1, 2\]\); expected a mapping of config keys"),
    "a node given as null": ({"c.yaml": "SOLVER:\n"}, "c.yaml", r"c\.yaml: SOLVER holds null; expected a mapping of config keys"),
    "a numeric key": ({"c.yaml": "SOLVER:\n  1: 2\n"}, "c.yaml", r"the key 1 under SOLVER is an integer; expected config key names"),
    "an int for a float": ({"c.yaml": "SOLVER:\n  BASE_LR: 1\n"}, "c.yaml", r"c\.yaml: SOLVER\.BASE_LR=1 is an integer; expected a float like the [\d.]+ it replaces \(write 1\.0\)"),
    "a string for an int": ({"c.yaml": "SOLVER:\n  IMS_PER_BATCH: many\n"}, "c.yaml", r"SOLVER\.IMS_PER_BATCH=many is a string; expected an integer like the \d+ it replaces"),
    "a python object": ({"c.yaml": "SEED: !!python/object/apply:os.getcwd []\n"}, "c.yaml", r"c\.yaml asks the yaml loader to build a Python object"),
    "not yaml": ({"c.yaml": "SOLVER: [1, 2\n"}, "c.yaml", r"c\.yaml is not valid yaml: "),
    "binary": ({"c.yaml": b"\x89PNG\r\n\x1a\n\x00\xff\xfe"}, "c.yaml", r"c\.yaml (is not UTF-8 text|is not valid yaml)"),
    "latin-1 text": ({"c.yaml": "MODEL:\n  DEVICE: cpu  # caf\u00e9\n".encode("latin-1")}, "c.yaml", r"c\.yaml is not UTF-8 text: byte 0xe9 on line 2 is invalid there; expected a yaml file in UTF-8 \(save it as UTF-8\)"),
    "a key given twice": ({"c.yaml": "SOLVER:\n  MAX_ITER: 7\nSEED: 3\nSOLVER:\n  BASE_LR: 0.01\n"}, "c.yaml", r"c\.yaml line 4: the key 'SOLVER' is given a second time \(first on line 1\); expected each key once \(yaml would keep only the last SOLVER, dropping the values of the first\)"),
    "a nested key given twice": ({"c.yaml": "SOLVER:\n  BASE_LR: 0.1\n  BASE_LR: 0.2\n"}, "c.yaml", r"c\.yaml line 3: the key 'BASE_LR' is given a second time \(first on line 2\)"),
    "a base that is a URL": ({"c.yaml": "_BASE_: https://example.com/base.yaml\n"}, "c.yaml", r"c\.yaml: _BASE_='https://example\.com/base\.yaml' is a URL; expected the path of a local config file \(nothing is downloaded"),
    "a base that is a folder": ({"c.yaml": "_BASE_: d.yaml\n", "d.yaml/": None}, "c.yaml", r"config file .*d\.yaml \(the _BASE_ of .*c\.yaml\) is a folder; expected a yaml file"),
    "a folder": ({"d.yaml/": None}, "d.yaml", r"config file .*d\.yaml is a folder; expected a yaml file"),
    "an unknown key": ({"c.yaml": "SOLVER:\n  BASE_LRR: 0.1\n"}, "c.yaml", r"c\.yaml: unknown config key: SOLVER\.BASE_LRR"),
}  # fmt: skip


def _write(folder, files):
    for name, text in files.items():
        if name.endswith("/"):  # a folder
            (folder / name).mkdir()
            continue
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(folder / name, mode) as f:
            f.write(text)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_a_hostile_config_file_is_one_named_line(tmp_path, case, builder):
    files, target, pattern = YAML_CASES[case]
    _write(tmp_path, files)
    with pytest.raises(ConfigError) as refused:
        BUILDERS[builder](str(tmp_path / target))
    message = str(refused.value)
    assert "\n" not in message and re.search(pattern, message), message


def test_a_diamond_of_bases_is_no_cycle(tmp_path):
    _write(
        tmp_path,
        {
            "top.yaml": "_BASE_: [left.yaml, right.yaml]\nSEED: 5\n",
            "left.yaml": "_BASE_: root.yaml\n",
            "right.yaml": "_BASE_: root.yaml\n",
            "root.yaml": f"_BASE_: {PRETRAIN}\n",
        },
    )
    assert build_pretrain_config(str(tmp_path / "top.yaml")).SEED == 5


@pytest.mark.parametrize(
    "opts,pattern",
    [
        (["SOLVER.BASE_LR", "1"], r"command-line override: SOLVER\.BASE_LR=1 is an integer; expected a float like the 0\.02 it replaces \(write 1\.0\)"),
        (["SOLVER.STEPS", "5"], r"SOLVER\.STEPS=5 is an integer; expected a list like the \(560,\) it replaces"),
        (["MODEL", "3"], r"MODEL=3 is an integer; expected a mapping of config keys \(such as"),
        (["DATASETS.TRAIN", "abc"], r"DATASETS\.TRAIN=abc is a string; expected a list"),
    ],
)  # fmt: skip
def test_a_type_mismatch_names_both_types(opts, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_config(str(DEMO_CONFIG), opts)


# key, value (as on the command line), the one line; for the detection config.
DETECTION_VALUES = [
    ("DATALOADER.NUM_WORKERS", "-1", r"DATALOADER\.NUM_WORKERS=-1 is invalid; expected an integer >= 0"),
    ("SOLVER.WEIGHT_DECAY", "-1.0", r"SOLVER\.WEIGHT_DECAY=-1\.0 is invalid; expected a number >= 0"),
    ("SOLVER.WEIGHT_DECAY", float("nan"), r"SOLVER\.WEIGHT_DECAY=nan is a float; expected a number >= 0"),
    ("SOLVER.BASE_LR", float("inf"), r"SOLVER\.BASE_LR=inf is a float; expected a number > 0"),
    ("SOLVER.MOMENTUM", "1.5", r"SOLVER\.MOMENTUM=1\.5 is invalid; expected a number in \[0, 1\)"),
    ("SOLVER.GAMMA", "0.0", r"SOLVER\.GAMMA=0\.0 is invalid; expected a number > 0"),
    ("SOLVER.WARMUP_ITERS", "-5", r"SOLVER\.WARMUP_ITERS=-5 is invalid; expected an integer >= 0"),
    ("SOLVER.WARMUP_FACTOR", "2.0", r"SOLVER\.WARMUP_FACTOR=2\.0 is invalid; expected a number in \[0, 1\]"),
    ("SOLVER.WARMUP_METHOD", "cosine", r"SOLVER\.WARMUP_METHOD='cosine' is invalid; expected one of 'linear', 'constant'"),
    ("SOLVER.MAX_ITER", "None", r"SOLVER\.MAX_ITER=None is null; expected an integer >= 1"),
    ("SOLVER.STEPS", "(50, 'x')", r"SOLVER\.STEPS=\(50, 'x'\) is invalid; expected increasing iterations >= 0"),
    ("TEST.EVAL_PERIOD", "-1", r"TEST\.EVAL_PERIOD=-1 is invalid; expected an integer >= 0"),
    ("INPUT.CROP.SIZE", "[0, 0]", r"INPUT\.CROP\.SIZE=\[0, 0\] is invalid; expected a list of 2 integers >= 1"),
    ("INPUT.CROP.SIZE", "[0.5, 0.5]", r"INPUT\.CROP\.SIZE=\[0\.5, 0\.5\] is a list; expected a list of 2 integers >= 1"),
    ("INPUT.CROP.TYPE", "'square'", r"INPUT\.CROP\.TYPE='square' is invalid; expected one of 'relative'"),
    ("INPUT.MIN_SIZE_TRAIN", "(0,)", r"INPUT\.MIN_SIZE_TRAIN=\(0,\) is invalid; expected a list of one or more integers >= 1"),
    ("INPUT.MIN_SIZE_TRAIN", "()", r"INPUT\.MIN_SIZE_TRAIN=\(\) is invalid; expected a list of one or more integers"),
    ("INPUT.MAX_SIZE_TRAIN", "0", r"INPUT\.MAX_SIZE_TRAIN=0 is invalid; expected an integer >= 1"),
    ("INPUT.MAX_SIZE_TEST", "0", r"INPUT\.MAX_SIZE_TEST=0 is invalid; expected an integer >= 1"),
    ("INPUT.MIN_SIZE_TEST", "-1", r"INPUT\.MIN_SIZE_TEST=-1 is invalid; expected an integer >= 0"),
    ("MODEL.ROI_HEADS.NUM_CLASSES", "0", r"MODEL\.ROI_HEADS\.NUM_CLASSES=0 is invalid; expected an integer >= 1"),
    ("MODEL.ROI_HEADS.NUM_CLASSES", "-3", r"MODEL\.ROI_HEADS\.NUM_CLASSES=-3 is invalid; expected an integer >= 1"),
    ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "0", r"MODEL\.ROI_HEADS\.BATCH_SIZE_PER_IMAGE=0 is invalid"),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.5", r"MODEL\.ROI_HEADS\.SCORE_THRESH_TEST=1\.5 is invalid; expected a number in \[0, 1\]"),
    ("MODEL.RPN.POST_NMS_TOPK_TRAIN", "0", r"MODEL\.RPN\.POST_NMS_TOPK_TRAIN=0 is invalid; expected an integer >= 1"),
    ("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "-1.0", r"SOLVER\.CLIP_GRADIENTS\.CLIP_VALUE=-1\.0 is invalid; expected a number > 0"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[[0], [64], [128], [256], [512]]", r"MODEL\.ANCHOR_GENERATOR\.SIZES=\[\[0\], \[64\], .* is invalid; expected one list of one or more numbers > 0 per feature map \(or one list for all\)"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[]", r"MODEL\.ANCHOR_GENERATOR\.SIZES=\[\] is invalid; expected one list"),
    ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[0.5, -1.0, 2.0]]", r"MODEL\.ANCHOR_GENERATOR\.ASPECT_RATIOS=\[\[0\.5, -1\.0, 2\.0\]\] is invalid; expected one list of one or more numbers > 0"),
    ("MODEL.ANCHOR_GENERATOR.OFFSET", "1.0", r"MODEL\.ANCHOR_GENERATOR\.OFFSET=1\.0 is invalid; expected a number in \[0, 1\)"),
]  # fmt: skip


def _check_training(cfg) -> None:
    check_inputs(cfg, training=True)
    check_solver(cfg)


@pytest.mark.parametrize("key,value,pattern", DETECTION_VALUES)
def test_a_detection_number_is_checked_up_front(key, value, pattern):
    cfg = build_config(str(DEMO_CONFIG), [key, value] if isinstance(value, str) else [])
    if not isinstance(value, str):  # no command-line spelling: as a Python caller sets it
        node, leaf = key.rsplit(".", 1)
        lookup(cfg, node)[leaf] = value
    with pytest.raises(ConfigError, match=pattern):
        _check_training(cfg)


def test_range_sampling_needs_two_increasing_sizes():
    cfg = build_config(
        str(DEMO_CONFIG),
        ["INPUT.MIN_SIZE_TRAIN_SAMPLING", "range", "INPUT.MIN_SIZE_TRAIN", "(300, 200)"],
    )
    with pytest.raises(ConfigError, match=r"INPUT\.MIN_SIZE_TRAIN=\(300, 200\) is invalid with INPUT\.MIN_SIZE_TRAIN_SAMPLING='range'"):  # fmt: skip
        _check_training(cfg)


def test_the_class_count_checked_is_the_architecture_s():
    retina = build_config(
        str(DEMO_CONFIG),
        ["MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.RETINANET.NUM_CLASSES", "0"],
    )
    with pytest.raises(ConfigError, match=r"MODEL\.RETINANET\.NUM_CLASSES=0 is invalid"):
        check_inputs(retina, training=False)
    rpn = build_config(
        str(DEMO_CONFIG),
        ["MODEL.META_ARCHITECTURE", "ProposalNetwork", "MODEL.ROI_HEADS.NUM_CLASSES", "0"],
    )
    check_inputs(rpn, training=False)  # a ProposalNetwork has no class head


def test_evaluation_checks_only_what_it_uses():
    cfg = build_config(
        str(DEMO_CONFIG), ["SOLVER.WEIGHT_DECAY", "-1.0", "INPUT.CROP.SIZE", "[0, 0]"]
    )
    check_inputs(cfg, training=False)  # --eval-only trains nothing
    cfg = build_config(str(DEMO_CONFIG), ["DATALOADER.NUM_WORKERS", "-2"])
    with pytest.raises(ConfigError, match=r"DATALOADER\.NUM_WORKERS=-2 is invalid"):
        check_inputs(cfg, training=False)


PRETRAIN_VALUES = [
    ("INPUT.TRAIN_CROP", "0", r"INPUT\.TRAIN_CROP=0 is invalid; expected an integer >= 1"),
    ("INPUT.TEST_CROP", "-224", r"INPUT\.TEST_CROP=-224 is invalid; expected an integer >= 1"),
    ("INPUT.TEST_RESIZE", "0", r"INPUT\.TEST_RESIZE=0 is invalid; expected an integer >= 1"),
    ("INPUT.TRAIN_SCALE", "(0.0, 1.0)", r"INPUT\.TRAIN_SCALE=\(0\.0, 1\.0\) is invalid; expected a list of 2 numbers in \(0, 1\]"),
    ("INPUT.TRAIN_SCALE", "(0.9, 0.1)", r"INPUT\.TRAIN_SCALE=\(0\.9, 0\.1\) is invalid; expected \(min, max\) with min <= max"),
    ("INPUT.PIXEL_STD", "(0.2, 0.0, 0.2)", r"INPUT\.PIXEL_STD=\(0\.2, 0\.0, 0\.2\) is invalid; expected a list of 3 numbers > 0"),
    ("DATA.NUM_WORKERS", "-1", r"DATA\.NUM_WORKERS=-1 is invalid; expected an integer >= 0"),
    ("MODEL.NUM_CLASSES", "0", r"MODEL\.NUM_CLASSES=0 is invalid; expected an integer >= 1"),
    ("SOLVER.WEIGHT_DECAY", "-0.0001", r"SOLVER\.WEIGHT_DECAY=-0\.0001 is invalid; expected a number >= 0"),
    ("SOLVER.MOMENTUM", "-0.9", r"SOLVER\.MOMENTUM=-0\.9 is invalid; expected a number in \[0, 1\)"),
    ("SOLVER.GAMMA", "-0.1", r"SOLVER\.GAMMA=-0\.1 is invalid; expected a number > 0"),
    ("SOLVER.EPOCHS", "0", r"SOLVER\.EPOCHS=0 is invalid; expected an integer >= 1"),
    ("SOLVER.STEP_EPOCHS", "(60, 30)", r"SOLVER\.STEP_EPOCHS=\(60, 30\) is invalid; expected increasing epochs >= 0"),
    ("TEST.IMS_PER_BATCH", "0", r"TEST\.IMS_PER_BATCH=0 is invalid; expected an integer >= 1"),
    ("LOG_PERIOD", "0", r"LOG_PERIOD=0 is invalid; expected an integer >= 1"),
    ("SEED", "-1", r"SEED=-1 is invalid; expected an integer >= 0"),
]  # fmt: skip


@pytest.mark.parametrize("key,value,pattern", PRETRAIN_VALUES)
def test_a_pretraining_number_is_checked_up_front(key, value, pattern):
    cfg = build_pretrain_config(str(PRETRAIN), [key, value])
    with pytest.raises(ConfigError, match=pattern):
        check_pretrain_config(cfg)


def test_the_shipped_configs_pass_the_checks():
    for path in sorted((CONFIGS / "imagenet").glob("*.yaml")) + sorted(
        (CONFIGS / "cifar").glob("*.yaml")
    ):
        check_pretrain_config(build_pretrain_config(str(path)))
    for path in [DEMO_CONFIG, *sorted(CONFIGS.glob("*.yaml")), *sorted((CONFIGS / "appendix_b").glob("*.yaml"))]:  # fmt: skip
        if not path.name.startswith("Base-"):
            _check_training(build_config(str(path)))


settings.register_profile(
    "hostile_configs",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

YAML_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "x", "_BASE_", "MODEL", "SOLVER", "BASE_LR", "c.yaml", "self.yaml"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["_BASE_", "MODEL", "SOLVER", "BASE_LR", "RESNETS", "SEED"]),
                st.integers(0, 2),
            ),
            children,
            max_size=3,
        ),
    ),
    max_leaves=10,
)


@settings(settings.get_profile("hostile_configs"), max_examples=150)
@given(document=YAML_VALUE, builder=st.sampled_from(sorted(BUILDERS)))
def test_any_yaml_document_builds_or_is_a_config_error(tmp_path_factory, document, builder):
    folder = tmp_path_factory.mktemp("yaml")
    (folder / "self.yaml").write_text(yaml.safe_dump(document))
    (folder / "c.yaml").write_text("SEED: 1\n")
    try:
        BUILDERS[builder](str(folder / "self.yaml"))
    except ConfigError as e:
        assert str(e) and "\n" not in str(e).strip()


NUMBER_KEYS = [key for key, _, _ in DETECTION_VALUES] + ["SOLVER.BASE_LR", "SOLVER.IMS_PER_BATCH"]
NUMBER_TEXT = st.sampled_from(
    ["0", "-1", "1", "2", "0.5", "1.0", "-0.5", "1e9", "nan", "inf", "None", "True", "'x'",
     "(0,)", "(8, 4)", "[1, 2]", "[0.5, 1.0]", "()", "(1, 'a')"]
)  # fmt: skip


@settings(settings.get_profile("hostile_configs"), max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(NUMBER_KEYS), NUMBER_TEXT), max_size=3))
def test_any_number_is_valid_or_a_config_error(overrides):
    opts = [item for pair in overrides for item in pair]
    try:
        _check_training(build_config(str(DEMO_CONFIG), opts))
    except ConfigError as e:
        assert re.match(r"(command-line override: )?[A-Z_.]+=", str(e)), str(e)


def test_tools_refuse_a_base_cycle_and_a_list_in_one_line(tmp_path):
    _write(
        tmp_path, {"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n", "l.yaml": "- 1\n"}
    )
    run = run_cli("tools/pretrain_imagenet.py", "--config-file", tmp_path / "a.yaml")
    assert_one_line_error(run, r"a\.yaml -> .*b\.yaml -> .*a\.yaml form a _BASE_ cycle")
    run = run_cli("tools/analyze_model.py", "--config-file", tmp_path / "l.yaml")
    assert_one_line_error(run, r"l\.yaml holds a list \(\[1\]\); expected a mapping")


def test_train_net_refuses_a_bad_number_before_any_work(tmp_path):
    out = tmp_path / "out"
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, "INPUT.CROP.SIZE", "[0, 0]",
        "OUTPUT_DIR", out,
    )  # fmt: skip
    assert_one_line_error(
        run, r"INPUT\.CROP\.SIZE=\[0, 0\] is invalid; expected a list of 2 integers >= 1"
    )
    assert not out.exists()


def test_train_net_refuses_an_anchor_of_no_size_before_training(demo_root, tmp_path):
    run = run_cli(
        "tools/train_net.py", "--config-file", DEMO_CONFIG, "MODEL.ANCHOR_GENERATOR.SIZES",
        "[[0], [64], [128], [256], [512]]", "OUTPUT_DIR", tmp_path / "out",
        env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    assert_one_line_error(run, r"MODEL\.ANCHOR_GENERATOR\.SIZES=\[\[0\], .* is invalid")
    assert not (tmp_path / "out").exists()


def test_analyze_model_refuses_an_image_of_no_pixels():
    run = run_cli("tools/analyze_model.py", "--input-size", "0x0")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "argument --input-size: '0x0' is no size; expected HEIGHTxWIDTH of at least 1x1, e.g. 800x1333"
        )
    )


@pytest.mark.parametrize("model", [[], ["--backbone"]], ids=["classifier", "backbone"])
def test_analyze_model_refuses_a_size_beyond_this_machine_s_memory(model):
    run = run_cli("tools/analyze_model.py", *model, "--input-size", "60000x60000")
    assert_one_line_error(
        run,
        r"--input-size 60000x60000 would take about 1,800 GB of memory to run the model on "
        r"\(about 500 bytes a pixel\), more than this machine's [\d,]+ GB; expected a smaller size",
    )


# The batch rule, one for both engines: a global batch must split into whole per-process
# batches, over the reference processes it is given for, or over the launch's.
BATCH_SPLITS = [
    (["SOLVER.IMS_PER_BATCH", "10", "SOLVER.REFERENCE_WORLD_SIZE", "4"], 1,
     r"SOLVER\.IMS_PER_BATCH=10 does not split over SOLVER\.REFERENCE_WORLD_SIZE=4 processes"),
    (["SOLVER.IMS_PER_BATCH", "4", "SOLVER.REFERENCE_WORLD_SIZE", "0"], 3,
     r"SOLVER\.IMS_PER_BATCH=4 does not split over the 3 processes launched; expected a multiple of 3"),
]  # fmt: skip


@pytest.mark.parametrize("opts,world_size,pattern", BATCH_SPLITS)
def test_a_detection_batch_that_does_not_split_is_refused(opts, world_size, pattern):
    cfg = build_config(str(DEMO_CONFIG), opts)
    with pytest.raises(ConfigError, match=pattern):
        check_solver(cfg, world_size)


@pytest.mark.parametrize("opts,world_size,pattern", BATCH_SPLITS)
def test_a_pretraining_batch_that_does_not_split_is_refused(opts, world_size, pattern):
    cfg = build_pretrain_config(str(CONFIGS / "cifar" / "resnext29_8x64d.yaml"), opts)
    with pytest.raises(ConfigError, match=pattern):
        scale_to_world_size(cfg, world_size)


def test_a_key_repeated_through_a_yaml_merge_is_an_override_not_a_repeat(tmp_path):
    _write(
        tmp_path,
        {
            "c.yaml": f"_BASE_: {DEMO_CONFIG}\n_ANCHOR: &solver {{BASE_LR: 0.1, MAX_ITER: 5}}\n"
            "SOLVER:\n  <<: *solver\n  MAX_ITER: 7\n"
        },
    )
    with pytest.raises(ConfigError, match=r"unknown config key: _ANCHOR"):
        build_config(str(tmp_path / "c.yaml"))  # past the yaml check: yacs's own
