"""Up-front checks of a detection run: everything a user can get wrong, before it costs.

Run in the launching process, before any worker starts, so that a wrong value ends the
command in one line (``resnext_det.cli``) instead of a traceback an hour in. What cannot
be known before the run (image data corrupt past its header) follows the data policy of
:mod:`resnext_det.data.sanitize`.
"""

import math
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_backbone, build_model

from ..checkpoint import SafeDetectionCheckpointer
from ..checkpoint.fit import check_weights_fit, pretrained_scope
from ..data import attach_proposals
from ..data.sanitize import check_image_files, load_registered, sanitize_annotations
from ..errors import ConfigError, DataError
from ..modeling import ResNeXtRes5ROIHeads, ResNeXtSpec
from .trainer import check_can_train, proposal_file

__all__ = ["check_detection_run", "check_device", "check_head_inputs", "check_solver"]


def check_device(cfg: CfgNode) -> None:
    """``MODEL.DEVICE`` must exist on this machine (Detectron2's default is 'cuda')."""
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE={device!r} but this machine has no CUDA device; expected "
            "MODEL.DEVICE cpu (add it to the command line)"
        )
    if not device.startswith(("cuda", "cpu")):
        raise ConfigError(f"MODEL.DEVICE={device!r} is not supported; expected 'cpu' or 'cuda'")


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


def check_solver(cfg: CfgNode, world_size: int = 1) -> None:
    """The schedule's values, checked where Detectron2 would assert or divide by zero."""
    solver = cfg.SOLVER

    def positive_int(key: str, value) -> None:
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"SOLVER.{key}={value!r} is invalid; expected an integer >= 1")

    positive_int("IMS_PER_BATCH", solver.IMS_PER_BATCH)
    positive_int("MAX_ITER", solver.MAX_ITER)
    positive_int("CHECKPOINT_PERIOD", solver.CHECKPOINT_PERIOD)
    if not (isinstance(solver.BASE_LR, (int, float)) and math.isfinite(solver.BASE_LR)) or (
        solver.BASE_LR <= 0
    ):
        raise ConfigError(f"SOLVER.BASE_LR={solver.BASE_LR!r} is invalid; expected a number > 0")
    steps = list(solver.STEPS)
    if steps != sorted(steps) or any(not isinstance(s, int) or s < 0 for s in steps):
        raise ConfigError(
            f"SOLVER.STEPS={tuple(steps)!r} is invalid; expected increasing iterations >= 0"
        )
    reference = solver.REFERENCE_WORLD_SIZE
    if reference and solver.IMS_PER_BATCH % reference:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={solver.IMS_PER_BATCH} does not split over "
            f"SOLVER.REFERENCE_WORLD_SIZE={reference}; expected a multiple of it"
        )
    if not reference and solver.IMS_PER_BATCH % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={solver.IMS_PER_BATCH} does not split over the "
            f"{world_size} processes launched; expected a multiple of {world_size}"
        )


def check_datasets(cfg: CfgNode, names: Sequence[str], is_train: bool) -> None:
    """Each dataset loads, every image is usable, enough are annotated, proposals cover all."""
    for name in names:
        records = load_registered(name)
        check_image_files(records, name)
        records, _ = sanitize_annotations(records, name)  # logs what it fixes
        if is_train:
            usable = sum(1 for r in records if r.get("annotations"))
            if usable < cfg.SOLVER.IMS_PER_BATCH and not cfg.MODEL.LOAD_PROPOSALS:
                raise DataError(
                    f"dataset {name!r} has {usable} images with usable annotations, fewer "
                    f"than SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}; expected more"
                )
        if cfg.MODEL.LOAD_PROPOSALS:  # refuses a file that misses an image
            attach_proposals(records, proposal_file(cfg, name, is_train))


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
    proposal files, and the weights: ``MODEL.WEIGHTS`` must provide the whole trunk (for
    training) or the whole model (for evaluation), and a checkpoint to resume from must
    be readable and complete.

    Raises:
        UserError: the first problem found, in one line.
    """
    check_device(cfg)
    if cfg.MODEL.BACKBONE.NAME.startswith("build_resnext"):
        ResNeXtSpec.from_config(cfg)
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

    cfg.MODEL.DEVICE = "cpu"  # the check needs the shapes only
    check_head_inputs(cfg)
    model = build_model(cfg)
    last = SafeDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    if resume and last.has_checkpoint():
        check_weights_fit(model, last.get_checkpoint_file(), what="the last checkpoint")
    elif cfg.MODEL.WEIGHTS:
        scope = None if eval_only else pretrained_scope
        check_weights_fit(model, cfg.MODEL.WEIGHTS, scope=scope)
    elif eval_only:
        raise ConfigError(
            "--eval-only with MODEL.WEIGHTS empty would evaluate random weights; expected "
            "MODEL.WEIGHTS path/to/model_final.pth"
        )
