"""Loss functions by their Keras names, as ``nn.Module``s computed by PyTorch's fused kernels.

A loss is called as ``loss(y_true, y_pred, sample_weight=None)`` (Keras's order), and so is any
function given to ``compile(loss=...)``. A ``torch.nn`` loss module given to ``compile`` keeps
torch's order, ``module(input, target)``: :func:`as_loss` wraps it in :class:`TorchLoss`.

The class axis is the LAST axis of the predictions: ``y_pred`` is ``(N, C)`` or ``(N, T, C)``, with
one-hot or soft targets of the same shape, or class ids of shape ``(N,)`` / ``(N, T)`` for
:class:`SparseCategoricalCrossentropy`.

As in Keras, a loss has one value per *position*: the mean over the last axis for the elementwise
losses (regression, binary cross-entropy, hinge), the value over the class axis for the others.
``reduction`` (Keras's values) then gives

- ``"sum_over_batch_size"`` (default; ``"mean"`` is the same): the mean over all positions;
- ``"sum"``: the sum over all positions;
- ``"none"`` (or None): one value per sample, shape ``(N,)``, the mean over that sample's positions
  (Keras keeps ``(N, T)`` for sequences; deepzen's engine weights samples, so it needs ``(N,)``).

``sample_weight`` (``(N,)``) multiplies each sample's value before the reduction.

``forward`` does no checks. The engine calls two methods once, on the full target tensor, before
training: :meth:`Loss.prepare_targets` (dtype conversion) and :meth:`Loss.check_targets` (raises
``ValueError`` for targets that do not fit the predictions, e.g. one-hot targets given to the
sparse loss or class ids out of range).

Example:
    >>> import torch
    >>> loss = get("sparse_categorical_crossentropy", from_logits=True)
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])   # (N, C) = (2, 3)
    >>> round(float(loss(torch.tensor([0, 2]), logits)), 4)        # mean of -log softmax(logits)[y]
    0.6691
    >>> mse = MeanSquaredError()                                     # Keras's documented example
    >>> y_true, y_pred = torch.tensor([[0., 1.], [0., 0.]]), torch.tensor([[1., 1.], [1., 0.]])
    >>> float(mse(y_true, y_pred)), float(mse(y_true, y_pred, sample_weight=torch.tensor([0.7, 0.3])))
    (0.5, 0.25)
    >>> get("mse", reduction="none")(y_true, y_pred)
    tensor([0.5000, 0.5000])
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepzen._registry import Registry, resolve
from deepzen.serializable import Serializable

LOSSES: Registry[type] = Registry("loss")

EPSILON = 1e-7
"""Probabilities are clipped to at least this before their log (Keras's ``epsilon()``)."""


def _register(name: str, *aliases: str) -> Callable[[type], type]:
    """Registers a loss class under its Keras function name, its class name and short aliases."""

    def add(cls: type) -> type:
        cls.default_name = name
        return LOSSES.register(name, cls, cls.__name__, *aliases)

    return add


class Loss(Serializable, nn.Module):
    """Base class of deepzen losses, called as ``loss(y_true, y_pred, sample_weight=None)`` (Keras's order).

    Two ways to write one:

    - Keras's way: implement ``call(self, y_true, y_pred)`` returning the unreduced values (one per
      sample, or per position); the base applies ``sample_weight`` and ``reduction`` to them exactly
      as Keras does.
    - deepzen's built-ins implement ``compute(self, y_true, y_pred, reduction)`` with PyTorch's
      fused reductions ("mean", "sum", "none" per position), which is faster in the training step.

    A subclass that defines ``forward``, or a ``call``/``compute`` whose first argument is named like
    the predictions (``y_pred``, ``logits``, ...), is refused when the class is defined: deepzen once
    called losses as ``(y_pred, y_true)``, and such a class would now receive its arguments swapped.

    Args:
        name: the loss's name (default: its Keras function name, e.g. "mean_squared_error").
        reduction: "sum_over_batch_size" (default; "mean" is the same), "sum", or "none"/None
            (see the module docstring).

    Call arguments:
        y_true: the targets, ``(N, ...)`` (the shape each loss expects is in its docstring).
        y_pred: the model's output, ``(N, ...)``.
        sample_weight: optional ``(N,)`` weights, one per sample.

    Returns:
        A scalar, or a tensor of shape ``(N,)`` for "none".
    """

    elementwise = True
    """The loss has one value per element, which Keras averages over the last axis (MSE, BCE, ...);
    False for losses over a class axis (cross-entropy, KL divergence) or a whole sequence (CRF)."""

    default_name: str | None = None  # set by ``_register``

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_old_argument_order(cls)

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__} expects reduction in {REDUCTIONS}. "
                             f"Received: reduction={reduction!r}")
        self.name = name or self.default_name or _snake_case(type(self).__name__)
        self.reduction = reduction

    def forward(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        reduction = _REDUCTION_MODES[self.reduction]
        if not isinstance(y_pred, torch.Tensor):  # Keras's examples pass lists
            y_pred = torch.as_tensor(y_pred, dtype=torch.get_default_dtype())
        if not isinstance(y_true, torch.Tensor):
            y_true = torch.as_tensor(y_true, device=y_pred.device)
        if type(self).call is not Loss.call:  # a Keras-style subclass: reduce what its call returns
            return reduce_values(self.call(y_true, y_pred), sample_weight, reduction)
        if sample_weight is None and reduction != "none":  # the fused kernel does the reduction
            value = self.compute(y_true, y_pred, reduction)
            if reduction == "sum" and self.elementwise and y_pred.dim() >= 2:
                value = value / y_pred.shape[-1]  # Keras sums the per-position means over the last axis
            return value
        per_sample = self.per_sample(self.compute(y_true, y_pred, "none"), y_true)  # (N,)
        value = reduce_values(per_sample, sample_weight, reduction)
        # A sample's value is the mean over its positions; Keras's "sum" adds the positions.
        return value * self.positions(y_pred) if reduction == "sum" else value

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """The unreduced loss: one value per sample, ``(N,)``. Keras-style subclasses override it."""
        return self.per_sample(self.compute(y_true, y_pred, "none"), y_true)

    def compute(self, y_true: torch.Tensor, y_pred: torch.Tensor, reduction: str) -> torch.Tensor:
        """The loss with PyTorch's ``reduction``: "none" gives one value per position, ``(N, ...)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(self, y_true, y_pred)")

    def per_sample(self, losses: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Per-position losses ``(N, ...)`` -> per-sample means ``(N,)``."""
        return losses if losses.dim() == 1 else losses.flatten(1).mean(1)

    def positions(self, y_pred: torch.Tensor) -> int:
        """How many values per sample Keras's "none" would keep: all axes but the batch and the last."""
        return math.prod(y_pred.shape[1:-1]) if y_pred.dim() >= 2 else 1

    # -- called once, before training ---------------------------------------------------------------
    def prepare_targets(self, y_true: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The targets as a tensor of ``dtype`` (the predictions' dtype; default: torch's default)."""
        return torch.as_tensor(y_true).to(dtype or torch.get_default_dtype())

    def check_targets(self, y_pred_example: torch.Tensor, y_true: torch.Tensor) -> None:
        """Raises ``ValueError`` if ``y_true`` (all targets) does not fit the model's predictions.

        Reads target values on the host: call it once, never in the training step.

        Args:
            y_pred_example: the model's output on a few samples; its shape past the batch axis
                (the number of classes, the sequence length) is what the targets must fit.
            y_true: all the targets, batch axis first.
        """
        _check_finite(self, y_true)
        _check_same_shape(self, y_pred_example, y_true)

    # -- configuration ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(loss)(**loss.get_config())`` rebuilds the loss."""
        parameters = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in parameters
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and hasattr(self, p.name)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Loss":
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())


REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)
_REDUCTION_MODES = {"sum_over_batch_size": "mean", "mean": "mean", "sum": "sum", "none": "none", None: "none"}

