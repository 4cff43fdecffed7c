"""Detectron2's training workflow, with ResNeXt registered, COCO evaluation and safe loading."""

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Optional

from detectron2.config import CfgNode, get_cfg
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import (
    filter_images_with_few_keypoints,
    filter_images_with_only_crowd_annotations,
)
from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm

from ...checkpoint import SafeDetectionCheckpointer
from ...checkpoint.catalog import published_for_network
from ...config import add_resnext_config, merge_config
from ...model_zoo import list_configs
from ...modeling import ResNeXtSpec
from ...registration import register_resnext_backbone
from ...utils.errors import ConfigError, DataError
from ...utils.paths import datasets_root
from ..data import attach_proposals, register_coco2014_splits, register_demo_datasets
from ..data.sanitize import (
    SkippingDatasetMapper,
    check_same_classes,
    load_registered,
    sanitize_annotations,
)
from ..training.loop import TrainingLoop, distributed_model, step_trainer
from ..training.schedule import describe_schedule
from .coco_evaluation import COCOEvaluator

__all__ = [
    "Trainer",
    "build_config",
    "check_can_train",
    "load_dataset_dicts",
    "proposal_file",
    "register_all",
    "schedule_summary",
]


def register_all(root: Optional[str] = None) -> None:
    """Register the ResNeXt components, the demo data and the paper's COCO splits (if any).

    Safe to call again.
    """
    root = root or datasets_root()
    register_resnext_backbone()
    register_demo_datasets(root)
    register_coco2014_splits(root)


def build_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2's defaults + ``MODEL.RESNEXT`` + a yaml file + ``KEY VALUE`` overrides."""
    return merge_config(add_resnext_config(get_cfg()), config_file, opts)


def check_can_train(cfg: CfgNode) -> None:
    """Refuse to train frozen layers that were never trained.

    Without ``MODEL.WEIGHTS`` the backbone starts from random weights; freezing layers
    (``MODEL.BACKBONE.FREEZE_AT``) or BN statistics (``FrozenBN``) then wastes the whole
    run silently.
    """
    if cfg.MODEL.WEIGHTS or not cfg.MODEL.BACKBONE.NAME.startswith("build_resnext"):
        return
    freeze_at, norm = cfg.MODEL.BACKBONE.FREEZE_AT, cfg.MODEL.RESNETS.NORM
    if freeze_at > 0 or norm == "FrozenBN":
        raise ConfigError(
            f"MODEL.WEIGHTS is empty, so the ResNeXt starts from random weights, but "
            f"MODEL.BACKBONE.FREEZE_AT={freeze_at} and MODEL.RESNETS.NORM={norm!r} "
            f"would keep some of them frozen; expected ImageNet weights in MODEL.WEIGHTS "
            f"({_imagenet_weights_for(ResNeXtSpec.from_config(cfg))}), or, to train from "
            "scratch, FREEZE_AT 0 with NORM 'GN' or 'BN' (as configs/demo/ does)"
        )


def _imagenet_weights_for(spec: ResNeXtSpec) -> str:
    """Which ImageNet weights the network can start from: the published ones, or how to
    make them with the pretraining tool."""
    network = (spec.depth, spec.cardinality, spec.bottleneck_width)
    published = published_for_network(*network)
    if published:
        return "published for this network: " + ", ".join(w.name for w in published)
    kind = "R" if network[1:] == (1, 64) else "X"
    name = f"imagenet/{kind}{spec.depth}" + ("" if kind == "R" else f"_{spec.template}") + ".yaml"
    if name in list_configs():
        command = f"--config-file configs/{name}"
    else:
        command = (
            "--config-file configs/imagenet/Base-ImageNet.yaml MODEL.RESNETS.DEPTH "
            f"{spec.depth} MODEL.RESNETS.NUM_GROUPS {spec.cardinality} "
            f"MODEL.RESNETS.WIDTH_PER_GROUP {spec.bottleneck_width}"
        )
    return (
        f"none are published for {'ResNet' if kind == 'R' else 'ResNeXt'}-{spec.depth} "
        f"{spec.template}: make them with "
        f"`tools/pretrain_imagenet.py {command}` and set MODEL.WEIGHTS to the "
        "model_final.pth it writes"
    )


def schedule_summary(cfg: CfgNode, world_size: int) -> str:
    """The schedule a run will follow, after Detectron2's linear scaling to ``world_size``."""
    scaled = DefaultTrainer.auto_scale_workers(cfg, world_size)
    solver = scaled.SOLVER
    return describe_schedule(
        world_size,
        scaled,
        cfg,
        [
            f"steps {tuple(solver.STEPS)}",
            f"max_iter {solver.MAX_ITER}",
            f"warmup {solver.WARMUP_ITERS}",
        ],
        [f"max_iter {cfg.SOLVER.MAX_ITER}"],
    )


