"""Optimizer specs: three steps of each update rule against a hand-written float64 reference."""

import doctest
import math

import pytest
import torch

from deepzen import optimizers
from deepzen.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop, clip_gradients

W0 = [1.0, -0.5, 0.25, 2.0, -1.5]
GRADIENTS = [[0.5, -1.0, 2.0, 0.0, -0.3], [0.1, 0.4, -2.5, 1.0, -0.3], [-0.7, 0.2, 1.5, -1.0, 0.05]]


# -- references: the published rules, one weight at a time, in Python floats (float64) ---------------

def sgd_reference(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Sutskever et al. 2013: v = mu v - lr g; w += v (Nesterov: w += mu v - lr g); L2 added to g."""
    trajectory, ws, vs = [], list(W0), [0.0] * len(W0)
    for grads in GRADIENTS:
        for i, g in enumerate(grads):
            g = g + weight_decay * ws[i]
            vs[i] = momentum * vs[i] - lr * g
            ws[i] += momentum * vs[i] - lr * g if nesterov else vs[i]
        trajectory.append(list(ws))
    return trajectory


def adam_reference(lr, beta_1, beta_2, epsilon, amsgrad=False, l2=0.0, decoupled=0.0):
    """Kingma & Ba 2015, Algorithm 1; AMSGrad keeps max(v); L2 on g or decoupled decay of w (AdamW)."""
    trajectory, ws = [], list(W0)
    ms, vs, vmax = [0.0] * len(W0), [0.0] * len(W0), [0.0] * len(W0)
    for t, grads in enumerate(GRADIENTS, start=1):
        for i, g in enumerate(grads):
            g = g + l2 * ws[i]
            ws[i] -= lr * decoupled * ws[i]
            ms[i] = beta_1 * ms[i] + (1 - beta_1) * g
            vs[i] = beta_2 * vs[i] + (1 - beta_2) * g * g
            vmax[i] = max(vmax[i], vs[i])
            m_hat = ms[i] / (1 - beta_1**t)
            v_hat = (vmax[i] if amsgrad else vs[i]) / (1 - beta_2**t)
            ws[i] -= lr * m_hat / (math.sqrt(v_hat) + epsilon)
        trajectory.append(list(ws))
    return trajectory


def adagrad_reference(lr, initial_accumulator_value, epsilon):
    """Duchi et al. 2011: s += g^2; w -= lr g / (sqrt(s) + eps)."""
    trajectory, ws, ss = [], list(W0), [initial_accumulator_value] * len(W0)
    for grads in GRADIENTS:
        for i, g in enumerate(grads):
            ss[i] += g * g
            ws[i] -= lr * g / (math.sqrt(ss[i]) + epsilon)
        trajectory.append(list(ws))
    return trajectory


def adadelta_reference(lr, rho, epsilon):
    """Zeiler 2012, Algorithm 1 (lr = 1 is the paper's rule)."""
    trajectory, ws = [], list(W0)
    mean_g2, mean_dx2 = [0.0] * len(W0), [0.0] * len(W0)
    for grads in GRADIENTS:
        for i, g in enumerate(grads):
            mean_g2[i] = rho * mean_g2[i] + (1 - rho) * g * g
            dx = -math.sqrt(mean_dx2[i] + epsilon) / math.sqrt(mean_g2[i] + epsilon) * g
            mean_dx2[i] = rho * mean_dx2[i] + (1 - rho) * dx * dx
            ws[i] += lr * dx
        trajectory.append(list(ws))
    return trajectory


def rmsprop_reference(lr, rho, momentum, epsilon, centered):
    """Hinton lecture 6e; centered (Graves 2013) divides by sqrt(E[g^2] - E[g]^2); momentum on the step."""
    trajectory, ws = [], list(W0)
    mean_g2, mean_g, buf = [0.0] * len(W0), [0.0] * len(W0), [0.0] * len(W0)
    for grads in GRADIENTS:
        for i, g in enumerate(grads):
            mean_g2[i] = rho * mean_g2[i] + (1 - rho) * g * g
            mean_g[i] = rho * mean_g[i] + (1 - rho) * g
            variance = mean_g2[i] - mean_g[i] ** 2 if centered else mean_g2[i]
            step = lr * g / (math.sqrt(variance) + epsilon)
            buf[i] = momentum * buf[i] + step
            ws[i] -= buf[i] if momentum else step
        trajectory.append(list(ws))
    return trajectory


CASES = {
    "sgd": (SGD(learning_rate=0.1), sgd_reference(0.1)),
    "sgd_momentum": (SGD(learning_rate=0.1, momentum=0.9), sgd_reference(0.1, momentum=0.9)),
    "sgd_nesterov": (SGD(learning_rate=0.1, momentum=0.8, nesterov=True), sgd_reference(0.1, 0.8, nesterov=True)),
    "sgd_momentum_l2": (SGD(learning_rate=0.1, momentum=0.9, weight_decay=0.05),
                        sgd_reference(0.1, momentum=0.9, weight_decay=0.05)),
    "adam": (Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.9, epsilon=1e-3), adam_reference(0.01, 0.8, 0.9, 1e-3)),
    "adam_amsgrad": (Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.9, epsilon=1e-3, amsgrad=True),
                     adam_reference(0.01, 0.8, 0.9, 1e-3, amsgrad=True)),
    "adam_l2": (Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.9, epsilon=1e-3, weight_decay=0.1),
                adam_reference(0.01, 0.8, 0.9, 1e-3, l2=0.1)),
    "adamw": (AdamW(learning_rate=0.01, weight_decay=0.1, beta_1=0.8, beta_2=0.9, epsilon=1e-3),
              adam_reference(0.01, 0.8, 0.9, 1e-3, decoupled=0.1)),
    "adagrad": (Adagrad(learning_rate=0.1, initial_accumulator_value=0.1, epsilon=1e-3),
                adagrad_reference(0.1, 0.1, 1e-3)),
    "adadelta": (Adadelta(rho=0.9, epsilon=1e-3), adadelta_reference(1.0, 0.9, 1e-3)),
    "adadelta_lr": (Adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-3), adadelta_reference(0.5, 0.9, 1e-3)),
    "rmsprop": (RMSprop(learning_rate=0.01, rho=0.8, epsilon=1e-3), rmsprop_reference(0.01, 0.8, 0.0, 1e-3, False)),
    "rmsprop_centered": (RMSprop(learning_rate=0.01, rho=0.8, epsilon=1e-3, centered=True),
                         rmsprop_reference(0.01, 0.8, 0.0, 1e-3, True)),
    "rmsprop_momentum_centered": (RMSprop(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-3, centered=True),
                                  rmsprop_reference(0.01, 0.8, 0.5, 1e-3, True)),
}


