"""Classification pretraining of the ResNeXt stages (Sec. 4, Appendix A).

The classifier is built from the very stage modules of the detection backbone
(:func:`~resnext_det.modeling.build_resnext_classifier`), so its weights convert to
Detectron2 by name (``tools/convert_weights.py``). It is one more
:class:`~resnext_det.reproduction.training.loop.TrainingLoop`, as detection is: Detectron2's step
(``SimpleTrainer``, ``AMPTrainer`` for float16 on GPUs) over the loop's DDP, the loop's
divergence error and hook funnel, Detectron2's hooks for timing and the lr schedule, its
event storage and writers for ``metrics.json`` (``JSONWriter``, and TensorBoard when it is
installed), and hooks of ours for what pretraining adds: checkpoints at epoch ends,
evaluation, writing and progress (:mod:`.hooks`).

It runs in the processes of Detectron2's ``launch`` or of torchrun (one per GPU, NCCL; or
several on a CPU, gloo), with batches that do not depend on the number of processes
(:mod:`resnext_det.reproduction.pretrain.data`), resume from the last checkpoint (model, optimizer,
scheduler, AMP scaler, iteration) to the same weights as a run that never stopped,
optional AMP (bfloat16 on CPUs), the memory format of ``MODEL.RESNEXT.MEMORY_FORMAT``, and
a progress bar with throughput and ETA. :func:`check_pretrain_run` is every check a
launcher makes before its workers start.
"""

import importlib.util
import json
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from detectron2.engine import hooks
from detectron2.utils import comm
from detectron2.utils.events import EventWriter, JSONWriter, TensorboardXWriter
from fvcore.common.config import CfgNode
from torch import nn
from torch.utils.data import DataLoader

from ...checkpoint import SafeDetectionCheckpointer
from ...checkpoint.fit import starting_weights
from ...modeling import ResNeXtSpec, build_cifar_resnext, build_resnext_classifier
from ...utils.atomic_io import write_text_atomically
from ...utils.errors import ConfigError
from ..training.loop import TrainingLoop, distributed_model, step_trainer
from ..training.schedule import describe_schedule
from .config import check_pretrain_config, scale_to_world_size
from .data import (
    AugmentedDataset,
    ClassificationData,
    EvalSampler,
    TrainSampler,
    build_classification_data,
)
from .evaluation import evaluate_classifier
from .hooks import EpochCheckpointer, LastStepEvalHook, MetricsWriter, Progress

__all__ = [
    "METRICS_FILE",
    "ClassificationLoss",
    "Pretrainer",
    "StepSchedule",
    "build_classifier",
    "check_pretrain_run",
    "drop_records_after",
]

logger = logging.getLogger(__name__)

ARCHS = ("imagenet", "cifar")
METRICS_FILE = "metrics.json"  # Detectron2's name and format (JSONWriter)


def build_classifier(cfg: CfgNode) -> nn.Module:
    """The classifier ``cfg.MODEL`` describes (ImageNet or CIFAR layout)."""
    spec = ResNeXtSpec.from_config(cfg)
    builders = {"imagenet": build_resnext_classifier, "cifar": build_cifar_resnext}
    if cfg.MODEL.ARCH not in builders:
        raise ConfigError(
            f"MODEL.ARCH={cfg.MODEL.ARCH!r} is not supported; expected one of {ARCHS}"
        )
    return builders[cfg.MODEL.ARCH](
        spec, cfg.MODEL.NUM_CLASSES, memory_format=cfg.MODEL.RESNEXT.MEMORY_FORMAT
    )


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


