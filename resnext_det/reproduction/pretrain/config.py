"""The pretraining config: the paper's recipe as defaults, and the rules its values obey.

The network is named with Detectron2's own keys (``MODEL.RESNETS``, ``MODEL.RESNEXT``), as
in a detection config; the rest (data, input, solver in epochs) is pretraining's own. A
setting counted in epochs says so in its name (``SOLVER.EPOCHS``, ``STEP_EPOCHS``,
``WARMUP_EPOCHS``, ``TEST.EVAL_PERIOD_EPOCHS``); a key shared with Detectron2 counts what
Detectron2's counts (``SOLVER.MAX_ITER``, ``CHECKPOINT_PERIOD``: iterations). Detectron2's
``SOLVER.STEPS`` and ``TEST.EVAL_PERIOD`` are refused by name (:func:`get_pretrain_cfg`).
"""

from collections.abc import Sequence

from fvcore.common.config import CfgNode

from ...config import get_pretrain_cfg, merge_config
from ...utils.errors import ConfigError
from ...utils.value_checks import check_values, integer, number, numbers
from ..training.batch import check_batch_split

__all__ = [
    "PRETRAIN_RULES",
    "build_pretrain_config",
    "check_pretrain_config",
    "get_pretrain_cfg",
    "scale_to_world_size",
]


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
    ("TEST.EVAL_PERIOD_EPOCHS", integer(0)),
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
    steps, epochs = cfg.SOLVER.STEP_EPOCHS, cfg.SOLVER.EPOCHS
    ordered = isinstance(steps, (list, tuple)) and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in steps
    )
    if not ordered or list(steps) != sorted(steps):
        raise ConfigError(
            f"SOLVER.STEP_EPOCHS={steps!r} is invalid; expected increasing epochs >= 0 (a list)"
        )
    if steps and max(steps) >= epochs:
        # A step the run never reaches leaves the lr where it was: an iteration count given
        # for epochs (Detectron2's habit) would train the whole run at the base lr.
        raise ConfigError(
            f"SOLVER.STEP_EPOCHS={tuple(steps)!r} reaches past the run's SOLVER.EPOCHS={epochs}; "
            f"expected epochs below {epochs} (they count epochs, not iterations)"
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
