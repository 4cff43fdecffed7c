"""Training and evaluation from LazyConfig (``.py``) configs: Detectron2's
``tools/lazyconfig_train_net.py`` flow, run as the project's :class:`TrainingLoop`.

The config provides what Detectron2's flow expects: ``model``, ``dataloader.train`` /
``dataloader.test`` / ``dataloader.evaluator``, ``optimizer``, ``lr_multiplier`` and
``train`` (``output_dir``, ``init_checkpoint``, ``max_iter``, ``amp.enabled``, ``ddp``,
``checkpointer``, ``eval_period``, ``log_period``, ``device``), as in Detectron2's
``configs/common/train.py``. What ``tools/train_net.py`` refuses before a run, this flow
refuses too (:func:`check_lazy_run`), and an override naming a key the config lacks is
refused rather than stored (:func:`apply_overrides`).
"""

import logging
import weakref
from collections.abc import Sequence
from typing import Any, Optional

from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.engine import default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils import comm
from omegaconf import DictConfig, ListConfig
from torch import nn

from ...checkpoint import SafeDetectionCheckpointer
from ...checkpoint.conventions import check_lazy_config_conventions
from ...checkpoint.fit import starting_weights
from ...utils.errors import ConfigError, DataError
from ..data.sanitize import check_image_files, check_same_classes, load_registered
from ..training.loop import TrainingLoop, distributed_model, step_trainer
from .validate import check_device_name

__all__ = ["LazyTrainer", "apply_overrides", "check_lazy_run", "do_test", "do_train"]

logger = logging.getLogger(__name__)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Detectron2's ``LazyConfig.apply_overrides``, refusing a key the config does not have
    (a misspelt ``train.max_itr=5`` would be stored and ignored).

    Raises:
        ConfigError: naming the override and the keys beside it.
    """
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        node: Any = cfg
        for depth, part in enumerate(key.split(".")):
            children = _children(node)
            if part not in children:
                where = ".".join(key.split(".")[:depth]) or "the config"
                shown = ", ".join(sorted(map(str, children))[:8]) or "none"
                raise ConfigError(
                    f"override {override!r}: {where} has no key {part!r}; expected one of {shown}"
                )
            node = node[int(part)] if isinstance(node, ListConfig) else node[part]
    return LazyConfig.apply_overrides(cfg, list(overrides))


def _children(node: Any) -> list:
    if isinstance(node, DictConfig):
        return list(node.keys())
    if isinstance(node, ListConfig):
        return [str(i) for i in range(len(node))]
    return []


def _dataset_names(loader: Any) -> list[str]:
    names = loader.dataset.get("names", ())
    return [names] if isinstance(names, str) else list(names)


def _frozen_parameters(model: nn.Module) -> list[str]:
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    frozen += [
        f"{name} (FrozenBN)"
        for name, m in model.named_modules()
        if isinstance(m, FrozenBatchNorm2d)
    ]
    return frozen


def check_lazy_run(cfg: DictConfig, *, eval_only: bool = False, resume: bool = False) -> None:
    """Everything about a LazyConfig run that can be checked before it starts.

    As :func:`~resnext_det.reproduction.engine.validate.check_detection_run` for yaml configs: the
    device; each dataset (registered, loadable, every image usable, the same classes in
    every dataset, as many as the model's heads); and the weights: ``init_checkpoint`` must
    provide the trunk (for training, with the input conventions of the weights) or the
    whole model (for evaluation), a model with frozen layers does not start from random
    weights, and the checkpoint to resume from must fit.

    Raises:
        UserError: the first problem found, in one line.
    """
    check_device_name(str(cfg.train.device), "train.device")
    splits = [] if eval_only else [("dataloader.train", cfg.dataloader.train)]
    if "test" in cfg.dataloader:
        splits.append(("dataloader.test", cfg.dataloader.test))
    names = [(key, name) for key, loader in splits for name in _dataset_names(loader)]
    for key, name in names:
        records = load_registered(name)
        if not records:
            raise DataError(f"{key}.dataset.names: dataset {name!r} is empty; expected images")
        check_image_files(records, name)
    check_same_classes([name for _, name in names])
    heads = cfg.model.get("roi_heads", None)
    classes = MetadataCatalog.get(names[0][1]).get("thing_classes", None) if names else None
    if heads is not None and "num_classes" in heads and classes is not None:
        if heads.num_classes != len(classes):
            raise ConfigError(
                f"model.roi_heads.num_classes={heads.num_classes} does not match the "
                f"{len(classes)} categories of dataset {names[0][1]!r}; expected "
                f"model.roi_heads.num_classes={len(classes)}"
            )

    model = instantiate(cfg.model)  # on the CPU: the check needs the shapes only
    start = _starting_weights(model, cfg, resume, eval_only)
    if start == cfg.train.init_checkpoint and not eval_only:
        check_lazy_config_conventions(cfg)  # RGB or BGR, pixel statistics, stride
    elif start is None and (frozen := _frozen_parameters(model)):
        raise ConfigError(
            "train.init_checkpoint is empty, so the model starts from random weights, but "
            f"{len(frozen)} of its parameters and norms are frozen (e.g. {frozen[0]}) and would "
            "stay random; expected ImageNet weights in train.init_checkpoint (the configs name "
            "them), or, to train from scratch, freeze_at=0 with trainable norms (GN or BN)"
        )


def _starting_weights(
    model: nn.Module, cfg: DictConfig, resume: bool, whole_model: bool
) -> Optional[str]:
    return starting_weights(
        model,
        cfg.train.output_dir,
        cfg.train.init_checkpoint,
        resume=resume,
        whole_model=whole_model,
        key="train.init_checkpoint",
    )


def do_test(cfg: Any, model: nn.Module) -> Optional[dict]:
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


class LazyTrainer(TrainingLoop):
    """Trains ``cfg.model`` as Detectron2's lazyconfig_train_net does, as a TrainingLoop."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.model = instantiate(cfg.model).to(cfg.train.device)
        cfg.optimizer.params.model = self.model
        optimizer = instantiate(cfg.optimizer)
        loader = instantiate(cfg.dataloader.train)
        model = distributed_model(self.model, **cfg.train.ddp)
        self._trainer = step_trainer(model, loader, optimizer, cfg.train.amp.enabled)
        self.checkpointer = SafeDetectionCheckpointer(
            self.model, cfg.train.output_dir, trainer=weakref.proxy(self)
        )
        self.start_iter, self.max_iter = 0, cfg.train.max_iter
        main = comm.is_main_process()
        self.register_hooks(
            [
                hooks.IterationTimer(),
                hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
                hooks.PeriodicCheckpointer(self.checkpointer, **cfg.train.checkpointer)
                if main
                else None,
                hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, self.model)),
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if main
                else None,
            ]
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """Continue from the last checkpoint (if ``resume`` and one exists), else start from
        ``train.init_checkpoint``, each checked to fit (:func:`starting_weights`)."""
        start = _starting_weights(self.model, self.cfg, resume, whole_model=False)
        resuming = resume and self.checkpointer.has_checkpoint()
        if start is not None:
            self.checkpointer.load(start, checkpointables=None if resuming else [])
        if resuming:
            self.start_iter = self.iter + 1  # a checkpoint stores the iteration just finished

    def train(self) -> None:
        super().train(self.start_iter, self.max_iter)


def do_train(cfg: Any, resume: bool = False) -> nn.Module:
    """Train ``cfg.model`` as Detectron2's lazyconfig_train_net does; returns the model."""
    trainer = LazyTrainer(cfg)
    trainer.resume_or_load(resume)
    trainer.train()
    return trainer.model