class ClassificationLoss(nn.Module):
    """The classifier as Detectron2's trainers expect a model: a batch in, a loss dict out.

    Args:
        model: returns a dict with the logits under ``"linear"`` (possibly wrapped in
            DistributedDataParallel).
        device: where the batches go.
        autocast_dtype: the forward runs under autocast with it (None: full precision);
            Detectron2's ``AMPTrainer`` autocasts on GPUs only, bfloat16 on a CPU is ours.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, autocast_dtype: Optional[torch.dtype]
    ):
        super().__init__()
        self.model = model
        self.device = device
        self.autocast_dtype = autocast_dtype

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, targets = batch
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast_dtype is not None,
        ):
            logits = self.model(images)["linear"]
        loss = F.cross_entropy(logits.float(), targets)
        if not torch.isfinite(loss):
            # Here, in every process and before the backward, rather than in Detectron2's
            # check in its metrics writer, which runs on the main process only (the others
            # would wait in the next all-reduce) and logs a traceback first; the loop
            # reports either in one line.
            raise FloatingPointError(f"the loss became {loss.item()}")
        return {"loss_cls": loss}


class _EpochBatches:
    """Training batches from iteration ``start_iter`` on, epoch after epoch, without end.

    Each epoch has its own loader, whose sampler knows the epoch (its order and
    augmentation depend on it) and where in it a resumed run begins.
    """

    def __init__(self, data: ClassificationData, sampler: TrainSampler, cfg: CfgNode, pin: bool):
        self.data, self.sampler, self.cfg, self.pin = data, sampler, cfg, pin
        self.start_iter = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = divmod(self.start_iter, self.sampler.iters_per_epoch)
        dataset = AugmentedDataset(self.data.train, self.data.train_transform, self.cfg.SEED)
        while True:
            self.sampler.set_epoch(epoch, start)
            yield from DataLoader(
                dataset,
                batch_size=self.sampler.local_batch,
                sampler=self.sampler,
                num_workers=self.cfg.DATA.NUM_WORKERS,
                pin_memory=self.pin,
            )
            epoch, start = epoch + 1, 0


def drop_records_after(path: Path, iteration: int) -> None:
    """Rewrite a ``metrics.json`` without the records of iteration ``iteration`` and later.

    A run resumed after ``iteration`` completed steps redoes the steps from index
    ``iteration`` on (and the evaluations that follow them), which a killed run may have
    recorded already.
    """
    if not path.is_file():
        return

    def before(line: str) -> bool:
        try:
            return json.loads(line)["iteration"] < iteration
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            return False

    kept = [line for line in path.read_text().splitlines() if before(line)]
    write_text_atomically(path, "".join(line + "\n" for line in kept))


def _checked_data(cfg: CfgNode) -> ClassificationData:
    """The data of ``cfg`` (:func:`build_classification_data`), its classes within the model's."""
    data = build_classification_data(cfg)
    if len(data.classes) > cfg.MODEL.NUM_CLASSES:
        raise ConfigError(
            f"MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES} is smaller than the "
            f"{len(data.classes)} classes of {cfg.DATA.ROOT}; expected at least that"
        )
    return data


def _start_file(model: nn.Module, cfg: CfgNode, resume: bool, whole_model: bool) -> Optional[str]:
    """The file a run starts from (:func:`starting_weights`): the last checkpoint entirely,
    else ``MODEL.WEIGHTS`` in its trunk (an fc of another size may start afresh), or
    entirely with ``whole_model`` (to evaluate it); None to start from the initialization."""
    return starting_weights(
        model,
        cfg.OUTPUT_DIR,
        cfg.MODEL.WEIGHTS,
        resume=resume,
        whole_model=whole_model,
        trunk=lambda key: not key.startswith("linear."),
    )


def check_pretrain_run(cfg: CfgNode, world_size: int, eval_only: bool, resume: bool) -> None:
    """Every check of a pretraining run before its processes start, in the launcher.

    The config's values (:func:`check_pretrain_config`) and their scaling to
    ``world_size`` processes, the data of ``DATA.ROOT`` (its layout, its classes, at least
    one global batch of training images), and the weights the run starts from: the
    last checkpoint (with ``resume``) or ``MODEL.WEIGHTS`` must fit the classifier, and
    ``eval_only`` needs one of them. Each worker builds its :class:`Pretrainer` through
    the same checks.

    Raises:
        UserError: the first problem, in one line (a ConfigError, DataError,
            MissingFileError or WeightsError).
    """
    check_pretrain_config(cfg)
    scaled = scale_to_world_size(cfg, world_size)
    data = _checked_data(scaled)
    TrainSampler(len(data.train), scaled.SOLVER.IMS_PER_BATCH, 0, world_size, scaled.SEED)
    _start_file(build_classifier(cfg), cfg, resume, whole_model=eval_only)


