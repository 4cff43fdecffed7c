"""Where the datasets are."""

import os

__all__ = ["datasets_root"]


def datasets_root() -> str:
    """Detectron2's datasets root: ``$DETECTRON2_DATASETS``, else ``./datasets``."""
    return os.getenv("DETECTRON2_DATASETS", "datasets")
