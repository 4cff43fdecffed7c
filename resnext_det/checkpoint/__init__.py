"""Checkpoints: safe loading, and exact conversion of weights from other code bases.

One module a job, each importing only those above it in this list:

- :mod:`.safe_load`: the one reader of weight files (by content, without running code,
  finite), and their layouts (which code base wrote a file, where its weights are).
- :mod:`.download`: published files into the usual caches: resumed, hash-checked, mirrored.
- :mod:`.rename`: each source's names into Detectron2's, and the network they describe.
- :mod:`.catalog`: the published ImageNet weights by name, with their input conventions.
- :mod:`.convert`: the conversion: shape checks, the weights and their config snippet.
- :mod:`.verify`: the source model's features against the converted backbone's.
- :mod:`.resolve`: what ``MODEL.WEIGHTS`` names, as a local file in Detectron2's form.
- :mod:`.checkpointer`: Detectron2's checkpointer reading through these, saving atomically.
- :mod:`.fit`: does a weight file fit a model, checked before a run.
- :mod:`.conventions`: do a config's input conventions match those of its weights.
"""

from .catalog import PublishedWeights, find_published, published_weights
from .checkpointer import SafeDetectionCheckpointer
from .convert import Conversion, check_outputs, convert, write_detectron2_weights
from .rename import SOURCES, InputConventions, infer_spec
from .resolve import ResolvedWeights, fetch_weights, resolve_weights
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
    "PublishedWeights",
    "ResolvedWeights",
    "SafeDetectionCheckpointer",
    "UnsafePickleError",
    "check_finite_weights",
    "check_outputs",
    "compare_features",
    "convert",
    "fetch_weights",
    "find_published",
    "infer_spec",
    "load_pickle_safely",
    "load_weight_file",
    "published_weights",
    "read_weight_file",
    "resolve_weights",
    "write_detectron2_weights",
]
