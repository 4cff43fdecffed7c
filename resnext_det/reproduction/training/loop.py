"""The one training loop every tool runs: detection (yaml and LazyConfig), Appendix B and
pretraining are each a :class:`TrainingLoop` with their own model, data and hooks.

What they share is here, once: the step (Detectron2's ``SimpleTrainer`` or ``AMPTrainer``
over :func:`distributed_model`), the divergence error (a NaN or infinite loss ends the run
in one line naming the intact last checkpoint), and the funnel every hook list passes
(:meth:`TrainingLoop.register_hooks`), where Detectron2's periodic checkpointer becomes
one that refuses to save non-finite weights. A hook added there runs in every loop.
Checkpoints are written atomically by
:class:`~resnext_det.checkpoint.SafeDetectionCheckpointer`, and every tool launches with
Detectron2's ``launch`` (:mod:`.launch`).
"""

from collections.abc import Sequence
from typing import Optional

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model
from torch import nn

from ...utils.errors import TrainingDiverged
from .hooks import FiniteWeightsCheckpointer

__all__ = ["TrainingLoop", "distributed_model", "step_trainer"]


def distributed_model(model: nn.Module, **kwargs) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes train (else as it is).

    Detectron2's ``create_ddp_model`` passes the current GPU as ``device_ids``, which a
    model on the CPU (several gloo processes) refuses; there it passes none.

    Args:
        model: the model, on its device.
        **kwargs: for ``DistributedDataParallel`` (``broadcast_buffers``, ...).
    """
    on_cpu = next(model.parameters()).device.type == "cpu"
    return create_ddp_model(model, **({"device_ids": None} if on_cpu else {}), **kwargs)


def step_trainer(
    model: nn.Module,
    data_loader,
    optimizer: torch.optim.Optimizer,
    amp: bool = False,
    **amp_kwargs,
) -> SimpleTrainer:
    """Detectron2's step: ``AMPTrainer`` with ``amp`` (float16 on a GPU), else ``SimpleTrainer``."""
    if amp:
        return AMPTrainer(model, data_loader, optimizer, **amp_kwargs)
    return SimpleTrainer(model, data_loader, optimizer)


class TrainingLoop(TrainerBase):
    """Detectron2's ``TrainerBase``, as every training tool of the project runs it.

    A loop sets ``self._trainer`` (from :func:`step_trainer`) and ``self.checkpointer`` (a
    :class:`~resnext_det.checkpoint.SafeDetectionCheckpointer`), then registers its hooks.

    Attributes:
        divergence_hint: the warmup key the divergence error suggests raising.
    """

    divergence_hint = "SOLVER.WARMUP_ITERS"

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The step's optimizer (Detectron2's hooks read it here, as from DefaultTrainer)."""
        return self._trainer.optimizer

    def register_hooks(self, hook_list: Sequence[Optional[hooks.HookBase]]) -> None:
        """TrainerBase's, for every loop's hooks: a ``PeriodicCheckpointer`` becomes a
        :class:`FiniteWeightsCheckpointer` (same files, same schedule)."""
        super().register_hooks([self._finite_checkpoints(h) for h in hook_list])

    def _finite_checkpoints(self, hook: Optional[hooks.HookBase]) -> Optional[hooks.HookBase]:
        if type(hook) is not hooks.PeriodicCheckpointer:  # noqa: E721 (ours are subclasses)
            return hook
        return FiniteWeightsCheckpointer(
            hook.checkpointer,
            hook.period,
            hook.max_iter,
            hook.max_to_keep,
            hook.file_prefix,
            hint_key=self.divergence_hint,
        )

    def state_dict(self) -> dict:
        """TrainerBase's, with the step's (the optimizer, the AMP scaler), as DefaultTrainer's."""
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    def run_step(self) -> None:
        """Detectron2's step; a loss that is not finite ends the run in one line."""
        self._trainer.iter = self.iter
        try:
            self._trainer.run_step()
        except FloatingPointError as e:  # Detectron2 checks the losses before the step
            raise TrainingDiverged.stopped(
                f"the loss became infinite or NaN at {self.step_name()}",
                self.checkpointer,
                self.divergence_hint,
            ) from e

    def step_name(self) -> str:
        """How the divergence error names the step being run."""
        return f"iteration {self.iter}"
