"""Classification pretraining (ImageNet, Sec. 4; CIFAR, Appendix A) on Detectron2's engine.

Its config (:mod:`.config`), data (:mod:`.data`, :mod:`.imagenet`), evaluation
(:mod:`.evaluation`), hooks (:mod:`.hooks`) and trainer (:mod:`.trainer`, one more
:class:`~resnext_det.reproduction.training.loop.TrainingLoop`); the classifier itself is
:func:`resnext_det.modeling.build_resnext_classifier`.
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
    Pretrainer,
    StepSchedule,
    build_classifier,
    check_pretrain_run,
)

__all__ = [
    "METRICS_FILE",
    "PRETRAIN_RULES",
    "ClassificationLoss",
    "Pretrainer",
    "StepSchedule",
    "build_classifier",
    "build_pretrain_config",
    "check_pretrain_config",
    "check_pretrain_run",
    "get_pretrain_cfg",
    "scale_to_world_size",
]