# First argument names that mean a class still takes deepzen's old order (y_pred, y_true).
_PREDICTION_NAMES = ("y_pred", "pred", "preds", "prediction", "predictions", "output", "outputs", "logits", "input")


def _refuse_old_argument_order(cls: type) -> None:
    """Raises ``TypeError`` for a Loss subclass written for the old ``(y_pred, y_true)`` order."""
    if "forward" in cls.__dict__:
        raise TypeError(f"{cls.__name__} defines forward(); deepzen Loss subclasses implement "
                        f"call(self, y_true, y_pred) (Keras's order) and are called as "
                        f"loss(y_true, y_pred, sample_weight=None). Rename forward to call, with y_true first")
    for method in ("call", "compute"):
        function = cls.__dict__.get(method)
        if function is None:
            continue
        arguments = list(inspect.signature(function).parameters)[1:2]
        if arguments and arguments[0] in _PREDICTION_NAMES:
            raise TypeError(f"{cls.__name__}.{method} takes {arguments[0]!r} first; deepzen calls losses as "
                            f"{method}(y_true, y_pred) (Keras's order). Received: {method}"
                            f"{inspect.signature(function)}")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def reduce_values(values: Any, sample_weight: Any = None, reduction: str = "mean") -> torch.Tensor:
    """Keras's reduction of unreduced loss values: weighted, then summed or averaged over all of them.

    Args:
        values: ``(N, ...)`` loss values (or a scalar, returned weighted as it is).
        sample_weight: ``(N,)`` (or broadcastable) weights; they multiply the values first.
        reduction: "mean" (the sum over the number of values: Keras's "sum_over_batch_size"),
            "sum" or "none".
    """
    values = torch.as_tensor(values)
    if sample_weight is not None:
        weights = torch.as_tensor(sample_weight, dtype=values.dtype, device=values.device)
        weights = weights.reshape(weights.shape + (1,) * max(values.dim() - weights.dim(), 0))  # (N, 1, ...)
        values = values * weights
    if reduction == "none" or values.dim() == 0:
        return values
    return values.sum() if reduction == "sum" else values.mean()


