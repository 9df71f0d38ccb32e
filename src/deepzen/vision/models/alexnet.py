"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), in its common single-GPU form.

The layer widths are those of Krizhevsky's "One weird trick for parallelizing convolutional
neural networks" (2014) — conv 64, 192, 384, 256, 256 — as in torchvision, without the 2012
paper's local response normalization and two-GPU split. An adaptive average pool to 6x6 before
the classifier lets inputs from 63x63 up work; at 224x224 it is the identity. 61.1M parameters.
"""

from __future__ import annotations

from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.registry import register_model


class AlexNet(ImageClassifier):
    """AlexNet: five convolutions, three max pools, three fully connected layers with dropout.

    Args:
        num_classes: output classes.
        in_channels: image channels.
        dropout: dropout rate before each hidden fully connected layer (0.5 in the paper).

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 63 (224 in the paper).

    Returns:
        (N, num_classes) logits.
    """

    min_input_size = 63
    # torchvision's AlexNet: the same ``features`` indices; its ``classifier`` Sequential holds the linear layers
    # at 1, 4 and 6, which are ``pre_logits`` 3 and 6 (after the pool and the flatten) and ``classifier`` here.
    torchvision_names = (
        (r"features\.(.+)", r"features.\1"),
        (r"classifier\.1\.(.+)", r"pre_logits.3.\1"),
        (r"classifier\.4\.(.+)", r"pre_logits.6.\1"),
        (r"classifier\.6\.(.+)", r"classifier.\1"),
    )

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),  # (N, 64, 55, 55) at 224x224
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # (N, 64, 27, 27)
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # (N, 192, 13, 13)
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # (N, 256, 6, 6)
        )
        self.pre_logits = nn.Sequential(
            nn.AdaptiveAvgPool2d(6),
            nn.Flatten(),  # (N, 9216)
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
        )
        self.num_features = 4096
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def alexnet(**kwargs) -> AlexNet:
    """AlexNet, 61.1M parameters at 1000 classes."""
    return AlexNet(**kwargs)
