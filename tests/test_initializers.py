"""Initializers: sample moments on large seeded tensors against the variance each paper prescribes."""

import doctest
import math

import pytest
import torch

from deepzen import initializers
from deepzen.initializers import Constant, GlorotUniform, RandomNormal, TruncatedNormal, VarianceScaling, fans

DENSE = (300, 500)  # (out, in): fan_in 500, fan_out 300
CONV = (64, 32, 5, 5)  # (out, in, kh, kw): fan_in 32*25 = 800, fan_out 64*25 = 1600
UNIFORM_KURTOSIS, NORMAL_KURTOSIS = 1.8, 3.0


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def filled(name, shape):
    return initializers.get(name)(torch.empty(shape, dtype=torch.float64))


def kurtosis(w):
    centered = w - w.mean()
    return float((centered**4).mean() / centered.var(unbiased=False) ** 2)


@pytest.mark.parametrize("shape, fan_in, fan_out", [(DENSE, 500, 300), (CONV, 800, 1600), ((16, 8, 3), 24, 48)])
def test_fans_use_receptive_field(shape, fan_in, fan_out):
    assert fans(torch.empty(shape)) == (fan_in, fan_out)


@pytest.mark.parametrize("name, variance_of_fans, kurt", [
    ("glorot_uniform", lambda i, o: 2 / (i + o), UNIFORM_KURTOSIS),
    ("glorot_normal", lambda i, o: 2 / (i + o), NORMAL_KURTOSIS),
    ("he_uniform", lambda i, o: 2 / i, UNIFORM_KURTOSIS),
    ("he_normal", lambda i, o: 2 / i, NORMAL_KURTOSIS),
    ("lecun_uniform", lambda i, o: 1 / i, UNIFORM_KURTOSIS),
    ("lecun_normal", lambda i, o: 1 / i, NORMAL_KURTOSIS),
])
@pytest.mark.parametrize("shape, fan_in, fan_out", [(DENSE, 500, 300), (CONV, 800, 1600)])
def test_variance_scaling_family(name, variance_of_fans, kurt, shape, fan_in, fan_out):
    w = filled(name, shape)
    variance = variance_of_fans(fan_in, fan_out)
    # >= 51,200 samples: the sample variance's relative std is sqrt(2 / n) < 0.7%, so 3% is > 4 sigma
    assert float(w.var()) == pytest.approx(variance, rel=0.03)
    assert abs(float(w.mean())) < 4 * math.sqrt(variance / w.numel())
    assert kurtosis(w) == pytest.approx(kurt, abs=0.1)
    if kurt == UNIFORM_KURTOSIS:
        limit = math.sqrt(3 * variance)
        assert float(w.abs().max()) <= limit and float(w.abs().max()) > 0.999 * limit


@pytest.mark.parametrize("mode, expected", [("fan_in", 3 / 800), ("fan_out", 3 / 1600), ("fan_avg", 3 / 1200)])
def test_variance_scaling_modes(mode, expected):
    w = VarianceScaling(scale=3.0, mode=mode, distribution="normal")(torch.empty(CONV, dtype=torch.float64))
    assert float(w.var()) == pytest.approx(expected, rel=0.03)


def test_aliases_are_the_same_initializers():
    assert type(initializers.get("xavier_uniform")) is initializers.GlorotUniform
    assert type(initializers.get("kaiming_normal")) is initializers.HeNormal
    assert type(initializers.get("lecun")) is initializers.LecunNormal


def test_random_normal_default_is_small():
    w = filled("random_normal", DENSE)
    assert float(w.std()) == pytest.approx(0.01, rel=0.01)
    assert abs(float(w.mean())) < 4 * 0.01 / math.sqrt(w.numel())
    w = RandomNormal(mean=1.0, stddev=0.5)(torch.empty(DENSE, dtype=torch.float64))
    assert float(w.mean()) == pytest.approx(1.0, abs=4 * 0.5 / math.sqrt(w.numel()))
    assert float(w.std()) == pytest.approx(0.5, rel=0.01)


