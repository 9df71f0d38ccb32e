"""Keras's model idioms checked against Keras's documented behaviour: functional subclasses, a Sequential that
builds as layers are added, summary() after a call, Input(batch_shape=), optimizer.apply in a custom step."""

import numpy as np
import pytest
import torch

import deepzen as keras
from deepzen import layers
from deepzen.training.functional import Functional


class StepCounting(keras.Model):
    """A functional subclass overriding train_step (the guide "Customizing what happens in fit()")."""

    def train_step(self, data):
        self.steps = getattr(self, "steps", 0) + 1
        return super().train_step(data)


def _graph():
    inputs = keras.Input(shape=(3,))
    return inputs, layers.Dense(1)(layers.Dense(4, activation="relu")(inputs))


def test_subclass_built_from_inputs_and_outputs_runs_its_own_train_step(tmp_path):
    model = StepCounting(*_graph())
    assert isinstance(model, StepCounting) and isinstance(model, Functional)
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.rand(32, 3), np.random.rand(32, 1)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert model.steps == 8  # 2 epochs of 4 batches: fit called the override
    keras.register_serializable(StepCounting)
    model.save(tmp_path / "m.deepzen")
    loaded = keras.load_model(tmp_path / "m.deepzen")
    assert type(loaded).__name__ == "StepCounting" and isinstance(loaded, StepCounting)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


def test_subclass_init_calling_super_with_inputs_and_outputs():
    class Regressor(keras.Model):
        def __init__(self, units):
            inputs = keras.Input(shape=(5,))
            outputs = layers.Dense(1)(layers.Dense(units)(inputs))
            super().__init__(inputs=inputs, outputs=outputs, name="regressor")
            self.units = units

    model = Regressor(7)
    assert model.units == 7 and model.name == "regressor" and model.count_params() == 5 * 7 + 7 + 7 + 1
    assert tuple(model(torch.zeros(2, 5)).shape) == (2, 1)


def test_unregistered_subclass_file_names_the_class_and_the_fix(tmp_path):
    class Unknown(keras.Model):
        pass

    model = Unknown(*_graph())
    model.save(tmp_path / "u.deepzen")
    with pytest.raises(keras.ModelFileError, match=r"'Unknown'.*custom_objects=\{'Unknown': cls\}"):
        keras.load_model(tmp_path / "u.deepzen")
    loaded = keras.load_model(tmp_path / "u.deepzen", custom_objects={"Unknown": Unknown})
    assert isinstance(loaded, Unknown)


def test_sequential_with_a_known_input_builds_as_layers_are_added():
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, name="hidden")])
    assert [layer.name for layer in model.layers] == ["hidden"]  # the InputLayer is not one of model.layers
    assert model.count_params() == 15  # weights exist before any data
    model.add(layers.Dense(2))
    assert model.output.shape == (None, 2) and model.inputs[0].shape == (None, 4)
    # Keras's feature extractor over a Sequential
    extractor = keras.Model(inputs=model.inputs, outputs=[layer.output for layer in model.layers])
    features = extractor(torch.ones(5, 4))
    assert [tuple(f.shape) for f in features] == [(5, 3), (5, 2)]
    torch.testing.assert_close(features[1], model(torch.ones(5, 4)))
    model.pop()
    assert model.output.shape == (None, 3) and len(model.layers) == 1


def test_a_layer_that_cannot_take_the_shape_fails_when_added():
    model = keras.Sequential([keras.Input(shape=(8, 8, 3)), layers.Flatten()])
    with pytest.raises(ValueError, match=r"Layer 'conv2d' \(Conv2D\) cannot be called on an input of shape "
                                         r"\(None, 192\)"):
        model.add(layers.Conv2D(4, 3, name="conv2d"))
    assert len(model.layers) == 1  # the refused layer was not added


def test_sequential_without_an_input_has_no_inputs_yet():
    model = keras.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match="no defined inputs yet: start it with deepzen.Input"):
        model.inputs


def test_summary_after_a_plain_call_needs_no_shape():
    model = keras.Sequential([layers.Dense(2, activation="relu"), layers.Dense(3)])
    model(torch.ones(1, 4))
    text = model.summary(print_fn=None)
    assert "Total params: 19" in text and "(None, 3)" in text  # (4*2+2) + (2*3+3)


def test_batch_shape_carries_into_output_shape_and_int_shapes_are_named():
    inputs = keras.Input(batch_shape=(16, 10, 5))
    model = keras.Model(inputs, layers.Dense(1)(layers.Conv1D(4, 3, data_format="channels_last")(inputs)))
    assert model.output_shape == (16, 8, 1)
    with pytest.raises(ValueError, match=r"shape as a tuple .* e\.g\. shape=\(784,\)\. Received: shape=784"):
        keras.Input(784)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_apply_matches_step(name):
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    second.load_state_dict(first.state_dict())
    x = torch.randn(8, 3)
    manual = keras.optimizers.get(name).build(first.parameters())
    spec = keras.optimizers.get(name)  # a spec: apply() builds the torch optimizer on first use, as in Keras
    for _ in range(3):
        manual.zero_grad()
        first(x).square().mean().backward()
        manual.step()
        weights = list(second.parameters())
        grads = torch.autograd.grad(second(x).square().mean(), weights)
        spec.apply(grads, weights)
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="one gradient per variable.*1 gradients for 2 variables"):
        manual.apply(grads[:1], list(first.parameters()))
    with pytest.raises(ValueError, match="of which 1 it does not update"):
        manual.apply([torch.zeros(2)], [torch.nn.Parameter(torch.zeros(2))])


def test_built_can_be_declared_as_in_keras():
    class Pair(keras.Model):
        def __init__(self):
            super().__init__()
            self.built = True

    assert Pair().built is True
    with pytest.raises(TypeError, match="built must be True or False"):
        Pair().built = "yes"


def test_a_torch_optimizer_given_to_compile_takes_keras_learning_rate():
    model = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(1)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
    assert model.optimizer is optimizer and isinstance(optimizer, torch.optim.SGD)
    model.optimizer.learning_rate = 0.01  # as a Keras callback would
    assert optimizer.param_groups[0]["lr"] == 0.01 and "learning_rate" not in optimizer.__dict__
