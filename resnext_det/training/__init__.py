"""What the detection and the classification engines share: Detectron2 hooks of ours."""

from .hooks import FiniteWeightsCheckpointer

__all__ = ["FiniteWeightsCheckpointer"]
