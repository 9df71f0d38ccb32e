"""compile/fit/evaluate call losses and metrics in Keras's order, loss(y_true, y_pred); torch.nn modules in torch's."""

import numpy as np
import pytest
import torch
from torch import nn

import deepzen
from deepzen import losses, metrics
from deepzen.models import Model


def regression_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 3.0).astype(np.float32)  # (n, 1), mean near 3
    return x, y


def test_a_custom_loss_function_receives_y_true_first_in_fit_and_evaluate():
    deepzen.seed(0)
    x, y = regression_data()
    seen = []

    def my_loss(y_true, y_pred):  # asymmetric: swapped arguments give a very different value
        seen.append((y_true.requires_grad, y_pred.requires_grad))
        return (y_true * 1000 + y_pred).mean()

    model = Model(nn.Linear(3, 1))
    model.compile(optimizer="sgd", loss=my_loss)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert seen and all(not true_grad and pred_grad for true_grad, pred_grad in seen)  # y_pred is the output
    evaluated = model.evaluate(x, y, verbose=0)
    predictions = model.predict(x)
    assert evaluated == pytest.approx(float((y * 1000 + predictions).mean()), rel=1e-4)


def test_a_custom_metric_function_receives_y_true_first():
    x, y = regression_data()

    def mean_target(y_true, y_pred):
        return y_true.mean(-1)

    model = Model(nn.Linear(3, 1))
    model.compile(optimizer="sgd", loss="mse", metrics=[mean_target])
    _, value = model.evaluate(x, y, verbose=0)
    assert value == pytest.approx(float(y.mean()), rel=1e-5)


def test_a_keras_style_loss_subclass_trains():
    class ScaledMSE(losses.Loss):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * (y_true - y_pred).square().mean(-1)

    deepzen.seed(0)
    x, y = regression_data()
    model = Model(nn.Linear(3, 1))
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.05), loss=ScaledMSE(2.0, name="scaled"))
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    weights = np.linspace(0.5, 1.5, len(x)).astype(np.float32)
    model.fit(x, y, sample_weight=weights, epochs=1, batch_size=16, verbose=0)  # per-sample values, weighted


def test_a_torch_loss_module_keeps_torch_order_and_trains():
    deepzen.seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)  # 3 classes, ids (N,)
    model = Model(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)))
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.02), loss=nn.CrossEntropyLoss(),
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 2
    assert history.history["accuracy"][-1] > 0.8
    logits = torch.as_tensor(model.predict(x))
    loss, _ = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(float(nn.CrossEntropyLoss()(logits, torch.as_tensor(y))), rel=1e-4)
    model.fit(x, y, class_weight={0: 1.0, 1: 2.0, 2: 1.0}, epochs=1, verbose=0)  # weighted: reduction="none"


def test_a_custom_metric_class_with_add_weight_runs_in_fit():
    class SumOfTargets(metrics.Metric):
        def __init__(self, name="sum_of_targets", **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_weight(name="total", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total.assign_add(y_true.sum())

        def result(self):
            return self.total

    x, y = regression_data()
    model = Model(nn.Linear(3, 1))
    model.compile(optimizer="sgd", loss="mse", metrics=[SumOfTargets(), metrics.MeanAbsolutePercentageError()])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert history.history["sum_of_targets"] == pytest.approx([float(y.sum())] * 2, rel=1e-5)  # reset each epoch
    assert "mape" in history.history
    _, total, _ = model.evaluate(x, y, verbose=0)
    assert total == pytest.approx(float(y.sum()), rel=1e-5)


@pytest.mark.gpu
def test_metric_states_follow_the_predictions_to_the_gpu():
    class TruePositives(metrics.Metric):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tp = self.add_weight(name="tp")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.tp.assign_add(((y_true == 1) & (y_pred > 0.5)).sum())

        def result(self):
            return self.tp

    metric, mean = TruePositives(), metrics.Mean()
    y_true, y_pred = torch.tensor([1, 0, 1], device="cuda"), torch.tensor([0.9, 0.8, 0.2], device="cuda")
    metric.update_state(y_true, y_pred)
    mean.update_state(y_pred, sample_weight=[1, 1, 0])  # a list goes to the predictions' device
    assert metric.tp.device.type == "cuda" and metric.state["tp"] is metric.tp and float(metric.result()) == 1.0
    assert mean.state["total"].device.type == "cuda" and float(mean.result()) == pytest.approx(0.85)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    loss = losses.as_loss(nn.CrossEntropyLoss()).cuda()
    assert torch.isfinite(loss(torch.tensor([0, 2], device="cuda"), torch.randn(2, 3, device="cuda")))


def test_keras_loss_function_given_to_compile_trains_and_accuracy_reads_it_as_binary():
    deepzen.seed(0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(128, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)  # (N, 1) 0/1 labels
    model = Model(nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()))
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.05), loss=losses.binary_crossentropy,
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] and history.history["accuracy"][-1] > 0.9