class Pretrainer(TrainingLoop):
    """Trains and evaluates a ResNeXt classifier as ``cfg`` describes: a
    :class:`~resnext_det.reproduction.training.loop.TrainingLoop`, in the processes of a launch.

    Iterations are counted as Detectron2 counts them (``self.iter`` is the 0-based step
    being run, ``metrics.json`` and the divergence error name it); a checkpoint and the
    schedule count completed iterations (``model_0000012.pth`` follows 12 steps, as this
    tool has always named them, so that older runs still resume).

    Args:
        cfg: a pretraining config (:func:`resnext_det.reproduction.pretrain.get_pretrain_cfg`), for
            ``SOLVER.REFERENCE_WORLD_SIZE`` processes; it is scaled to this launch (its
            processes: Detectron2's ``comm``).
    """

    divergence_hint = "SOLVER.WARMUP_EPOCHS"

    def __init__(self, cfg: CfgNode):
        super().__init__()
        check_pretrain_config(cfg)
        self.world_size, self.rank = comm.get_world_size(), comm.get_rank()
        self.reference_cfg = cfg
        cfg = scale_to_world_size(cfg, self.world_size)
        self.cfg = cfg
        # The GPU Detectron2's launch (or torchrun's, joined) gave this process.
        on_gpu = torch.cuda.is_available()
        self.device = torch.device("cuda", comm.get_local_rank()) if on_gpu else torch.device("cpu")

        torch.manual_seed(cfg.SEED)  # the same initial weights in every process
        self.data = _checked_data(cfg)
        self.model = build_classifier(cfg).to(self.device)

        solver = cfg.SOLVER
        self.sampler = TrainSampler(
            len(self.data.train), solver.IMS_PER_BATCH, self.rank, self.world_size, cfg.SEED
        )
        self.iters_per_epoch = self.sampler.iters_per_epoch
        self.max_iter = solver.EPOCHS * self.iters_per_epoch
        if solver.MAX_ITER > 0:
            self.max_iter = min(self.max_iter, solver.MAX_ITER)
        optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=solver.BASE_LR,
            momentum=solver.MOMENTUM,
            weight_decay=solver.WEIGHT_DECAY,
            nesterov=solver.NESTEROV,
        )
        schedule = StepSchedule(
            self.iters_per_epoch, tuple(solver.STEP_EPOCHS), solver.GAMMA, solver.WARMUP_EPOCHS
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.amp_dtype = None
        if solver.AMP.ENABLED:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        # Disabled but kept without float16, so that every checkpoint has the same entries.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )

        self._batches = _EpochBatches(self.data, self.sampler, cfg, self.device.type == "cuda")
        loss_model = ClassificationLoss(distributed_model(self.model), self.device, self.amp_dtype)
        self._trainer = step_trainer(  # self.optimizer from here on (TrainingLoop's)
            loss_model,
            self._batches,
            optimizer,
            amp=self.amp_dtype == torch.float16,
            grad_scaler=self.scaler,
        )
        self.checkpointer = SafeDetectionCheckpointer(
            self.model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            optimizer=optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
        )
        self.metrics_path = Path(cfg.OUTPUT_DIR) / METRICS_FILE
        self._last_eval: dict[str, Any] = {}
        self.register_hooks(self.build_hooks())

    # -- hooks ---------------------------------------------------------------------------

    def build_hooks(self) -> list[Optional[hooks.HookBase]]:
        """The hooks, in the order they run after each step.

        Evaluation comes before the writer (which writes its record) and both before the
        checkpoint, so that a resume from that checkpoint finds the record on disk.
        """
        cfg = self.cfg
        checkpoints = EpochCheckpointer(
            self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.iters_per_epoch
        )
        main = comm.is_main_process()
        # Hooks get a weak proxy of the trainer, as Detectron2's do: a cycle would keep the
        # DistributedDataParallel alive past the process group it talks to.
        trainer = weakref.proxy(self)
        return [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            LastStepEvalHook(
                cfg.TEST.EVAL_PERIOD_EPOCHS * self.iters_per_epoch,
                lambda: trainer._evaluate_step(),
            ),
            MetricsWriter(cfg.LOG_PERIOD, checkpoints.is_due) if main else None,
            checkpoints,
            Progress(cfg.LOG_PERIOD, self.iters_per_epoch, cfg.SOLVER.IMS_PER_BATCH)
            if main
            else None,
        ]

    def build_writers(self) -> list[EventWriter]:
        """``metrics.json`` (Detectron2's ``JSONWriter``), and TensorBoard if installed.

        The JSON writer's window is ``LOG_PERIOD``: a loss is the median of the iterations
        since the last record, as in Detectron2's own runs.
        """
        writers: list[EventWriter] = [
            JSONWriter(str(self.metrics_path), window_size=self.cfg.LOG_PERIOD)
        ]
        if importlib.util.find_spec("tensorboard") is not None:  # torch's SummaryWriter needs it
            writers.append(TensorboardXWriter(self.cfg.OUTPUT_DIR, window_size=self.cfg.LOG_PERIOD))
        return writers

    # -- schedule ------------------------------------------------------------------------

    def schedule_summary(self) -> str:
        """The schedule this launch runs, after scaling to its number of processes."""
        solver = self.cfg.SOLVER
        max_iter = f"max_iter {self.max_iter}"
        if self.max_iter < solver.EPOCHS * self.iters_per_epoch:
            max_iter += (
                f" (SOLVER.MAX_ITER ends the run at epoch "
                f"{self.max_iter / self.iters_per_epoch:.4g} of {solver.EPOCHS})"
            )
        return describe_schedule(
            self.world_size,
            self.cfg,
            self.reference_cfg,
            [
                f"epochs {solver.EPOCHS}",
                f"lr x{solver.GAMMA:g} at epochs {tuple(solver.STEP_EPOCHS)}",
                f"{self.iters_per_epoch} iterations per epoch",
                max_iter,
            ],
        )

    # -- checkpoints ---------------------------------------------------------------------

    def resume_or_load(self, resume: bool = True, whole_model: bool = False) -> None:
        """Continue from the last checkpoint in ``OUTPUT_DIR`` (if ``resume`` and one exists),
        else start from ``MODEL.WEIGHTS`` (if set) or the initialization.

        Either file must fit the model: a checkpoint entirely; ``MODEL.WEIGHTS`` in its
        trunk, or entirely with ``whole_model`` (to evaluate it, which needs a file). A
        resume drops the records of ``metrics.json`` past the checkpoint.
        """
        resuming = resume and self.checkpointer.has_checkpoint()
        path = _start_file(self.model, self.cfg, resume, whole_model)
        if resuming:
            extra = self.checkpointer.load(path)
            saved_batch = extra.get("global_batch", self.cfg.SOLVER.IMS_PER_BATCH)
            if saved_batch != self.cfg.SOLVER.IMS_PER_BATCH:
                raise ConfigError(
                    f"{path} was trained with a global batch of {saved_batch} images, this launch "
                    f"has {self.cfg.SOLVER.IMS_PER_BATCH}; expected the same batch to resume (e.g. "
                    f"SOLVER.REFERENCE_WORLD_SIZE 0 SOLVER.IMS_PER_BATCH {saved_batch})"
                )
            self.start_iter = int(extra["iteration"])  # completed: the next step's index
            if self.start_iter > self.max_iter:  # at it: complete, so it evaluates only
                solver = self.cfg.SOLVER
                raise ConfigError(
                    f"the run ends at iteration {self.max_iter} (SOLVER.EPOCHS={solver.EPOCHS}, "
                    f"SOLVER.MAX_ITER={solver.MAX_ITER}) but the last checkpoint {path} was saved "
                    f"after iteration {self.start_iter}, so resuming would train nothing; "
                    f"expected a run of at least {self.start_iter} iterations to go on from it "
                    "(or a new OUTPUT_DIR, without --resume)"
                )
            if comm.is_main_process():
                drop_records_after(self.metrics_path, self.start_iter)
            logger.info(f"resumed from {path} at iteration {self.start_iter}")
        elif path is not None:
            self.checkpointer.load(path, checkpointables=[])
        self._batches.start_iter = self.start_iter
        comm.synchronize()  # the metrics are rewritten before any process trains on

    def checkpoint_state(self, completed: int) -> dict[str, Any]:
        """What a checkpoint holds besides the checkpointables, after ``completed`` steps."""
        cfg = self.cfg
        return {
            "iteration": completed,
            "epoch": completed / self.iters_per_epoch,
            "global_batch": cfg.SOLVER.IMS_PER_BATCH,
            # What a converter needs to know: the network and its input conventions, as
            # plain containers, so that the checkpoint loads with weights_only=True.
            "resnext_det": {
                "arch": cfg.MODEL.ARCH,
                "num_classes": cfg.MODEL.NUM_CLASSES,
                "classes": list(self.data.classes),
                "resnets": json.loads(json.dumps(cfg.MODEL.RESNETS)),
                "resnext": json.loads(json.dumps(cfg.MODEL.RESNEXT)),
                "input": {
                    "format": "RGB",
                    "pixel_mean": list(cfg.INPUT.PIXEL_MEAN),
                    "pixel_std": list(cfg.INPUT.PIXEL_STD),
                },
            },
        }

    # -- training and evaluation ---------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Top-1/top-5 error on the val split; also as a subset-way classifier (Table 6)
        when the val split holds fewer classes than the model."""
        dataset = AugmentedDataset(
            self.data.val, self.data.test_transform, self.cfg.SEED, skip_unreadable=False
        )
        loader = DataLoader(
            dataset,
            batch_size=self.cfg.TEST.IMS_PER_BATCH,
            sampler=EvalSampler(len(dataset), self.rank, self.world_size),
            num_workers=self.cfg.DATA.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
        )
        subset = self.data.val_classes
        if len(subset) >= self.cfg.MODEL.NUM_CLASSES:
            subset = None
        return evaluate_classifier(
            self.model, loader, self.device, subset=subset, autocast_dtype=self.amp_dtype
        )

    def _evaluate_step(self) -> dict[str, Any]:
        """The evaluation ``LastStepEvalHook`` runs and records, with the epoch it follows."""
        completed = min(self.iter + 1, self.max_iter)  # after training, self.iter is past it
        errors = self.evaluate()
        self._last_eval = {"iteration": completed, "epoch": completed / self.iters_per_epoch}
        self._last_eval.update(errors)
        logger.info("evaluation: " + json.dumps(self._last_eval))
        return {"epoch": self._last_eval["epoch"], **errors}

    def step_name(self) -> str:
        """The step the divergence error names: Detectron2's iteration, and its epoch."""
        return f"iteration {self.iter} (epoch {self.iter // self.iters_per_epoch + 1})"

    def run_step(self) -> None:
        """The loop's step (a non-finite loss ends the run in one line, before the
        optimizer step), then the epoch reached, for ``metrics.json``."""
        super().run_step()
        epoch = (self.iter + 1) / self.iters_per_epoch
        self.storage.put_scalar("epoch", epoch, smoothing_hint=False)

    def after_train(self) -> None:
        # TrainerBase's, but what a run resumed at its end records after training (its
        # evaluation) goes to the iteration of its last step, as it would have then.
        self.storage.iter = self.max_iter - 1 if self.iter >= self.max_iter else self.iter
        for hook in self._hooks:
            hook.after_train()

    def train(self) -> dict[str, Any]:
        """Train from ``self.start_iter`` to the end; return the last evaluation."""
        cfg = self.cfg
        if comm.is_main_process():
            Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
            write_text_atomically(Path(cfg.OUTPUT_DIR) / "config.yaml", self.reference_cfg.dump())
        logger.info(self.schedule_summary())
        if self.start_iter >= self.max_iter:
            logger.info(f"training is complete ({self.start_iter} iterations); evaluating only")
        self._trainer.model.train()
        super().train(self.start_iter, self.max_iter)
        return self._last_eval
