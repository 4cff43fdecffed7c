"""Training and evaluation drivers."""

from .trainer import Trainer, build_config, check_can_train, datasets_root, register_all

__all__ = ["Trainer", "build_config", "check_can_train", "datasets_root", "register_all"]
