"""Detectron2's training workflow, with ResNeXt registered, COCO evaluation and safe loading."""

import os
import weakref
from collections.abc import Sequence
from typing import Optional

from detectron2.config import CfgNode, get_cfg
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator

from ..checkpoint import SafeDetectionCheckpointer
from ..config import add_resnext_config
from ..data import register_demo_datasets
from ..modeling import build_resnext_backbone, build_resnext_fpn_backbone
from ..registration import register_resnext_backbone

__all__ = ["Trainer", "build_config", "check_can_train", "datasets_root", "register_all"]


def datasets_root() -> str:
    """Detectron2's datasets root: ``$DETECTRON2_DATASETS``, else ``./datasets``."""
    return os.getenv("DETECTRON2_DATASETS", "datasets")


def register_all(root: Optional[str] = None) -> None:
    """Register the ResNeXt components and the bundled datasets. Safe to call again."""
    register_resnext_backbone()
    register_demo_datasets(root or datasets_root())


def build_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """Detectron2's defaults + ``MODEL.RESNEXT`` + a yaml file + ``KEY VALUE`` overrides."""
    cfg = add_resnext_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def check_can_train(cfg: CfgNode) -> None:
    """Refuse to train frozen layers that were never trained.

    Without ``MODEL.WEIGHTS`` the backbone starts from random weights; freezing layers
    (``FREEZE_AT``) or BN statistics (``FrozenBN``) then wastes the whole run silently.
    """
    ours = (build_resnext_backbone.__name__, build_resnext_fpn_backbone.__name__)
    if cfg.MODEL.WEIGHTS or cfg.MODEL.BACKBONE.NAME not in ours:
        return
    node = cfg.MODEL.RESNEXT
    if node.FREEZE_AT > 0 or node.NORM == "FrozenBN":
        raise ValueError(
            f"MODEL.WEIGHTS is empty, so the ResNeXt starts from random weights, but "
            f"MODEL.RESNEXT.FREEZE_AT={node.FREEZE_AT} and MODEL.RESNEXT.NORM={node.NORM!r} "
            "would keep some of them frozen; expected ImageNet weights in MODEL.WEIGHTS, or, to "
            "train from scratch, FREEZE_AT 0 with NORM 'GN' or 'BN' (as configs/demo/ does)"
        )


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` that evaluates with COCO AP and loads weight files safely."""

    def __init__(self, cfg: CfgNode):
        check_can_train(cfg)
        super().__init__(cfg)
        # Detectron2 unpickles .pkl weights blindly; load through the safe checkpointer,
        # and let the periodic checkpoint hook save through the same object.
        self.checkpointer = SafeDetectionCheckpointer(
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        for hook in self._hooks:
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    def train(self):
        """Train, then return the last evaluation's results (the one at the end of training).

        Detectron2 returns them only when ``TEST.EXPECTED_RESULTS`` is set.
        """
        super().train()
        return getattr(self, "_last_eval_results", None)
