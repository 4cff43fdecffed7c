"""Classification pretraining (ImageNet, Sec. 4; CIFAR, Appendix A) on Detectron2's engine.

Its config (:mod:`.config`), data (:mod:`.data`, :mod:`.imagenet`), evaluation
(:mod:`.evaluation`), hooks (:mod:`.hooks`) and trainer (:mod:`.trainer`); the classifier
itself is :func:`resnext_det.modeling.build_resnext_classifier`.
"""

from .config import (
    PRETRAIN_RULES,
    build_pretrain_config,
    check_pretrain_config,
    get_pretrain_cfg,
    scale_to_world_size,
)
from .trainer import (
    METRICS_FILE,
    ClassificationLoss,
    DistributedContext,
    Pretrainer,
    StepSchedule,
    build_classifier,
    init_distributed,
    shutdown_distributed,
)

__all__ = [
    "METRICS_FILE",
    "PRETRAIN_RULES",
    "ClassificationLoss",
    "DistributedContext",
    "Pretrainer",
    "StepSchedule",
    "build_classifier",
    "build_pretrain_config",
    "check_pretrain_config",
    "get_pretrain_cfg",
    "init_distributed",
    "scale_to_world_size",
    "shutdown_distributed",
]
