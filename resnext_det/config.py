"""Config nodes: ``MODEL.RESNEXT`` for Detectron2 configs, and the pretraining config.

One home per option: the architecture is Detectron2's ``MODEL.RESNETS`` (and
``MODEL.BACKBONE.FREEZE_AT``), ``MODEL.RESNEXT`` holds only what Detectron2 lacks. The
pretraining config uses the very same keys, so a classifier and a detector name their
backbone the same way.
"""

from collections.abc import Sequence
from pathlib import Path

import yaml
from detectron2.config import CfgNode as CN
from fvcore.common.config import CfgNode as UnversionedCN

from .errors import ConfigError

__all__ = ["add_resnext_config", "get_pretrain_cfg", "merge_config"]


# MODEL.RESNEXT, the only keys of ours. Fig. 3's block forms: "a" split-transform-sum,
# "b" early concatenation, "c" grouped convolution (fast; Detectron2's BottleneckBlock).
# The speed options change no output and no parameter name (docs/benchmarks.md):
# FOLD_FROZEN_BN computes a conv and its frozen BN as one conv wherever no gradient
# reaches the conv (inference, frozen stages); MEMORY_FORMAT is the layout each conv runs
# in: "auto" picks channels_last for maps of 14 x 14 pixels and more on the CPU, where
# oneDNN runs it faster, and the contiguous format for smaller ones; or "contiguous" /
# "channels_last" throughout.
RESNEXT_DEFAULTS = {"BLOCK_FORM": "c", "FOLD_FROZEN_BN": True, "MEMORY_FORMAT": "auto"}


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


def get_pretrain_cfg() -> CN:
    """Defaults of classification pretraining: the paper's ImageNet-1K recipe (Sec. 4).

    ``configs/imagenet/*.yaml`` (Tables 3 and 4) and ``configs/cifar/*.yaml`` (Appendix A)
    override them. Batch sizes and learning rates are given for
    ``SOLVER.REFERENCE_WORLD_SIZE`` processes and scaled linearly to the number actually
    launched, as Detectron2 does.

    Returns:
        A new config; merge a yaml into it with ``merge_from_file``.
    """
    # fvcore's node: Detectron2's insists on a VERSION key, which only its own config has.
    _C = UnversionedCN()
    _C.MODEL = UnversionedCN()
    add_resnext_config(_C)
    # The network, in Detectron2's keys (their meaning as in build_resnet_backbone): the
    # paper's ResNeXt-50 32x4d, stride 2 in the 3x3 conv, and, since a classifier trains
    # every layer with batch statistics, BN after each conv (Sec. 4).
    _C.MODEL.RESNETS = UnversionedCN()
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

    _C.DATA = UnversionedCN()
    # "imagefolder": <ROOT>/train/<class>/*, <ROOT>/val/<class>/* (ImageNet);
    # "cifar10" / "cifar100": the python-pickle batches of the CIFAR site under <ROOT>.
    _C.DATA.FORMAT = "imagefolder"
    _C.DATA.ROOT = "datasets/imagenet"
    _C.DATA.NUM_WORKERS = 8

    _C.INPUT = UnversionedCN()
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

    _C.SOLVER = UnversionedCN()
    # Sec. 4: SGD, mini-batch 256 on 8 GPUs (32 per GPU), momentum 0.9, weight decay 1e-4,
    # lr 0.1 divided by 10 three times (fb.resnet.torch: every 30 epochs).
    _C.SOLVER.IMS_PER_BATCH = 256
    _C.SOLVER.REFERENCE_WORLD_SIZE = 8
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.NESTEROV = False
    _C.SOLVER.WEIGHT_DECAY = 1e-4
    # Epochs at which the lr is multiplied by GAMMA; the run lasts EPOCHS epochs, past the
    # third step so that it takes effect (the paper's curves, Fig. 5, run to 100 epochs).
    _C.SOLVER.STEPS = (30, 60, 90)
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.EPOCHS = 100
    # Linear warmup from 0 over this many epochs (not in the paper; for large batches).
    _C.SOLVER.WARMUP_EPOCHS = 0.0
    # Stop after this many iterations (0: run all epochs). For trials and tests.
    _C.SOLVER.MAX_ITER = 0
    # Also checkpoint every this many iterations (0: only at the end of each epoch).
    _C.SOLVER.CHECKPOINT_PERIOD = 0
    _C.SOLVER.AMP = UnversionedCN()
    # Mixed precision: float16 with a gradient scaler on GPUs, bfloat16 on CPUs.
    _C.SOLVER.AMP.ENABLED = False

    _C.TEST = UnversionedCN()
    # Evaluate every this many epochs and after the last one (0: only after the last).
    _C.TEST.EVAL_PERIOD = 1
    _C.TEST.IMS_PER_BATCH = 64  # per process

    # Log a line (or refresh the progress bar) every this many iterations.
    _C.LOG_PERIOD = 20
    _C.OUTPUT_DIR = "output/pretrain"
    # Seeds the weights, the data order and every augmentation: with the same seed a run
    # sees the same batches whatever the number of processes, and so does a resumed run.
    _C.SEED = 0
    return _C


def merge_config(cfg: CN, config_file: str, opts: Sequence[str] = ()) -> CN:
    """Merge a yaml file (``_BASE_`` allowed) and ``KEY VALUE`` overrides into ``cfg``.

    The yaml is read with the safe loader: a config that names Python objects (which
    Detectron2's default unsafe loading would construct, running code) is refused.

    Raises:
        ConfigError: the file is missing, not yaml, unsafe, or names an unknown key or a
            value of the wrong type (the message names the file or the key).
    """
    if not Path(config_file).is_file():
        raise ConfigError(f"config file {config_file} does not exist; expected a yaml file")
    try:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    except FileNotFoundError as e:  # a _BASE_ it names
        raise ConfigError(f"config file {e.filename or config_file} does not exist") from e
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(
            f"{config_file} asks the yaml loader to build a Python object ({e.problem}); "
            "expected plain yaml values only"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{config_file} is not valid yaml: {e}") from e
    except (AssertionError, KeyError, ValueError) as e:  # yacs and fvcore assert on input
        raise ConfigError(f"{config_file}: {_reason(e)}") from e
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"the overrides {opts} have an odd length; expected KEY VALUE pairs")
    try:
        cfg.merge_from_list(opts)
    except (AssertionError, KeyError, ValueError) as e:
        raise ConfigError(f"command-line override: {_reason(e)}") from e
    return cfg


def _reason(error: Exception) -> str:
    # KeyError's str() quotes its message; yacs puts "Non-existent config key: X" in it.
    text = error.args[0] if error.args else str(error)
    text = str(text).replace("Non-existent config key", "Non-existent key")
    return text.replace("Non-existent key", "unknown config key")
