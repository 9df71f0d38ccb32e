"""Keras's subclassing API: the examples of keras.io's guide "Making new layers and models via
subclassing", ported at tiny sizes (only the imports and the ops changed: ``tf.matmul`` -> ``@``), and
the rules around them: ``call``, ``build``, ``add_weight``, ``add_loss``, ``losses`` and ``training=``."""

import numpy as np
import pytest
import torch

import deepzen
from deepzen import layers, regularizers
from deepzen.layers import Layer
from deepzen.models import Model


# -- the guide's layers ---------------------------------------------------------------------------------
class Linear(Layer):  # weights made in __init__
    def __init__(self, units=32, input_dim=32):
        super().__init__()
        self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(units,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return inputs @ self.w + self.b


class ComputeSum(Layer):
    def __init__(self, input_dim):
        super().__init__()
        self.total = self.add_weight(initializer="zeros", shape=(input_dim,), trainable=False)

    def call(self, inputs):
        self.total.add_(inputs.sum(0))  # deepzen: torch's in-place add for Keras's assign_add
        return self.total


class LazyLinear(Layer):  # the guide's best practice: weights made in build(input_shape)
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.build_shapes = getattr(self, "build_shapes", []) + [input_shape]
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", trainable=True)

    def call(self, inputs):
        return inputs @ self.w + self.b

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


class MLPBlock(Layer):
    def __init__(self):
        super().__init__()
        self.linear_1 = LazyLinear(8)
        self.linear_2 = LazyLinear(8)
        self.linear_3 = LazyLinear(1)

    def call(self, inputs):
        x = torch.relu(self.linear_1(inputs))
        x = torch.relu(self.linear_2(x))
        return self.linear_3(x)


class ActivityRegularizationLayer(Layer):
    def __init__(self, rate=1e-2):
        super().__init__()
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * inputs.mean())
        return inputs


class OuterLayer(Layer):
    def __init__(self):
        super().__init__()
        self.activity_reg = ActivityRegularizationLayer(1e-2)

    def call(self, inputs):
        return self.activity_reg(inputs)


class OuterLayerWithKernelRegularizer(Layer):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(32, kernel_regularizer=regularizers.L2(1e-3))  # deepzen: no lowercase l2

    def call(self, inputs):
        return self.dense(inputs)


class CustomDropout(Layer):
    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs, training=False):
        self.seen = training
        if training:
            return torch.nn.functional.dropout(inputs, p=self.rate)
        return inputs


# -- the guide, section by section ----------------------------------------------------------------------
def test_linear_with_add_weight_in_init():
    x = torch.ones((2, 2))
    linear_layer = Linear(4, 2)
    y = linear_layer(x)
    assert tuple(y.shape) == (2, 4)
    assert linear_layer.weights == [linear_layer.w, linear_layer.b]
    assert list(dict(linear_layer.named_parameters())) == ["w", "b"]  # kept under the attribute names
    assert list(linear_layer.state_dict()) == ["w", "b"]
    torch.testing.assert_close(y, (x @ linear_layer.w + linear_layer.b).detach())


def test_non_trainable_weight():
    x = torch.ones((2, 2))
    my_sum = ComputeSum(2)
    assert my_sum(x).tolist() == [2.0, 2.0]
    assert my_sum(x).tolist() == [4.0, 4.0]
    assert len(my_sum.weights) == 1
    assert len(my_sum.non_trainable_weights) == 1
    assert my_sum.trainable_weights == []
    my_sum.trainable = True  # a non-trainable weight stays so, as in Keras
    assert my_sum.trainable_weights == [] and not my_sum.total.requires_grad


def test_lazy_build_gets_the_batch_inclusive_shape_once():
    linear_layer = LazyLinear(32)
    assert len(list(linear_layer.parameters())) == 0  # no weights before the first call
    y = linear_layer(torch.ones((2, 2)))
    y = linear_layer(torch.ones((5, 2)))
    assert tuple(y.shape) == (5, 32)
    assert linear_layer.build_shapes == [(2, 2)]  # Keras's build(input_shape): batch included, once
    assert [tuple(w.shape) for w in linear_layer.weights] == [(2, 32), (32,)]


def test_layers_are_recursively_composable():
    mlp = MLPBlock()
    y = mlp(torch.ones(size=(3, 64)))
    assert tuple(y.shape) == (3, 1)
    assert len(mlp.weights) == 6
    assert len(mlp.trainable_weights) == 6


def test_add_loss_and_losses_reset_at_each_top_level_call():
    layer = OuterLayer()
    assert len(layer.losses) == 0  # No losses yet since the layer has never been called
    _ = layer(torch.zeros(1, 1))
    assert len(layer.losses) == 1  # We created one loss value
    _ = layer(torch.zeros(1, 1))
    assert len(layer.losses) == 1  # This is the loss created during the call above


