"""Transfer learning: freezing keeps weights (and batch-norm statistics) fixed through fit, heads are
replaced, features are extracted, and fine-tuning's param groups step at their own learning rates."""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pytest
import torch
from torch import nn

import deepzen
from deepzen.models import Model
from deepzen.vision import models
from deepzen.vision.tasks import classification_loss
from deepzen.vision.transfer import (extract_features, feature_classifier, fine_tuning_groups, fine_tuning_optimizer,
                                     freeze, frozen_parameters, reinitialize, replace_head, unfreeze)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def fit_briefly(net: nn.Module, optimizer="adam", steps: int = 3, size: int = 28, channels: int = 1):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16 * steps, channels, size, size)).astype(np.float32)
    y = rng.integers(0, net.num_classes, 16 * steps)
    model = Model(net)
    model.compile(optimizer=optimizer, loss=classification_loss())
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model


def test_freeze_up_to_a_layer_keeps_those_weights_through_fit():
    deepzen.seed(0)
    net = models.create("lenet5")
    frozen = freeze(net, up_to="features")
    assert frozen == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]
    assert frozen_parameters(net) == frozen
    before = snapshot(net)
    fit_briefly(net, deepzen.optimizers.Adam(learning_rate=1e-2, weight_decay=0.1))
    after = net.state_dict()
    for key in before:
        assert torch.equal(before[key], after[key]) == (key in frozen), key


def test_freeze_by_names_and_unfreeze():
    net = models.create("lenet5")
    assert freeze(net, ["features.3", "classifier"]) == ["features.3.weight", "features.3.bias",
                                                         "classifier.weight", "classifier.bias"]
    assert unfreeze(net, "classifier") == ["classifier.weight", "classifier.bias"]
    assert frozen_parameters(net) == ["features.3.weight", "features.3.bias"]
    freeze(net)
    assert len(frozen_parameters(net)) == len(list(net.parameters()))
    unfreeze(net)
    assert frozen_parameters(net) == []


def test_unknown_layer_names_are_listed():
    net = models.create("lenet5")
    with pytest.raises(ValueError, match="features, features.0.*Received: 'conv1'"):
        freeze(net, ["conv1"])
    with pytest.raises(ValueError, match="not both"):
        freeze(net, ["features"], up_to="features")


def test_frozen_batch_norm_keeps_its_statistics_until_unfrozen():
    deepzen.seed(0)
    net = models.create("resnet20", num_classes=3, in_channels=1)
    freeze(net, up_to="features.layer1")
    stem_bn, later_bn = net.features.stem.bn, net.features.layer2[0].bn1
    before = snapshot(net)
    fit_briefly(net, size=8)
    after = net.state_dict()
    for key in before:
        under_layer1 = key.startswith(("features.stem.", "features.layer1."))
        assert torch.equal(before[key], after[key]) == under_layer1, key  # weights and running statistics
    assert not stem_bn.training and later_bn.training  # fit set train mode; the frozen layer stayed in eval
    copy = deepcopy(net)
    freeze(net)  # twice frozen, once unfrozen: the layer trains again
    unfreeze(copy)
    copy.train()(torch.randn(2, 1, 8, 8))
    assert copy.features.stem.bn.training  # a copy of a frozen network unfreezes too
    unfreeze(net)
    running = stem_bn.running_mean.clone()
    fit_briefly(net, size=8)
    assert not torch.equal(running, stem_bn.running_mean)


