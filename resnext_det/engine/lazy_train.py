"""Training and evaluation from LazyConfig (``.py``) configs: Detectron2's
``tools/lazyconfig_train_net.py`` flow, with weight files loaded safely.

The config provides what Detectron2's flow expects: ``model``, ``dataloader.train`` /
``dataloader.test`` / ``dataloader.evaluator``, ``optimizer``, ``lr_multiplier`` and
``train`` (``output_dir``, ``init_checkpoint``, ``max_iter``, ``amp.enabled``, ``ddp``,
``checkpointer``, ``eval_period``, ``log_period``, ``device``), as in Detectron2's
``configs/common/train.py``.
"""

import logging
from typing import Any, Optional

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from torch import nn

from ..checkpoint import SafeDetectionCheckpointer
from ..checkpoint.conventions import check_lazy_config_conventions
from ..checkpoint.fit import check_weights_fit, pretrained_scope

__all__ = ["do_test", "do_train"]

logger = logging.getLogger(__name__)


def do_test(cfg: Any, model: nn.Module) -> Optional[dict]:
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


def do_train(cfg: Any, resume: bool = False) -> nn.Module:
    """Train ``cfg.model`` as Detectron2's lazyconfig_train_net does; returns the model."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer_class = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    trainer = trainer_class(model, train_loader, optimizer)
    checkpointer = SafeDetectionCheckpointer(
        model, cfg.train.output_dir, optimizer=optimizer, trainer=trainer
    )
    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if main
            else None,
        ]
    )
    # The file resume_or_load will read must fit: a checkpoint wholly, the initial weights
    # in the trunk (Detectron2 would load what fits and train the rest from random).
    if resume and checkpointer.has_checkpoint():
        check_weights_fit(
            checkpointer.model, checkpointer.get_checkpoint_file(), what="the last checkpoint"
        )
    elif cfg.train.init_checkpoint:
        check_weights_fit(
            checkpointer.model,
            cfg.train.init_checkpoint,
            scope=pretrained_scope,
            what="train.init_checkpoint",
        )
        check_lazy_config_conventions(cfg)  # RGB or BGR, pixel statistics, stride
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # A checkpoint stores the iteration that just finished: start at the next.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return model
