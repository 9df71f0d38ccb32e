"""Tests of the model zoo, driven by the registry: a newly registered model is tested automatically.

Parameter counts and config round trips only need construction, done on the meta device (no
memory, no initialization); forward passes run on real weights at each model's smallest input.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from deepzen.vision import models
from deepzen.vision.models import registry
from deepzen.vision.models.resnet import ZeroPadShortcut

NAMES = models.list()

# torchvision's GoogLeNet (6,624,904 parameters) uses 3x3 kernels in the "5x5" branch
# (pytorch/vision#906); the paper's 5x5 kernels add (25 - 9) * reduce * out weights in each of
# its nine Inception modules, whose (5x5 reduce, 5x5) widths are those of the paper's Table 1.
GOOGLENET_5X5_WIDTHS = ((16, 32), (32, 96), (16, 48), (24, 64), (24, 64), (32, 64), (32, 128), (32, 128), (48, 128))

# Published parameter counts at each model's default configuration (ImageNet models: 1000
# classes, 3 channels; CIFAR ResNets: 10 classes; LeNet-5: 1 channel, 10 classes). Integers are
# exact counts (torchvision's model documentation); "x.xxM" strings are figures printed in the
# papers, matched to the precision they were printed with.
PUBLISHED: dict[str, int | str] = {
    "alexnet": 61_100_840,
    "googlenet": 6_624_904 + (25 - 9) * sum(reduce * out for reduce, out in GOOGLENET_5X5_WIDTHS),
    "inception_v3": 27_161_264,  # torchvision counts the auxiliary classifier: see COUNT_KWARGS
    # LeNet-5 as commonly implemented: C1, C3, F5, F6, output, each (fan_in + 1) * units.
    "lenet5": (5 * 5 * 1 + 1) * 6 + (5 * 5 * 6 + 1) * 16 + (400 + 1) * 120 + (120 + 1) * 84 + (84 + 1) * 10,
    "mobilenet_v1": "4.2M",  # Howard et al. 2017, Table 8 (1.0 MobileNet-224)
    "mobilenet_v2": 3_504_872,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnet20": "0.27M",  # He et al. 2016, Table 6
    "resnet32": "0.46M",
    "resnet44": "0.66M",
    "resnet56": "0.85M",
    "resnet110": "1.7M",
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
COUNT_KWARGS = {"inception_v3": {"aux_logits": True}}
AUX_MODELS = {"googlenet": 2, "inception_v3": 1}  # number of auxiliary classifiers with aux_logits=True


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matches_published(count: int, figure: int | str) -> bool:
    if isinstance(figure, int):
        return count == figure
    millions = figure.removesuffix("M")
    return round(count / 1e6, len(millions.partition(".")[2])) == float(millions)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_published_figure(name):
    assert name in PUBLISHED, f"add the published parameter count of {name!r} to PUBLISHED"
    with torch.device("meta"):
        model = models.create(name, **COUNT_KWARGS.get(name, {}))
    count = count_parameters(model)
    assert matches_published(count, PUBLISHED[name]), f"{name}: {count:,} parameters, published {PUBLISHED[name]}"


def test_aux_classifiers_are_off_by_default_and_counted_when_on():
    with torch.device("meta"):
        plain, with_aux = models.create("inception_v3"), models.create("inception_v3", aux_logits=True)
    assert count_parameters(plain) == count_parameters(with_aux) - count_parameters(with_aux.aux_heads)
    assert count_parameters(with_aux.aux_heads) > 0 and len(plain.aux_heads) == 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    """A real (initialized) 5-class, 1-channel model in eval mode; pytest builds each one once."""
    torch.manual_seed(0)
    return request.param, models.create(request.param, num_classes=5, in_channels=1).eval()


def small_input(model: models.ImageClassifier, batch: int = 2) -> torch.Tensor:
    size = model.min_input_size
    return torch.randn(batch, model.in_channels, size, size)


def test_forward_shape_and_interface(built):
    name, model = built
    x = small_input(model)
    called = set()
    hooks = [module.register_forward_hook(lambda m, i, o: called.add(m))
             for module in model.modules() if any(True for _ in module.parameters(recurse=False))]
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    assert len(called) == len(hooks), f"{name}: some layers with parameters take no part in forward"
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.ndim == 4 and features.shape[0] == 2
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(features), logits)


def test_reset_classifier_changes_width_and_keeps_backbone(built):
    name, model = built
    x = small_input(model)
    before = dict(model.named_parameters())
    versions = {key: p._version for key, p in before.items()}  # bumped by any in-place change
    with torch.no_grad():
        features = model.forward_features(x)
    model.reset_classifier(7)
    try:
        with torch.no_grad():
            assert model(x).shape == (2, 7)
            torch.testing.assert_close(model.forward_features(x), features, rtol=0, atol=0)
        after = dict(model.named_parameters())
        assert after.keys() == before.keys()
        for key, p in after.items():
            if key.startswith("classifier."):
                assert p.shape[0] == 7 and p.shape[1:] == before[key].shape[1:]
            else:
                assert p is before[key] and p._version == versions[key], key
        head = {id(p) for p in model.head_parameters()}
        backbone = {id(p) for p in model.backbone_parameters()}
        assert head == {id(p) for p in model.classifier.parameters()}
        assert not head & backbone and head | backbone == {id(p) for p in model.parameters()}
        model.reset_classifier(0)  # feature extractor
        with torch.no_grad():
            assert model(x).shape == (2, model.num_features)
    finally:
        model.reset_classifier(5)  # the fixture is shared with the other tests of this model


@pytest.mark.parametrize("name", NAMES)
def test_get_config_round_trips_through_create(name):
    with torch.device("meta"):
        model = models.create(name, num_classes=5, in_channels=1)
        model.reset_classifier(3)
        config = model.get_config()
        rebuilt = models.create(**config)
    assert config["name"] == name and config["num_classes"] == 3 and config["in_channels"] == 1
    assert type(rebuilt) is type(model)
    assert shapes(rebuilt) == shapes(model)


@pytest.mark.parametrize("name, kwargs", [
    ("mobilenet_v1", {"width_multiplier": 0.5}),
    ("lenet5", {"input_size": 32, "activation": "tanh", "pooling": "avg"}),
    ("googlenet", {"aux_logits": True}),
])
def test_get_config_keeps_architecture_options(name, kwargs):
    with torch.device("meta"):
        model = models.create(name, **kwargs)
        rebuilt = models.create(**model.get_config())
        default = models.create(name)
    assert model.get_config().items() >= kwargs.items()
    assert repr(rebuilt) == repr(model) != repr(default)  # the module trees show widths, activations, heads
    assert shapes(rebuilt) == shapes(model)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="Unknown model 'resnet19'") as error:
        models.create("resnet19")
    assert all(name in str(error.value) for name in NAMES)


def test_list_filters_by_pattern():
    assert models.list("vgg*") == [name for name in NAMES if name.startswith("vgg")]
    assert len(models.list("vgg*")) == 8


@pytest.mark.parametrize("name", sorted(AUX_MODELS))
def test_aux_classifiers_add_outputs_in_training_mode_only(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=5, aux_logits=True)
    x = small_input(model)
    outputs = model.train()(x)
    assert isinstance(outputs, tuple) and len(outputs) == 1 + AUX_MODELS[name]
    assert all(output.shape == (2, 5) for output in outputs)
    sum(output.sum() for output in outputs).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.reset_classifier(7)
    assert model(x)[-1].shape == (2, 7)
    assert model.eval()(x).shape == (2, 7)
    assert len(list(model.head_parameters())) == 2 * (1 + AUX_MODELS[name])  # weight and bias per head


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 16, 7, 7)
    expected = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)
    torch.testing.assert_close(ZeroPadShortcut(16, stride=2)(x), expected, rtol=0, atol=0)


def test_lenet5_classic_variant_and_input_size_check():
    model = models.create("lenet5", input_size=32, activation="tanh", pooling="avg")
    kinds = {type(module) for module in model.modules()}
    assert {nn.Tanh, nn.AvgPool2d} <= kinds and not {nn.ReLU, nn.MaxPool2d} & kinds
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    expected = r"expected input of shape \(N, 1, 32, 32\). Received: x.shape=\(2, 1, 28, 28\)"
    with pytest.raises(ValueError, match=expected):
        model(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="activation.*Received: activation='sigmoid'"):
        models.create("lenet5", activation="sigmoid")


def test_invalid_num_classes_is_rejected():
    with pytest.raises(ValueError, match="Expected num_classes to be a non-negative integer. Received: num_classes=-1"):
        models.create("resnet20", num_classes=-1)


def test_docstring_examples_run():
    assert doctest.testmod(registry).failed == 0
