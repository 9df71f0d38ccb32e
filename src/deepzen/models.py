"""Keras's import path for models: ``from deepzen.models import Sequential``."""

from deepzen.training.functional import Functional
from deepzen.training.model import Model, Sequential
from deepzen.training.serialization import clone_model, load_model, model_from_json

__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json"]