def run_steps(spec, implementation, dtype=torch.float64):
    weight = torch.nn.Parameter(torch.tensor(W0, dtype=dtype))
    optimizer = spec.build([weight], implementation=implementation)
    trajectory = []
    for grads in GRADIENTS:
        weight.grad = torch.tensor(grads, dtype=dtype)
        optimizer.step()
        trajectory.append(weight.detach().clone())
    return optimizer, torch.stack(trajectory)


@pytest.mark.parametrize("case, implementation", [
    (case, implementation) for case in sorted(CASES) for implementation in optimizers.IMPLEMENTATIONS
    if implementation != "fused" or CASES[case][0].fused_devices])
def test_three_steps_match_published_rule(case, implementation):
    spec, reference = CASES[case]
    _, trajectory = run_steps(spec, implementation)
    torch.testing.assert_close(trajectory, torch.tensor(reference, dtype=torch.float64), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["adam", "sgd_momentum", "adagrad", "adamw"])
def test_fused_float32_matches_reference(case):
    spec, reference = CASES[case]
    _, trajectory = run_steps(spec, "fused", torch.float32)
    torch.testing.assert_close(trajectory, torch.tensor(reference, dtype=torch.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "adagrad"])
def test_auto_uses_fused_kernel_for_float_cpu_parameters(name):
    model = torch.nn.Linear(4, 3)
    optimizer = optimizers.get(name).build(model.parameters())
    assert optimizer.param_groups[0]["fused"] is True


