"""Regularization layers: GaussianNoise, GaussianDropout, SpatialDropout1D/2D/3D, ActivityRegularization.

The noise layers act only while training and are the identity at inference, as in Keras. Their
``forward`` takes ``training=None``: ``None`` follows the module's mode (``model.train()`` /
``model.eval()``, which ``fit`` and ``predict`` set), ``True``/``False`` overrides it for one call —
Keras's ``layer(x, training=True)``.

Example:
    >>> import torch
    >>> layer = GaussianNoise(0.1).eval()
    >>> x = torch.ones(2, 3)
    >>> torch.equal(layer(x), x), torch.equal(layer(x, training=True), x)
    (True, False)
"""

from __future__ import annotations

import torch

from deepzen import config
from deepzen.layers.base import Layer


def _rate(layer: str, rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{layer} expects rate in [0, 1). Received: rate={rate!r}")
    return float(rate)


class NoiseLayer(Layer):
    """Base of layers that add random noise while training; holds the optional ``seed``.

    Args:
        seed: makes the noise reproducible (a generator of its own); default: torch's global generator.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def active(self, training: bool | None) -> bool:
        return self.training if training is None else bool(training)

    def generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def normal(self, x: torch.Tensor, shape=None) -> torch.Tensor:
        return torch.randn(x.shape if shape is None else shape, generator=self.generator(x.device),
                           device=x.device, dtype=x.dtype)

    def uniform(self, x: torch.Tensor, shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator(x.device), device=x.device, dtype=x.dtype)


class GaussianNoise(NoiseLayer):
    """Adds zero-mean Gaussian noise of standard deviation ``stddev`` while training.

    Args:
        stddev: standard deviation of the noise (>= 0).
        seed: see :class:`NoiseLayer`.

    Call arguments:
        x: any shape. training: see the module docstring. Returns ``x + noise`` (training) or ``x``.
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or stddev < 0:
            raise ValueError(f"GaussianNoise expects stddev to be a number >= 0. Received: stddev={stddev!r}")
        self.stddev = float(stddev)

    def forward(self, x, training=None):
        if not self.active(training) or self.stddev == 0:
            return x
        return x + self.stddev * self.normal(x)


class GaussianDropout(NoiseLayer):
    """Multiplies by Gaussian noise of mean 1 and standard deviation ``sqrt(rate / (1 - rate))`` while training.

    The multiplicative-noise view of dropout (Srivastava et al. 2014, section 10): same mean and
    variance as inverted dropout of ``rate``, no zeros.

    Args:
        rate: the equivalent dropout rate, in [0, 1).
        seed: see :class:`NoiseLayer`.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.rate = _rate("GaussianDropout", rate)
        self._stddev = (self.rate / (1.0 - self.rate)) ** 0.5

    def forward(self, x, training=None):
        if not self.active(training) or self.rate == 0:
            return x
        return x * (1.0 + self._stddev * self.normal(x))


class BaseSpatialDropout(NoiseLayer):
    """Drops whole channels (feature maps) with probability ``rate``, scaling the rest by ``1 / (1 - rate)``.

    Neighbouring positions of a feature map are strongly correlated, so element-wise dropout hardly
    regularizes them; dropping the whole map does (Tompson et al. 2015).

    Args:
        rate: fraction of channels dropped, in [0, 1).
        data_format: where the channel axis is (2-d/3-d; default the global
            :func:`deepzen.config.image_data_format`).
        seed: see :class:`NoiseLayer`.
    """

    rank: int = 0

    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.rate = _rate(type(self).__name__, rate)
        self.data_format = config.normalize_data_format(data_format, type(self).__name__)
        self._init_arguments["data_format"] = self.data_format  # saved resolved: independent of the global

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects inputs with "
                             f"{self.rank + 2} axes (batch, channels and {self.rank} spatial). "
                             f"Received shape: {tuple(input_shape)}")

    def forward(self, x, training=None):
        if not self.active(training) or self.rate == 0:
            return x
        if self.data_format == "channels_last":
            shape = (x.shape[0], *(1,) * self.rank, x.shape[-1])  # (N, 1, ..., C)
        else:
            shape = (*x.shape[:2], *(1,) * self.rank)  # (N, C, 1, ...)
        keep = (self.uniform(x, shape) >= self.rate).to(x.dtype) / (1.0 - self.rate)
        return x * keep


class SpatialDropout1D(BaseSpatialDropout):
    """Spatial dropout of sequences ``(N, T, C)``: drops whole feature channels across all steps.

    As in Keras (which has no ``data_format`` here), the channels are the last axis — e.g. after an
    ``Embedding`` it drops embedding dimensions for the whole sequence. See :class:`BaseSpatialDropout`.
    """

    rank = 1

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(rate, "channels_last", seed, **kwargs)
        self._init_arguments.pop("data_format", None)


class SpatialDropout2D(BaseSpatialDropout):
    """Spatial dropout of ``(N, C, H, W)`` (or ``(N, H, W, C)`` channels last). See :class:`BaseSpatialDropout`."""

    rank = 2


class SpatialDropout3D(BaseSpatialDropout):
    """Spatial dropout of ``(N, C, D, H, W)`` (or channels last). See :class:`BaseSpatialDropout`."""

    rank = 3


class ActivityRegularization(Layer):
    """Passes its input through and adds ``l1 * sum(|x|) + l2 * sum(x^2)`` to the training loss.

    The penalty is stored like any layer's activity penalty (``Dense(activity_regularizer=...)``) and
    added by ``fit``.

    Args:
        l1, l2: the factors (>= 0).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        from deepzen.regularizers import L1L2

        self.l1, self.l2 = l1, l2
        self.regularizer = L1L2(l1=l1, l2=l2)

    def forward(self, x):
        return self.record_activity(x, self.regularizer)
