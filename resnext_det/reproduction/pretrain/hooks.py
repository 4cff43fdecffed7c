"""The hooks of classification pretraining that Detectron2's own do not cover as they are.

Detectron2 counts iterations from 0 and checkpoints every ``period`` of them; pretraining
also checkpoints at the end of each epoch, names its files and records by the number of
completed iterations (as this tool always has, so that older runs still resume), keeps
only the newest checkpoint of a run (ImageNet checkpoints are large), writes the metrics
before each checkpoint (a resume drops the records past it and redoes them), and shows a
progress bar or a log line with the epoch and the ETA.
"""

import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from detectron2.engine.train_loop import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventWriter
from fvcore.common.checkpoint import Checkpointer
from tqdm import tqdm

from ..training.hooks import FiniteWeightsCheckpointer

__all__ = ["EpochCheckpointer", "LastStepEvalHook", "MetricsWriter", "Progress"]

logger = logging.getLogger(__name__)


class EpochCheckpointer(FiniteWeightsCheckpointer):
    """Saves every ``period`` iterations (0: never), after each epoch and at the end.

    The files are ``model_<completed iterations>.pth`` and ``model_final.pth``, holding
    what ``trainer.checkpoint_state(completed)`` returns besides the checkpointables.
    After each save the main process deletes every other ``model_*.pth`` of the folder but
    ``model_final.pth``: only the newest is needed to resume. (fvcore's ``max_to_keep``
    forgets the files of the run before a resume and keeps the last one beside the final.)

    Args:
        checkpointer: saves the files (on the main process only).
        period: iterations between saves within an epoch; 0 for epoch ends only.
        iters_per_epoch: iterations of one epoch.
    """

    def __init__(self, checkpointer: Checkpointer, period: int, iters_per_epoch: int):
        # fvcore divides by the period; ours are decided by is_due, 0 included.
        super().__init__(checkpointer, max(period, 1), hint_key="SOLVER.WARMUP_EPOCHS")
        self.every = period
        self.iters_per_epoch = iters_per_epoch

    def is_due(self, iteration: int) -> bool:
        done = iteration + 1
        periodic = self.every > 0 and done % self.every == 0
        return periodic or done % self.iters_per_epoch == 0 or done >= self.max_iter

    def after_step(self):
        iteration = self.trainer.iter
        if self.is_due(iteration):
            self.check_finite(f"by iteration {iteration + 1}")
            self.step(iteration)

    def step(self, iteration: int, **kwargs: Any) -> None:
        """Save after ``iteration`` (0-based) if a save is due then."""
        if not self.is_due(iteration):
            return
        done = iteration + 1
        name = "model_final" if done >= self.max_iter else f"{self.file_prefix}_{done:07d}"
        self.checkpointer.save(name, **self.trainer.checkpoint_state(done), **kwargs)
        if comm.is_main_process():
            for path in Path(self.checkpointer.save_dir).glob(f"{self.file_prefix}_*.pth"):
                if path.stem not in (name, f"{self.file_prefix}_final"):
                    path.unlink(missing_ok=True)


class LastStepEvalHook(HookBase):
    """Detectron2's ``EvalHook``, evaluating after the last step rather than after training.

    As Detectron2's, it evaluates every ``period`` iterations and records the results in
    the trainer's storage (the writers put them in ``metrics.json``). Unlike it, every
    evaluation is recorded at the iteration of the step it follows (Detectron2's records
    the last one at ``max_iter``, where a resumed run's next step would be), and none runs
    when the last step raised (Detectron2's would, a full ImageNet val pass before the error
    is reported). After training it evaluates only a run resumed at its end, which runs no
    step. Written on Detectron2's public ``HookBase``, not on ``EvalHook``'s internals.

    Args:
        period: iterations between evaluations (0: at the end only).
        evaluate: returns the scalars to record.
    """

    def __init__(self, period: int, evaluate: Callable[[], dict[str, float]]):
        self.period = period
        self.evaluate = evaluate

    def _evaluate_and_record(self) -> None:
        results = self.evaluate()
        self.trainer.storage.put_scalars(**results, smoothing_hint=False)
        comm.synchronize()

    def after_step(self):
        done = self.trainer.iter + 1
        if (self.period > 0 and done % self.period == 0) or done == self.trainer.max_iter:
            self._evaluate_and_record()

    def after_train(self):
        if self.trainer.start_iter >= self.trainer.max_iter:
            self._evaluate_and_record()


