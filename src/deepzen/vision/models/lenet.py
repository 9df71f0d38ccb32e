"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document recognition").

As it is commonly implemented: C1 conv 5x5x6 -> S2 pool -> C3 conv 5x5x16 -> S4 pool -> F5 120 ->
F6 84 -> classes. Differences from the paper, all standard: C3 connects to all six S2 maps (the
paper's sparse connection table has 1,516 weights here instead of 2,416), S2/S4 are plain pooling
(the paper's have a trainable coefficient and bias), and the output layer is linear (the paper's
is a layer of Euclidean RBF units). With 1 input channel and 10 classes it has 61,706 parameters.

The paper feeds 32x32 images: MNIST's 28x28 digits centred in a 32x32 field. ``input_size=28``
does the same by zero-padding the first convolution by 2, so C1 is 28x28 either way.

Defaults are ReLU and max pooling, which train faster than the paper's scaled tanh and average
subsampling; ``activation="tanh", pooling="avg"`` gives the classic variant.
"""

from __future__ import annotations

import torch
from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.registry import register_model

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
_POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
_PADDING_FOR_INPUT_SIZE = {28: 2, 32: 0}  # C1 produces 28x28 maps in both cases


class LeNet5(ImageClassifier):
    """LeNet-5 for 28x28 or 32x32 images.

    Args:
        num_classes: output classes.
        in_channels: image channels (1 for MNIST, 3 for CIFAR-10).
        input_size: 28 or 32, the input height and width.
        activation: "relu" or "tanh".
        pooling: "max" or "avg" (2x2, stride 2).

    Call arguments:
        x: (N, in_channels, input_size, input_size) images.

    Returns:
        (N, num_classes) logits.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 activation: str = "relu", pooling: str = "max"):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        for arg, value, valid in (("input_size", input_size, _PADDING_FOR_INPUT_SIZE),
                                  ("activation", activation, _ACTIVATIONS), ("pooling", pooling, _POOLINGS)):
            if value not in valid:
                raise ValueError(f"LeNet5: expected {arg} to be one of {', '.join(map(repr, valid))}. "
                                 f"Received: {arg}={value!r}")
        act, pool = _ACTIVATIONS[activation], _POOLINGS[pooling]
        self.input_size = self.min_input_size = input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=_PADDING_FOR_INPUT_SIZE[input_size]),  # C1: (N, 6, 28, 28)
            act(),
            pool(2),  # S2: (N, 6, 14, 14)
            nn.Conv2d(6, 16, 5),  # C3: (N, 16, 10, 10)
            act(),
            pool(2),  # S4: (N, 16, 5, 5)
        )
        self.pre_logits = nn.Sequential(
            nn.Flatten(),  # (N, 400)
            nn.Linear(16 * 5 * 5, 120),  # F5 (the paper's C5, a 5x5 convolution over 5x5 maps)
            act(),
            nn.Linear(120, 84),  # F6
            act(),
        )
        self.num_features = 84
        self.classifier = self.make_classifier(self.num_features, num_classes)
        # PyTorch's default initialization (uniform, scaled by fan-in like the paper's) suits
        # both tanh and ReLU, so no init_weights() here.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, input_size, input_size) -> (N, 16, 5, 5)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"LeNet5: expected input of shape (N, {self.in_channels}, {self.input_size}, "
                             f"{self.input_size}). Received: x.shape={tuple(x.shape)}")
        return self.features(x)


@register_model
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5; default 1x28x28 input (MNIST), 10 classes, ReLU and max pooling."""
    return LeNet5(**kwargs)