@pytest.mark.parametrize("name", ["rmsprop", "adadelta"])
def test_auto_falls_back_to_torch_default_without_fused_kernel(name):
    optimizer = optimizers.get(name).build(torch.nn.Linear(4, 3).parameters())
    assert optimizer.param_groups[0]["foreach"] is None
    assert not optimizer.param_groups[0].get("fused")
    with pytest.raises(ValueError, match="fused"):
        optimizers.get(name).build(torch.nn.Linear(4, 3).parameters(), implementation="fused")


def test_auto_does_not_fuse_complex_parameters():
    weight = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    optimizer = Adam().build([weight])
    assert not optimizer.param_groups[0]["fused"]
    weight.grad = torch.ones_like(weight)
    optimizer.step()  # the non-fused path handles complex weights
    with pytest.raises(ValueError, match="fused"):
        Adam().build([weight], implementation="fused")


def test_build_accepts_named_parameters_and_param_groups():
    model = torch.nn.Linear(4, 3)
    assert optimizers.get("adam").build(model.named_parameters()).param_groups[0]["fused"] is True
    optimizer = SGD(learning_rate=0.1).build([{"params": model.weight, "lr": 0.5}, {"params": [model.bias]}])
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.1]
    assert all(group["fused"] for group in optimizer.param_groups)


def test_build_rejects_empty_parameters_and_unknown_implementation():
    with pytest.raises(ValueError, match="at least one parameter"):
        Adam().build([])
    with pytest.raises(ValueError, match="implementation='cuda_graph'"):
        Adam().build(torch.nn.Linear(2, 2).parameters(), implementation="cuda_graph")


# -- Keras defaults and their translation to torch ------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("sgd", dict(lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)),
    ("momentum", dict(lr=0.01, momentum=0.9, nesterov=False)),
    ("nesterov", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("adam", dict(lr=0.001, betas=(0.9, 0.999), eps=1e-7, amsgrad=False, weight_decay=0.0)),
    ("adamw", dict(lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.004)),
    ("adagrad", dict(lr=0.001, initial_accumulator_value=0.1, eps=1e-7)),
    ("adadelta", dict(lr=1.0, rho=0.95, eps=1e-6)),
    ("rmsprop", dict(lr=0.001, alpha=0.9, momentum=0.0, eps=1e-7, centered=False)),
])
def test_keras_defaults_reach_torch(name, expected):
    group = optimizers.get(name).build(torch.nn.Linear(2, 2).parameters()).param_groups[0]
    assert {key: group[key] for key in expected} == expected


def test_adamw_is_torch_adamw_and_adam_is_not():
    params = list(torch.nn.Linear(2, 2).parameters())
    assert isinstance(AdamW().build(params), torch.optim.AdamW)
    adam = Adam().build(params)
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)


# -- configuration, names and errors ----------------------------------------------------------------

@pytest.mark.parametrize("name", optimizers.OPTIMIZERS.names())
def test_config_round_trip(name):
    spec = optimizers.get(name, learning_rate=0.123, clipnorm=2.0)
    clone = type(spec).from_config(spec.get_config())
    assert type(clone) is type(spec)
    assert clone.get_config() == spec.get_config()
    assert clone.get_config()["learning_rate"] == 0.123 and clone.clipnorm == 2.0
    params = list(torch.nn.Linear(2, 2).parameters())
    assert clone.build(params).defaults == spec.build(params).defaults


def test_learning_rate_is_settable_and_validated():
    spec = Adam()
    spec.learning_rate = 0.5
    assert spec.build(torch.nn.Linear(2, 2).parameters()).param_groups[0]["lr"] == 0.5
    assert spec.get_config()["learning_rate"] == 0.5
    with pytest.raises(ValueError, match="Received: learning_rate=-1"):
        spec.learning_rate = -1


def test_unknown_argument_names_the_valid_ones():
    with pytest.raises(TypeError, match="'lr' is torch's name.*learning_rate") as info:
        optimizers.get("adam", lr=0.1)
    assert "beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm" in str(info.value)
    with pytest.raises(TypeError, match="'rho_2'.*Valid arguments: learning_rate, rho, momentum, epsilon, centered"):
        RMSprop(rho_2=0.5)
    with pytest.raises(TypeError, match="'lr'"):
        optimizers.get("nesterov", lr=0.1)


def test_unknown_name_lists_registered_ones():
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'. Expected one of: adadelta, adagrad, adam"):
        optimizers.get("adamm")


