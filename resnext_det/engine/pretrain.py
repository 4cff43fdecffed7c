"""Classification pretraining of the ResNeXt stages (Sec. 4, Appendix A), run by torchrun.

The classifier is built from the very stage modules of the detection backbone
(:func:`~resnext_det.modeling.build_resnext_classifier`), so its weights convert to
Detectron2 by name (``tools/convert_weights.py``). One process per GPU (NCCL) or several
on a CPU (gloo), DistributedDataParallel, batches that do not depend on the number of
processes (:mod:`resnext_det.data.classification`), resume from the last checkpoint
(model, optimizer, scheduler, AMP scaler, epoch), optional AMP, the memory format of
``MODEL.RESNEXT.MEMORY_FORMAT`` (channels_last where it is faster), a progress bar with
throughput and ETA, and metrics appended to ``metrics.jsonl``.
"""

import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import SafeDetectionCheckpointer
from ..checkpoint.fit import check_weights_fit
from ..config import get_pretrain_cfg, merge_config
from ..data.classification import (
    AugmentedDataset,
    EvalSampler,
    TrainSampler,
    build_classification_data,
)
from ..modeling import ResNeXtSpec, build_cifar_resnext, build_resnext_classifier
from ..modeling.speed import apply_speed_options
from ..utils.atomic_io import write_text_atomically
from ..utils.errors import ConfigError, TrainingDiverged
from ..utils.value_checks import check_values, integer, number, numbers
from .classification_eval import evaluate_classifier

__all__ = [
    "DistributedContext",
    "Pretrainer",
    "StepSchedule",
    "build_classifier",
    "build_pretrain_config",
    "check_pretrain_config",
    "init_distributed",
    "scale_to_world_size",
    "shutdown_distributed",
]

logger = logging.getLogger(__name__)

