"""The pretraining config: the paper's recipe as defaults, and the rules its values obey.

The network is named with Detectron2's own keys (``MODEL.RESNETS``, ``MODEL.RESNEXT``), as
in a detection config; the rest (data, input, solver in epochs) is pretraining's own.
"""

from collections.abc import Sequence

# fvcore's node: Detectron2's insists on a VERSION key, which only its own config has.
from fvcore.common.config import CfgNode

from ..config import add_resnext_config, merge_config
from ..training.batch import check_batch_split
from ..utils.errors import ConfigError
from ..utils.value_checks import check_values, integer, number, numbers

__all__ = [
    "PRETRAIN_RULES",
    "build_pretrain_config",
    "check_pretrain_config",
    "get_pretrain_cfg",
    "scale_to_world_size",
]


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
    _C.SOLVER.AMP = CfgNode()
    # Mixed precision: float16 with a gradient scaler on GPUs, bfloat16 on CPUs.
    _C.SOLVER.AMP.ENABLED = False

    _C.TEST = CfgNode()
    # Evaluate every this many epochs and after the last one (0: only after the last).
    _C.TEST.EVAL_PERIOD = 1
    _C.TEST.IMS_PER_BATCH = 64  # per process

    # Write metrics.json and log a line (or refresh the progress bar) every this many
    # iterations.
    _C.LOG_PERIOD = 20
    _C.OUTPUT_DIR = "output/pretrain"
    # Seeds the weights, the data order and every augmentation: with the same seed a run
    # sees the same batches whatever the number of processes, and so does a resumed run.
    _C.SEED = 0
    return _C


# Every number of the pretraining config, against what it means. A crop of 0 pixels or a
# negative worker count would otherwise fail in the data loader as if images were corrupt.
PRETRAIN_RULES = [
    ("MODEL.NUM_CLASSES", integer(1)),
    ("DATA.NUM_WORKERS", integer(0)),
    ("INPUT.TRAIN_CROP", integer(1)),
    ("INPUT.TRAIN_SCALE", numbers(0, 1, above=True, length=2)),
    ("INPUT.TEST_RESIZE", integer(1)),
    ("INPUT.TEST_CROP", integer(1)),
    ("INPUT.PADDING", integer(0)),
    ("INPUT.PIXEL_MEAN", numbers(length=3)),
    ("INPUT.PIXEL_STD", numbers(0, above=True, length=3)),
    ("SOLVER.IMS_PER_BATCH", integer(1)),
    ("SOLVER.REFERENCE_WORLD_SIZE", integer(0)),
    ("SOLVER.BASE_LR", number(0, above=True)),
    ("SOLVER.MOMENTUM", number(0, 1, below=True)),
    ("SOLVER.WEIGHT_DECAY", number(0)),
    ("SOLVER.GAMMA", number(0, above=True)),
    ("SOLVER.EPOCHS", integer(1)),
    ("SOLVER.WARMUP_EPOCHS", number(0)),
    ("SOLVER.MAX_ITER", integer(0)),
    ("SOLVER.CHECKPOINT_PERIOD", integer(0)),
    ("TEST.EVAL_PERIOD", integer(0)),
    ("TEST.IMS_PER_BATCH", integer(1)),
    ("LOG_PERIOD", integer(1)),
    ("SEED", integer(0)),
]


def check_pretrain_config(cfg: CfgNode) -> None:
    """Refuse the first value of a pretraining config that breaks its rule, in one line.

    Raises:
        ConfigError: naming the key, the value and what is expected.
    """
    check_values(cfg, PRETRAIN_RULES)
    steps = cfg.SOLVER.STEPS
    ordered = isinstance(steps, (list, tuple)) and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in steps
    )
    if not ordered or list(steps) != sorted(steps):
        raise ConfigError(
            f"SOLVER.STEPS={steps!r} is invalid; expected increasing epochs >= 0 (a list)"
        )
    low, high = cfg.INPUT.TRAIN_SCALE
    if low > high:
        raise ConfigError(
            f"INPUT.TRAIN_SCALE={tuple(cfg.INPUT.TRAIN_SCALE)!r} is invalid; expected "
            "(min, max) with min <= max"
        )


def build_pretrain_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """The pretraining defaults + a yaml file (``_BASE_`` allowed) + ``KEY VALUE`` overrides."""
    return merge_config(get_pretrain_cfg(), config_file, opts)


def scale_to_world_size(cfg: CfgNode, world_size: int) -> CfgNode:
    """Detectron2's linear rule: images per process stay fixed, batch and lr scale.

    ``SOLVER.IMS_PER_BATCH`` and ``BASE_LR`` are given for ``REFERENCE_WORLD_SIZE``
    processes; 0 there means no scaling (the batch is split over the processes).

    Raises:
        ConfigError: the batch does not split over the processes (:func:`check_batch_split`).
    """
    cfg = cfg.clone()
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    check_batch_split(cfg.SOLVER.IMS_PER_BATCH, reference, world_size)
    if reference in (0, world_size):
        return cfg
    cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * world_size / reference
    cfg.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_BATCH // reference * world_size
    cfg.SOLVER.REFERENCE_WORLD_SIZE = world_size
    return cfg
