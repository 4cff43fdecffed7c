"""Config nodes: ``MODEL.RESNEXT`` for Detectron2 configs, the pretraining config's
defaults, and the checked yaml merge.

One home per option: the architecture is Detectron2's ``MODEL.RESNETS`` (and
``MODEL.BACKBONE.FREEZE_AT``), ``MODEL.RESNEXT`` holds only what Detectron2 lacks. The
pretraining config (:func:`get_pretrain_cfg`; its rules are the pretraining engine's) uses
the very same keys, so a classifier and a detector name their backbone the same way; both
are merged from yaml by :func:`merge_config`.
"""

import os
import re
from collections.abc import Sequence
from typing import Optional

import yaml
from detectron2.config import CfgNode as CN

# fvcore's node for the pretraining config: Detectron2's insists on a VERSION key, which
# only its own config has.
from fvcore.common.config import CfgNode

from .utils.errors import ConfigError

__all__ = [
    "RESNEXT_DEFAULTS",
    "add_resnext_config",
    "get_pretrain_cfg",
    "merge_config",
    "resnext_options",
]


# MODEL.RESNEXT, the only keys of ours. Fig. 3's block forms: "a" split-transform-sum,
# "b" early concatenation, "c" grouped convolution (fast; Detectron2's BottleneckBlock).
# The speed options change no value and no module (docs/design/speed.md): MEMORY_FORMAT
# is the layout each block of the ResNeXt runs in: "auto" picks channels_last for maps of
# 14 x 14 pixels and more on the CPU, where oneDNN runs convolutions faster, and the
# contiguous format for smaller ones and wherever GroupNorm runs; or "contiguous" /
# "channels_last" throughout. SPARSE_ROI_ALIGN has the RoI heads of ours
# (ResNeXtRes5ROIHeads, ResNeXtStandardROIHeads) compute RoIAlign on the CPU as sparse
# matrix products (several times faster than torchvision's CPU kernel, same values).
RESNEXT_DEFAULTS = {
    "BLOCK_FORM": "c",
    "MEMORY_FORMAT": "auto",
    "SPARSE_ROI_ALIGN": False,
}


def resnext_options(cfg: CN) -> dict:
    """``cfg.MODEL.RESNEXT`` with the defaults of any key it lacks (or of all of them, for
    a Detectron2 config without :func:`add_resnext_config`)."""
    return {**RESNEXT_DEFAULTS, **(cfg.MODEL.get("RESNEXT") or {})}


def add_resnext_config(cfg: CN) -> CN:
    """Add ``MODEL.RESNEXT``: what Detectron2's config lacks for the ResNeXt backbones.

    The network itself is read from Detectron2's own keys, exactly as its
    ``build_resnet_backbone`` reads them: ``MODEL.RESNETS.DEPTH``, ``NUM_GROUPS`` (the
    paper's cardinality C), ``WIDTH_PER_GROUP`` (the bottleneck width d of res2),
    ``STRIDE_IN_1X1``, ``NORM``, ``OUT_FEATURES``, ``STEM_OUT_CHANNELS``,
    ``RES2_OUT_CHANNELS``, ``RES5_DILATION`` and ``MODEL.BACKBONE.FREEZE_AT``. A config
    without ``MODEL.RESNEXT`` builds with the defaults below. Values are checked when the
    model is built, where an invalid one raises a ``ValueError`` naming its key. Calling
    this twice leaves the node as is.

    Args:
        cfg: a Detectron2 config, e.g. from ``detectron2.config.get_cfg()``.

    Returns:
        The same ``cfg``, for chaining.
    """
    if "RESNEXT" in cfg.MODEL:
        return cfg
    # The config's own node class: yacs merges only alike.
    cfg.MODEL.RESNEXT = type(cfg.MODEL)(RESNEXT_DEFAULTS)
    return cfg