def test_replace_head_of_a_zoo_model_keeps_the_backbone():
    net = models.create("resnet20", num_classes=10, in_channels=1)
    freeze(net)
    backbone = {key: value.clone() for key, value in net.state_dict().items() if not key.startswith("classifier")}
    head = replace_head(net, 4)
    assert head is net.classifier and head.out_features == 4 and head.in_features == net.num_features
    assert all(p.requires_grad for p in head.parameters())
    state = net.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in backbone.items())
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_replace_head_of_any_module_replaces_the_last_linear():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 5, bias=False)))
    first = net[1]
    head = replace_head(net, 3)
    assert net[3][0] is head and head.in_features == 8 and head.out_features == 3 and head.bias is None
    assert net[1] is first
    assert net(torch.randn(2, 3, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="nn.Linear head"):
        replace_head(nn.Conv2d(1, 1, 3), 2)


def test_extract_features_is_the_trunk_output_in_eval_mode():
    deepzen.seed(0)
    net = models.create("resnet20", num_classes=10, in_channels=1)
    x = torch.randn(5, 1, 8, 8)
    net.train()
    features = extract_features(net, x.numpy(), batch_size=2)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        expected = net.forward_features(x).flatten(1)
        pre_logits = net.forward_head(net.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(extract_features(net, x, layer="pre_logits"), pre_logits.numpy(), rtol=1e-5, atol=1e-6)
    assert features.shape == (5, 64 * 2 * 2) and pre_logits.shape == (5, 64)
    with pytest.raises(ValueError, match="layer='logits'"):
        extract_features(net, x, layer="logits")


def test_feature_classifier_learns_from_features():
    deepzen.seed(0)
    rng = np.random.default_rng(0)
    features = rng.standard_normal((64, 10)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(np.int64) + 2 * (features[:, 1] > 0)
    classifier = feature_classifier(10, 4, hidden=(16,), dropout=0.1)
    classifier.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.02), loss=classification_loss(),
                       metrics=["accuracy"])
    history = classifier.fit(features, labels, batch_size=16, epochs=60, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert classifier.predict(features).shape == (64, 4)


def test_fine_tuning_groups_step_at_their_own_learning_rates():
    deepzen.seed(0)
    net = models.create("lenet5")
    freeze(net, "features.0")
    groups = fine_tuning_groups(net, 0.5, backbone_factor=0.1)
    assert [group["lr"] for group in groups] == [0.05, 0.5]
    head = {id(p) for p in net.classifier.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head
    frozen = {id(p) for p in net.features[0].parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.parameters()} - head - frozen

    optimizer = fine_tuning_optimizer(net, "sgd", learning_rate=0.5, backbone_factor=0.1)
    assert [group["lr"] for group in optimizer.param_groups] == [0.05, 0.5]
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    loss = net(torch.randn(4, 1, 28, 28)).square().mean()
    loss.backward()
    optimizer.step()
    for name, parameter in net.named_parameters():
        rate = 0.0 if name.startswith("features.0") else 0.5 if name.startswith("classifier") else 0.05
        step = 0.0 if parameter.grad is None else rate * parameter.grad
        torch.testing.assert_close(parameter.detach(), before[name] - step)


def test_reinitialize_draws_fresh_weights_for_the_named_layers_only():
    torch.manual_seed(0)
    net = models.create("lenet5")
    before = snapshot(net)
    assert reinitialize(net, "pre_logits") == ["pre_logits.1", "pre_logits.3"]
    after = net.state_dict()
    for key in before:
        assert torch.equal(before[key], after[key]) == (not key.startswith("pre_logits")), key
    bound = 1 / np.sqrt(400)  # PyTorch's fan-in uniform initialization of F5
    assert float(net.pre_logits[1].weight.detach().abs().max()) <= bound


def test_fine_tuning_groups_with_a_wider_head():
    net = models.create("lenet5")
    backbone, head = fine_tuning_groups(net, 1.0, backbone_factor=0.25, head=("pre_logits", "classifier"))
    assert (backbone["lr"], head["lr"]) == (0.25, 1.0)
    assert {id(p) for p in backbone["params"]} == {id(p) for p in net.features.parameters()}
    assert {id(p) for p in head["params"]} == ({id(p) for p in net.pre_logits.parameters()}
                                               | {id(p) for p in net.classifier.parameters()})
    with pytest.raises(ValueError, match="'head'"):
        fine_tuning_groups(net, 1.0, head="head")


def test_fine_tuning_through_compile_and_fit():
    deepzen.seed(0)
    net = models.create("lenet5")
    replace_head(net, 3)
    before = snapshot(net)
    model = Model(net)
    model.compile(optimizer=fine_tuning_optimizer(net, "adam", learning_rate=1e-3, backbone_factor=0.0),
                  loss=classification_loss())
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((32, 1, 28, 28)).astype(np.float32), rng.integers(0, 3, 32), batch_size=16,
              epochs=1, verbose=0)
    after = net.state_dict()
    for key in before:  # a zero backbone rate leaves the backbone exactly where it was
        assert torch.equal(before[key], after[key]) == (not key.startswith("classifier")), key