def test_random_uniform_bounds():
    w = initializers.RandomUniform(-0.2, 0.6)(torch.empty(DENSE, dtype=torch.float64))
    assert float(w.min()) >= -0.2 and float(w.max()) <= 0.6
    assert float(w.mean()) == pytest.approx(0.2, abs=0.005)
    assert float(w.var()) == pytest.approx(0.8**2 / 12, rel=0.02)


def test_truncated_normal_stays_within_two_standard_deviations():
    w = TruncatedNormal(mean=0.5, stddev=0.1)(torch.empty(DENSE, dtype=torch.float64))
    assert float((w - 0.5).abs().max()) <= 0.2
    assert float((w - 0.5).abs().max()) > 0.199  # the tails reach the cut
    # a standard normal cut at +-2 has variance 1 - 2 * 2 phi(2) / (2 Phi(2) - 1)
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    truncated_variance = 1 - 4 * phi / math.erf(2 / math.sqrt(2))
    assert float(w.std()) == pytest.approx(0.1 * math.sqrt(truncated_variance), rel=0.01)
    default = filled("truncated_normal", DENSE)
    assert float(default.std()) == pytest.approx(0.05 * math.sqrt(truncated_variance), rel=0.01)


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (32, 16, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain):
    w = initializers.Orthogonal(gain=gain)(torch.empty(shape, dtype=torch.float64)).reshape(shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64))


def test_zeros_ones_constant():
    assert filled("zeros", (3, 4)).eq(0).all()
    assert filled("ones", (3, 4)).eq(1).all()
    assert Constant(0.25)(torch.empty(CONV)).eq(0.25).all()
    assert filled("constant", (2,)).eq(0).all()


def test_fills_parameters_in_place_without_recording_gradients():
    param = torch.nn.Parameter(torch.empty(30, 40))
    out = initializers.get("he_uniform")(param)
    assert out is param and param.grad_fn is None and param.abs().max() > 0


def test_get_resolves_names_classes_instances_and_callables():
    assert isinstance(initializers.get("GLOROT-UNIFORM"), GlorotUniform)
    assert isinstance(initializers.get(GlorotUniform), GlorotUniform)
    instance = Constant(3.0)
    assert initializers.get(instance) is instance

    def custom(t):
        return t.fill_(7.0)

    assert initializers.get(custom) is custom
    with pytest.raises(ValueError, match="Unknown initializer 'glorot'. Expected one of: constant"):
        initializers.get("glorot")
    with pytest.raises(TypeError, match="Received: 0.5"):
        initializers.get(0.5)


@pytest.mark.parametrize("initializer, config", [
    (Constant(0.5), {"value": 0.5}),
    (RandomNormal(0.1, 0.2), {"mean": 0.1, "stddev": 0.2}),
    (VarianceScaling(2.0, "fan_out", "uniform"), {"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}),
    (GlorotUniform(), {}),
])
def test_config_round_trip(initializer, config):
    assert initializer.get_config() == config
    clone = type(initializer).from_config(config)
    assert type(clone) is type(initializer) and clone.get_config() == config
    torch.manual_seed(1)
    a = initializer(torch.empty(20, 30))
    torch.manual_seed(1)
    torch.testing.assert_close(clone(torch.empty(20, 30)), a, rtol=0, atol=0)


@pytest.mark.parametrize("make, message", [
    (lambda: RandomNormal(stddev=-1.0), "stddev >= 0. Received: stddev=-1.0"),
    (lambda: initializers.RandomUniform(1.0, 0.0), "minval <= maxval"),
    (lambda: VarianceScaling(mode="fan_sum"), "Received: mode='fan_sum'"),
    (lambda: VarianceScaling(distribution="cauchy"), "Received: distribution='cauchy'"),
])
def test_invalid_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_docstring_examples():
    assert doctest.testmod(initializers).failed == 0
