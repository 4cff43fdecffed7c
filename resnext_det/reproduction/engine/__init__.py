"""Training and evaluation drivers."""

from .trainer import (
    Trainer,
    build_config,
    check_can_train,
    load_dataset_dicts,
    proposal_file,
    register_all,
    schedule_summary,
)

__all__ = [
    "Trainer",
    "build_config",
    "check_can_train",
    "load_dataset_dicts",
    "proposal_file",
    "register_all",
    "schedule_summary",
]