def merge_config(cfg: CN, config_file: str, opts: Sequence[str] = ()) -> CN:
    """Merge a yaml file (``_BASE_`` allowed) and ``KEY VALUE`` overrides into ``cfg``.

    The yaml is read with the safe loader: a config that names Python objects (which
    Detectron2's default unsafe loading would construct, running code) is refused. The
    file and each ``_BASE_`` it names must be a local UTF-8 file holding a mapping of
    config keys, each key once; an empty file, a list, a single value, a key given twice
    (yaml keeps the last silently), a ``_BASE_`` that is a URL (nothing is downloaded) or a
    ``_BASE_`` chain that comes back to a file already in it is refused before yacs sees it
    (yacs would raise a bare ``TypeError`` or recurse until the interpreter gives up).

    Raises:
        ConfigError: the file is missing, a folder, empty, not a mapping, not UTF-8, not
            yaml, unsafe, repeats a key, in a ``_BASE_`` cycle, or names a URL, an unknown
            key or a value of the wrong type (the message names the file or the key, and
            the types).
    """
    _check_yaml_tree(config_file, (), cfg)
    try:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    except FileNotFoundError as e:  # a _BASE_ it names (checked above; kept for URLs)
        raise ConfigError(f"config file {e.filename or config_file} does not exist") from e
    except yaml.YAMLError as e:  # checked above; a file that changed in between
        raise ConfigError(f"{config_file} is not valid yaml: {e}") from e
    except (AssertionError, KeyError, ValueError) as e:  # yacs and fvcore assert on input
        raise ConfigError(f"{config_file}: {_reason(e, cfg)}") from e
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"the overrides {opts} have an odd length; expected KEY VALUE pairs")
    try:
        cfg.merge_from_list(opts)
    except (AssertionError, KeyError, ValueError) as e:
        raise ConfigError(f"command-line override: {_reason(e, cfg)}") from e
    return cfg


_BASE_KEY = "_BASE_"


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader fvcore reads configs with, refusing a key given twice in a mapping:
    yaml keeps the last one silently, dropping every value under the first (a second
    ``SOLVER:`` block loses the first's ``MAX_ITER``). A key from a merge (``<<: *x``) may
    be given again: that is how yaml overrides it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # an unhashable key is the constructor's to refuse
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in first_lines:
                raise ConfigError(
                    f"{self.name} line {line}: the key {key_node.value!r} is given a second "
                    f"time (first on line {first_lines[key]}); expected each key once (yaml "
                    f"would keep only the last {key_node.value}, dropping the values of the "
                    "first)"
                )
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: str) -> object:
    """A yaml file's content, read as fvcore reads it (the safe loader), or a ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(
            f"{path} asks the yaml loader to build a Python object ({e.problem}); "
            "expected plain yaml values only"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid yaml: {' '.join(str(e).split())}") from e
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} is not UTF-8 text: byte {e.object[e.start]:#04x} on line {line} is "
            "invalid there; expected a yaml file in UTF-8 (save it as UTF-8)"
        ) from e


def _describe(value: object) -> str:
    """A value's type and a short rendering of it, for messages."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{_a_type(type(value).__name__)} ({text[:40] + '...' if len(text) > 40 else text})"


def _check_yaml_tree(path: str, chain: tuple[str, ...], cfg: CN) -> None:
    """Check ``path`` and every ``_BASE_`` below it: a mapping of string keys, no cycle.

    Args:
        path: the yaml file, as the file that names it spells it.
        chain: the real paths of the files that led here (their ``_BASE_``), outermost first.
        cfg: the config it will be merged into: where it has a node, the yaml needs a
            mapping (Detectron2's version guess would fail on anything else).
    """
    real = os.path.realpath(path)
    if real in chain:
        loop = " -> ".join([*chain[chain.index(real) :], real])
        raise ConfigError(
            f"config files {loop} form a _BASE_ cycle; expected a _BASE_ chain that ends"
        )
    if not os.path.isfile(path):
        named_by = f" (the _BASE_ of {chain[-1]})" if chain else ""
        state = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"config file {path}{named_by} {state}; expected a yaml file")
    data = _load_yaml(path)
    if data is None:
        raise ConfigError(
            f"config file {path} is empty; expected a mapping of config keys (KEY: value)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} holds {_describe(data)}; expected a mapping of config keys "
            "(KEY: value)"
        )
    _check_keys(data, path, "", cfg)
    if _BASE_KEY not in data:
        return
    bases = data[_BASE_KEY]
    for base in bases if isinstance(bases, list) else [bases]:
        if not isinstance(base, str) or not base:
            raise ConfigError(
                f"{path}: _BASE_={bases!r} is invalid; expected the path of a base config "
                "file (or a list of them)"
            )
        if "://" in base:  # fvcore would download it
            raise ConfigError(
                f"{path}: _BASE_={base!r} is a URL; expected the path of a local config file "
                "(nothing is downloaded: fetch it first and name its path)"
            )
        base = os.path.expanduser(base)
        if not os.path.isabs(base):  # relative to the file that names it, as fvcore does
            base = os.path.join(os.path.dirname(path), base)
        _check_yaml_tree(base, (*chain, real), cfg)


