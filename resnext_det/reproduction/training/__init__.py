"""What the detection and the classification engines share: the batch rule, the schedule
line, our hooks."""

from .batch import check_batch_split
from .hooks import FiniteWeightsCheckpointer
from .schedule import describe_schedule

__all__ = ["FiniteWeightsCheckpointer", "check_batch_split", "describe_schedule"]
