"""Lambda (and its registry), Identity, Masking, TimeDistributed and InputLayer, as Keras documents them."""

import doctest

import pytest
import torch

from deepzen.layers import input_layer, lambda_layer, masking, wrappers
from deepzen.layers.core import Dense
from deepzen.layers.embedding import Embedding
from deepzen.layers.input_layer import InputLayer
from deepzen.layers.lambda_layer import Identity, Lambda, register_lambda
from deepzen.layers.masking import Masking
from deepzen.layers.recurrent import LSTM
from deepzen.layers.wrappers import TimeDistributed
from deepzen.models import Sequential
from deepzen.serializable import ModelFileError


@pytest.mark.parametrize("module", [input_layer, lambda_layer, masking, wrappers])
def test_docstrings_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_lambda_calls_with_arguments_and_training():
    x = torch.randn(2, 3)
    torch.testing.assert_close(Lambda(lambda t, power: t ** power, arguments={"power": 3})(x), x ** 3)
    seen = {}

    def spy(t, training=None):
        seen["training"] = training
        return t

    Lambda(spy)(x, training=True)
    assert seen["training"] is True


def test_unregistered_lambda_refuses_to_save_and_says_how():
    layer = Lambda(lambda t: t + 1)
    with pytest.raises(TypeError, match="not registered.*register_lambda"):
        layer.get_config()


def test_registered_lambda_round_trips_by_name():
    @register_lambda(name="test_core_extras.halve")
    def halve(t):
        return t / 2

    config = Lambda(halve, arguments={}).get_config()
    assert config["function"] == "test_core_extras.halve"
    rebuilt = Lambda.from_config(config)
    assert torch.equal(rebuilt(torch.full((1, 2), 4.0)), torch.full((1, 2), 2.0))
    with pytest.raises(ModelFileError, match="'no_such_function', which is not registered"):
        Lambda.from_config({**config, "function": "no_such_function"})
    with pytest.raises(TypeError, match="needs a callable with a name"):
        register_lambda(lambda t: t)


def test_identity():
    x = torch.randn(3, 4)
    assert Identity()(x) is x


def test_masking_zeroes_masked_steps_and_propagates_the_mask():
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.0]]])
    layer = Masking(0.0)
    torch.testing.assert_close(layer(x), x)  # masked steps are zero already
    y = torch.tensor([[[5.0, 5.0], [1.0, 5.0]]])
    torch.testing.assert_close(Masking(5.0)(y), torch.tensor([[[0.0, 0.0], [1.0, 5.0]]]))
    assert Masking(5.0).compute_mask(y).tolist() == [[False, True]]

    # In a model the mask reaches the LSTM: a sequence padded with masked steps at the end gives the
    # same final state as the unpadded sequence (Keras's documented use of Masking).
    torch.manual_seed(0)
    model = Sequential([Masking(0.0), LSTM(4)]).eval()
    short = torch.randn(1, 3, 2)
    padded = torch.cat([short, torch.zeros(1, 2, 2)], dim=1)
    torch.testing.assert_close(model(padded), model(short))


def test_time_distributed_dense_equals_dense_per_step():
    dense = Dense(5)
    layer = TimeDistributed(dense)
    x = torch.randn(4, 7, 3)
    out = layer(x)
    assert out.shape == (4, 7, 5)
    for step in range(7):
        torch.testing.assert_close(out[:, step], dense(x[:, step]))
    assert sum(p.numel() for p in layer.parameters()) == 3 * 5 + 5  # one set of weights for all steps
    images = torch.randn(2, 3, 1, 8, 8)
    from deepzen.layers.conv import Conv2D
    assert TimeDistributed(Conv2D(4, 3))(images).shape == (2, 3, 4, 6, 6)
    with pytest.raises(ValueError, match="at least 3 axes"):
        TimeDistributed(Dense(2))(torch.zeros(2, 3))
    rebuilt = TimeDistributed.from_config(TimeDistributed(Dense(5)).get_config())
    assert isinstance(rebuilt.layer, Dense) and rebuilt.layer.units == 5


def test_input_layer_shapes_and_integer_inputs():
    assert InputLayer(shape=(4,)).input_shape == (4,)
    layer = InputLayer(batch_shape=(8, 10), dtype="int64")
    assert layer.input_shape == (10,) and layer.batch_size == 8 and layer.takes_integer_inputs
    assert InputLayer(input_shape=(3, 2)).input_shape == (3, 2)  # Keras 2's spelling
    with pytest.raises(ValueError, match="expected input shape"):
        Sequential([InputLayer(shape=(4,)), Dense(2)])(torch.zeros(3, 5))
    model = Sequential([InputLayer(shape=(5,), dtype=torch.int64), Embedding(10, 3)])
    assert model(torch.randint(0, 10, (2, 5))).shape == (2, 5, 3)
    assert InputLayer.from_config(InputLayer(shape=(5,), dtype=torch.int64).get_config()).dtype == "int64"