ARCHS = ("imagenet", "cifar")
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a torchrun launch (a single process without one)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistributedContext:
    """Join torchrun's process group: NCCL with one GPU per process, else gloo on the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, device)


def shutdown_distributed() -> None:
    """Leave the process group together, so that its threads end before the interpreter."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
    """
    cfg = cfg.clone()
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference in (0, world_size):
        return cfg
    if cfg.SOLVER.IMS_PER_BATCH % reference:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} does not split over "
            f"SOLVER.REFERENCE_WORLD_SIZE={reference} processes; expected a multiple of it"
        )
    cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * world_size / reference
    cfg.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_BATCH // reference * world_size
    cfg.SOLVER.REFERENCE_WORLD_SIZE = world_size
    return cfg


def build_classifier(cfg: CfgNode) -> nn.Module:
    """The classifier ``cfg.MODEL`` describes (ImageNet or CIFAR layout)."""
    spec = ResNeXtSpec.from_config(cfg)
    builders = {"imagenet": build_resnext_classifier, "cifar": build_cifar_resnext}
    if cfg.MODEL.ARCH not in builders:
        raise ConfigError(
            f"MODEL.ARCH={cfg.MODEL.ARCH!r} is not supported; expected one of {ARCHS}"
        )
    model = builders[cfg.MODEL.ARCH](spec, cfg.MODEL.NUM_CLASSES)
    node = cfg.MODEL.RESNEXT
    apply_speed_options(model, node.FOLD_FROZEN_BN, node.MEMORY_FORMAT)
    return model


def _format_eta(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


@dataclass(frozen=True)
class StepSchedule:
    """The lr factor at an iteration: ``gamma`` per step epoch passed, after a linear warmup.

    A value object rather than a method of the trainer, so that the scheduler holds no
    reference back to it (the trainer, and its DistributedDataParallel, can be freed).
    """

    iters_per_epoch: int
    steps: tuple[float, ...]
    gamma: float
    warmup_epochs: float = 0.0

    def __call__(self, iteration: int) -> float:
        epoch = iteration / self.iters_per_epoch
        factor = self.gamma ** sum(epoch >= step for step in self.steps)
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            factor *= epoch / self.warmup_epochs
        return factor


class _Progress:
    """A tqdm bar on a terminal; elsewhere a log line whenever the trainer has new stats
    (every ``LOG_PERIOD`` iterations)."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.total = total
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True)
        self.enabled = enabled

    def update(self, iteration: int, epoch: int, epochs: int, stats: dict) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if stats:
                self.bar.set_description(f"epoch {epoch + 1}/{epochs}")
                self.bar.set_postfix(
                    loss=f"{stats['loss']:.4f}",
                    lr=f"{stats['lr']:.4g}",
                    img_s=f"{stats['images_per_second']:.0f}",
                )
        elif stats:
            eta = (self.total - iteration) * stats["seconds_per_iter"]
            logger.info(
                f"epoch {epoch + 1}/{epochs}  iter {iteration}/{self.total}  "
                f"loss {stats['loss']:.4f}  lr {stats['lr']:.4g}  "
                f"{stats['images_per_second']:.1f} img/s  eta {_format_eta(eta)}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Pretrainer:
    """Trains and evaluates a ResNeXt classifier as ``cfg`` describes.

    Args:
        cfg: a pretraining config (:func:`resnext_det.config.get_pretrain_cfg`), for
            ``SOLVER.REFERENCE_WORLD_SIZE`` processes; it is scaled to this launch.
        context: this process in the launch (:func:`init_distributed`).
    """

    def __init__(self, cfg: CfgNode, context: Optional[DistributedContext] = None):
        check_pretrain_config(cfg)
        self.context = context or DistributedContext(0, 1, torch.device("cpu"))
        world_size = self.context.world_size
        self.reference_cfg = cfg
        cfg = scale_to_world_size(cfg, world_size)
        self.cfg = cfg
        self.device = self.context.device

        torch.manual_seed(cfg.SEED)  # the same initial weights in every process
        self.data = build_classification_data(cfg)
        if len(self.data.classes) > cfg.MODEL.NUM_CLASSES:
            raise ConfigError(
                f"MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES} is smaller than the "
                f"{len(self.data.classes)} classes of {cfg.DATA.ROOT}; expected at least that"
            )
        self.model = build_classifier(cfg).to(self.device)
        self.ddp_model: nn.Module = self.model
        if world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)

        solver = cfg.SOLVER
        self.sampler = TrainSampler(
            len(self.data.train),
            solver.IMS_PER_BATCH,
            self.context.rank,
            world_size,
            cfg.SEED,
        )
        self.iters_per_epoch = self.sampler.iters_per_epoch
        self.max_iter = solver.EPOCHS * self.iters_per_epoch
        if solver.MAX_ITER > 0:
            self.max_iter = min(self.max_iter, solver.MAX_ITER)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=solver.BASE_LR,
            momentum=solver.MOMENTUM,
            weight_decay=solver.WEIGHT_DECAY,
            nesterov=solver.NESTEROV,
        )
        schedule = StepSchedule(
            self.iters_per_epoch, tuple(solver.STEPS), solver.GAMMA, solver.WARMUP_EPOCHS
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.amp_dtype = None
        if solver.AMP.ENABLED:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.checkpointer = SafeDetectionCheckpointer(
            self.model,
            cfg.OUTPUT_DIR,
            save_to_disk=self.context.is_main,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
        )
        self.iteration = 0  # completed iterations
        self.metrics_path = Path(cfg.OUTPUT_DIR) / METRICS_FILE

    # -- schedule ------------------------------------------------------------------------

    def schedule_summary(self) -> str:
        """The schedule this launch runs, after scaling to its number of processes."""
        solver, reference = self.cfg.SOLVER, self.reference_cfg.SOLVER
        return (
            f"effective schedule on {self.context.world_size} process(es): batch "
            f"{solver.IMS_PER_BATCH} images ({self.sampler.local_batch} per process), lr "
            f"{solver.BASE_LR:g}, epochs {solver.EPOCHS}, lr x{solver.GAMMA:g} at epochs "
            f"{tuple(solver.STEPS)}, {self.iters_per_epoch} iterations per epoch, max_iter "
            f"{self.max_iter} (reference: {reference.REFERENCE_WORLD_SIZE or 'any number of'} "
            f"processes, batch {reference.IMS_PER_BATCH}, lr {reference.BASE_LR:g})"
        )

    # -- checkpoints and metrics ---------------------------------------------------------

    def resume_or_load(self, resume: bool = True, whole_model: bool = False) -> None:
        """Continue from the last checkpoint in ``OUTPUT_DIR`` (if ``resume`` and one exists),
        else start from ``MODEL.WEIGHTS`` (if set) or the initialization.

        Either file must fit the model (:func:`check_weights_fit`): a checkpoint entirely;
        ``MODEL.WEIGHTS`` in its trunk, or entirely with ``whole_model`` (to evaluate it).
        """
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            check_weights_fit(self.model, path, what="the last checkpoint")
            extra = self.checkpointer.load(path)
            saved_batch = extra.get("global_batch", self.cfg.SOLVER.IMS_PER_BATCH)
            if saved_batch != self.cfg.SOLVER.IMS_PER_BATCH:
                raise ConfigError(
                    f"{path} was trained with a global batch of {saved_batch} images, this launch "
                    f"has {self.cfg.SOLVER.IMS_PER_BATCH}; expected the same batch to resume (e.g. "
                    f"SOLVER.REFERENCE_WORLD_SIZE 0 SOLVER.IMS_PER_BATCH {saved_batch})"
                )
            self.iteration = int(extra["iteration"])
            self._drop_metrics_after(self.iteration)
            logger.info(f"resumed from {path} at iteration {self.iteration}")
        elif self.cfg.MODEL.WEIGHTS:
            # For training the trunk must fit; an fc of another size may start afresh.
            trunk = None if whole_model else (lambda key: not key.startswith("linear."))
            check_weights_fit(self.model, self.cfg.MODEL.WEIGHTS, scope=trunk)
            self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
        self._sync()

    def _save(self, name: str) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingDiverged.stopped(
                f"the weights became infinite or NaN by iteration {self.iteration} (the loss "
                "was still finite)",
                self.checkpointer,
                "SOLVER.WARMUP_EPOCHS",
            )
        self.checkpointer.save(
            name,
            iteration=self.iteration,
            epoch=self.iteration / self.iters_per_epoch,
            global_batch=self.cfg.SOLVER.IMS_PER_BATCH,
            resnext_det=self._checkpoint_meta(),
        )
        if self.context.is_main:
            self._remove_old_checkpoints(keep=name)

    def _checkpoint_meta(self) -> dict[str, Any]:
        """What a converter needs to know: the network and its input conventions."""
        cfg = self.cfg
        return {
            "arch": cfg.MODEL.ARCH,
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "classes": list(self.data.classes),
            # Plain containers only, so that the checkpoint loads with weights_only=True.
            "resnets": json.loads(json.dumps(cfg.MODEL.RESNETS)),
            "resnext": json.loads(json.dumps(cfg.MODEL.RESNEXT)),
            "input": {
                "format": "RGB",
                "pixel_mean": list(cfg.INPUT.PIXEL_MEAN),
                "pixel_std": list(cfg.INPUT.PIXEL_STD),
            },
        }

    def _remove_old_checkpoints(self, keep: str) -> None:
        # Only the newest periodic checkpoint is needed to resume; ImageNet checkpoints are
        # large, and 100 epochs of them would fill a disk.
        for path in Path(self.cfg.OUTPUT_DIR).glob("model_*.pth"):
            if path.stem not in (keep, "model_final"):
                path.unlink(missing_ok=True)

    def _log_metrics(self, record: dict) -> None:
        if self.context.is_main:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _drop_metrics_after(self, iteration: int) -> None:
        # A killed run logged iterations past its last checkpoint; the resume redoes them.
        if not self.context.is_main or not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["iteration"] <= iteration]
        write_text_atomically(self.metrics_path, "".join(line + "\n" for line in kept))

    def _sync(self) -> None:
        if self.context.world_size > 1:
            dist.barrier()

    # -- training and evaluation ---------------------------------------------------------

    def _train_loader(self, epoch: int, start_iter: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start_iter)
        dataset = AugmentedDataset(self.data.train, self.data.train_transform, self.cfg.SEED)
        return DataLoader(
            dataset,
            batch_size=self.sampler.local_batch,
            sampler=self.sampler,
            num_workers=self.cfg.DATA.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
        )

    def evaluate(self) -> dict[str, float]:
        """Top-1/top-5 error on the val split; also as a subset-way classifier (Table 6)
        when the val split holds fewer classes than the model."""
        dataset = AugmentedDataset(
            self.data.val, self.data.test_transform, self.cfg.SEED, skip_unreadable=False
        )
        loader = DataLoader(
            dataset,
            batch_size=self.cfg.TEST.IMS_PER_BATCH,
            sampler=EvalSampler(len(dataset), self.context.rank, self.context.world_size),
            num_workers=self.cfg.DATA.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
        )
        subset = self.data.val_classes
        if len(subset) >= self.cfg.MODEL.NUM_CLASSES:
            subset = None
        return evaluate_classifier(
            self.model,
            loader,
            self.device,
            subset=subset,
            autocast_dtype=self.amp_dtype,
        )

    def _evaluate_and_log(self) -> dict[str, Any]:
        errors = self.evaluate()
        record = {"iteration": self.iteration, "epoch": self.iteration / self.iters_per_epoch}
        record.update(errors)
        self._log_metrics(record)
        logger.info("evaluation: " + json.dumps(record))
        return record

    def _step(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            logits = self.ddp_model(images)["linear"]
        loss = F.cross_entropy(logits.float(), targets)
        if not torch.isfinite(loss):
            # Before the optimizer step: the weights and every checkpoint stay finite.
            raise TrainingDiverged.stopped(
                f"the loss became {loss.item()} at iteration {self.iteration + 1} (epoch "
                f"{self.iteration // self.iters_per_epoch + 1})",
                self.checkpointer,
                "SOLVER.WARMUP_EPOCHS",
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def train(self) -> dict[str, Any]:
        """Train from ``self.iteration`` to the end; return the last evaluation."""
        cfg = self.cfg
        if self.context.is_main:
            Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
            (Path(cfg.OUTPUT_DIR) / "config.yaml").write_text(self.reference_cfg.dump())
        logger.info(self.schedule_summary())
        if self.iteration >= self.max_iter:
            logger.info(f"training is complete ({self.iteration} iterations); evaluating only")
            return self._evaluate_and_log()
        epochs = math.ceil(self.max_iter / self.iters_per_epoch)
        progress = _Progress(self.max_iter, self.iteration, self.context.is_main)
        window = _LossWindow()
        last_eval: dict[str, Any] = {}
        self.model.train()
        try:
            while self.iteration < self.max_iter:
                epoch, start = divmod(self.iteration, self.iters_per_epoch)
                for images, targets in self._train_loader(epoch, start):
                    window.add(self._step(images, targets))
                    self.iteration += 1
                    stats = {}
                    if self.iteration % cfg.LOG_PERIOD == 0 or self.iteration == self.max_iter:
                        stats = self._window_stats(window)
                        self._log_metrics({"iteration": self.iteration, **stats})
                    progress.update(self.iteration, epoch, epochs, stats)
                    period = cfg.SOLVER.CHECKPOINT_PERIOD
                    if period and self.iteration % period == 0:
                        self._save(f"model_{self.iteration:07d}")
                    if self.iteration == self.max_iter:
                        break
                epoch_done = self.iteration % self.iters_per_epoch == 0
                finished = self.iteration == self.max_iter
                eval_period = cfg.TEST.EVAL_PERIOD
                if finished or (eval_period and epoch_done and (epoch + 1) % eval_period == 0):
                    last_eval = self._evaluate_and_log()
                if epoch_done and not finished:
                    self._save(f"model_{self.iteration:07d}")
        finally:
            progress.close()
        self._save("model_final")
        return last_eval

    def _window_stats(self, window: "_LossWindow") -> dict[str, float]:
        """Loss averaged over the window and all processes, lr, throughput; resets the window."""
        loss_sum, iters, seconds = window.pop()
        totals = torch.tensor([loss_sum, float(iters)], dtype=torch.float64)
        if self.context.world_size > 1:
            totals = totals.to(self.device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        return {
            "epoch": self.iteration / self.iters_per_epoch,
            "loss": totals[0].item() / totals[1].item(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_second": iters * self.cfg.SOLVER.IMS_PER_BATCH / seconds,
            "seconds_per_iter": seconds / iters,
        }


class _LossWindow:
    """Losses and wall time since the last log line."""

    def __init__(self):
        self.loss_sum, self.iters, self.start = 0.0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss.item()
        self.iters += 1

    def pop(self) -> tuple[float, int, float]:
        """(loss sum, iterations, seconds) since the last pop; starts a new window."""
        now = time.perf_counter()
        popped = (self.loss_sum, self.iters, max(now - self.start, 1e-9))
        self.loss_sum, self.iters, self.start = 0.0, 0, now
        return popped