def _aligned(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """``y_true`` in ``y_pred``'s shape and dtype: drops or adds a trailing axis of size 1, never broadcasts.

    (The engine converts targets once, before training, so in ``fit`` both checks are no-ops.)"""
    y_true = y_true if y_true.dtype == y_pred.dtype else y_true.to(y_pred.dtype)
    return y_true if y_true.shape == y_pred.shape else y_true.reshape(y_pred.shape)


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """PyTorch's reductions for a loss computed position by position."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


# -- regression ---------------------------------------------------------------------------------------
@_register("mean_squared_error", "mse")
class MeanSquaredError(Loss):
    """``(y_pred - y_true)^2`` per element.

    ``y_true`` has the shape of ``y_pred``; a missing or extra trailing axis of size 1 is allowed
    (``(N,)`` targets for ``(N, 1)`` predictions), it never broadcasts to ``(N, N)``.
    """

    def compute(self, y_true, y_pred, reduction):
        return F.mse_loss(y_pred, _aligned(y_true, y_pred), reduction=reduction)


@_register("mean_absolute_error", "mae")
class MeanAbsoluteError(Loss):
    """``|y_pred - y_true|`` per element; targets shaped as for :class:`MeanSquaredError`."""

    def compute(self, y_true, y_pred, reduction):
        return F.l1_loss(y_pred, _aligned(y_true, y_pred), reduction=reduction)


@_register("huber", "huber_loss")
class Huber(Loss):
    """``0.5 e^2`` for ``|e| <= delta``, else ``delta (|e| - 0.5 delta)``, with ``e = y_pred - y_true``.

    Quadratic near zero, linear for outliers (Huber 1964). Targets shaped as for
    :class:`MeanSquaredError`.

    Args:
        delta: where the loss turns from quadratic to linear (> 0).
        reduction: see :class:`Loss`.
    """

    def __init__(self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None):
        super().__init__(name=name, reduction=reduction)
        if not delta > 0:
            raise ValueError(f"Huber expects delta > 0. Received: delta={delta}")
        self.delta = float(delta)

    def compute(self, y_true, y_pred, reduction):
        return F.huber_loss(y_pred, _aligned(y_true, y_pred), reduction=reduction, delta=self.delta)


# -- classification -------------------------------------------------------------------------------------
@_register("hinge")
class Hinge(Loss):
    """``max(0, 1 - y_true * y_pred)`` per element, for scores ``y_pred`` of a max-margin classifier.

    Targets are -1/1; 0/1 targets are read as -1/1, as Keras does. Shaped as for
    :class:`MeanSquaredError`.
    """

    def compute(self, y_true, y_pred, reduction):
        y_true = _aligned(y_true, y_pred)
        y_true = torch.where(y_true == 0, -1.0, y_true)  # 0/1 labels -> -1/1, without reading values
        return _reduce(F.relu(1.0 - y_true * y_pred), reduction)

    def check_targets(self, y_pred_example, y_true):
        super().check_targets(y_pred_example, y_true)
        values = set(torch.unique(y_true).tolist())  # host sync: once, before training
        if not (values <= {-1, 1} or values <= {0, 1}):
            raise ValueError(f"Hinge expects targets in {{-1, 1}} (or {{0, 1}}). "
                             f"Received: values {sorted(values)[:10]}")


@_register("binary_crossentropy", "bce")
class BinaryCrossentropy(Loss):
    """``-(y log p + (1 - y) log(1 - p))`` per element, for one or several yes/no labels per sample.

    Args:
        from_logits: ``y_pred`` holds logits (any real number), not probabilities. Logits are the
            more stable choice: the loss is computed by ``binary_cross_entropy_with_logits``.
            Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` first, as in Keras.
        label_smoothing: in [0, 1]; targets become ``y (1 - label_smoothing) + 0.5 label_smoothing``.
        reduction: see :class:`Loss`.

    Call arguments:
        y_true: 0/1 labels (or probabilities) of the same shape; a missing or extra trailing
            axis of size 1 is allowed.
        y_pred: probabilities or logits, ``(N, ...)``.
    """

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing(self, label_smoothing)

    def compute(self, y_true, y_pred, reduction):
        y_true = _aligned(y_true, y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if not self.from_logits:
            # The logit of p clipped to [EPSILON, 1 - EPSILON] (one fused op) feeds the stable kernel
            # below. Half precision cannot hold 1 - EPSILON, so those probabilities go to float32.
            y_pred = torch.logit(y_pred if y_pred.element_size() >= 4 else y_pred.float(), eps=EPSILON)
        return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction=reduction)

    def check_targets(self, y_pred_example, y_true):
        super().check_targets(y_pred_example, y_true)
        _check_unit_interval(self, y_true, ": 0/1 labels or probabilities")
        _check_probabilities(self, y_pred_example, "sigmoid")


def _class_last_cross_entropy(y_pred: torch.Tensor, target: torch.Tensor, from_logits: bool, reduction: str,
                              **options: Any) -> torch.Tensor:
    """``F.cross_entropy`` with the class axis last; ``target`` is flat: ``(N*T,)`` ids or ``(N*T, C)``."""
    # log p is a logit of p: log_softmax(log p) = log(p / sum p), the normalisation Keras applies.
    logits = y_pred if from_logits else torch.log(y_pred.clamp_min(EPSILON))
    if logits.dim() == 2:
        return F.cross_entropy(logits, target, reduction=reduction, **options)
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, reduction=reduction, **options)  # (N*T,)
    return losses.reshape(y_pred.shape[:-1]) if reduction == "none" else losses


@_register("categorical_crossentropy")
class CategoricalCrossentropy(Loss):
    """``-sum_c y_c log p_c`` over the class axis (last), for one-hot or soft targets.

    Args:
        from_logits: ``y_pred`` holds logits; they go through ``log_softmax`` (stable for any
            value). Otherwise ``y_pred`` holds probabilities; they are clipped to at least
            ``EPSILON`` and normalised to sum to 1, as in Keras.
        label_smoothing: in [0, 1]; targets become ``y (1 - label_smoothing) + label_smoothing / C``.
        reduction: see :class:`Loss`.

    Call arguments:
        y_true: one-hot rows or distributions of the same shape (all-zero rows add no loss).
        y_pred: probabilities or logits, ``(N, C)`` or ``(N, T, C)``.
    """

    elementwise = False

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing(self, label_smoothing)

    def compute(self, y_true, y_pred, reduction):
        y_true = y_true if y_true.dtype == y_pred.dtype else y_true.to(y_pred.dtype)
        target = y_true if y_true.dim() == 2 else y_true.reshape(-1, y_pred.shape[-1])  # (N*T, C)
        return _class_last_cross_entropy(y_pred, target, self.from_logits, reduction,
                                         label_smoothing=self.label_smoothing)

    def check_targets(self, y_pred_example, y_true):
        _check_finite(self, y_true)
        classes, positions = y_pred_example.shape[-1], tuple(y_pred_example.shape[1:-1])
        if tuple(y_true.shape[1:]) != tuple(y_pred_example.shape[1:]):
            if classes > 1 and tuple(y_true.shape[1:]) in (positions, positions + (1,)):
                raise ValueError(f"CategoricalCrossentropy expects one-hot targets of shape "
                                 f"{_shape(y_pred_example.shape[1:])}. Received: y_true.shape="
                                 f"{_shape(y_true.shape[1:])}, which looks like class ids: "
                                 f"use sparse_categorical_crossentropy")
            _check_same_shape(self, y_pred_example, y_true, allow_trailing_one=False)
        _check_unit_interval(self, y_true, ": one-hot rows or class distributions")
        sums = y_true.reshape(-1, classes).sum(-1)
        bad = ((sums - 1).abs() > 1e-2) & (sums.abs() > 1e-2)  # all-zero rows are allowed (masked positions)
        if bad.any():  # host sync: once, before training
            # Keras computes -sum(y log p) for any rows, and its guides train on multi-hot dummy targets: warn
            warnings.warn(f"CategoricalCrossentropy expects target rows that sum to 1 (one-hot or a distribution) "
                          f"or 0 (masked). Received: a row summing to {float(sums[bad][0]):g}; the loss is "
                          f"-sum(y_true * log(y_pred)) as in Keras. For several labels per sample use "
                          f"binary_crossentropy", UserWarning, stacklevel=2)
        _check_probabilities(self, y_pred_example, "softmax")


@_register("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    """``-log p_y`` for integer class ids ``y``: categorical cross-entropy without one-hot targets.

    Args:
        from_logits: as for :class:`CategoricalCrossentropy`.
        ignore_index: targets equal to this id (padding) add no loss and do not count in the means.
        label_smoothing: in [0, 1]; as for :class:`CategoricalCrossentropy`.
        class_weight: optional ``(C,)`` weights, torch's ``weight``: a position of true class c counts
            ``class_weight[c]`` times, and the means divide by the summed weights (e.g. a small weight
            for the background of a segmentation mask, whose pixels outnumber the objects').
        reduction: see :class:`Loss`; with "none", a sample's value is the (weighted) mean over its
            counted positions.

    Call arguments:
        y_true: int64 class ids in ``[0, C)`` (or ``ignore_index``), ``(N,)`` or ``(N, T)``; a
            trailing axis of size 1 is allowed.
        y_pred: probabilities or logits, ``(N, C)`` or ``(N, T, C)``.
    """

    elementwise = False

    def __init__(self, from_logits: bool = False, ignore_index: int = -100, label_smoothing: float = 0.0,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, class_weight: Any = None):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = _check_label_smoothing(self, label_smoothing)
        if class_weight is not None and (len(class_weight) < 2 or min(class_weight) < 0):
            raise ValueError(f"SparseCategoricalCrossentropy expects class_weight with one weight >= 0 per class. "
                             f"Received: class_weight={class_weight!r}")
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]

    def _weights(self, y_pred: torch.Tensor) -> torch.Tensor | None:
        if self.class_weight is None:
            return None
        return torch.tensor(self.class_weight, dtype=y_pred.dtype, device=y_pred.device)  # (C,)

    def compute(self, y_true, y_pred, reduction):
        target = y_true if y_true.dim() == 1 else y_true.reshape(-1)  # (N*T,)
        return _class_last_cross_entropy(y_pred, target, self.from_logits, reduction, weight=self._weights(y_pred),
                                         ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)

    def per_sample(self, losses, y_true):
        if losses.dim() == 1 and self.class_weight is None:
            return losses  # one position per sample: an ignored one already counts 0
        ids = y_true.reshape(losses.shape)
        counted = ids != self.ignore_index
        if self.class_weight is not None:  # each position counts its class's weight
            counted = self._weights(losses)[torch.where(counted, ids, 0)] * counted
        counted = counted.reshape(len(losses), -1).sum(1)  # (N,)
        return losses.reshape(len(losses), -1).sum(1) / counted.clamp_min(1e-12)

    def prepare_targets(self, y_true, dtype=None):
        """The class ids as int64; float targets must hold whole numbers (raises ``ValueError``)."""
        y_true = torch.as_tensor(y_true)
        if y_true.is_floating_point():
            _check_whole_numbers(self, y_true)
        return y_true.long()

    def check_targets(self, y_pred_example, y_true):
        classes, positions = y_pred_example.shape[-1], tuple(y_pred_example.shape[1:-1])
        expected = _shape(positions)
        received = tuple(y_true.shape[1:])
        if received == tuple(y_pred_example.shape[1:]) and classes > 1:
            raise ValueError(f"SparseCategoricalCrossentropy expects class ids of shape {expected} for "
                             f"predictions of shape {_shape(y_pred_example.shape[1:])}. Received: "
                             f"y_true.shape={_shape(received)}, which looks one-hot: use "
                             f"categorical_crossentropy, or pass class ids (y.argmax(-1))")
        if received not in (positions, positions + (1,)):
            raise ValueError(f"SparseCategoricalCrossentropy expects class ids of shape {expected} for "
                             f"predictions of shape {_shape(y_pred_example.shape[1:])}. "
                             f"Received: y_true.shape={_shape(received)}")
        if y_true.is_floating_point():
            _check_finite(self, y_true)
            _check_whole_numbers(self, y_true)
        ids = y_true[y_true != self.ignore_index]
        if ids.numel():
            low, high = int(ids.min()), int(ids.max())  # host sync: once, before training
            if low < 0 or high >= classes:
                offending = high if high >= classes else low
                raise ValueError(f"SparseCategoricalCrossentropy expects class ids in [0, {classes}) (the "
                                 f"predictions have C={classes} classes on their last axis) or "
                                 f"ignore_index={self.ignore_index}. Received: class id {offending}")
        _check_probabilities(self, y_pred_example, "softmax")


@_register("kl_divergence", "kld", "kullback_leibler_divergence")
class KLDivergence(Loss):
    """``sum_c y_c log(y_c / p_c)`` over the class axis (last): the divergence of ``p`` from ``y``.

    Both distributions are clipped to ``[EPSILON, 1]`` first, as in Keras.

    Args:
        from_logits: ``y_pred`` holds logits, turned into log-probabilities by ``log_softmax``.
        reduction: see :class:`Loss`.

    Call arguments:
        y_true: distributions of the same shape.
        y_pred: probabilities or logits, ``(N, C)`` or ``(N, T, C)``.
    """

    elementwise = False

    def __init__(self, from_logits: bool = False, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)

    def compute(self, y_true, y_pred, reduction):
        log_p = F.log_softmax(y_pred, dim=-1) if self.from_logits else torch.log(y_pred.clamp(EPSILON, 1.0))
        losses = F.kl_div(log_p, y_true.to(log_p.dtype).clamp(EPSILON, 1.0), reduction="none").sum(-1)  # (N,) or (N, T)
        return _reduce(losses, reduction)

    def check_targets(self, y_pred_example, y_true):
        _check_finite(self, y_true)
        _check_same_shape(self, y_pred_example, y_true, allow_trailing_one=False)
        _check_unit_interval(self, y_true, ": class distributions")
        _check_probabilities(self, y_pred_example, "softmax")


# -- segmentation: overlap between predicted and true regions ---------------------------------------------
class OverlapLoss(Loss):
    """Base of :class:`Dice` and :class:`Jaccard`: ``1 - mean_c score_c``, per sample.

    For each sample and each class ``c`` it sums, over the sample's positions (pixels), the soft
    intersection ``I_c = sum p_c * y_c`` and the sizes ``S_c = sum p_c + sum y_c``; a subclass's
    :meth:`score` turns them into a similarity in [0, 1]. The loss of a sample is one minus the mean
    similarity over the classes (every class counts equally, whatever its area). ``smooth`` is added
    to both sides of the ratio: a class absent from the target and the prediction scores 1, and the
    gradient stays finite.

    The class axis is the LAST axis (deepzen's convention for losses): segmentation predictions are
    ``(N, H, W, C)``. A single class (``C == 1``) is a binary mask: its score is the foreground's.

    With many classes and few of them in each sample, the absent classes weigh most in the mean (any
    probability they get anywhere costs them), which can push a network to predict none of the
    objects; cross-entropy with a small background weight trained the MNIST-scenes U-Net better.

    Args:
        from_logits: ``y_pred`` holds logits: softmax over the class axis (a sigmoid when C == 1).
        smooth: added to the numerator and the denominator (1.0, as in V-Net's and most segmentation code).
        reduction: see :class:`Loss`.

    Call arguments:
        y_true: class ids ``(N, ...)`` (int, in ``[0, C)``), or one-hot / soft targets shaped like
            ``y_pred``; for C == 1, a 0/1 mask ``(N, ...)`` or ``(N, ..., 1)``.
        y_pred: probabilities or logits ``(N, ..., C)``.
    """

    elementwise = False

    def __init__(self, from_logits: bool = False, smooth: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None):
        super().__init__(name=name, reduction=reduction)
        if not smooth >= 0:
            raise ValueError(f"{type(self).__name__} expects smooth >= 0. Received: smooth={smooth}")
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        if self.from_logits:
            y_pred = torch.sigmoid(y_pred) if classes == 1 else torch.softmax(y_pred, dim=-1)
        probabilities = y_pred.reshape(y_pred.shape[0], -1, classes)  # (N, P, C)
        if y_true.dim() == y_pred.dim() - 1 and classes > 1:  # class ids (N, ...)
            targets = F.one_hot(y_true.long().reshape(y_true.shape[0], -1), classes).to(probabilities.dtype)
        else:
            targets = y_true.to(probabilities.dtype).reshape(probabilities.shape)  # (N, P, C)
        intersection = (probabilities * targets).sum(1)  # (N, C)
        sizes = probabilities.sum(1) + targets.sum(1)  # (N, C)
        return 1.0 - self.score(intersection, sizes).mean(-1)  # (N,)

    def score(self, intersection: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """The per-class similarity ``(N, C)`` from the soft intersections and the summed sizes."""
        raise NotImplementedError

    def prepare_targets(self, y_true, dtype=None):
        """Class ids stay int64; masks and one-hot targets take the predictions' dtype."""
        y_true = torch.as_tensor(y_true)
        return y_true.long() if not y_true.is_floating_point() else y_true.to(dtype or torch.get_default_dtype())

    def check_targets(self, y_pred_example, y_true):
        _check_finite(self, y_true)
        classes, positions = y_pred_example.shape[-1], tuple(y_pred_example.shape[1:-1])
        received = tuple(y_true.shape[1:])
        if received == positions and classes > 1:  # class ids
            _check_whole_numbers(self, y_true)
            if y_true.numel():
                low, high = int(y_true.min()), int(y_true.max())  # host sync: once, before training
                if low < 0 or high >= classes:
                    raise ValueError(f"{type(self).__name__} expects class ids in [0, {classes}) (the predictions "
                                     f"have C={classes} classes on their last axis). Received: class id "
                                     f"{high if high >= classes else low}")
        elif received == tuple(y_pred_example.shape[1:]) or (classes == 1 and received == positions):
            _check_unit_interval(self, y_true, ": masks, one-hot or soft targets")
        else:
            raise ValueError(f"{type(self).__name__} expects class ids of shape {_shape(positions)} or targets "
                             f"shaped like the predictions, {_shape(y_pred_example.shape[1:])}. "
                             f"Received: y_true.shape={_shape(received)}")
        _check_probabilities(self, y_pred_example, "sigmoid" if classes == 1 else "softmax")


@_register("dice", "dice_loss")
class Dice(OverlapLoss):
    """Soft Dice loss (Milletari et al. 2016, V-Net): ``1 - mean_c (2 I_c + s) / (S_c + s)``.

    See :class:`OverlapLoss` for the arguments and shapes. Keras's ``Dice`` scores one binary mask
    over the whole batch; this one scores each class of each sample, which is what multi-class
    segmentation needs, and equals it per sample for C == 1.

    Example:
        >>> y_true = torch.tensor([[0, 1, 1, 0]])                       # class ids (N, P) = (1, 4)
        >>> y_pred = torch.tensor([[[1., 0.], [0., 1.], [0.5, 0.5], [1., 0.]]])  # (N, P, C)
        >>> round(float(Dice(smooth=0.0)(y_true, y_pred)), 4)  # 1 - (2*2/(2.5+2) + 2*1.5/(1.5+2)) / 2
        0.127
    """

    def score(self, intersection, sizes):
        return (2.0 * intersection + self.smooth) / (sizes + self.smooth)


@_register("jaccard", "iou_loss", "jaccard_loss")
class Jaccard(OverlapLoss):
    """Soft IoU (Jaccard) loss: ``1 - mean_c (I_c + s) / (S_c - I_c + s)``, the union being ``S_c - I_c``.

    See :class:`OverlapLoss` for the arguments and shapes; :class:`deepzen.metrics.MeanIoU` is the
    hard (argmax) measure it stands in for.
    """

    def score(self, intersection, sizes):
        return (intersection + self.smooth) / (sizes - intersection + self.smooth)


# -- Keras's loss functions: loss_function(y_true, y_pred) -> one value per sample ----------------------
def _function_of(loss_class: type) -> Callable[..., torch.Tensor]:
    """Keras's functional form of ``loss_class``: ``fn(y_true, y_pred, **kwargs)``, the ``(N,)`` values."""

    def loss_function(y_true: Any, y_pred: Any, **kwargs: Any) -> torch.Tensor:
        return loss_class(reduction="none", **kwargs)(y_true, y_pred)

    loss_function.__name__ = loss_function.__qualname__ = loss_class.default_name
    loss_function.__doc__ = (f"The {loss_class.__name__} loss of each sample, ``(N,)``: Keras's "
                             f"``keras.losses.{loss_class.default_name}(y_true, y_pred)``. Keyword arguments "
                             f"are :class:`{loss_class.__name__}`'s.")
    return loss_function


# -- checks, run once before training -----------------------------------------------------------------
def _shape(per_sample_shape) -> str:
    """A target or prediction shape as layers show it, with ``None`` for the batch axis: ``(None, 10)``."""
    from deepzen.layers.base import shape_str  # late: loading losses must not load every layer

    return shape_str((None, *per_sample_shape))


def _check_label_smoothing(loss: Loss, label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{type(loss).__name__} expects label_smoothing in [0, 1]. "
                         f"Received: label_smoothing={label_smoothing}")
    return float(label_smoothing)


def _check_finite(loss: Loss, y_true: torch.Tensor) -> None:
    if y_true.is_floating_point() and not bool(torch.isfinite(y_true).all()):  # host sync: once
        raise ValueError(f"{type(loss).__name__} expects finite targets. Received: y_true contains "
                         f"{int((~torch.isfinite(y_true)).sum())} NaN or infinite values")


def _check_same_shape(loss: Loss, y_pred: torch.Tensor, y_true: torch.Tensor, allow_trailing_one: bool = True) -> None:
    """Targets match the predictions past the batch axis (up to a trailing axis of size 1 if allowed)."""
    pred, true = tuple(y_pred.shape[1:]), tuple(y_true.shape[1:])
    if pred == true or (allow_trailing_one and (pred == true + (1,) or true == pred + (1,))):
        return
    raise ValueError(f"{type(loss).__name__} expects targets shaped like the predictions, "
                     f"{_shape(pred)}. Received: y_true.shape={_shape(true)} "
                     f"for y_pred.shape={_shape(pred)}")


def _check_unit_interval(loss: Loss, values: torch.Tensor, hint: str) -> None:
    """Targets lie in [0, 1]; ``hint`` says what they should be."""
    if values.numel() == 0:
        return
    low, high = float(values.min()), float(values.max())  # host sync: once, before training
    if low < 0 or high > 1:
        raise ValueError(f"{type(loss).__name__} expects targets in [0, 1]{hint}. "
                         f"Received: values from {low:g} to {high:g}")


def _check_probabilities(loss: Loss, y_pred_example: torch.Tensor, output_activation: str) -> None:
    """With ``from_logits=False`` the model must output probabilities; logits there are a common slip."""
    if loss.from_logits or y_pred_example.numel() == 0:
        return
    low, high = float(y_pred_example.min()), float(y_pred_example.max())  # host sync: once
    if low < 0 or high > 1:
        raise ValueError(f"{type(loss).__name__}(from_logits=False) expects the model to output probabilities "
                         f"in [0, 1]. Received: predictions from {low:g} to {high:g}; pass from_logits=True "
                         f"if the model outputs logits, or end it with a {output_activation}")


def _check_whole_numbers(loss: Loss, y_true: torch.Tensor) -> None:
    fractional = y_true[y_true != y_true.round()]
    if fractional.numel():  # host sync: once, before training
        raise ValueError(f"{type(loss).__name__} expects integer class ids. "
                         f"Received: the value {float(fractional[0]):g}")


class LossFunctionWrapper(Loss):
    """A function ``fn(y_true, y_pred, **kwargs)`` as a :class:`Loss` (Keras's class of that name).

    ``fn`` returns per-sample values ``(N,)`` (or per position, or a scalar); ``reduction`` and
    ``sample_weight`` apply to them as to any Keras-style :class:`Loss`.

    Args:
        fn: the loss function, called with the targets first.
        name: default: the function's name.
        reduction: see :class:`Loss`.
        **kwargs: passed to ``fn`` on every call.
    """

    def __init__(self, fn: Callable[..., Any], reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, **kwargs: Any):
        super().__init__(name=name or getattr(fn, "__name__", None) or type(fn).__name__, reduction=reduction)
        self.fn, self.fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def prepare_targets(self, y_true, dtype=None):
        """The targets as a tensor, their dtype unchanged: the function decides what it takes."""
        return torch.as_tensor(y_true)

    def check_targets(self, y_pred_example, y_true):
        """Nothing to check: the function decides which targets fit."""

    def get_config(self):
        fn = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"
        return {"fn": fn, "reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config):
        raise TypeError(f"A wrapped loss function cannot be rebuilt from a config (received fn={config.get('fn')!r}): "
                        f"pass the function to compile(loss=...) again")


class TorchLoss(Loss):
    """A ``torch.nn`` loss module, called in torch's order ``module(input, target)``.

    ``TorchLoss(module)(y_true, y_pred)`` is ``module(y_pred, y_true)`` with the module's own
    reduction. With ``sample_weight``, or with ``reduction="none"`` (set by the engine for sample or
    class weights), the module runs with ``reduction="none"`` and its values are averaged per sample.

    Args:
        module: e.g. ``torch.nn.CrossEntropyLoss()``; it must have a ``reduction`` attribute for
            sample weights.
        reduction: see :class:`Loss`.
    """

    elementwise = False

    def __init__(self, module: nn.Module, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(name=name or type(module).__name__, reduction=reduction)
        self.module = module
        self.unreduced: tuple[nn.Module] | None = None

    def compute(self, y_true, y_pred, reduction):
        if reduction != "none":
            return self.module(y_pred, y_true)  # torch's order, and the module's own reduction
        if not hasattr(self.module, "reduction"):
            raise ValueError(f"sample_weight/class_weight need a loss with a 'reduction' attribute; "
                             f"{self.module!r} has none")
        if self.unreduced is None:  # built once: the module with reduction="none"
            self.unreduced = (copy.copy(self.module),)  # a tuple, so nn.Module does not register it twice
            self.unreduced[0].reduction = "none"
        return self.unreduced[0](y_pred, y_true)

    def prepare_targets(self, y_true, dtype=None):
        """The targets as a tensor, their dtype unchanged (torch's losses say what they take)."""
        return torch.as_tensor(y_true)

    def check_targets(self, y_pred_example, y_true):
        """Nothing to check: the module raises for targets it does not take."""

    def get_config(self):
        return {"module": repr(self.module), "reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config):
        raise TypeError(f"A torch loss module cannot be rebuilt from a config (received module={config.get('module')!r}): "
                        f"pass it to compile(loss=...) again")


def as_loss(loss: Any) -> Loss:
    """Any loss ``compile`` accepts, as a :class:`Loss` called ``loss(y_true, y_pred, sample_weight=None)``.

    A :class:`Loss` is returned as it is; a ``torch.nn`` module is wrapped in :class:`TorchLoss` (it
    keeps torch's ``(input, target)`` order); a function ``fn(y_true, y_pred)`` in
    :class:`LossFunctionWrapper`.

    Raises:
        TypeError: for anything that is not callable.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, nn.Module):
        return TorchLoss(loss)
    if callable(loss):
        return LossFunctionWrapper(loss)
    raise TypeError(f"A loss must be a Loss, a torch.nn loss module or a function fn(y_true, y_pred). "
                    f"Received: {loss!r} of type {type(loss).__name__}")


mean_squared_error = _function_of(MeanSquaredError)
mean_absolute_error = _function_of(MeanAbsoluteError)
huber = _function_of(Huber)
hinge = _function_of(Hinge)
binary_crossentropy = _function_of(BinaryCrossentropy)
categorical_crossentropy = _function_of(CategoricalCrossentropy)
sparse_categorical_crossentropy = _function_of(SparseCategoricalCrossentropy)
kl_divergence = _function_of(KLDivergence)
dice = _function_of(Dice)
jaccard = _function_of(Jaccard)


def get(identifier: Any, **kwargs: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A loss from a name, a class, a module or a callable.

    Args:
        identifier: a registered name ("mse", "binary_crossentropy", "SparseCategoricalCrossentropy",
            ...; case and "-"/"_" do not matter) or a loss class, instantiated with ``kwargs``; a
            :class:`Loss`, a ``torch.nn`` loss module (called in torch's order) or a function
            ``f(y_true, y_pred)`` (Keras's order), returned as it is (:func:`as_loss` wraps the last two).
        **kwargs: constructor arguments for a named loss, e.g. ``get("bce", from_logits=True)``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        TypeError: for anything else, or keyword arguments given with an object.
    """
    if isinstance(identifier, str):
        return resolve(LOSSES, identifier, **kwargs)
    if isinstance(identifier, type) and issubclass(identifier, nn.Module):
        return identifier(**kwargs)
    if kwargs:
        raise TypeError(f"Keyword arguments apply only to a loss given by name or class. "
                        f"Received: identifier={identifier!r} with {sorted(kwargs)}")
    if callable(identifier):
        return identifier
    raise TypeError(f"A loss must be a name ({', '.join(LOSSES.names())}), a Loss or a callable "
                    f"f(y_true, y_pred). Received: {identifier!r} of type {type(identifier).__name__}")
