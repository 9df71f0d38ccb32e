"""Keras 3's guide "Customizing what happens in fit() with PyTorch", ported: fit/evaluate/predict call a
model's own train_step/test_step/predict_step, and what the step returns is what History sees.

Only two things differ from the guide's code, both Keras-Variable API that torch does not have:
``self.optimizer`` is a torch optimizer (``step()`` instead of ``apply(grads, weights)``), and the
gradients live in ``p.grad`` (instead of ``v.value.grad``).
"""

import numpy as np
import pytest
import torch

from deepzen import metrics as deepzen_metrics
from deepzen.callbacks import Callback
from deepzen.layers import Dense
from deepzen.training.callbacks import CallbackError
from deepzen.training.checkpoint import TrainingCheckpoint, checkpoint_position
from deepzen.training.model import Model, Sequential

Mean = deepzen_metrics.Mean  # Keras's keras.metrics.Mean(name=...)


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 32)).astype("float32")
    return x, x[:, :1] * 0.5 + 0.1


class CustomModel(Sequential):
    """The guide's first example: the compiled loss and metrics, a hand-written update."""

    calls = 0

    def train_step(self, data):
        CustomModel.calls += 1
        x, y = data
        self.zero_grad()
        y_pred = self(x)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        loss.backward()
        self.optimizer.step()
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def test_fit_calls_the_override_and_history_holds_what_it_returns():
    torch.manual_seed(0)
    x, y = _data()
    model = CustomModel([Dense(1, input_dim=32)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    CustomModel.calls = 0
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert CustomModel.calls == 3 * 8
    assert set(history.history) == {"loss", "mae"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(isinstance(v, float) for v in history.history["mae"])


class LowLevelModel(Model):
    """The guide's "going lower-level" example: compile only configures the optimizer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = Mean(name="loss")
        self.mae_metric = Mean(name="mae")  # a Mean of |y - y_pred|, kept in the step itself
        self.loss_fn = torch.nn.MSELoss()

    def train_step(self, data):
        x, y = data
        self.zero_grad()
        y_pred = self(x)
        loss = self.loss_fn(y_pred, y)
        loss.backward()
        self.optimizer.step()
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state((y - y_pred).abs().mean())
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


def test_a_low_level_step_compiles_without_a_loss_and_its_metrics_reset_each_epoch():
    torch.manual_seed(0)
    x, y = _data()
    model = LowLevelModel(Dense(1, input_dim=32))
    model.compile(optimizer="adam")
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    assert list(history.history) == ["loss", "mae"]
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    # reset at each epoch begin: epoch 4's mean is over epoch 4's steps only, below epoch 1's
    assert history.history["mae"][-1] < history.history["mae"][0]


def test_the_built_in_step_still_needs_a_loss():
    model = Sequential([Dense(1, input_dim=32)])
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="loss"):
        model.fit(*_data(), verbose=0)


class CustomEvalModel(Sequential):
    def test_step(self, data):
        x, y = data
        y_pred = self(x)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {"custom_loss": self.metrics[0].result(), "custom_mae": self.metrics[1].result()}

    def predict_step(self, data):
        return self(data) * 0 + 7.0


def test_evaluate_and_predict_call_the_overrides():
    torch.manual_seed(0)
    x, y = _data()
    model = CustomEvalModel([Dense(1, input_dim=32)])
    model.compile(loss="mse", metrics=["mae"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["custom_loss", "custom_mae"]
    plain = Sequential([Dense(1, input_dim=32)])
    plain.compile(loss="mse", metrics=["mae"])
    plain.set_weights(model.get_weights())
    expected = plain.evaluate(x, y, verbose=0)
    assert np.allclose([logs["custom_loss"], logs["custom_mae"]], expected, rtol=1e-5)
    assert np.all(model.predict(x[:10]) == 7.0)
    history = model.fit(x, y, epochs=1, validation_data=(x, y), verbose=0)
    assert "val_custom_loss" in history.history


class GAN(Model):
    """The guide's GAN: two networks, two optimizers, one train_step; fit gets the images alone."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.d_loss_tracker = Mean(name="d_loss")
        self.g_loss_tracker = Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn

    def train_step(self, real_images):
        if isinstance(real_images, tuple):
            real_images = real_images[0]
        batch_size = real_images.shape[0]
        random_latent_vectors = torch.randn(batch_size, self.latent_dim)
        generated_images = self.generator(random_latent_vectors)
        combined_images = torch.concat([generated_images, real_images], axis=0)
        labels = torch.concat([torch.ones((batch_size, 1)), torch.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * torch.rand(labels.shape)

        self.zero_grad()
        predictions = self.discriminator(combined_images)
        d_loss = self.loss_fn(predictions, labels)
        d_loss.backward()
        self.d_optimizer.step()

        random_latent_vectors = torch.randn(batch_size, self.latent_dim)
        misleading_labels = torch.zeros((batch_size, 1))
        self.zero_grad()
        predictions = self.discriminator(self.generator(random_latent_vectors))
        g_loss = self.loss_fn(predictions, misleading_labels)
        g_loss.backward()
        self.g_optimizer.step()

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


def test_a_gan_trains_both_networks_with_its_own_optimizers_under_fit():
    torch.manual_seed(0)
    latent_dim = 4
    discriminator = Sequential([Dense(16, input_dim=8, activation="relu"), Dense(1)], name="discriminator")
    generator = Sequential([Dense(16, input_dim=latent_dim, activation="relu"), Dense(8)], name="generator")
    discriminator.build()
    generator.build()
    gan = GAN(discriminator, generator, latent_dim)
    gan.compile(d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=3e-4),
                g_optimizer=torch.optim.Adam(generator.parameters(), lr=3e-4),
                loss_fn=torch.nn.BCEWithLogitsLoss())
    d_before = [p.detach().clone() for p in discriminator.parameters()]
    g_before = [p.detach().clone() for p in generator.parameters()]
    images = np.random.default_rng(0).normal(2.0, 0.5, (128, 8)).astype("float32")
    seen = []

    class Record(__import__("deepzen").training.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    history = gan.fit(images, batch_size=32, epochs=2, verbose=0, callbacks=[Record()])
    assert list(history.history) == ["d_loss", "g_loss"]
    assert seen[-1] == {"d_loss": history.history["d_loss"][-1], "g_loss": history.history["g_loss"][-1]}
    assert all(np.isfinite(history.history["d_loss"]))
    assert not any(torch.equal(a, b) for a, b in zip(d_before, discriminator.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(g_before, generator.parameters()))


# -- checkpoints inside an epoch of an overriding step ---------------------------------------------------
class CrashAfter(Callback):
    """Raises after batch ``step`` (0-based) of ``epoch``, as the next one begins (the checkpoint, last at every
    event, has saved that step by then)."""

    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def on_train_batch_begin(self, step, logs=None):
        if (self.model.fit_state.epoch, step - 1) == (self.epoch, self.step):
            raise RuntimeError("simulated crash")


def _custom_fit(checkpoint=None, crash=None, every_steps=2):
    torch.manual_seed(0)
    x, y = _data(n=80)
    model = CustomModel([Dense(4, input_dim=32, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], device="cpu")
    callbacks = [TrainingCheckpoint(checkpoint, every_steps=every_steps)] if checkpoint is not None else []
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks + ([crash] if crash else []))
    return model


def test_a_custom_step_resumes_from_inside_an_epoch_exactly(tmp_path):
    """The step's logs come from model.metrics (the loss tracker and the compiled metrics): a checkpoint
    inside an epoch holds their states, so the resumed epoch's logs are the uninterrupted one's."""
    reference = _custom_fit()
    path = tmp_path / "custom.ckpt"
    with pytest.raises(CallbackError, match="simulated crash"):
        _custom_fit(path, CrashAfter(1, 2))  # 5 steps an epoch; the checkpoint after step 2 of epoch 2
    assert (checkpoint_position(path)["epoch"], checkpoint_position(path)["step"]) == (1, 2)
    resumed = _custom_fit(path)
    for (name, mine), theirs in zip(resumed.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(mine, theirs), name
    resumed_state, reference_state = resumed.optimizer.state_dict(), reference.optimizer.state_dict()
    for index, values in reference_state["state"].items():
        for name, value in values.items():
            assert torch.equal(resumed_state["state"][index][name], value), (index, name)
    assert resumed.history.history == reference.history.history


class StatelessMetric:
    name = "calls"

    def update_state(self, *args):
        pass

    def result(self):
        return torch.zeros(())

    def reset_state(self):
        pass


class StatelessMetricModel(CustomModel):
    @property
    def metrics(self):
        return [StatelessMetric()]


def test_a_custom_step_whose_metric_keeps_no_state_gets_epoch_end_checkpoints_only(tmp_path):
    torch.manual_seed(0)
    x, y = _data(n=48)
    model = StatelessMetricModel([Dense(1, input_dim=32)])
    model.compile(optimizer="adam", loss="mse", device="cpu")
    path = tmp_path / "stateless.ckpt"
    with pytest.warns(UserWarning, match="no checkpoints inside an epoch.*'calls' keeps no state dict"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[TrainingCheckpoint(path, every_steps=1)])
    assert (checkpoint_position(path)["epoch"], checkpoint_position(path)["step"]) == (2, 0)


class InterruptAfter(Callback):
    """Acts as a Ctrl-C after batch ``step`` of the first epoch (the TrainingCheckpoint, last at every event,
    sees it at once)."""

    def __init__(self, checkpoint, step):
        self.checkpoint, self.step = checkpoint, step

    def on_train_batch_end(self, step, logs=None):
        if step == self.step:
            self.checkpoint.interrupted = True


def test_ctrl_c_inside_an_epoch_that_no_checkpoint_can_hold_says_so(tmp_path):
    torch.manual_seed(0)
    x, y = _data(n=48)
    model = StatelessMetricModel([Dense(1, input_dim=32)])
    model.compile(optimizer="adam", loss="mse", device="cpu")
    checkpoint = TrainingCheckpoint(tmp_path / "stateless.ckpt", catch_interrupt=False)
    with pytest.warns(UserWarning, match="no checkpoints inside an epoch"), \
            pytest.raises(KeyboardInterrupt, match="no checkpoint could be taken inside this epoch"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[InterruptAfter(checkpoint, 0), checkpoint])
    assert not (tmp_path / "stateless.ckpt").exists()
