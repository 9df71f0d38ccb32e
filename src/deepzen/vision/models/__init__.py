"""deepzen's image model zoo: LeNet-5 to ResNeXt and MobileNet v2, in plain ``torch.nn`` (no torchvision).

Every model is built by name and shares one interface (:class:`ImageClassifier`)::

    from deepzen.vision import models

    models.list("resnet*")                  # ['resnet101', 'resnet110', 'resnet152', ...]
    model = models.create("resnet18", num_classes=10, in_channels=1)
    features = model.forward_features(x)    # (N, 512, H/32, W/32)
    model.reset_classifier(7)               # transfer learning: new head, same backbone
    same = models.create(**model.get_config())

``create(name, weights="file.pth")`` loads a state dict in deepzen's names or in torchvision's (ResNet,
ResNeXt, VGG, AlexNet, MobileNet v2, Inception v3), mapped by name and checked tensor by tensor; nothing is downloaded.

ImageNet models default to 1000 classes and 3 channels and accept inputs down to
``model.min_input_size``; LeNet-5 defaults to 1x28x28 MNIST digits and the CIFAR ResNets
(resnet20 ... resnet110) to 10 classes.
"""

from deepzen.vision.models.registry import MODELS, create, list, register_model  # noqa: A004
from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.alexnet import AlexNet, alexnet
from deepzen.vision.models.googlenet import GoogLeNet, googlenet
from deepzen.vision.models.inception import InceptionV3, inception_v3
from deepzen.vision.models.lenet import LeNet5, lenet5
from deepzen.vision.models.mobilenet import MobileNetV1, MobileNetV2, mobilenet_v1, mobilenet_v2
from deepzen.vision.models.resnet import (
    BasicBlock, Bottleneck, ResNet, resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56,
    resnet101, resnet110, resnet152, resnext50_32x4d,
)
from deepzen.vision.models.vgg import (
    VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn,
)

# `list` is left out of __all__ so that `from deepzen.vision.models import *` never shadows the builtin.
__all__ = [
    "MODELS", "create", "register_model", "ImageClassifier",
    "AlexNet", "GoogLeNet", "InceptionV3", "LeNet5", "MobileNetV1", "MobileNetV2", "ResNet", "BasicBlock",
    "Bottleneck", "VGG",
    "alexnet", "googlenet", "inception_v3", "lenet5", "mobilenet_v1", "mobilenet_v2",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
]