class MetricsWriter(HookBase):
    """Detectron2's ``PeriodicWriter``, with the writers (``trainer.build_writers()``)
    opened when training starts and a write before every checkpoint.

    Opened late because a resume first drops the records past its checkpoint, rewriting
    the file (a writer opened before would append to the replaced one). Written before each
    checkpoint because the resume redoes only what comes after it: a record kept in memory
    until the next period would be lost with the process.

    Args:
        period: iterations between writes.
        checkpoint_due: whether a checkpoint is saved after a (0-based) iteration.
    """

    def __init__(self, period: int, checkpoint_due: Callable[[int], bool]):
        self.period = period
        self.checkpoint_due = checkpoint_due
        self.writers: list[EventWriter] = []

    def before_train(self):
        self.writers = self.trainer.build_writers()

    def after_step(self):
        iteration = self.trainer.iter
        periodic = (iteration + 1) % self.period == 0 or iteration == self.trainer.max_iter - 1
        if periodic or self.checkpoint_due(iteration):
            for writer in self.writers:
                writer.write()

    def after_train(self):
        for writer in self.writers:
            writer.write()  # what the last period left, as Detectron2's writer does
            writer.close()


def _format_eta(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class Progress(HookBase):
    """A tqdm bar on a terminal; elsewhere a log line every ``period`` iterations, with the
    epoch, the loss (averaged over the iterations since the last line and the processes),
    the lr, the throughput and the ETA. Register it on the main process, after
    ``LRScheduler`` (it reads the lr that hook records).

    Args:
        period: iterations between refreshes (``LOG_PERIOD``).
        iters_per_epoch: iterations of one epoch.
        global_batch: images per iteration over all processes.
    """

    def __init__(self, period: int, iters_per_epoch: int, global_batch: int):
        self.period = period
        self.iters_per_epoch = iters_per_epoch
        self.global_batch = global_batch
        self.bar: Optional[tqdm] = None
        self._window_start = 0.0
        self._window_iters = 0

    def before_train(self):
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=self.trainer.max_iter,
                initial=self.trainer.start_iter,
                unit="it",
                dynamic_ncols=True,
            )
        self._window_start, self._window_iters = time.perf_counter(), 0

    def after_step(self):
        self._window_iters += 1
        done, total = self.trainer.iter + 1, self.trainer.max_iter
        if self.bar is not None:
            self.bar.update(1)
        if done % self.period and done != total:
            return
        now = time.perf_counter()
        seconds_per_iter = max(now - self._window_start, 1e-9) / self._window_iters
        storage = self.trainer.storage
        loss = storage.history("total_loss").avg(self._window_iters)
        lr = storage.history("lr").latest()
        images_per_second = self.global_batch / seconds_per_iter
        self._window_start, self._window_iters = now, 0
        epoch, epochs = (done - 1) // self.iters_per_epoch, -(-total // self.iters_per_epoch)
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{epochs}")
            self.bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.4g}", img_s=f"{images_per_second:.0f}"
            )
        else:
            eta = (total - done) * seconds_per_iter
            logger.info(
                f"epoch {epoch + 1}/{epochs}  iter {done}/{total}  loss {loss:.4f}  lr {lr:.4g}  "
                f"{images_per_second:.1f} img/s  eta {_format_eta(eta)}"
            )

    def after_train(self):
        if self.bar is not None:
            self.bar.close()
