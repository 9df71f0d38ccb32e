"""deepzen.config.set_dtype_policy (Keras's global): the precision compile uses when given none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepzen
import deepzen.config
from deepzen.layers import Dense
from deepzen.models import Sequential


@pytest.fixture
def policy():
    yield deepzen.config.set_dtype_policy
    deepzen.config.set_dtype_policy("float32")


def test_the_policy_sets_compiles_precision_and_trains_under_bf16_autocast(policy):
    assert deepzen.config.dtype_policy() == "float32"
    policy("mixed_bfloat16")
    model = Sequential([Dense(8, input_dim=4, activation="relu"), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert model.engine.precision == "mixed_bfloat16"
    seen = []
    model.layers[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=(32, 1)).astype(np.float32),
              batch_size=16, epochs=1, verbose=0)
    assert seen[-2:] == [torch.bfloat16] * 2  # both training steps ran their matmuls in bfloat16 (the first
    # call is the build probe, outside the step)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    model.compile(optimizer="sgd", loss="mse", precision="float32")  # an explicit precision wins
    assert model.engine.precision == "float32"
    policy("float32")
    model.compile(optimizer="sgd", loss="mse")
    assert model.engine.autocast_dtype is None


def test_unknown_policies_are_refused(policy):
    with pytest.raises(ValueError, match="set_dtype_policy expects one of"):
        policy("bfloat17")
    assert deepzen.config.dtype_policy() == "float32"
