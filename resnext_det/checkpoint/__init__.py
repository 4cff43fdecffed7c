"""Checkpoints: safe loading, and exact conversion of weights from other code bases.

One module a job, each importing only those above it in this list:

- :mod:`.safe_load`: the one reader of weight files (by content, without running code,
  finite), and their layouts (which code base wrote a file, where its weights are).
- :mod:`.checkpointer`: Detectron2's checkpointer reading through it and saving atomically.
- :mod:`.fit`: does a weight file fit a model, checked before a run.
- :mod:`.rename`: each source's names into Detectron2's, and the network they describe.
- :mod:`.convert`: the conversion: shape checks, the weights and their config snippet.
- :mod:`.verify`: the source model's features against the converted backbone's.
"""

from .checkpointer import SafeDetectionCheckpointer
from .convert import Conversion, check_outputs, convert, write_detectron2_weights
from .rename import SOURCES, InputConventions, infer_spec
from .safe_load import (
    UnsafePickleError,
    check_finite_weights,
    load_pickle_safely,
    load_weight_file,
    read_weight_file,
)
from .verify import FeatureComparison, compare_features

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
