"""Datasets: the bundled demo data (tree crowns), registered on request."""

from .demo_trees import (
    DEMO_DATASETS,
    TilingSettings,
    demo_dataset_dir,
    is_prepared,
    prepare_demo_dataset,
    register_demo_datasets,
)

__all__ = [
    "DEMO_DATASETS",
    "TilingSettings",
    "demo_dataset_dir",
    "is_prepared",
    "prepare_demo_dataset",
    "register_demo_datasets",
]
