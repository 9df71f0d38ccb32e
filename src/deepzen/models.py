"""Keras's import path for models: ``from deepzen.models import Sequential``."""

from deepzen.training.model import Model, Sequential
from deepzen.training.serialization import load_model

__all__ = ["Model", "Sequential", "load_model"]
