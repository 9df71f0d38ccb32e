"""The interface every deepzen image model shares, so transfer learning works the same for all.

A model is ``features`` (the convolutional trunk) -> ``pre_logits`` (pooling, flattening and,
for LeNet/AlexNet/VGG, the hidden fully connected layers) -> ``classifier`` (the last linear
layer). Subclasses build those three modules; this base class supplies the rest::

    features = model.forward_features(x)   # (N, C, H, W) -> (N, C', H', W') feature map
    logits = model.forward_head(features)  # -> (N, num_classes)
    model.reset_classifier(7)              # new 7-way classifier, backbone weights kept
    optimizer = torch.optim.SGD([
        {"params": model.backbone_parameters(), "lr": 1e-3},
        {"params": model.head_parameters(), "lr": 1e-2},
    ])
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from deepzen.serializable import register_serializable

StateDict = Mapping[str, torch.Tensor]


class ImageClassifier(nn.Module):
    """Base class of the model zoo.

    Subclasses set ``self.features``, ``self.pre_logits``, ``self.num_features`` (the width of
    the pre-logits vector), ``self.classifier = self.make_classifier(num_features, num_classes)``
    and ``self.min_input_size``. Models with auxiliary classifiers (GoogLeNet, Inception v3) add
    them to ``self.aux_heads`` keyed by the name of the ``features`` child whose output they read;
    each aux head has its own ``num_features`` and ``classifier``.

    Args:
        num_classes: output width of the classifier; 0 makes ``classifier`` the identity.
        in_channels: channels of the input images.

    Attributes:
        num_features: width of the vector the classifier reads (``forward_head(f, pre_logits=True)``).
        min_input_size: the smallest input height/width for which no layer works on less than a
            whole pixel (the total stride, or more where unpadded convolutions shrink the map).
        model_config: name and arguments the model was created with (set by ``register_model``).
    """

    num_features: int
    min_input_size: int
    # How torchvision names this architecture's tensors: (regular expression, replacement) pairs; the first
    # pattern that matches the whole torchvision key gives the deepzen key. Empty: no torchvision counterpart.
    torchvision_names: tuple[tuple[str, str], ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_serializable(cls)  # so load_model can rebuild zoo models from a saved config

    def __init__(self, *, num_classes: int, in_channels: int):
        super().__init__()
        _check_count(in_channels, "in_channels", allow_zero=False)
        _check_count(num_classes, "num_classes", allow_zero=True)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_heads = nn.ModuleDict()  # empty unless the model was built with auxiliary classifiers
        self.model_config: dict[str, Any] | None = None  # set by register_model

    @staticmethod
    def make_classifier(num_features: int, num_classes: int) -> nn.Module:
        """``nn.Linear(num_features, num_classes)``, or ``nn.Identity()`` for ``num_classes=0``."""
        return nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) images -> (N, C, H', W') feature map of the trunk."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> (N, num_classes) logits, or the (N, num_features) vector before them."""
        x = self.pre_logits(features)  # (N, num_features)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(N, in_channels, H, W) -> (N, num_classes) logits.

        With auxiliary classifiers and in training mode, returns ``(logits, *aux_logits)`` so the
        loss can weight them (GoogLeNet: 0.3 each); in eval mode only the logits.
        """
        if not (self.training and self.aux_heads):
            return self.forward_head(self.forward_features(x))
        aux_logits = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in self.aux_heads:
                aux_logits.append(self.aux_heads[name](x))
        return (self.forward_head(x), *aux_logits)

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the classifier (and those of the aux heads) by a new ``num_classes``-way one.

        Everything else keeps its weights; the new layer gets PyTorch's default initialization
        and the device and dtype of the old parameters. ``num_classes=0`` removes the classifier,
        so ``forward`` returns the (N, num_features) pre-logits vector.
        """
        _check_count(num_classes, "num_classes", allow_zero=True)
        reference = next(self.parameters())
        for head in (self, *self.aux_heads.values()):
            head.classifier = self.make_classifier(head.num_features, num_classes).to(reference)
        self.num_classes = num_classes

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the layers :meth:`reset_classifier` replaces (the new task's head)."""
        for head in (self, *self.aux_heads.values()):
            yield from head.classifier.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """All other parameters: the ones a transfer-learning run freezes or trains slowly."""
        head = {id(p) for p in self.head_parameters()}
        return (p for p in self.parameters() if id(p) not in head)

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., **arguments}`` such that ``create(**config)`` rebuilds this architecture."""
        if self.model_config is None:
            raise ValueError(f"{type(self).__name__}.get_config: expected a model built by "
                             f"deepzen.vision.models.create(...) or a registered constructor. "
                             f"Received: a {type(self).__name__} built directly from its class")
        return {**self.model_config, "num_classes": self.num_classes, "in_channels": self.in_channels}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ImageClassifier":
        from deepzen.vision.models.registry import create

        return create(**config)

    def load_weights(self, weights: str | os.PathLike | StateDict) -> "ImageClassifier":
        """Loads a state dict in deepzen's names or in torchvision's (mapped by name), checking every tensor.

        torchvision's files (``resnet50-11ad3fa6.pth``, ``vgg16-397923af.pth``, ...) load into the model of
        the same architecture (the classes whose ``torchvision_names`` map the names); older files without
        BatchNorm's ``num_batches_tracked`` load too. Nothing is downloaded: ``weights`` is a file you have
        (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or ``.safetensors``) or a state dict.

        Args:
            weights: a path or a ``{name: tensor}`` mapping.

        Returns:
            The model itself.

        Raises:
            ValueError: the tensors do not fit: the message names the missing and unexpected keys and every
                shape that differs (a file's 1000-class classifier into a ``num_classes=10`` model: create it
                with ``num_classes=1000`` and call ``reset_classifier(10)`` after loading).
        """
        source = str(weights) if isinstance(weights, (str, os.PathLike)) else "the state dict"
        state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else dict(weights)
        bad = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
        if bad:
            raise ValueError(f"{source}: expected a state dict of name -> tensor. Received entries such as {bad[:3]}")
        own = self.state_dict()
        # Read the keys as deepzen's names and, for architectures with a map, as torchvision's; keep the reading
        # that fits best (VGG and AlexNet share their ``features`` names with torchvision, so no key decides).
        readings = [self._check_reading("deepzen's names", {key: key for key in state}, [], state, own)]
        if self.torchvision_names:
            names, unmatched = self._torchvision_to_deepzen(state)
            readings.append(self._check_reading("torchvision's names, mapped", names, unmatched, state, own))
        origin, names, problems = min(readings, key=lambda reading: sum(map(len, reading[2].values())))
        if any(problems.values()):
            listed = [f"{label} ({len(keys)}): {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}"
                      for label, keys in problems.items() if keys]
            hint = (" For another number of classes, create the model with the file's and call reset_classifier(n) "
                    "after loading." if any(key.startswith("classifier.") for key in problems["shapes differ"]) else "")
            name = (self.model_config or {}).get("name", type(self).__name__)
            raise ValueError(f"{name}: the weights in {source} ({origin}) do not fit the model. "
                             f"{'; '.join(listed)}.{hint}")
        # Every key was checked above; num_batches_tracked may be absent (torchvision's older files).
        self.load_state_dict({key: state[file_key] for key, file_key in names.items()}, strict=False)
        return self

    @staticmethod
    def _check_reading(origin: str, names: dict[str, str], unmatched: list[str], state: Mapping[str, torch.Tensor],
                       own: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, str], dict[str, list[str]]]:
        """``(origin, {deepzen key: file key}, problems)`` of one way of reading the file's keys."""
        optional = {key for key in own if key.endswith(".num_batches_tracked")}
        mismatched = [key for key in own if key in names and state[names[key]].shape != own[key].shape]
        problems = {
            "missing": [key for key in own if key not in names and key not in optional],
            "unexpected": [file_key for key, file_key in names.items() if key not in own] + unmatched,
            "shapes differ": [f"{key}{'' if names[key] == key else f' (file: {names[key]})'} is "
                              f"{tuple(state[names[key]].shape)} in the file, {tuple(own[key].shape)} in the model"
                              for key in mismatched],
        }
        return origin, names, problems

    def _torchvision_to_deepzen(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, str], list[str]]:
        """``({deepzen key: torchvision key}, keys no rule matches)`` by :attr:`torchvision_names`.

        A key whose deepzen name another key already took counts as unmatched (never loaded over it).
        """
        names, unmatched = {}, []
        for key in state:
            target = next((re.sub(f"^(?:{pattern})$", replacement, key)
                           for pattern, replacement in self.torchvision_names if re.fullmatch(pattern, key)), None)
            if target is None or target in names:
                unmatched.append(key)
            else:
                names[target] = key
        return names, unmatched

    def init_weights(self) -> None:
        """He-normal convolutions (fan-out, for the ReLUs after them) with zero bias.

        BatchNorm starts at scale 1 and shift 0 and linear layers keep PyTorch's fan-in scaled
        uniform initialization, which is already what they get at construction (re-drawing the
        100M weights of VGG's first linear layer would double its construction time).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def _check_count(value: Any, name: str, *, allow_zero: bool) -> None:
    lowest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"Expected {name} to be {kind} integer. Received: {name}={value!r}")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``{name: tensor}`` file: ``.safetensors``, or a PyTorch pickle read with ``weights_only=True``
    (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several kinds for a file that is not a state dict
        raise ValueError(f"{path}: not a PyTorch state dict file that loads with weights_only=True ({error})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor). Received: {type(state).__name__}")
    return dict(state)