def _check_keys(node: dict, path: str, prefix: str, defaults: object) -> None:
    """Every key of a yaml mapping, at any depth, is a string (yacs joins them into names),
    and a key that is a node in ``defaults`` holds a mapping."""
    for key, value in node.items():
        if not isinstance(key, str):
            where = f" under {prefix[:-1]}" if prefix else ""
            raise ConfigError(
                f"{path}: the key {key!r}{where} is {_a_type(type(key).__name__)}; expected "
                "config key names (strings such as SOLVER)"
            )
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(default, dict) and not isinstance(value, dict):
            raise ConfigError(
                f"{path}: {prefix}{key} holds {_describe(value)}; expected "
                f"a mapping of config keys (such as {', '.join(list(default)[:3])}, ...)"
            )
        if isinstance(value, dict):
            _check_keys(value, path, f"{prefix}{key}.", default)


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a float",
    "bool": "a boolean",
    "str": "a string",
    "tuple": "a list",
    "list": "a list",
    "dict": "a mapping",
    "NoneType": "null",
    "CfgNode": "a mapping of config keys",
}

_TYPE_MISMATCH = re.compile(
    r"Type mismatch \(<class '([\w.]+)'> vs\. <class '([\w.]+)'>\) with values \((.*)\) "
    r"for config key: (\S+)\s*$",
    re.S,
)


def _a_type(name: str) -> str:
    """'an integer' for 'int', 'a mapping of config keys' for '...CfgNode', and so on."""
    short = name.rsplit(".", 1)[-1]
    return _TYPE_NAMES.get(short, f"a {short}")


def _type_mismatch(text: str, cfg: CN) -> Optional[str]:
    """yacs's "Type mismatch (...) with values (...) for config key: K", reworded to name
    the key, the value given, its type and the type expected; None for other messages."""
    match = _TYPE_MISMATCH.match(text)
    if match is None:
        return None
    expected_type, given_type, values, key = match.groups()
    try:
        default = cfg
        for part in key.split("."):
            default = default[part]
    except (KeyError, TypeError):
        return None
    prefix = f"{default} vs. "
    given = values[len(prefix) :] if values.startswith(prefix) else values
    given = " ".join(given.split())
    given = given[:40] + "..." if len(given) > 40 else given
    if isinstance(default, CN) or expected_type.endswith("CfgNode"):
        expected = f"{_a_type(expected_type)} (such as {', '.join(list(default)[:3])}, ...)"
    else:
        expected = f"{_a_type(expected_type)} like the {default!r} it replaces"
        if expected_type == "float" and given_type == "int":
            expected += f" (write {given}.0)"
    return f"{key}={given} is {_a_type(given_type)}; expected {expected}"


def _reason(error: Exception, cfg: CN) -> str:
    # KeyError's str() quotes its message; yacs puts "Non-existent config key: X" in it.
    text = str(error.args[0] if error.args else error)
    reworded = _type_mismatch(text, cfg)
    if reworded:
        return reworded
    text = text.replace("Non-existent config key", "Non-existent key")
    return text.replace("Non-existent key", "unknown config key")


