"""What the detection and the classification engines share: the batch rule, our hooks."""

from .batch import check_batch_split
from .hooks import FiniteWeightsCheckpointer

__all__ = ["FiniteWeightsCheckpointer", "check_batch_split"]
