"""Layers: ``nn.Module``s with Keras names and lazy input shapes."""

from deepzen.layers.base import LAYERS, Layer
from deepzen.layers.core import Activation, Dense, Dropout, Flatten, Input, Reshape
from deepzen.layers.normalization import BatchNormalization, LayerNormalization