def get_pretrain_cfg() -> CfgNode:
    """Defaults of classification pretraining: the paper's ImageNet-1K recipe (Sec. 4).

    ``configs/imagenet/*.yaml`` (Tables 3 and 4) and ``configs/cifar/*.yaml`` (Appendix A)
    override them. Batch sizes and learning rates are given for
    ``SOLVER.REFERENCE_WORLD_SIZE`` processes and scaled linearly to the number actually
    launched, as Detectron2 does.

    Returns:
        A new config; merge a yaml into it with ``merge_from_file``.
    """
    _C = CfgNode()
    _C.MODEL = CfgNode()
    add_resnext_config(_C)
    # The network, in Detectron2's keys (their meaning as in build_resnet_backbone): the
    # paper's ResNeXt-50 32x4d, stride 2 in the 3x3 conv, and, since a classifier trains
    # every layer with batch statistics, BN after each conv (Sec. 4).
    _C.MODEL.RESNETS = CfgNode()
    _C.MODEL.RESNETS.DEPTH = 50
    _C.MODEL.RESNETS.NUM_GROUPS = 32
    _C.MODEL.RESNETS.WIDTH_PER_GROUP = 4
    _C.MODEL.RESNETS.STRIDE_IN_1X1 = False
    _C.MODEL.RESNETS.NORM = "BN"
    _C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
    _C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    # "imagenet": 7x7 stem + res2..res5 at 224 px (Table 1); "cifar": ResNeXt-29 for 32 px
    # inputs, a 3x3 stem + three stages of three blocks (Appendix A).
    _C.MODEL.ARCH = "imagenet"
    _C.MODEL.NUM_CLASSES = 1000
    # Weights to start from (a checkpoint of this tool); empty: He initialization [13].
    _C.MODEL.WEIGHTS = ""

    _C.DATA = CfgNode()
    # "imagefolder": <ROOT>/train/<class>/*, <ROOT>/val/<class>/* (ImageNet);
    # "cifar10" / "cifar100": the python-pickle batches of the CIFAR site under <ROOT>.
    _C.DATA.FORMAT = "imagefolder"
    _C.DATA.ROOT = "datasets/imagenet"
    _C.DATA.NUM_WORKERS = 8

    _C.INPUT = CfgNode()
    # Train: random-size crop with scale and aspect-ratio augmentation [38] to TRAIN_CROP,
    # and horizontal flips. Test: resize the shorter side to TEST_RESIZE, centre crop
    # TEST_CROP (Sec. 4: 256 / 224; Table 5 also tests 320 crops).
    _C.INPUT.TRAIN_CROP = 224
    _C.INPUT.TRAIN_SCALE = (0.08, 1.0)
    _C.INPUT.TEST_RESIZE = 256
    _C.INPUT.TEST_CROP = 224
    # CIFAR: 32 px crops of the image zero-padded by PADDING on each side (40 px).
    _C.INPUT.PADDING = 4
    # RGB in [0, 1]: the ImageNet statistics of fb.resnet.torch (the paper's code base).
    _C.INPUT.PIXEL_MEAN = (0.485, 0.456, 0.406)
    _C.INPUT.PIXEL_STD = (0.229, 0.224, 0.225)

    _C.SOLVER = CfgNode()
    # Sec. 4: SGD, mini-batch 256 on 8 GPUs (32 per GPU), momentum 0.9, weight decay 1e-4,
    # lr 0.1 divided by 10 three times (fb.resnet.torch: every 30 epochs).
    _C.SOLVER.IMS_PER_BATCH = 256
    _C.SOLVER.REFERENCE_WORLD_SIZE = 8
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.NESTEROV = False
    _C.SOLVER.WEIGHT_DECAY = 1e-4
    # Epochs at which the lr is multiplied by GAMMA, each below EPOCHS, the epochs the run
    # lasts (the paper's curves, Fig. 5, run to 100, past the third step).
    _C.SOLVER.STEP_EPOCHS = (30, 60, 90)
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.EPOCHS = 100
    # Linear warmup from 0 over this many epochs (not in the paper; for large batches).
    _C.SOLVER.WARMUP_EPOCHS = 0.0
    # Stop after this many iterations (0: run all epochs). For trials and tests. Iterations,
    # as Detectron2's MAX_ITER, which also ends a run; here the epochs may end it first.
    _C.SOLVER.MAX_ITER = 0
    # Also checkpoint every this many iterations (0: only at the end of each epoch).
    _C.SOLVER.CHECKPOINT_PERIOD = 0
    _C.SOLVER.AMP = CfgNode()
    # Mixed precision: float16 with a gradient scaler on GPUs, bfloat16 on CPUs.
    _C.SOLVER.AMP.ENABLED = False

    _C.TEST = CfgNode()
    # Evaluate every this many epochs and after the last one (0: only after the last).
    _C.TEST.EVAL_PERIOD_EPOCHS = 1
    _C.TEST.IMS_PER_BATCH = 64  # per process

    # Write metrics.json and log a line (or refresh the progress bar) every this many
    # iterations.
    _C.LOG_PERIOD = 20
    _C.OUTPUT_DIR = "output/pretrain"
    # Seeds the weights, the data order and every augmentation: with the same seed a run
    # sees the same batches whatever the number of processes, and so does a resumed run.
    _C.SEED = 0

    # Detectron2's keys of these names count iterations: refused, in one line naming ours
    # (yacs's renamed keys), rather than read as epochs (60000 would be a step never reached).
    for old, new, unit in (
        ("SOLVER.STEPS", "SOLVER.STEP_EPOCHS", "lr steps"),
        ("TEST.EVAL_PERIOD", "TEST.EVAL_PERIOD_EPOCHS", "evaluation period"),
    ):
        _C.register_renamed_key(
            old,
            new,
            f"pretraining counts its {unit} in epochs; expected {new} (epochs), not "
            f"Detectron2's {old} (iterations)",
        )
    return _C
