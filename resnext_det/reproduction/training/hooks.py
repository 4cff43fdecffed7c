"""Detectron2 hooks that both engines use (detection in ``engine/``, ``pretrain/``)."""

from typing import Optional

import torch
from detectron2.checkpoint import Checkpointer
from detectron2.engine import hooks

from ...utils.errors import TrainingDiverged

__all__ = ["FiniteWeightsCheckpointer"]


class FiniteWeightsCheckpointer(hooks.PeriodicCheckpointer):
    """Detectron2's periodic checkpointer, which refuses to save non-finite weights.

    The loss is checked before every step, but one step can still blow the weights up to
    inf with a finite loss; saving them would make the last checkpoint worthless. Checked
    only when a checkpoint is due, so it costs nothing in between.

    Args:
        checkpointer: saves the files (fvcore's ``Checkpointer``).
        period: as in ``PeriodicCheckpointer``.
        max_iter: as in ``PeriodicCheckpointer`` (the trainer's, when training starts).
        max_to_keep: as in ``PeriodicCheckpointer``.
        file_prefix: as in ``PeriodicCheckpointer``.
        hint_key: the warmup key the error suggests raising (``SOLVER.WARMUP_ITERS`` for
            detection, ``SOLVER.WARMUP_EPOCHS`` for pretraining).
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        period: int,
        max_iter: Optional[int] = None,
        max_to_keep: Optional[int] = None,
        file_prefix: str = "model",
        hint_key: str = "SOLVER.WARMUP_ITERS",
    ):
        super().__init__(checkpointer, period, max_iter, max_to_keep, file_prefix)
        self.hint_key = hint_key

    def is_due(self, iteration: int) -> bool:
        """Whether :meth:`step` saves after ``iteration`` (0-based): fvcore's rule."""
        return (iteration + 1) % self.period == 0 or iteration >= self.max_iter - 1

    def check_finite(self, when: str) -> None:
        """Raise :class:`TrainingDiverged` if a weight is inf or NaN (``when``: "at iteration 7").

        Raises:
            TrainingDiverged: naming the last checkpoint, which stays intact.
        """
        if not all(torch.isfinite(p).all() for p in self.trainer.model.parameters()):
            raise TrainingDiverged.stopped(
                f"the weights became infinite or NaN {when} (the loss was still finite)",
                self.checkpointer,
                self.hint_key,
            )

    def after_step(self):
        iteration = self.trainer.iter
        if self.is_due(iteration):
            self.check_finite(f"at iteration {iteration}")
        super().after_step()