def test_losses_include_the_weights_regularization():
    layer = OuterLayerWithKernelRegularizer()
    _ = layer(torch.zeros((1, 1)))
    assert len(layer.losses) == 1
    torch.testing.assert_close(layer.losses[0], 1e-3 * (layer.dense.weight ** 2).sum())  # deepzen: torch's name


def test_add_loss_works_with_fit_with_and_without_a_compiled_loss():
    torch.manual_seed(0)
    inputs = deepzen.Input(shape=(3,))
    # deepzen: a Dense first, since fit refuses a model with no trainable weights (Keras runs it idle)
    outputs = ActivityRegularizationLayer()(layers.Dense(3)(inputs))
    model = Model(inputs, outputs)
    x, y = np.random.random((2, 3)).astype("float32"), np.random.random((2, 3)).astype("float32")
    # If there is a loss passed in `compile`, the regularization losses get added to it
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, verbose=0)
    p = model.predict(x)
    expected = float(((p - y) ** 2).mean() + 1e-2 * p.mean())
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    # It's also possible not to pass any loss in `compile`: the add_loss values are the loss
    model.compile(optimizer="adam")
    p = model.predict(x)
    history = model.fit(x, y, batch_size=2, verbose=0)
    assert history.history["loss"][0] == pytest.approx(1e-2 * float(p.mean()), rel=1e-5)


def test_get_config_round_trip():
    layer = LazyLinear(64)
    config = layer.get_config()
    assert config["units"] == 64
    new_layer = LazyLinear.from_config(config)
    assert new_layer.units == 64


def test_training_argument_in_call():
    x = torch.ones(200, 10)
    layer = CustomDropout(0.5)
    assert torch.equal(layer(x, training=False), x) and layer.seen is False
    assert (layer(x, training=True) == 0).any() and layer.seen is True
    layer.eval()
    assert torch.equal(layer(x), x) and layer.seen is False  # left out: the module's mode (Keras's context)
    layer.train()
    assert layer(x) is not None and layer.seen is True


# -- the end-to-end example: a variational autoencoder, trained with fit -------------------------------
class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = torch.randn_like(z_mean)  # deepzen: torch's sampler for keras.random.normal
        return z_mean + torch.exp(0.5 * z_log_var) * epsilon


