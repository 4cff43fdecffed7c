"""Up-front checks of a detection run: everything a user can get wrong, before it costs.

Run in the launching process, before any worker starts, so that a wrong value ends the
command in one line (``resnext_det.utils.cli``) instead of a traceback an hour in. What cannot
be known before the run (image data corrupt past its header) follows the data policy of
:mod:`resnext_det.reproduction.data.sanitize`.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_backbone, build_model

from ...checkpoint import SafeDetectionCheckpointer
from ...checkpoint.checkpointer import read_checkpoint
from ...checkpoint.conventions import check_config_conventions
from ...checkpoint.fit import starting_weights
from ...modeling import ResNeXtRes5ROIHeads, ResNeXtSpec
from ...utils.errors import ConfigError, DataError, WeightsError
from ...utils.value_checks import (
    Expect,
    check_values,
    choice,
    integer,
    integers,
    lookup,
    number,
    numbers,
    optional,
    type_name,
)
from ..data.sanitize import check_dataset_jsons, check_image_files, check_same_classes
from ..training.batch import check_batch_split
from .trainer import check_can_train, load_dataset_dicts

__all__ = [
    "check_class_count",
    "check_datasets",
    "check_detection_run",
    "check_device",
    "check_device_name",
    "check_head_inputs",
    "check_inputs",
    "check_resume_state",
    "check_solver",
    "class_count_keys",
]


def check_device(cfg: CfgNode) -> None:
    """``MODEL.DEVICE`` must exist on this machine (Detectron2's default is 'cuda')."""
    check_device_name(str(cfg.MODEL.DEVICE), "MODEL.DEVICE")


def check_device_name(device: str, key: str) -> None:
    """The device ``key`` names must exist on this machine.

    Raises:
        ConfigError: naming the key: CUDA on a machine without it, or no device at all.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"{key}={device!r} but this machine has no CUDA device; expected {key} cpu (add it "
            "to the command line)"
        )
    if not device.startswith(("cuda", "cpu")):
        raise ConfigError(f"{key}={device!r} is not supported; expected 'cpu' or 'cuda'")


C4_HEAD = ResNeXtRes5ROIHeads.__name__


def _head_feature_keys(cfg: CfgNode) -> list[str]:
    """The config keys naming the backbone features each head of the model reads."""
    arch = cfg.MODEL.META_ARCHITECTURE
    keys = []
    if arch == "RetinaNet":
        keys.append("MODEL.RETINANET.IN_FEATURES")
    if arch in ("GeneralizedRCNN", "ProposalNetwork", "PanopticFPN"):
        if cfg.MODEL.PROPOSAL_GENERATOR.NAME in ("RPN", "RRPN"):
            keys.append("MODEL.RPN.IN_FEATURES")
    # The C4 head checks its own, with more to say (resnext_det.modeling.roi_heads).
    if arch in ("GeneralizedRCNN", "PanopticFPN") and cfg.MODEL.ROI_HEADS.NAME != C4_HEAD:
        keys.append("MODEL.ROI_HEADS.IN_FEATURES")
    if arch in ("SemanticSegmentor", "PanopticFPN"):
        keys.append("MODEL.SEM_SEG_HEAD.IN_FEATURES")
    return keys


def check_head_inputs(cfg: CfgNode) -> None:
    """Every head asks only for features the backbone gives (Detectron2 would fail with a
    bare KeyError while building the head)."""
    shapes = build_backbone(cfg).output_shape()
    for key in _head_feature_keys(cfg):
        node = cfg
        for part in key.split(".")[:-1]:
            node = node[part]
        wanted = list(node[key.split(".")[-1]])
        missing = [name for name in wanted if name not in shapes]
        if missing:
            raise ConfigError(
                f"{key}={wanted!r} asks for {missing!r}, but the backbone gives only "
                f"{sorted(shapes)}; expected names among those"
            )


# The schedule and the optimizer: where Detectron2 would assert, divide by zero, or
# quietly train with a value that makes no sense (a negative weight decay).
SOLVER_RULES = [
    ("SOLVER.IMS_PER_BATCH", integer(1)),
    ("SOLVER.MAX_ITER", integer(1)),
    ("SOLVER.CHECKPOINT_PERIOD", integer(1)),
    ("SOLVER.BASE_LR", number(0, above=True)),
    ("SOLVER.BASE_LR_END", number(0)),
    ("SOLVER.MOMENTUM", number(0, 1, below=True)),
    ("SOLVER.WEIGHT_DECAY", number(0)),
    ("SOLVER.WEIGHT_DECAY_NORM", number(0)),
    ("SOLVER.WEIGHT_DECAY_BIAS", optional(number(0))),
    ("SOLVER.BIAS_LR_FACTOR", number(0)),
    ("SOLVER.GAMMA", number(0, above=True)),
    ("SOLVER.WARMUP_ITERS", integer(0)),
    ("SOLVER.WARMUP_FACTOR", number(0, 1)),
    ("SOLVER.WARMUP_METHOD", choice("linear", "constant")),
    ("SOLVER.REFERENCE_WORLD_SIZE", integer(0)),
    ("TEST.EVAL_PERIOD", integer(0)),
]
# What a training image goes through: the loader, resizing, cropping, the heads' sampling.
TRAIN_INPUT_RULES = [
    ("INPUT.MIN_SIZE_TRAIN", integers(1)),
    ("INPUT.MIN_SIZE_TRAIN_SAMPLING", choice("choice", "range")),
    ("INPUT.MAX_SIZE_TRAIN", integer(1)),
    ("DATALOADER.REPEAT_THRESHOLD", number(0)),
    ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", integer(1)),
    ("MODEL.RPN.POSITIVE_FRACTION", number(0, 1, above=True)),
    ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", integer(1)),
    ("MODEL.RPN.POST_NMS_TOPK_TRAIN", integer(1)),
    ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", integer(1)),
    ("MODEL.ROI_HEADS.POSITIVE_FRACTION", number(0, 1, above=True)),
]


def _per_feature_map(rule: Expect) -> Expect:
    """``rule`` for each feature map's list, as Detectron2's anchor generator reads
    ``SIZES`` and ``ASPECT_RATIOS``: one list per feature map, or one list for all."""

    def lists(value: Any) -> list:
        nested = value and all(isinstance(v, (list, tuple)) for v in value)
        return list(value) if nested else [value]

    return Expect(
        f"one list of {rule.text.removeprefix('a list of ')} per feature map (or one list for all)",
        lambda v: isinstance(v, (list, tuple)) and all(rule.has_type(x) for x in lists(v)),
        lambda v: all(rule.holds(x) for x in lists(v)),
    )


# What evaluation (and so every run) goes through.
INPUT_RULES = [
    ("DATALOADER.NUM_WORKERS", integer(0)),
    ("INPUT.MIN_SIZE_TEST", integer(0)),  # 0: no resizing, as Detectron2 documents
    ("INPUT.MAX_SIZE_TEST", integer(1)),
    ("TEST.DETECTIONS_PER_IMAGE", integer(1)),
    ("MODEL.RPN.PRE_NMS_TOPK_TEST", integer(1)),
    ("MODEL.RPN.POST_NMS_TOPK_TEST", integer(1)),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", number(0, 1)),
    ("MODEL.ROI_HEADS.NMS_THRESH_TEST", number(0, 1)),
    # An anchor of size 0 fails Detectron2's box coding with a bare assertion.
    ("MODEL.ANCHOR_GENERATOR.SIZES", _per_feature_map(numbers(0, above=True))),
    ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", _per_feature_map(numbers(0, above=True))),
    ("MODEL.ANCHOR_GENERATOR.OFFSET", number(0, 1, below=True)),
]
# INPUT.CROP.SIZE by INPUT.CROP.TYPE, as detectron2.data.transforms.RandomCrop reads it.
CROP_SIZE_RULES = {
    "relative": numbers(0, 1, above=True, length=2),
    "relative_range": numbers(0, 1, above=True, length=2),
    "absolute": integers(1, length=2),
    "absolute_range": integers(1, length=2),
}
# The heads whose class count each meta-architecture builds.
CLASS_COUNT_KEYS = {
    "GeneralizedRCNN": ("MODEL.ROI_HEADS.NUM_CLASSES",),
    "RetinaNet": ("MODEL.RETINANET.NUM_CLASSES",),
    "SemanticSegmentor": ("MODEL.SEM_SEG_HEAD.NUM_CLASSES",),
    "PanopticFPN": ("MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.SEM_SEG_HEAD.NUM_CLASSES"),
}


def check_solver(cfg: CfgNode, world_size: int = 1) -> None:
    """The schedule's values, checked where Detectron2 would assert or divide by zero."""
    check_values(cfg, SOLVER_RULES)
    solver = cfg.SOLVER
    steps = solver.STEPS
    if not isinstance(steps, (list, tuple)):
        raise ConfigError(
            f"SOLVER.STEPS={steps!r} is {type_name(steps)}; expected a list of increasing "
            "iterations >= 0"
        )
    if any(not _is_iteration(s) for s in steps) or list(steps) != sorted(steps):
        raise ConfigError(
            f"SOLVER.STEPS={tuple(steps)!r} is invalid; expected increasing iterations >= 0"
        )
    check_batch_split(solver.IMS_PER_BATCH, solver.REFERENCE_WORLD_SIZE, world_size)
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED:
        check_values(
            cfg,
            [
                ("SOLVER.CLIP_GRADIENTS.CLIP_TYPE", choice("value", "norm")),
                ("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", number(0, above=True)),
            ],
        )


def _is_iteration(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def class_count_keys(cfg: CfgNode) -> tuple[str, ...]:
    """The ``NUM_CLASSES`` keys the model of ``cfg`` reads (none for a ProposalNetwork)."""
    return CLASS_COUNT_KEYS.get(cfg.MODEL.META_ARCHITECTURE, ())


def check_inputs(cfg: CfgNode, training: bool = True) -> None:
    """The loader's, the input pipeline's and the heads' numbers, one line for the first
    wrong one (a crop size of 0 would otherwise fail every image as if it were corrupt)."""
    rules = [*INPUT_RULES, *((key, integer(1)) for key in class_count_keys(cfg))]
    if training:
        rules += TRAIN_INPUT_RULES
    if cfg.MODEL.LOAD_PROPOSALS:
        rules.append(("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", integer(1)))
        if training:
            rules.append(("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN", integer(1)))
    check_values(cfg, rules)
    if not training:
        return
    sizes = list(cfg.INPUT.MIN_SIZE_TRAIN)
    if cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range" and (len(sizes) != 2 or sizes[0] > sizes[1]):
        raise ConfigError(
            f"INPUT.MIN_SIZE_TRAIN={tuple(sizes)!r} is invalid with "
            "INPUT.MIN_SIZE_TRAIN_SAMPLING='range'; expected (low, high) with low <= high"
        )
    crop = cfg.INPUT.CROP
    if crop.ENABLED:
        check_values(cfg, [("INPUT.CROP.TYPE", choice(*CROP_SIZE_RULES))])
        check_values(cfg, [("INPUT.CROP.SIZE", CROP_SIZE_RULES[crop.TYPE])])
        low, high = crop.SIZE
        if crop.TYPE == "absolute_range" and low > high:
            raise ConfigError(
                f"INPUT.CROP.SIZE={list(crop.SIZE)!r} is invalid with INPUT.CROP.TYPE="
                "'absolute_range'; expected [min, max] with min <= max"
            )


def check_class_count(cfg: CfgNode, name: str, records: Sequence[dict]) -> None:
    """Each class head of the model has as many classes as the dataset has categories.

    Detectron2 never compares them: with one category too many, the last one has the
    background's index and trains as background; with one too few, a class is never
    trained. The categories are the dataset's ``thing_classes`` (a COCO json's
    ``categories``); without that metadata, its largest category id must fit the head.

    Raises:
        ConfigError: naming the key, both numbers and the dataset.
    """
    metadata = MetadataCatalog.get(name)
    for key in class_count_keys(cfg):
        count = lookup(cfg, key)
        if key == "MODEL.SEM_SEG_HEAD.NUM_CLASSES":
            classes = metadata.get("stuff_classes", None)
        else:
            classes = metadata.get("thing_classes", None)
        if classes is not None:
            if len(classes) != count:
                shown = ", ".join(map(str, classes[:4])) + (", ..." if len(classes) > 4 else "")
                noun = "category" if len(classes) == 1 else "categories"
                raise ConfigError(
                    f"{key}={count} does not match the {len(classes)} {noun} of dataset "
                    f"{name!r} ({shown}); expected {key} {len(classes)} (a class beyond the "
                    "head's count trains as background, one the data lacks never trains)"
                )
            continue
        if key == "MODEL.SEM_SEG_HEAD.NUM_CLASSES":
            continue  # segmentation masks are read only when training
        ids = [a.get("category_id") for r in records for a in r.get("annotations", [])]
        largest = max((i for i in ids if isinstance(i, int)), default=-1)
        if largest >= count:
            raise ConfigError(
                f"{key}={count} is too small for dataset {name!r}, whose annotations use "
                f"category {largest} (counted from 0); expected {key} >= {largest + 1}"
            )


def check_datasets(cfg: CfgNode, names: Sequence[str], is_train: bool) -> None:
    """Each dataset's json is sound, it loads, every image is usable, its categories fit the
    class heads, enough images are annotated, and the proposal files cover all.

    The records are read as training reads them (:func:`load_dataset_dicts`).
    """

    def check_loaded(name: str, records: list[dict]) -> None:
        check_image_files(records, name)
        check_class_count(cfg, name, records)

    for name in names:
        if name in DatasetCatalog.list():
            check_dataset_jsons(name)  # before the loader, which would misread or fail
        records = load_dataset_dicts(cfg, [name], is_train, check_loaded)
        if is_train and len(records) < cfg.SOLVER.IMS_PER_BATCH and not cfg.MODEL.LOAD_PROPOSALS:
            raise DataError(
                f"dataset {name!r} has {len(records)} images with usable annotations, fewer "
                f"than SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}; expected more"
            )


def _tensors(node: Any, key: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts and lists, with its dotted key."""
    if isinstance(node, torch.Tensor):
        yield key, node
    elif isinstance(node, (dict, list, tuple)):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for name, value in items:
            yield from _tensors(value, f"{key}.{name}" if key else str(name))


def check_resume_state(cfg: CfgNode, path: str, world_size: int = 1) -> None:
    """The checkpoint to resume from leaves iterations to train, and its training state
    (the optimizer's, the scheduler's) is finite.

    Detectron2 resumes after the checkpoint's iteration: with ``SOLVER.MAX_ITER`` below it,
    it trains nothing and says nothing. A NaN in the optimizer's state turns the weights
    NaN at the first step, whatever the learning rate, and would be reported as a loss
    that diverged, with advice (lower the learning rate, resume) that fails again.

    Raises:
        ConfigError: ``SOLVER.MAX_ITER`` (as scaled to ``world_size``) is below where the
            run would resume.
        WeightsError: the training state holds NaN or infinite values, naming the tensor.
    """
    label = f"the last checkpoint {path}"
    checkpoint = read_checkpoint(path, label=label)  # its weights are checked finite there
    trainer = checkpoint.get("trainer")  # Detectron2 resumes from the trainer's iteration
    iteration = (trainer if isinstance(trainer, dict) else checkpoint).get("iteration")
    max_iter = DefaultTrainer.auto_scale_workers(cfg, world_size).SOLVER.MAX_ITER
    if isinstance(iteration, int) and iteration + 1 > max_iter:
        scaled = (
            f" ({max_iter} on {world_size} processes)" if max_iter != cfg.SOLVER.MAX_ITER else ""
        )
        raise ConfigError(
            f"SOLVER.MAX_ITER={cfg.SOLVER.MAX_ITER}{scaled} but {label} was saved after "
            f"iteration {iteration + 1}, so resuming would train nothing; expected "
            f"SOLVER.MAX_ITER above {iteration + 1} to train on from it (or a new OUTPUT_DIR, "
            "without --resume)"
        )
    state = {key: value for key, value in checkpoint.items() if key != "model"}
    for key, tensor in _tensors(state):
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise WeightsError(
                f"{label} holds {kind} values in its training state ({key!r}, "
                f"{int((~finite).sum())} of {tensor.numel()}); expected finite values: "
                "resuming would make every step NaN, whatever the learning rate; resume "
                f"from an earlier checkpoint (name it in {Path(path).parent / 'last_checkpoint'})"
                " or train without --resume"
            )


def check_detection_run(
    cfg: CfgNode,
    *,
    eval_only: bool = False,
    resume: bool = False,
    world_size: int = 1,
    check_proposals: bool = True,
) -> None:
    """Everything about a train_net run that can be checked before it starts.

    The device, the ResNeXt options, the schedule, each training and test dataset (the
    registration, the files, every image's header and size, the annotations), the
    proposal files, and the weights: ``MODEL.WEIGHTS`` (a file, or a name downloaded and
    converted here) must provide the whole trunk (for training, with the input
    conventions of the weights) or the whole model (for evaluation), and a checkpoint to
    resume from must be readable and complete, leave iterations to train and hold a finite
    training state (:func:`check_resume_state`). The datasets of the run must have the same
    classes in the same order (:func:`~resnext_det.reproduction.data.sanitize.check_same_classes`).

    Raises:
        UserError: the first problem found, in one line.
    """
    check_device(cfg)
    if cfg.MODEL.BACKBONE.NAME.startswith("build_resnext"):
        ResNeXtSpec.from_config(cfg)
    check_inputs(cfg, training=not eval_only)
    if not eval_only:
        check_solver(cfg, world_size)
        check_can_train(cfg)
    cfg = cfg.clone()
    cfg.defrost()
    if not check_proposals:
        cfg.MODEL.LOAD_PROPOSALS = False
    if not eval_only:
        check_datasets(cfg, cfg.DATASETS.TRAIN, is_train=True)
    check_datasets(cfg, cfg.DATASETS.TEST, is_train=False)
    check_same_classes([*(() if eval_only else cfg.DATASETS.TRAIN), *cfg.DATASETS.TEST])

    cfg.MODEL.DEVICE = "cpu"  # the check needs the shapes only
    check_head_inputs(cfg)
    model = build_model(cfg)
    start = starting_weights(
        model, cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS, resume=resume, whole_model=eval_only
    )
    if eval_only or start is None:
        return
    if resume and SafeDetectionCheckpointer(model, cfg.OUTPUT_DIR).has_checkpoint():
        check_resume_state(cfg, start, world_size)
    else:
        check_config_conventions(cfg)  # RGB or BGR, pixel statistics, stride
