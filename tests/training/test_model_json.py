"""``clone_model`` and ``model.to_json()`` / ``model_from_json``: the architecture without the weights,
through the same registry as model files (only registered classes are built)."""

import json

import numpy as np
import pytest
import torch

import deepzen
from deepzen.layers import Dense, Dropout, Layer
from deepzen.models import Model, Sequential, clone_model, model_from_json


class Scale(Layer):  # a user's layer in Keras's style: registered when defined, config from its arguments
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal")

    def call(self, inputs):
        return inputs * self.w * self.factor


def _functional():
    inputs = deepzen.Input((3,), name="x")
    hidden = Dense(4, activation="relu")(inputs)
    return Model(inputs, Dense(2)(Scale(3.0)(hidden)), name="graph")


@pytest.mark.parametrize("make", [
    lambda: Sequential([Dense(4, input_dim=3, activation="relu"), Dropout(0.1), Dense(1)]),
    _functional,
])
def test_clone_model_has_the_architecture_and_new_weights(make):
    torch.manual_seed(0)
    model = make()
    model(torch.ones(2, 3))
    model.build_for(torch.ones(2, 3))
    clone = clone_model(model)
    assert type(clone) is type(model) and clone is not model
    assert clone.built and [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]
    assert not any(torch.equal(a, b) for a, b in zip(clone.weights, model.weights) if a.dim() > 1)  # kernels
    assert not set(map(id, clone.parameters())) & set(map(id, model.parameters()))
    clone.set_weights(model.get_weights())
    model.eval(), clone.eval()
    torch.testing.assert_close(clone(torch.ones(5, 3)), model(torch.ones(5, 3)))
    clone.compile(optimizer="sgd", loss="mse")  # a clone is not compiled; it trains on its own
    clone.fit(np.ones((4, 3)), np.zeros((4, clone(torch.ones(1, 3)).shape[-1])), verbose=0)


def test_clone_of_an_unbuilt_model_builds_lazily():
    clone = clone_model(Sequential([Dense(4), Dense(1)]))
    assert not clone.built
    assert tuple(clone(torch.ones(2, 7)).shape) == (2, 1)


@pytest.mark.parametrize("make", [
    lambda: Sequential([Dense(4, input_dim=3, activation="relu"), Dropout(0.1), Dense(1)], name="mlp"),
    _functional,
])
def test_to_json_round_trip(make):
    model = make()
    json_string = model.to_json()
    config = json.loads(json_string)
    assert config["class"] == type(model).__name__
    rebuilt = model_from_json(json_string)
    assert type(rebuilt) is type(model) and rebuilt.name == model.name
    assert rebuilt.to_json() == json_string
    rebuilt(torch.ones(2, 3))
    model(torch.ones(2, 3))
    assert [tuple(w.shape) for w in rebuilt.weights] == [tuple(w.shape) for w in model.weights]
    assert json.loads(model.to_json(indent=2)) == config


def test_model_from_json_builds_registered_classes_only():
    config = json.loads(Sequential([Dense(2)]).to_json())
    config["config"]["layers"][0]["class"] = "os.system"
    with pytest.raises(ValueError, match="not registered"):
        model_from_json(json.dumps(config))
    with pytest.raises(ValueError, match="JSON string"):
        model_from_json("{not json")


def test_models_without_a_config_are_refused_with_a_clear_message():
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    for model in (Model(torch.nn.Linear(2, 2)), Net()):
        with pytest.raises(ValueError, match="config"):
            model.to_json()
        with pytest.raises(ValueError, match="config"):
            clone_model(model)
