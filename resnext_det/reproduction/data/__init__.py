"""Datasets: the demo data, the paper's COCO 2014 splits, a user's COCO json, proposal files."""

from .coco2014 import (
    COCO_SPLITS,
    build_minival_jsons,
    check_coco,
    find_coco_layout,
    register_coco2014_splits,
)
from .demo_trees import (
    DEMO_DATASETS,
    TilingSettings,
    demo_dataset_dir,
    is_prepared,
    prepare_demo_dataset,
    register_demo_datasets,
)
from .identity import dataset_digest
from .proposals import (
    attach_proposals,
    load_proposal_file,
    missing_image_ids,
    write_proposal_file,
)
from .user_coco import register_coco_datasets

__all__ = [
    "COCO_SPLITS",
    "build_minival_jsons",
    "check_coco",
    "find_coco_layout",
    "register_coco2014_splits",
    "DEMO_DATASETS",
    "TilingSettings",
    "attach_proposals",
    "dataset_digest",
    "demo_dataset_dir",
    "is_prepared",
    "load_proposal_file",
    "missing_image_ids",
    "prepare_demo_dataset",
    "register_coco_datasets",
    "register_demo_datasets",
    "write_proposal_file",
]
