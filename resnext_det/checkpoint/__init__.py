"""Checkpoints: safe loading (and, later, weight conversion)."""

from .safe_load import SafeDetectionCheckpointer, UnsafePickleError, load_pickle_safely

__all__ = ["SafeDetectionCheckpointer", "UnsafePickleError", "load_pickle_safely"]
