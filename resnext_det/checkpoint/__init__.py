"""Checkpoints: safe loading, and exact conversion of weights from other code bases."""

from .convert import (
    SOURCES,
    Conversion,
    FeatureComparison,
    InputConventions,
    compare_features,
    convert,
    infer_spec,
    read_weight_file,
    write_detectron2_weights,
)
from .safe_load import SafeDetectionCheckpointer, UnsafePickleError, load_pickle_safely

__all__ = [
    "SOURCES",
    "Conversion",
    "FeatureComparison",
    "InputConventions",
    "SafeDetectionCheckpointer",
    "UnsafePickleError",
    "compare_features",
    "convert",
    "infer_spec",
    "load_pickle_safely",
    "read_weight_file",
    "write_detectron2_weights",
]