def proposal_file(cfg: CfgNode, dataset_name: str, is_train: bool) -> str:
    """The ``DATASETS.PROPOSAL_FILES_*`` entry for one split of ``DATASETS.TRAIN`` / ``TEST``."""
    split, key = ("TRAIN", "PROPOSAL_FILES_TRAIN") if is_train else ("TEST", "PROPOSAL_FILES_TEST")
    names, files = list(cfg.DATASETS[split]), list(cfg.DATASETS[key])
    if len(files) != len(names):
        raise ConfigError(
            f"DATASETS.{key} has {len(files)} file(s) for the {len(names)} split(s) of "
            f"DATASETS.{split} {tuple(names)}; expected one proposal file per split"
        )
    return files[names.index(dataset_name)]


def load_dataset_dicts(
    cfg: CfgNode,
    names: Sequence[str],
    is_train: bool,
    check_loaded: Optional[Callable[[str, list[dict]], None]] = None,
) -> list[dict]:
    """The records of the named datasets, cleaned as the data policy says.

    Each dataset loads with one-line errors (:func:`load_registered`), their classes must
    agree (:func:`check_same_classes`), its boxes are sanitized
    (:func:`sanitize_annotations`), and with ``MODEL.LOAD_PROPOSALS`` its proposal
    file is read safely and must cover every image (Detectron2 would ``pickle.load`` it).
    The up-front checks read the datasets through this same path.

    Args:
        check_loaded: called with each dataset's name and records as loaded, before they
            are cleaned (the up-front checks look at the files and categories there).
    """
    dicts = []
    for name in names:
        records = load_registered(name)
        if check_loaded is not None:
            check_loaded(name, records)
        records, _ = sanitize_annotations(records, name)
        if cfg.MODEL.LOAD_PROPOSALS:
            records = attach_proposals(records, proposal_file(cfg, name, is_train))
        dicts.extend(records)
    check_same_classes(names)  # as Detectron2's loader does, once they are loaded
    if is_train and cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    min_keypoints = cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
    if is_train and cfg.MODEL.KEYPOINT_ON and min_keypoints > 0:  # as Detectron2's loader
        dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
    if not dicts:
        raise DataError(f"datasets {tuple(names)} hold no usable image; expected some")
    return dicts


class Trainer(TrainingLoop, DefaultTrainer):
    """``DefaultTrainer`` that evaluates with COCO AP (the fastest COCOeval available) and
    loads weight files safely."""

    # DefaultTrainer.__init__, with two changes it offers no hook for: the checkpointer
    # loads weight files safely (Detectron2's unpickles .pkl blindly), and several
    # processes on the CPU (gloo) get a CPU DistributedDataParallel (Detectron2 passes
    # device_ids, which only GPU modules accept).
    def __init__(self, cfg: CfgNode):  # noqa: D107
        check_can_train(cfg)
        TrainerBase.__init__(self)
        world_size = comm.get_world_size()
        logging.getLogger(__name__).info(schedule_summary(cfg, world_size))
        cfg = DefaultTrainer.auto_scale_workers(cfg, world_size)

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = distributed_model(model, broadcast_buffers=False)
        self._trainer = step_trainer(model, data_loader, optimizer, cfg.SOLVER.AMP.ENABLED)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        dicts = load_dataset_dicts(cfg, cfg.DATASETS.TRAIN, is_train=True)
        mapper = SkippingDatasetMapper(cfg, is_train=True)
        mapper.num_images = len(dicts)  # so that it can tell when every image has failed
        return build_detection_train_loader(cfg, dataset=dicts, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        dicts = load_dataset_dicts(cfg, [dataset_name], is_train=False)
        return build_detection_test_loader(dicts, mapper=SkippingDatasetMapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    def build_hooks(self):
        """Detectron2's hooks, evaluating into :attr:`last_results`."""
        return [
            hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self.evaluate)
            if type(hook) is hooks.EvalHook  # noqa: E721
            else hook
            for hook in super().build_hooks()
        ]

    def evaluate(self) -> dict:
        """Evaluate the model being trained on ``DATASETS.TEST``; the results are kept."""
        self.last_results = self.test(self.cfg, self.model)
        return self.last_results

    def train(self) -> Optional[dict]:
        """Train, then return the last evaluation's results (the one at the end of training).

        Detectron2 returns them only when ``TEST.EXPECTED_RESULTS`` is set.
        """
        self.last_results = None
        super().train()
        return self.last_results
