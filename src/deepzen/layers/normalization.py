"""Batch normalization (Ioffe & Szegedy 2015), layer normalization (Ba et al. 2016), group normalization
(Wu & He 2018), unit normalization and spectral normalization (Miyato et al. 2018)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from deepzen import config
from deepzen.layers.base import Layer


class BatchNormalization(Layer):
    """Normalizes each feature over the batch (and spatial axes) while training; uses moving
    statistics at evaluation.

    Works for dense features (N, C), sequences and conv feature maps (N, C, ...) with the feature
    axis 1, PyTorch's channels-first layout. For channels-last data (e.g. (N, T, C)) pass ``axis=-1``.

    Args:
        axis: the feature axis. Default: 1 under the global ``deepzen.config.image_data_format()``
            ``"channels_first"`` (deepzen's default), -1 (Keras's default) under ``"channels_last"``.
        momentum: Keras semantics: ``moving = momentum * moving + (1 - momentum) * batch``.
        epsilon: added to the variance.
        center / scale: learn the offset beta / the scale gamma.
        synchronized: under DDP (torchrun), normalize each training batch with the mean and variance of the
            global batch, all processes' slices together, and track those in the moving statistics (Keras's
            argument; Lightning's ``sync_batchnorm``). Off, each process uses its own slice. No effect on
            one process. ``deepzen train --sync-batchnorm`` turns it on for every layer (see
            :func:`deepzen.training.distributed.set_sync_batchnorm`).

    Call arguments:
        x: the inputs. training: True normalizes with the batch's statistics (and updates the moving
            ones), False with the moving statistics; None (default) follows the module's mode. A layer
            with ``trainable = False`` always uses the moving statistics (Keras's transfer-learning rule).
    """

    def __init__(self, axis: int | None = None, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros", gamma_initializer: Any = "ones",
                 moving_mean_initializer: Any = "zeros", moving_variance_initializer: Any = "ones",
                 synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = 1 if config.image_data_format() == "channels_first" else -1
            self._init_arguments["axis"] = axis  # saved resolved: independent of the global
        self.synchronized = synchronized
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNormalization expects momentum in [0, 1). Received: momentum={momentum}")
        self.axis, self.momentum, self.epsilon = axis, momentum, epsilon
        self.center, self.scale = center, scale
        self.initializers = (beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Layer '{self.display_name}' (BatchNormalization) expects inputs with a batch and "
                             f"a feature axis. Received shape: {tuple(input_shape)}")
        self.feature_axis = self.axis % len(input_shape)
        if self.feature_axis == 0:
            raise ValueError(f"Layer '{self.display_name}' cannot normalize over the batch axis. Received: axis={self.axis}")
        features = input_shape[self.feature_axis]
        beta, gamma, mean, variance = self.initializers
        self.bias = self.new_parameter((features,), beta) if self.center else None
        self.weight = self.new_parameter((features,), gamma) if self.scale else None
        self.register_buffer("running_mean", self.new_parameter((features,), mean).data)
        self.register_buffer("running_var", self.new_parameter((features,), variance).data)

    def forward(self, x, training=None):
        # Keras's rule: batch statistics only when training and trainable (a frozen layer runs in inference mode).
        training = (self.training if training is None else bool(training)) and self.trainable
        channels_first = self.feature_axis == 1
        if not channels_first:
            x = x.movedim(self.feature_axis, 1)
        if self.synchronized and training and dist.is_initialized() and dist.get_world_size() > 1:
            out = global_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                    1.0 - self.momentum, self.epsilon)
        else:
            out = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               training, 1.0 - self.momentum, self.epsilon)
        return out if channels_first else out.movedim(1, self.feature_axis)


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over the processes, differentiable: the gradient is summed over them as well,
    since every process's loss depends on every process's tensor through the sum."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient):
        return _SumOverProcesses.apply(gradient)


def global_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                      weight: torch.Tensor | None, bias: torch.Tensor | None, momentum: float,
                      eps: float) -> torch.Tensor:
    """``F.batch_norm`` in training mode over the global batch: the union of every process's ``x``.

    The per-channel sums are summed over the processes (two all-reduces, for the mean and then the
    centered squares, which keeps the variance exact), and the all-reduces are differentiable, so
    each process's gradient includes what its samples did to the other processes' outputs. torch's
    ``nn.SyncBatchNorm`` does the same on GPUs only; this runs on gloo (CPU) and NCCL alike.

    Args:
        x: (N, C, ...) this process's slice of the batch.
        running_mean, running_var: (C,) moving statistics, updated in place (torch's ``momentum``).

    Returns:
        (N, C, ...) normalized like ``x``.
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)
    axes = [0, *range(2, x.dim())]
    values = x.float()  # statistics in float32, as F.batch_norm keeps them under autocast
    local = torch.cat([values.sum(axes), values.new_tensor([x.numel() // x.shape[1]])])
    totals = _SumOverProcesses.apply(local)  # (C + 1,) sums over the processes; count last
    count = totals[-1]
    mean = totals[:-1] / count
    centered = values - mean.view(shape)
    variance = _SumOverProcesses.apply(centered.square().sum(axes)) / count  # (C,) biased, as normalization uses
    out = centered * torch.rsqrt(variance + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    with torch.no_grad():
        running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
        unbiased = variance.detach() * (count / (count - 1).clamp(min=1))
        running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    return out.to(x.dtype)


class LayerNormalization(Layer):
    """Normalizes each sample over its last axes (default: the last one), then scales and shifts.

    Args:
        axis: an int or tuple of trailing axes to normalize over (negative or positive indices).
        epsilon: added to the variance.
    """

    def __init__(self, axis: Any = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        self.epsilon, self.center, self.scale = epsilon, center, scale

    def build(self, input_shape):
        rank = len(input_shape)
        axes = sorted(a % rank for a in self.axis)
        if axes != list(range(rank - len(axes), rank)) or 0 in axes:
            raise ValueError(f"Layer '{self.display_name}' (LayerNormalization) normalizes over trailing, non-batch "
                             f"axes. Received: axis={self.axis} for inputs of rank {rank}")
        self.normalized_shape = tuple(input_shape[a] for a in axes)
        self.weight = self.new_parameter(self.normalized_shape, "ones") if self.scale else None
        self.bias = self.new_parameter(self.normalized_shape, "zeros") if self.center else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.epsilon)


class GroupNormalization(Layer):
    """Normalizes each sample over groups of channels (Wu & He 2018), then scales and shifts per channel.

    Independent of the batch size, unlike BatchNormalization. ``groups=1`` normalizes all channels
    together (LayerNormalization over channels and space); ``groups=-1`` (one channel per group) is
    instance normalization.

    Args:
        groups: number of groups; must divide the channels (Keras's default 32; -1: one per channel).
        axis: the channel axis. Default: 1 under the global ``deepzen.config.image_data_format()``
            ``"channels_first"``, -1 (Keras's default) under ``"channels_last"``.
        epsilon: added to the variance (default 1e-3).
        center / scale: learn the per-channel offset beta / scale gamma.
        beta_initializer / gamma_initializer: names or callables.

    Call arguments:
        x: ``(N, ..., C, ...)`` with at least the batch and channel axes. Returns the same shape.
    """

    def __init__(self, groups: int = 32, axis: int | None = None, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros", gamma_initializer: Any = "ones", **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups == 0 or groups < -1:
            raise ValueError(f"GroupNormalization expects groups to be a positive integer or -1. Received: groups={groups!r}")
        if axis is None:
            axis = 1 if config.image_data_format() == "channels_first" else -1
            self._init_arguments["axis"] = axis  # saved resolved: independent of the global
        self.groups, self.axis, self.epsilon = groups, axis, epsilon
        self.center, self.scale = center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer

    def build(self, input_shape):
        self.channel_axis = self.axis % len(input_shape)
        if len(input_shape) < 2 or self.channel_axis == 0:
            raise ValueError(f"Layer '{self.display_name}' (GroupNormalization) cannot use axis={self.axis} as the "
                             f"channel axis of inputs of shape {tuple(input_shape)}")
        channels = input_shape[self.channel_axis]
        self.num_groups = channels if self.groups == -1 else self.groups
        if channels % self.num_groups:
            raise ValueError(f"Layer '{self.display_name}' (GroupNormalization) needs channels divisible by groups. "
                             f"Received: groups={self.groups}, {channels} channels (input shape {tuple(input_shape)})")
        self.weight = self.new_parameter((channels,), self.gamma_initializer) if self.scale else None
        self.bias = self.new_parameter((channels,), self.beta_initializer) if self.center else None

    def forward(self, x):
        if self.channel_axis == 1:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.epsilon)
        out = F.group_norm(x.movedim(self.channel_axis, 1), self.num_groups, self.weight, self.bias, self.epsilon)
        return out.movedim(1, self.channel_axis)


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm along ``axis``: ``x / sqrt(max(sum(x^2), 1e-12))``, as Keras.

    Args:
        axis: the axis (or axes) the norm is taken over (default -1).
    """

    def __init__(self, axis: int | tuple[int, ...] = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def forward(self, x):
        return x * torch.rsqrt(x.square().sum(self.axis, keepdim=True).clamp(min=1e-12))


class SpectralNormalization(Layer):
    """Divides a layer's weight by its largest singular value (Miyato et al. 2018), as Keras's wrapper does.

    The wrapped layer then has a Lipschitz constant of about 1, which keeps a GAN discriminator's
    gradients in check without batch statistics. The singular value is estimated by power iteration:
    ``power_iterations`` steps per training call, continuing from the previous estimate (the
    estimate is frozen in evaluation mode). Built on ``torch.nn.utils.parametrizations.spectral_norm``.

    Args:
        layer: an unbuilt layer with a ``weight`` parameter (Dense, a convolution, a transposed convolution).
        power_iterations: power-iteration steps per training call.

    Call arguments: as the wrapped layer.

    Example:
        >>> import torch
        >>> from deepzen.layers import Conv2D
        >>> SpectralNormalization(Conv2D(8, 3))(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 7, 7])
    """

    def __init__(self, layer: Layer, power_iterations: int = 1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer) or layer.built:
            raise ValueError(f"SpectralNormalization expects an unbuilt deepzen layer. Received: "
                             f"{type(layer).__name__}{' (already built)' if isinstance(layer, Layer) else ''}")
        if not isinstance(power_iterations, int) or isinstance(power_iterations, bool) or power_iterations < 1:
            raise ValueError(f"SpectralNormalization expects power_iterations to be a positive integer. "
                             f"Received: power_iterations={power_iterations!r}")
        self.layer, self.power_iterations = layer, power_iterations

    def build(self, input_shape):
        from deepzen.layers.conv import BaseConvTranspose

        self.layer.build_for(torch.empty((1, *input_shape[1:]), device=self._device, dtype=self._dtype))
        if not isinstance(getattr(self.layer, "weight", None), torch.nn.Parameter):
            raise ValueError(f"Layer '{self.display_name}' (SpectralNormalization) wraps a layer with a `weight` "
                             f"parameter. Received: '{self.layer.display_name}' ({type(self.layer).__name__})")
        # The output channels index dim 1 of a transposed convolution's (C_in, filters, *k) weight.
        dim = 1 if isinstance(self.layer, BaseConvTranspose) else 0
        torch.nn.utils.parametrizations.spectral_norm(self.layer, "weight", self.power_iterations, dim=dim)

    def forward(self, *args, **kwargs):
        return self.layer(*args, **kwargs)

    def get_config(self):
        # Parametrization swaps the wrapped layer's class for a generated torch subclass: save the original.
        layer_class = type(self.layer).__bases__[0] if self.built else type(self.layer)
        return {**super().get_config(), "layer": {"class": layer_class.__name__, "module": layer_class.__module__,
                                                  "config": self.layer.get_config()}}
