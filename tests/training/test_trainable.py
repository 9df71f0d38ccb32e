"""``trainable = False`` as in Keras: frozen weights stay bit-identical in fit, summary counts them as
non-trainable, and a frozen BatchNormalization runs in inference mode."""

import numpy as np
import torch

from deepzen.layers import BatchNormalization, Dense
from deepzen.training.model import Model, Sequential


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 3)).astype("float32")
    return x, x.sum(1, keepdims=True)


def test_a_frozen_layer_is_bit_identical_after_fit_and_the_rest_trains():
    torch.manual_seed(0)
    model = Sequential([Dense(4, input_dim=3), Dense(1)])
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="mse")
    frozen = [p.detach().clone() for p in model.layers[0].parameters()]
    head = [p.detach().clone() for p in model.layers[1].parameters()]
    model.fit(*_data(), epochs=3, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.layers[0].parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(head, model.layers[1].parameters()))
    assert all(id(p) not in {id(q) for g in model.optimizer.param_groups for q in g["params"]}
               for p in model.layers[0].parameters())


def test_summary_and_weight_lists_count_frozen_weights_as_non_trainable():
    model = Sequential([Dense(4, input_dim=3), Dense(1)])
    model.build()
    model.layers[0].trainable = False
    text = model.summary(print_fn=None)
    assert "Total params: 21" in text and "Trainable params: 5" in text and "Non-trainable params: 16" in text
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    assert model.layers[0].trainable is False and model.trainable is True
    model.layers[0].trainable = True
    assert "Trainable params: 21" in model.summary(print_fn=None)


def test_model_trainable_false_freezes_a_base_inside_a_bigger_model_with_batchnorm_in_inference_mode():
    torch.manual_seed(0)
    base = Sequential([Dense(8, input_dim=3), BatchNormalization()], name="base")
    base.build()
    base.trainable = False
    model = Sequential([base, Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    before = [t.detach().clone() for t in base.weights]  # kernel, bias, gamma, beta and moving statistics
    assert len(before) == 6
    model.fit(*_data(), epochs=2, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, base.weights))
    model.train()
    assert not base.layers[1].training and base.layers[0].training is True
    # Keras's summary: the moving statistics count as non-trainable weights
    assert "Trainable params: 9" in model.summary(print_fn=None)


def test_trainable_set_before_a_lazy_layer_builds_still_freezes_it():
    torch.manual_seed(0)
    model = Sequential([Dense(4), Dense(1)])
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="mse")
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    frozen = [p.detach().clone() for p in model.layers[0].parameters()]
    assert frozen and all(not p.requires_grad for p in model.layers[0].parameters())
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.layers[0].parameters()))


def test_unfreezing_takes_effect_at_the_next_compile():
    torch.manual_seed(0)
    model = Model(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)))
    model.trainable = False
    model.trainable = True
    model.layers[0].requires_grad_(False)  # a torch module can be frozen torch's way too
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[0].weight.detach().clone()
    model.fit(*_data(), epochs=1, verbose=0)
    assert torch.equal(before, model.layers[0].weight)
