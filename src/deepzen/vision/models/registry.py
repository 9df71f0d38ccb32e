"""The model zoo's registry: ``create("resnet18", num_classes=10)`` and ``list()``, in the style of timm.

Every architecture file defines tiny constructors decorated with :func:`register_model`; the
decorator records the name and keyword arguments on the model so that ``model.get_config()`` can
rebuild it with ``create(**config)``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from typing import Callable, Mapping, TypeVar

import torch

from deepzen._registry import Registry

MODELS: Registry[Callable] = Registry("model")

Constructor = TypeVar("Constructor", bound=Callable)


def register_model(constructor: Constructor) -> Constructor:
    """Registers a model constructor under its function name.

    The constructor takes keyword arguments only. The returned model remembers its name and the
    arguments it was built with, which :meth:`ImageClassifier.get_config` reports.

    Example (from ``resnet.py``)::

        @register_model
        def resnet18(**kwargs) -> ResNet:
            return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)
    """

    @functools.wraps(constructor)
    def build(**kwargs):
        model = constructor(**kwargs)
        model.model_config = {"name": constructor.__name__, **kwargs}
        return model

    MODELS.register(constructor.__name__, build)
    return build


def create(name: str, *, num_classes: int | None = None, in_channels: int | None = None,
           weights: "str | os.PathLike | Mapping[str, torch.Tensor] | None" = None, **kwargs):
    """Builds a registered model by name, optionally with weights from a file (deepzen's or torchvision's).

    Args:
        name: a name from :func:`list` (case-insensitive, "-" and "_" alike).
        num_classes: width of the classifier output (default: the model's own, e.g. 1000 for the
            ImageNet models, 10 for LeNet-5 and the CIFAR ResNets); 0 gives a feature extractor.
        in_channels: channels of the input images (default: the model's own, 3 or 1 for LeNet-5).
        weights: a state dict file (``.pth``/``.pt``/``.safetensors``) or mapping, in deepzen's names or in
            torchvision's for ResNet/ResNeXt, VGG, AlexNet, MobileNet v2 and Inception v3:
            ``create("resnet50", weights="resnet50.pth")`` loads torchvision's ImageNet ResNet-50 file.
            Nothing is downloaded; every tensor is checked (see :meth:`~deepzen.vision.models.base.ImageClassifier.load_weights`).
        **kwargs: architecture options of that model, e.g. ``aux_logits=True`` or
            ``width_multiplier=0.5``.

    Returns:
        An :class:`~deepzen.vision.models.base.ImageClassifier`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or weights that do not fit (the
            message names the missing and unexpected keys and the shapes that differ).

    Example:
        >>> from deepzen.vision import models
        >>> model = models.create("resnet20", num_classes=10, in_channels=1)
        >>> model.get_config()
        {'name': 'resnet20', 'num_classes': 10, 'in_channels': 1}
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    model = MODELS.get(name)(**kwargs)
    return model if weights is None else model.load_weights(weights)


def list(pattern: str = "*") -> "list[str]":  # noqa: A001 - timm-style `models.list()`
    """Names of the registered models, sorted; ``pattern`` filters shell-style (``"resnet*"``)."""
    return [name for name in MODELS.names() if fnmatch.fnmatch(name, pattern)]