def test_get_resolves_names_classes_and_passes_objects_through():
    assert isinstance(optimizers.get("ADAM"), Adam)
    assert optimizers.get(SGD, momentum=0.5).momentum == 0.5
    spec = RMSprop()
    assert optimizers.get(spec) is spec
    torch_optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    assert optimizers.get(torch_optimizer) is torch_optimizer
    with pytest.raises(TypeError, match="not to an optimizer object"):
        optimizers.get(spec, learning_rate=0.1)
    with pytest.raises(TypeError, match="Received: 3"):
        optimizers.get(3)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(momentum=1.5), "0 <= momentum <= 1. Received: momentum=1.5"),
    (lambda: SGD(nesterov=True), "momentum > 0 with nesterov=True"),
    (lambda: Adam(beta_1=1.0), "0 <= beta_1 < 1. Received: beta_1=1.0"),
    (lambda: Adam(beta_2=-0.1), "Received: beta_2=-0.1"),
    (lambda: AdamW(epsilon=-1e-7), "Received: epsilon=-1e-07"),
    (lambda: Adagrad(initial_accumulator_value=-1), "Received: initial_accumulator_value=-1"),
    (lambda: Adadelta(rho=2), "Received: rho=2"),
    (lambda: RMSprop(momentum=-0.5), "Received: momentum=-0.5"),
    (lambda: Adam(weight_decay=-1), "Received: weight_decay=-1"),
    (lambda: Adam(clipnorm=0), "clipnorm > 0 or None. Received: clipnorm=0"),
    (lambda: Adam(clipnorm=1.0, clipvalue=0.5), "at most one of.*Received: clipnorm=1.0, clipvalue=0.5"),
])
def test_invalid_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- gradient clipping --------------------------------------------------------------------------------

def params_with_grads(*grads):
    params = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.float64)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
    return params


def test_clipvalue_clamps_each_element():
    params = params_with_grads([3.0, -0.2, -5.0], [0.5, 1.0])
    clip_gradients(params, clipvalue=1.0)
    assert params[0].grad.tolist() == [1.0, -0.2, -1.0] and params[1].grad.tolist() == [0.5, 1.0]


def test_clipnorm_scales_each_gradient_separately():
    params = params_with_grads([3.0, 4.0], [0.6, 0.8], [0.0, 0.0])  # norms 5, 1, 0
    clip_gradients(params, clipnorm=2.0)
    torch.testing.assert_close(params[0].grad, torch.tensor([3.0, 4.0], dtype=torch.float64) * 2.0 / 5.0)
    assert params[1].grad.tolist() == [0.6, 0.8]  # already within the bound: untouched
    assert params[2].grad.tolist() == [0.0, 0.0]


def test_global_clipnorm_scales_all_gradients_together():
    params = params_with_grads([3.0, 0.0], [0.0, 4.0])  # joint norm 5
    clip_gradients(params, global_clipnorm=1.0)
    torch.testing.assert_close(torch.cat([p.grad for p in params]),  # torch divides by (norm + 1e-6)
                               torch.tensor([0.6, 0.0, 0.0, 0.8], dtype=torch.float64), rtol=1e-5, atol=0)


def test_clipping_skips_parameters_without_gradients():
    params = params_with_grads([10.0]) + [torch.nn.Parameter(torch.ones(2))]
    clip_gradients(params, clipnorm=1.0)
    clip_gradients(params, global_clipnorm=1.0)
    clip_gradients(params, clipvalue=1.0)
    assert params[0].grad.item() == pytest.approx(1.0, rel=1e-5) and params[1].grad is None


def test_clipped_step_moves_weights_by_the_clipped_gradient():
    spec = SGD(learning_rate=1.0, clipnorm=1.0)
    params = params_with_grads([0.0, 3.0, 4.0])
    optimizer = spec.build(params)
    clip_gradients(params, spec.clipnorm, spec.clipvalue, spec.global_clipnorm)
    optimizer.step()
    torch.testing.assert_close(params[0].detach(), torch.tensor([0.0, -0.6, -0.8], dtype=torch.float64))


def test_docstring_examples():
    assert doctest.testmod(optimizers).failed == 0


