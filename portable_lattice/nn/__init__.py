"""Torch-only model zoo (never imported by the core)."""
from .rcnn import ResidualCNN

__all__ = ["ResidualCNN"]