class Encoder(layers.Layer):
    """Maps digits to a triplet (z_mean, z_log_var, z)."""

    def __init__(self, latent_dim=32, intermediate_dim=64, name="encoder", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dense_proj = layers.Dense(intermediate_dim, activation="relu")
        self.dense_mean = layers.Dense(latent_dim)
        self.dense_log_var = layers.Dense(latent_dim)
        self.sampling = Sampling()

    def call(self, inputs):
        x = self.dense_proj(inputs)
        z_mean = self.dense_mean(x)
        z_log_var = self.dense_log_var(x)
        z = self.sampling((z_mean, z_log_var))
        return z_mean, z_log_var, z


class Decoder(layers.Layer):
    """Converts z, the encoded digit vector, back into a readable digit."""

    def __init__(self, original_dim, intermediate_dim=64, name="decoder", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dense_proj = layers.Dense(intermediate_dim, activation="relu")
        self.dense_output = layers.Dense(original_dim, activation="sigmoid")

    def call(self, inputs):
        x = self.dense_proj(inputs)
        return self.dense_output(x)


class VariationalAutoEncoder(Model):
    """Combines the encoder and decoder into an end-to-end model for training."""

    def __init__(self, original_dim, intermediate_dim=64, latent_dim=32, name="autoencoder", **kwargs):
        super().__init__(name=name, **kwargs)
        self.original_dim = original_dim
        self.encoder = Encoder(latent_dim=latent_dim, intermediate_dim=intermediate_dim)
        self.decoder = Decoder(original_dim, intermediate_dim=intermediate_dim)

    def call(self, inputs):
        z_mean, z_log_var, z = self.encoder(inputs)
        reconstructed = self.decoder(z)
        # Add KL divergence regularization loss.
        kl_loss = -0.5 * torch.mean(z_log_var - torch.square(z_mean) - torch.exp(z_log_var) + 1)
        self.add_loss(kl_loss)
        return reconstructed


def _digits(n=256, dim=16, seed=0):
    """Random 'digits': a few prototypes plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, dim))
    return np.clip(prototypes[rng.integers(0, 4, n)] + 0.05 * rng.standard_normal((n, dim)), 0, 1).astype("float32")


def test_variational_autoencoder_trains_with_fit(monkeypatch):
    torch.manual_seed(0)
    x_train = _digits()
    vae = VariationalAutoEncoder(16, 8, 4)
    vae.compile(deepzen.optimizers.Adam(learning_rate=1e-2), loss=deepzen.losses.MeanSquaredError())
    history = vae.fit(x_train, x_train, epochs=5, batch_size=64, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    # the KL term is part of the loss: evaluate's loss is the reconstruction error plus it
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # z = z_mean, so the two runs agree
    vae.eval()
    with torch.no_grad():
        reconstruction = float(((vae(x_train) - torch.as_tensor(x_train)) ** 2).mean())  # NumPy in, as in Keras
        kl = float(vae.losses[0])
    assert len(vae.losses) == 1 and kl > 0
    assert vae.evaluate(x_train, x_train, batch_size=256, verbose=0) == pytest.approx(reconstruction + kl, rel=1e-4)


def test_variational_autoencoder_custom_loop_adds_model_losses():
    torch.manual_seed(0)
    x_train = torch.as_tensor(_digits(64))
    vae = VariationalAutoEncoder(16, 8, 4)
    vae(x_train[:2])  # builds the lazy layers
    optimizer = torch.optim.Adam(vae.trainable_weights, lr=1e-2)
    mse_loss_fn = deepzen.losses.MeanSquaredError()
    first = None
    for step in range(30):
        reconstructed = vae(x_train)
        loss = mse_loss_fn(x_train, reconstructed)
        assert len(vae.losses) == 1  # the KL loss of this forward pass only
        loss = loss + sum(vae.losses)  # Add KLD regularization loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first


# -- the rules behind the examples ------------------------------------------------------------------------
class Block(Layer):
    def __init__(self):
        super().__init__()
        self.dropout = layers.Dropout(0.5)

    def call(self, inputs, training=None):
        self.seen = training
        return self.dropout(inputs)


class Net(Model):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.dense = layers.Dense(2)

    def call(self, inputs, training=None, mask=None):
        self.seen = training
        return self.dense(self.block(inputs))


def test_training_reaches_every_layer_and_numpy_inputs_work():
    torch.manual_seed(0)
    model = Net()
    model(np.ones((2, 20)))  # builds; float64 NumPy becomes a float32 tensor on the model's device
    model.eval()
    x = np.ones((100, 20))
    a, b = model(x), model(x)
    assert torch.equal(a, b) and model.seen is False and model.block.seen is False
    c, d = model(x, training=True), model(x, training=True)
    assert not torch.equal(c, d)  # the Dropout inside honoured training=True
    assert model.seen is True and model.block.seen is True
    assert not model.training and not model.block.dropout.training  # the mode is restored after the call
    assert model(torch.ones(3, 20), training=False).dtype == torch.float32


def test_fit_and_evaluate_pass_training_to_a_forward_that_takes_it():
    class ForwardNet(Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(1)
            self.calls = []

        def forward(self, x, training=None):
            self.calls.append(training)
            return self.dense(x)

    model = ForwardNet()
    model.compile(optimizer="sgd", loss="mse")
    model.calls.clear()
    model.fit(np.ones((4, 3)), np.zeros((4, 1)), batch_size=4, verbose=0)
    assert True in model.calls and None not in model.calls[1:]
    model.calls.clear()
    model.evaluate(np.ones((4, 3)), np.zeros((4, 1)), verbose=0)
    model.predict(np.ones((4, 3)))
    assert set(model.calls[1:]) == {False}


def test_add_weight_regularizer_joins_the_training_loss():
    class Scale(Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", regularizer=regularizers.L2(0.1))

        def call(self, inputs):
            return inputs * self.w

    model = deepzen.models.Sequential([Scale(input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), "float32")
    assert model.evaluate(x, x, verbose=0) == pytest.approx(0.1 * 3, rel=1e-6)  # mse 0 + 0.1 * sum(w ** 2)
    assert len(model.losses) == 1


def test_add_weight_arguments():
    class Weights(Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2))  # glorot_uniform, Keras's default
            self.count = self.add_weight(shape=(), initializer="zeros", dtype="int64", trainable=False, name="count")
            self.add_weight(shape=(2,), initializer="ones", name="extra")  # kept under its name

        def call(self, inputs):
            return inputs @ self.kernel

    layer = Weights()
    layer(torch.ones(1, 3))
    assert set(layer.state_dict()) == {"kernel", "count", "extra"}
    assert layer.count.dtype == torch.int64 and not layer.count.requires_grad
    assert torch.equal(layer.extra, torch.ones(2))
    with pytest.raises(NotImplementedError, match="constraint"):
        layer.add_weight(shape=(1,), constraint=lambda w: w)
