"""Small helpers shared by the tools."""

from .visualize import draw_predictions

__all__ = ["draw_predictions"]