def test_keras_learning_rate_attribute_reads_and_sets_the_torch_rate():
    """Keras callbacks write ``model.optimizer.learning_rate``: it must change the rate torch uses."""
    import numpy as np

    import deepzen

    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)

    def one_step(learning_rate: float, set_to: float | None = None) -> torch.Tensor:
        torch.manual_seed(0)
        model = deepzen.Model(torch.nn.Linear(3, 1))
        model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=learning_rate), loss="mse")
        model.fit(x, y, epochs=0, verbose=0)  # builds the optimizer without a step
        if set_to is not None:
            assert isinstance(model.optimizer, torch.optim.SGD)
            assert model.optimizer.learning_rate == pytest.approx(learning_rate)
            model.optimizer.learning_rate = set_to
            assert [group["lr"] for group in model.optimizer.param_groups] == [set_to]
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        return model.module.weight.detach()

    assert torch.equal(one_step(0.01, set_to=0.5), one_step(0.5))
    assert not torch.equal(one_step(0.01), one_step(0.5))


# -- gradient accumulation (Keras's gradient_accumulation_steps) --------------------------------------------
def _accumulation_run(optimizer_class, batch_size, steps, custom_step=False, **options):
    """Two epochs of a tanh MLP (no batch norm, no dropout) on fixed data; the final weights."""
    import numpy as np

    import deepzen
    from deepzen.layers import Dense
    from deepzen.models import Sequential

    class CustomStep(Sequential):
        def train_step(self, data):
            x, y = data
            self.optimizer.zero_grad()
            loss = self.compute_loss(x, y, self(x, training=True))
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.detach()}

    torch.manual_seed(0)
    model_class = CustomStep if custom_step else Sequential
    model = model_class([Dense(16, input_dim=5, activation="tanh"), Dense(3)])
    if steps > 1:
        options["gradient_accumulation_steps"] = steps
    model.compile(optimizer=optimizer_class(learning_rate=0.05, **options),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 5)).astype(np.float32), rng.integers(0, 3, 256)
    model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    return [p.detach().clone() for p in model.parameters()], model.optimizer


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
@pytest.mark.parametrize("custom_step", [False, True])
def test_batch_8_with_4_accumulation_steps_matches_batch_32(optimizer_class, custom_step):
    reference, whole = _accumulation_run(optimizer_class, 32, 1)
    accumulated, optimizer = _accumulation_run(optimizer_class, 8, 4, custom_step=custom_step)
    assert optimizer.iterations == 16  # 2 epochs of 256 / 32 updates
    for a, b in zip(reference, accumulated):
        assert torch.allclose(a, b, atol=1e-5, rtol=0), float((a - b).abs().max())
    small = _accumulation_run(optimizer_class, 8, 1)[0]  # batch 8 without accumulation ends elsewhere
    assert max(float((a - b).abs().max()) for a, b in zip(reference, small)) > 1e-3


@pytest.mark.usefixtures("one_thread")
def test_accumulation_clips_the_mean_gradient_and_matches_the_big_batch():
    reference, _ = _accumulation_run(SGD, 32, 1, global_clipnorm=0.05)
    accumulated, _ = _accumulation_run(SGD, 8, 4, global_clipnorm=0.05)
    for a, b in zip(reference, accumulated):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_accumulation_updates_every_nth_step_with_the_mean():
    w = torch.nn.Parameter(torch.zeros(2))
    optimizer = SGD(learning_rate=1.0, gradient_accumulation_steps=3).build([w])
    for gradient in ([1.0, 2.0], [3.0, 4.0]):
        optimizer.zero_grad()
        (w * torch.tensor(gradient)).sum().backward()
        optimizer.step()
        assert w.detach().tolist() == [0.0, 0.0] and optimizer.iterations == 0
    optimizer.zero_grad()  # keeps the two gradients summed so far
    (w * torch.tensor([5.0, 6.0])).sum().backward()
    optimizer.step()
    assert w.detach().tolist() == pytest.approx([-3.0, -4.0])  # minus the mean gradient
    assert optimizer.iterations == 1
    assert optimizer.state_dict()["param_groups"][0]["iterations"] == 1  # checkpoints keep the counters


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_gradient_accumulation_steps_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        Adam(gradient_accumulation_steps=value)
