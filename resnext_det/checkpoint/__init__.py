"""Checkpoints: safe loading, and exact conversion of weights from other code bases."""

from .convert import (
    SOURCES,
    Conversion,
    FeatureComparison,
    InputConventions,
    check_outputs,
    compare_features,
    convert,
    infer_spec,
    read_weight_file,
    write_detectron2_weights,
)
from .safe_load import (
    SafeDetectionCheckpointer,
    UnsafePickleError,
    check_finite_weights,
    load_pickle_safely,
    load_weight_file,
)

__all__ = [
    "SOURCES",
    "Conversion",
    "FeatureComparison",
    "InputConventions",
    "SafeDetectionCheckpointer",
    "UnsafePickleError",
    "check_finite_weights",
    "check_outputs",
    "compare_features",
    "convert",
    "infer_spec",
    "load_pickle_safely",
    "load_weight_file",
    "read_weight_file",
    "write_detectron2_weights",
]
