"""Config nodes: ``MODEL.RESNEXT`` for Detectron2 configs, and the pretraining config.

Every ResNeXt option lives in ``MODEL.RESNEXT``; the pretraining config reuses that very
node, so a classifier and a detector name their backbone the same way.
"""

from collections.abc import Sequence
from pathlib import Path

import yaml
from detectron2.config import CfgNode as CN
from fvcore.common.config import CfgNode as UnversionedCN

from .errors import ConfigError

__all__ = ["add_resnext_config", "get_pretrain_cfg", "merge_config"]


def add_resnext_config(cfg: CN) -> CN:
    """Add ``MODEL.RESNEXT`` with the paper's ResNeXt-50 (32x4d) as defaults.

    Values are checked when the model is built (:class:`ResNeXtSpec`), where an invalid
    one raises a ``ValueError`` naming its key. Calling this twice leaves the node as is.

    Args:
        cfg: a Detectron2 config, e.g. from ``detectron2.config.get_cfg()``.

    Returns:
        The same ``cfg``, for chaining.
    """
    if "RESNEXT" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.RESNEXT = type(cfg.MODEL)()  # the config's own node class: yacs merges only alike
    # 50, 101, 152 (Table 1), 200 (Table 4); 14 and 26 are reduced depths for CPU-sized runs.
    _C.MODEL.RESNEXT.DEPTH = 50
    # The template C x d: C paths of width d in res2. 1x64d is ResNet.
    _C.MODEL.RESNEXT.CARDINALITY = 32
    _C.MODEL.RESNEXT.BOTTLENECK_WIDTH = 4
    # Fig. 3: "a" split-transform-sum, "b" early concatenation, "c" grouped conv (fast).
    _C.MODEL.RESNEXT.BLOCK_FORM = "c"
    # The paper downsamples in the 3x3 conv; True puts the stride in the first 1x1
    # (MSRA-style ResNet weights).
    _C.MODEL.RESNEXT.STRIDE_IN_1X1 = False
    # FrozenBN, BN, SyncBN or GN (32 groups), after every conv.
    _C.MODEL.RESNEXT.NORM = "FrozenBN"
    # 0: train all; 1: freeze the stem; k >= 2: also res2 .. res{k}. This key, not
    # MODEL.BACKBONE.FREEZE_AT, is the one the ResNeXt backbones read.
    _C.MODEL.RESNEXT.FREEZE_AT = 2
    # Features the trunk returns; it stops at the last one. ["res4"] is the C4 trunk;
    # FPN needs ["res2", "res3", "res4", "res5"].
    _C.MODEL.RESNEXT.OUT_FEATURES = ["res4"]
    _C.MODEL.RESNEXT.STEM_OUT_CHANNELS = 64
    _C.MODEL.RESNEXT.RES2_OUT_CHANNELS = 256
    # Speed, not math (docs/benchmarks.md). Fold each frozen BN into its conv wherever no
    # gradient flows into the conv (inference, frozen stages): same outputs, less work.
    _C.MODEL.RESNEXT.FOLD_FROZEN_BN = True
    # Memory format each convolution runs in: "auto" picks channels_last for maps of 14 x 14
    # pixels and more, where oneDNN runs it faster, and the contiguous format for smaller
    # ones (res5 of a 224 px image); or "contiguous" / "channels_last" throughout.
    _C.MODEL.RESNEXT.MEMORY_FORMAT = "auto"
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
    # A classifier trains every layer, with batch statistics (Sec. 4: BN after each conv).
    _C.MODEL.RESNEXT.NORM = "BN"
    _C.MODEL.RESNEXT.FREEZE_AT = 0
    _C.MODEL.RESNEXT.OUT_FEATURES = ["res5"]
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
