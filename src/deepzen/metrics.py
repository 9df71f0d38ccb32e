"""Streaming metrics by their Keras names, accumulated on the device without host syncs.

Every metric has Keras's three methods: ``update_state(y_true, y_pred, sample_weight=None)`` adds a
batch, ``result()`` reads the metric over everything seen since ``reset_state()``. Functions given to
``compile(metrics=[...])`` are called ``fn(y_true, y_pred)`` too (:class:`MeanMetricWrapper`).

The training engine calls ``update_state`` on every step and reads ``result()`` only every N steps
and at the end of an epoch. So ``update_state`` adds into state tensors (``metric.state``) that live
on the predictions' device and never reads a value back: no ``.item()``, no ``.cpu()``, no Python
``if`` on a tensor. Decisions made in Python (binary or multiclass? how many classes?) look only at
*shapes*, once, at the first update after construction or ``reset_state()``, which is also when the
built-in metrics allocate their state on ``y_pred``'s device. A custom metric creates its state in
``__init__`` with :meth:`Metric.add_weight`, as in Keras; it moves to the predictions' device at the
first update.

Predictions put the class axis last (Keras convention): ``y_pred`` is ``(N,)``/``(N, 1)`` for a
binary task, ``(N, C)`` for C classes and ``(N, T, C)`` for sequences.

Example:
    >>> import torch
    >>> accuracy = get("accuracy")
    >>> accuracy.update_state(torch.tensor([0, 0]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    >>> accuracy.update_state(torch.tensor([1]), torch.tensor([[0.3, 0.7]]))
    >>> round(float(accuracy.result()), 4)  # 2 of 3 right
    0.6667
    >>> m = BinaryAccuracy()                 # Keras's documented example
    >>> m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    >>> float(m.result())
    0.75
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable

import torch

from deepzen import losses
from deepzen._registry import Registry
from deepzen.serializable import Serializable

METRICS: Registry[Any] = Registry("metric")

CLASSIFICATION_KINDS = ("auto", "binary", "sparse", "categorical")

# First argument names that mean an update still takes deepzen's old order (y_pred, y_true).
_PREDICTION_NAMES = ("y_pred", "pred", "preds", "prediction", "predictions", "output", "outputs", "logits")


def _sum_dtype(device: torch.device) -> torch.dtype:
    # Sums of errors over an epoch keep float64 where the device has it (MPS has not).
    return torch.float32 if device.type == "mps" else torch.float64


class MetricVariable(torch.Tensor):
    """A metric's state tensor with Keras's variable methods: ``assign``, ``assign_add``, ``assign_sub``.

    Operations on it give plain tensors (like ``nn.Parameter``); the methods update it in place, on
    its device, without a host sync.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl

    def assign(self, value: Any) -> "MetricVariable":
        self.copy_(torch.as_tensor(value))
        return self

    def assign_add(self, value: Any) -> "MetricVariable":
        self.add_(torch.as_tensor(value, device=self.device))
        return self

    def assign_sub(self, value: Any) -> "MetricVariable":
        self.sub_(torch.as_tensor(value, device=self.device))
        return self

    def __deepcopy__(self, memo: dict) -> "MetricVariable":
        if id(self) not in memo:
            memo[id(self)] = torch.Tensor._make_subclass(MetricVariable, self.detach().clone(), False)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):  # saved (torch.save, pickle) as a plain tensor
        return torch.Tensor.__reduce_ex__(self.as_subclass(torch.Tensor), protocol)


def _streaming(update: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an ``update_state``: no autograd, array-likes become tensors, and the metric's variables
    move to the predictions' device at the first update there (a shape/device check, no host sync)."""
    if getattr(update, "is_streaming", False):
        return update

    @functools.wraps(update)
    def update_state(self, *args: Any, **kwargs: Any) -> None:
        with torch.no_grad():
            if kwargs or self.initial_values or not _all_tensors(args):  # the engine's call skips this
                args, kwargs = self._prepare_update(args, kwargs)
            update(self, *args, **kwargs)

    update_state.is_streaming = True
    return update_state


def _all_tensors(args: tuple) -> bool:
    for arg in args:
        if not isinstance(arg, torch.Tensor):
            return False
    return True


def _as_tensor(value: Any, device: torch.device) -> Any:
    if value is None or isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, device=device)


class Metric(Serializable):
    """Base class of streaming metrics (Keras's ``keras.metrics.Metric``).

    A custom metric, as in Keras, creates its state in ``__init__`` with :meth:`add_weight` and
    overrides ``update_state(self, y_true, y_pred, sample_weight=None)`` and ``result(self)``;
    ``reset_state`` sets every weight back to its initial value. ``update_state`` runs without
    autograd and receives tensors (lists and arrays are converted).

    deepzen's built-in metrics allocate their state from the first batch's shapes instead: they
    implement :meth:`build` (zeroed state tensors), :meth:`accumulate` (add one batch, on the
    device) and :meth:`compute` (the result from the state).

    A subclass whose ``update_state`` takes the predictions first (``y_pred``, ``logits``, ...) is
    refused when the class is defined: deepzen once called metrics as ``(y_pred, y_true)``.

    Args:
        name: the key under which the metric is logged (in ``History``, progress bars, ...);
            default: the class name in snake case.
        dtype: the default dtype of :meth:`add_weight` (float32 if None).

    Example:
        >>> class TruePositives(Metric):
        ...     def __init__(self, name="true_positives", **kwargs):
        ...         super().__init__(name=name, **kwargs)
        ...         self.true_positives = self.add_weight(name="tp", initializer="zeros")
        ...     def update_state(self, y_true, y_pred, sample_weight=None):
        ...         self.true_positives.assign_add(((y_true == 1) & (y_pred > 0.5)).sum())
        ...     def result(self):
        ...         return self.true_positives
        >>> m = TruePositives()
        >>> m.update_state([1, 1, 0], [0.9, 0.2, 0.8])
        >>> float(m.result())
        1.0
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        update = cls.__dict__.get("update_state")
        if update is not None:
            arguments = list(inspect.signature(update).parameters)[1:2]
            if arguments and arguments[0] in _PREDICTION_NAMES:
                raise TypeError(f"{cls.__name__}.update_state takes {arguments[0]!r} first; deepzen calls metrics "
                                f"as update_state(y_true, y_pred, sample_weight=None) (Keras's order). "
                                f"Received: update_state{inspect.signature(update)}")
            cls.update_state = _streaming(update)

    def __init__(self, name: str | None = None, dtype: torch.dtype | str | None = None):
        self.name = name or _snake_case(type(self).__name__)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.state: dict[str, torch.Tensor] | None = None
        self.initial_values: dict[str, torch.Tensor] = {}  # of the weights made by add_weight

    def update_state(self, y_true: torch.Tensor, y_pred: torch.Tensor, sample_weight: torch.Tensor | None = None
                     ) -> None:
        """Adds one batch. Never synchronizes with the host.

        Args:
            y_true: targets for the samples (labels, one-hot rows or values).
            y_pred: predictions, class axis last, e.g. ``(N,)``, ``(N, C)`` or ``(N, T, C)``.
            sample_weight: optional ``(N,)`` weights (the metrics that take them say so).
        """
        if self.state is None:
            self.state = self.build(y_true, y_pred)
        self.accumulate(y_true, y_pred, sample_weight)

    def result(self) -> torch.Tensor:
        """The metric over everything seen since the last reset, as a tensor on the state's device."""
        if self.state is None:
            return torch.zeros(())
        return self.compute()

    def reset_state(self) -> None:
        """Forgets all batches: weights go back to their initial values; state built from shapes is
        dropped, and the next update allocates it afresh (and re-reads the shapes)."""
        if self.initial_values:
            for name, value in self.initial_values.items():
                self.state[name].copy_(value)  # in place: attributes that hold the weight stay valid
        else:
            self.state = None

    def reset(self) -> None:
        """deepzen's older name of :meth:`reset_state`."""
        self.reset_state()

    def add_weight(self, name: str | None = None, shape: tuple[int, ...] = (), initializer: Any = "zeros",
                   dtype: torch.dtype | str | None = None) -> MetricVariable:
        """A state tensor of the metric (Keras's ``Metric.add_weight``), kept in ``self.state[name]``.

        Args:
            name: the key in ``self.state`` (default: ``"variable_<i>"``).
            shape: the tensor's shape; ``()`` for a scalar.
            initializer: "zeros", "ones", a number, or a function ``shape -> tensor``.
            dtype: default: the metric's ``dtype``, else float32.

        Returns:
            A :class:`MetricVariable` (a tensor with ``assign``/``assign_add``/``assign_sub``).
        """
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        dtype = dtype or self.dtype or torch.float32
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        if callable(initializer):
            initial = torch.as_tensor(initializer(shape)).to(dtype)
        else:
            value = {"zeros": 0, "ones": 1}.get(initializer, initializer)
            if not isinstance(value, (int, float)):
                raise ValueError(f"Metric '{self.name}': add_weight expects initializer 'zeros', 'ones', a number or "
                                 f"a function. Received: initializer={initializer!r}")
            initial = torch.full(shape, value, dtype=dtype)
        self.state = self.state if self.state is not None else {}
        name = name or f"variable_{len(self.state)}"
        if name in self.state:
            raise ValueError(f"Metric '{self.name}' already has a weight named {name!r}")
        self.initial_values[name] = initial
        variable = torch.Tensor._make_subclass(MetricVariable, initial.clone(), False)
        self.state[name] = variable
        return variable

    def _prepare_update(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Array-likes as tensors on the predictions' device; the weights moved there (once)."""
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        if device is None:
            device = next(iter(self.state.values())).device if self.state else torch.device("cpu")
        args = tuple(_as_tensor(a, device) for a in args)
        kwargs = {key: _as_tensor(value, device) for key, value in kwargs.items()}
        if self.initial_values:
            self._move_variables(device)
        return args, kwargs

    def _move_variables(self, device: torch.device) -> None:
        for name, variable in self.state.items():
            if variable.device != device:  # once, at the first update on a new device
                moved = torch.Tensor._make_subclass(MetricVariable, variable.detach().to(device), False)
                torch.utils.swap_tensors(variable, moved)  # in place: attributes that hold it stay valid
                self.initial_values[name] = self.initial_values[name].to(device)

    def build(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must override update_state(self, y_true, y_pred, "
                                  f"sample_weight=None) and result(self)")

    def accumulate(self, y_true: torch.Tensor, y_pred: torch.Tensor, sample_weight: torch.Tensor | None) -> None:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(m).from_config(m.get_config())`` rebuilds ``m``."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Metric":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


Metric.update_state = _streaming(Metric.update_state)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _no_sample_weight(metric: Metric, sample_weight: Any) -> None:
    if sample_weight is not None:
        raise ValueError(f"Metric '{metric.name}' ({type(metric).__name__}) does not take sample_weight. "
                         f"Received: sample_weight of shape {tuple(sample_weight.shape)}")


def _weights(sample_weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``(N,)`` sample weights broadcast over ``like``'s positions ``(N, ...)``, or None."""
    if sample_weight is None:
        return None
    weights = sample_weight.to(like.device, torch.float64 if like.device.type != "mps" else torch.float32)
    if weights.dim() == 0 or weights.shape == like.shape:
        return weights
    weights = weights.reshape(weights.shape[0], *([1] * (like.dim() - 1))) if weights.dim() == 1 else weights
    return weights.expand(like.shape)


def _zeros(reference: torch.Tensor, *shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=reference.device)


# -- classification: which kind of targets, and the class labels ------------------------------------
def _without_trailing_one(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:-1] if shape and shape[-1] == 1 else shape


def _fits(kind: str, pred: tuple[int, ...], true: tuple[int, ...]) -> bool:
    if kind == "binary":
        return _without_trailing_one(pred) == _without_trailing_one(true)
    if kind == "sparse":
        return len(pred) >= 2 and true in (pred[:-1], (*pred[:-1], 1))
    return len(pred) >= 2 and true == pred  # categorical


def classification_kind(kind: str, y_pred_shape, y_true_shape, where: str) -> str:
    """Resolves ``kind`` ("auto" or explicit) to "binary", "sparse" or "categorical" from shapes.

    "auto" reads y_pred ``(N,)`` or ``(..., 1)`` as binary, y_true without the class axis (or with
    size 1 there) as sparse labels, and y_true shaped like y_pred as one-hot (categorical).

    Raises:
        ValueError: when the shapes do not fit the kind; names ``where`` and both shapes.
    """
    pred, true = tuple(y_pred_shape), tuple(y_true_shape)
    if kind not in CLASSIFICATION_KINDS:
        raise ValueError(f"{where} expects kind in {CLASSIFICATION_KINDS}. Received: kind={kind!r}")
    if kind == "auto":
        binary_shaped = len(pred) == 1 or (len(pred) >= 1 and pred[-1] == 1)
        candidates = ("binary",) if binary_shaped else ("sparse", "categorical")
    else:
        candidates = (kind,)
    for candidate in candidates:
        if _fits(candidate, pred, true):
            return candidate
    expected = {
        "binary": "y_true with the shape of y_pred (a trailing axis of size 1 may be missing on either)",
        "sparse": "y_pred (..., C) with integer labels y_true (...) or (..., 1)",
        "categorical": "y_pred (..., C) with one-hot y_true of the same shape",
    }
    raise ValueError(f"{where}: expected {' or '.join(expected[c] for c in candidates)}. "
                     f"Received: y_pred.shape={pred}, y_true.shape={true}")


def check_same_shape(y_pred_shape, y_true_shape, where: str) -> None:
    """Raises unless y_true has y_pred's shape (a trailing axis of size 1 may be missing on either)."""
    classification_kind("binary", y_pred_shape, y_true_shape, where)


def predicted_classes(kind: str, y_pred: torch.Tensor, threshold: float) -> torch.Tensor:
    """Predicted class per position: ``(N,)`` 0/1 for binary, else ``y_pred.shape[:-1]``."""
    if kind == "binary":
        return (y_pred.reshape(-1) > threshold).long()
    return y_pred.argmax(-1)


def actual_classes(kind: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """True class per position, aligned with :func:`predicted_classes`; ``ignore_index`` labels survive."""
    if kind == "binary":
        labels = y_true.reshape(-1)
        return (labels.round() if labels.is_floating_point() else labels).long()
    if kind == "sparse":
        return y_true.reshape(y_pred.shape[:-1]).long()
    return y_true.argmax(-1)


# -- accuracy ----------------------------------------------------------------------------------------
class Accuracy(Metric):
    """Fraction of positions whose class is predicted right (in the top ``k`` for k > 1).

    This is what ``compile(metrics=["accuracy"])`` gives, read as Keras reads that string: binary,
    sparse or categorical from the shapes (and binary under a binary cross-entropy loss). The classes
    below fix the kind: :class:`BinaryAccuracy`, :class:`CategoricalAccuracy`,
    :class:`SparseCategoricalAccuracy`, :class:`TopKCategoricalAccuracy`,
    :class:`SparseTopKCategoricalAccuracy`.

    Args:
        kind: "auto" (decided from the first batch's shapes, see :func:`classification_kind`),
            "binary" (``y_pred > threshold`` against 0/1 targets, elementwise, so also multi-label),
            "sparse" (integer labels) or "categorical" (one-hot targets).
        k: a position counts as right when its class is among the ``k`` highest scores.
        threshold: binary decision threshold (0.5 for probabilities, 0.0 for logits).
        ignore_index: positions whose label equals it are left out (padding in sequences).
        name: logging key.

    Call arguments (``update_state``):
        y_true: ``(N,)``, ``(N, 1)``, ``(N, T)`` labels or one-hot rows shaped like y_pred.
        y_pred: ``(N,)``/``(N, 1)`` (binary), ``(N, C)`` or ``(N, T, C)``.
        sample_weight: optional ``(N,)`` weights of the samples.
    """

    def __init__(self, kind: str = "auto", k: int = 1, threshold: float = 0.5, ignore_index: int = -100,
                 name: str = "accuracy", dtype: Any = None):
        super().__init__(name, dtype)
        if kind not in CLASSIFICATION_KINDS:
            raise ValueError(f"{type(self).__name__} expects kind in {CLASSIFICATION_KINDS}. Received: kind={kind!r}")
        if k < 1:
            raise ValueError(f"{type(self).__name__} expects k >= 1. Received: k={k}")
        self.kind, self.k, self.threshold, self.ignore_index = kind, int(k), float(threshold), int(ignore_index)

    def build(self, y_true, y_pred):
        self.resolved_kind = classification_kind(self.kind, y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        if self.k > 1 and (self.resolved_kind == "binary" or y_pred.shape[-1] < self.k):
            raise ValueError(f"Metric '{self.name}' expects y_pred with at least k={self.k} classes on its last "
                             f"axis. Received: y_pred.shape={tuple(y_pred.shape)}")
        dtype = _sum_dtype(y_pred.device)  # float sums, so that sample weights add in too
        return {"correct": _zeros(y_pred, dtype=dtype), "count": _zeros(y_pred, dtype=dtype)}

    def accumulate(self, y_true, y_pred, sample_weight):
        actual = actual_classes(self.resolved_kind, y_pred, y_true)
        if self.k == 1:
            right = predicted_classes(self.resolved_kind, y_pred, self.threshold) == actual
        else:
            top = y_pred.topk(self.k, dim=-1).indices  # (..., k)
            right = (top == actual.unsqueeze(-1)).any(-1)
        kept = actual != self.ignore_index
        if sample_weight is None:
            self.state["correct"] += (right & kept).sum()
            self.state["count"] += kept.sum()
            return
        positions = y_pred if self.resolved_kind == "binary" else actual
        weights = _weights(sample_weight, positions).reshape(actual.shape) * kept
        self.state["correct"] += (weights * right).sum()
        self.state["count"] += weights.sum()

    def compute(self):
        return (self.state["correct"] / self.state["count"].clamp_min(1e-12)).float()

    def get_config(self):
        return {"kind": self.kind, "k": self.k, "threshold": self.threshold, "ignore_index": self.ignore_index,
                **super().get_config()}


@METRICS.register("binary_accuracy")
class BinaryAccuracy(Accuracy):
    """Fraction of elements with ``(y_pred > threshold) == y_true``, for one or several 0/1 labels per sample.

    Example:
        >>> m = BinaryAccuracy()
        >>> m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
        >>> float(m.result())
        0.75
    """

    def __init__(self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5,
                 ignore_index: int = -100):
        super().__init__("binary", 1, threshold, ignore_index, name, dtype)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold, "ignore_index": self.ignore_index}


@METRICS.register("categorical_accuracy")
class CategoricalAccuracy(Accuracy):
    """Fraction of positions whose highest score is the one-hot target's class."""

    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None, ignore_index: int = -100):
        super().__init__("categorical", 1, 0.5, ignore_index, name, dtype)

    def get_config(self):
        return {"name": self.name, "ignore_index": self.ignore_index}


@METRICS.register("sparse_categorical_accuracy")
class SparseCategoricalAccuracy(Accuracy):
    """Fraction of positions whose highest score is the integer label's class."""

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None, ignore_index: int = -100):
        super().__init__("sparse", 1, 0.5, ignore_index, name, dtype)

    def get_config(self):
        return {"name": self.name, "ignore_index": self.ignore_index}


@METRICS.register("top_k_categorical_accuracy")
class TopKCategoricalAccuracy(Accuracy):
    """Fraction of positions whose one-hot target's class is among the ``k`` highest scores."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy", dtype: Any = None,
                 ignore_index: int = -100):
        super().__init__("categorical", k, 0.5, ignore_index, name, dtype)

    def get_config(self):
        return {"k": self.k, "name": self.name, "ignore_index": self.ignore_index}


@METRICS.register("sparse_top_k_categorical_accuracy")
class SparseTopKCategoricalAccuracy(Accuracy):
    """Fraction of positions whose integer label is among the ``k`` highest scores."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy", dtype: Any = None,
                 ignore_index: int = -100):
        super().__init__("sparse", k, 0.5, ignore_index, name, dtype)

    def get_config(self):
        return {"k": self.k, "name": self.name, "ignore_index": self.ignore_index}


METRICS.register("accuracy", Accuracy, "acc")


# -- confusion matrix and the scores built on it ------------------------------------------------------
@METRICS.register("confusion_matrix")
class ConfusionMatrix(Metric):
    """The ``(C, C)`` matrix of counts, rows = true class, columns = predicted class.

    Args:
        num_classes: C; by default ``y_pred.shape[-1]`` (2 for binary predictions).
        kind, threshold, ignore_index: as in :class:`Accuracy`.
        name: logging key.

    ``result()`` is a ``(C, C)`` int64 tensor (sklearn's ``confusion_matrix`` layout).
    """

    def __init__(self, num_classes: int | None = None, kind: str = "auto", threshold: float = 0.5,
                 ignore_index: int = -100, name: str = "confusion_matrix"):
        super().__init__(name)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"{type(self).__name__} expects num_classes >= 2. Received: num_classes={num_classes}")
        if kind not in CLASSIFICATION_KINDS:
            raise ValueError(f"{type(self).__name__} expects kind in {CLASSIFICATION_KINDS}. Received: kind={kind!r}")
        self.num_classes, self.kind = num_classes, kind
        self.threshold, self.ignore_index = float(threshold), int(ignore_index)

    def build(self, y_true, y_pred):
        self.resolved_kind = classification_kind(self.kind, y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        classes = 2 if self.resolved_kind == "binary" else y_pred.shape[-1]
        if self.num_classes is not None and classes != self.num_classes:
            raise ValueError(f"Metric '{self.name}' expects y_pred with num_classes={self.num_classes} scores on "
                             f"its last axis (2 for binary predictions). Received: y_pred.shape={tuple(y_pred.shape)}")
        self.classes = self.num_classes or classes
        return {"matrix": _zeros(y_pred, self.classes * self.classes)}  # flat (C * C,)

    def accumulate(self, y_true, y_pred, sample_weight):
        _no_sample_weight(self, sample_weight)
        actual = actual_classes(self.resolved_kind, y_pred, y_true).reshape(-1)
        predicted = predicted_classes(self.resolved_kind, y_pred, self.threshold).reshape(-1)
        kept = actual != self.ignore_index
        # index_add_ rather than bincount: CUDA bincount reads the maximum back to size its output.
        cell = torch.where(kept, actual * self.classes + predicted, 0)
        self.state["matrix"].index_add_(0, cell, kept.long())

    def matrix(self) -> torch.Tensor:
        """The ``(C, C)`` counts so far (zeros of ``(num_classes, num_classes)`` before any update)."""
        if self.state is None:
            classes = self.num_classes or 0
            return torch.zeros(classes, classes, dtype=torch.long)
        return self.state["matrix"].view(self.classes, self.classes).clone()

    def result(self) -> torch.Tensor:
        return self.matrix()

    def get_config(self):
        return {"num_classes": self.num_classes, "kind": self.kind, "threshold": self.threshold,
                "ignore_index": self.ignore_index, **super().get_config()}


AVERAGES = ("macro", "micro", "weighted", None)


class ClassScore(ConfusionMatrix):
    """A per-class score from true/false positives and false negatives, averaged over classes.

    Binary inputs report the positive class (sklearn's ``average="binary"``) unless ``average`` is
    None. For multiclass inputs ``average`` is "macro" (mean over the classes that occur in y_true
    or in the predictions, as sklearn does), "micro" (pooled counts), "weighted" (by support) or
    None (the ``(C,)`` vector). A class with an empty denominator scores 0.

    Args:
        average: see above.
        num_classes, kind, threshold, ignore_index, name: as in :class:`ConfusionMatrix`.
    """

    default_name: str  # the logging key when no name is given

    def __init__(self, average: str | None = "macro", num_classes: int | None = None, kind: str = "auto",
                 threshold: float = 0.5, ignore_index: int = -100, name: str | None = None):
        if average not in AVERAGES:
            raise ValueError(f"{type(self).__name__} expects average in {AVERAGES}. Received: average={average!r}")
        super().__init__(num_classes, kind, threshold, ignore_index, name or self.default_name)
        self.average = average

    @staticmethod
    def score(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """The score from counts (per class or pooled); empty denominators give 0."""
        raise NotImplementedError

    @staticmethod
    def _counts(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tp = matrix.diagonal()
        return tp, matrix.sum(0) - tp, matrix.sum(1) - tp  # (C,) each: tp, fp, fn

    def result_per_class(self) -> torch.Tensor:
        """The ``(C,)`` scores, one per class."""
        return self.score(*self._counts(self.matrix()))

    def result(self) -> torch.Tensor:
        if self.average is None:
            return self.result_per_class()
        if self.state is None:
            return torch.zeros(())
        matrix = self.matrix()
        tp, fp, fn = self._counts(matrix)
        if self.resolved_kind == "binary":
            return self.score(tp, fp, fn)[1]
        if self.average == "micro":
            return self.score(tp.sum(), fp.sum(), fn.sum())
        per_class = self.score(tp, fp, fn)
        weights = matrix.sum(1) if self.average == "weighted" else (tp + fp + fn > 0)
        return (per_class * weights).sum() / weights.sum().clamp_min(1)

    def get_config(self):
        return {"average": self.average, **super().get_config()}


@METRICS.register("precision")
class Precision(ClassScore):
    """tp / (tp + fp): of the positions predicted as a class, the fraction that are it."""

    default_name = "precision"

    @staticmethod
    def score(tp, fp, fn):
        return tp / (tp + fp).clamp_min(1)


@METRICS.register("recall")
class Recall(ClassScore):
    """tp / (tp + fn): of the positions of a class, the fraction predicted as it."""

    default_name = "recall"

    @staticmethod
    def score(tp, fp, fn):
        return tp / (tp + fn).clamp_min(1)


@METRICS.register("f1", None, "f1_score")
class F1Score(ClassScore):
    """2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall."""

    default_name = "f1"

    @staticmethod
    def score(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn).clamp_min(1)


# -- segmentation: overlap of predicted and true regions -----------------------------------------------
@METRICS.register("mean_iou")
class MeanIoU(ClassScore):
    """Mean intersection over union: ``tp / (tp + fp + fn)`` per class, averaged over the classes
    (Keras's ``MeanIoU``), from the confusion matrix of every position (pixel) seen.

    A class that occurs neither in the targets nor in the predictions is left out of the mean (as in
    Keras). Counts accumulate over all batches: the result is the dataset's IoU, not a mean of
    per-batch values.

    Args:
        num_classes: C (Keras requires it; here it may be read from score predictions' last axis).
        name: logging key.
        dtype: unused; Keras's argument.
        ignore_class: positions whose true class is this id are not counted (e.g. a "void" label).
        sparse_y_true: targets are class ids ``(N, ...)``; False: one-hot ``(N, ..., C)``.
        sparse_y_pred: predictions are class ids shaped like the ids of the targets; False: scores
            ``(N, ..., C)``, whose argmax is taken; None (default): whichever the shapes say.
            (Keras's default is True; with scores it raises where this reads them.)
        axis: the class axis of one-hot targets and scores; deepzen's metrics take it last (-1).

    Example:
        >>> m = MeanIoU(num_classes=2)
        >>> m.update_state([0, 0, 1, 1], [0, 1, 0, 1])  # Keras's example: IoU 1/3 for each class
        >>> round(float(m.result()), 4)
        0.3333
    """

    default_name = "mean_iou"

    def __init__(self, num_classes: int | None = None, name: str | None = None, dtype: Any = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True, sparse_y_pred: bool | None = None,
                 axis: int = -1):
        if axis != -1:
            raise ValueError(f"{type(self).__name__} takes the class axis last (axis=-1), as deepzen's losses and "
                             f"metrics do. Received: axis={axis}; move the class axis last "
                             f"(e.g. deepzen.layers.Permute((2, 3, 1)) after a channels-first head)")
        super().__init__("macro", num_classes, "sparse" if sparse_y_true else "categorical",
                         ignore_index=-100 if ignore_class is None else ignore_class,
                         name=name or self.default_name)
        self.dtype = dtype
        self.ignore_class, self.sparse_y_true, self.sparse_y_pred = ignore_class, bool(sparse_y_true), sparse_y_pred

    @staticmethod
    def score(tp, fp, fn):
        return tp / (tp + fp + fn).clamp_min(1)

    def _scores(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Class-id predictions as one-hot scores ``(N, ..., C)``; score predictions as they are."""
        id_shape = tuple(y_true.shape) if self.sparse_y_true else tuple(y_true.shape[:-1])
        ids = tuple(y_pred.shape) in (id_shape, (*id_shape, 1)) if self.sparse_y_pred is None else self.sparse_y_pred
        if not ids:
            return y_pred
        if tuple(y_pred.shape) not in (id_shape, (*id_shape, 1)):
            raise ValueError(f"Metric '{self.name}' with sparse_y_pred=True expects class ids of shape {id_shape}. "
                             f"Received: y_pred.shape={tuple(y_pred.shape)}; for scores (..., C) pass "
                             f"sparse_y_pred=False")
        if self.num_classes is None:
            raise ValueError(f"Metric '{self.name}' needs num_classes to read class-id predictions "
                             f"(y_pred.shape={tuple(y_pred.shape)} has no class axis)")
        return torch.nn.functional.one_hot(y_pred.reshape(id_shape).long(), self.num_classes)

    def build(self, y_true, y_pred):
        y_pred = self._scores(y_true, y_pred)
        if y_pred.shape[-1] < 2:
            raise ValueError(f"Metric '{self.name}' expects scores for C >= 2 classes on the last axis. Received: "
                             f"y_pred.shape={tuple(y_pred.shape)}; for a binary mask pass 0/1 ids with "
                             f"num_classes=2")
        return super().build(y_true, y_pred)

    def accumulate(self, y_true, y_pred, sample_weight):
        super().accumulate(y_true, self._scores(y_true, y_pred), sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred}


@METRICS.register("dice")
class Dice(MeanIoU):
    """Mean Dice coefficient ``2 tp / (2 tp + fp + fn)`` per class (the per-class F1 score), averaged over
    the classes that occur; arguments and shapes as in :class:`MeanIoU`. :class:`deepzen.losses.Dice`
    is its soft, differentiable form.

    Example:
        >>> m = Dice(num_classes=2)
        >>> m.update_state([0, 0, 1, 1], [0, 1, 1, 1])  # class 0: 2*1/(2+0+1), class 1: 2*2/(4+1+0)
        >>> round(float(m.result()), 4)
        0.7333
    """

    default_name = "dice"

    @staticmethod
    def score(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn).clamp_min(1)


# -- ROC AUC -----------------------------------------------------------------------------------------
@METRICS.register("auc")
class AUC(Metric):
    """Area under the ROC curve of a binary classifier, from histograms of the scores (like Keras).

    Scores are sorted into ``num_thresholds`` buckets at ``i / (num_thresholds - 1)``; the true and
    false positive rates at each threshold come from reversed cumulative sums of the per-bucket
    positive and negative counts, and the curve is integrated with the trapezoid rule. Scores in
    the same bucket count as ties, so the result is within about ``1 / num_thresholds`` of the
    exact AUC. With only one class seen the result is 0.

    Args:
        num_thresholds: number of thresholds (buckets) over [0, 1].
        from_logits: apply a sigmoid to y_pred first.
        name: logging key.

    Shapes:
        y_pred ``(N,)`` or ``(N, 1)`` scores; y_true the same number of 0/1 labels.
    """

    def __init__(self, num_thresholds: int = 200, from_logits: bool = False, name: str = "auc"):
        super().__init__(name)
        if num_thresholds < 3:
            raise ValueError(f"AUC expects num_thresholds >= 3. Received: num_thresholds={num_thresholds}")
        self.num_thresholds, self.from_logits = int(num_thresholds), bool(from_logits)

    def build(self, y_true, y_pred):
        check_same_shape(y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        return {"positives": _zeros(y_pred, self.num_thresholds), "negatives": _zeros(y_pred, self.num_thresholds)}

    def accumulate(self, y_true, y_pred, sample_weight):
        _no_sample_weight(self, sample_weight)
        scores = y_pred.reshape(-1).float()
        if self.from_logits:
            scores = scores.sigmoid()
        # bucket b holds scores in (t_b, t_{b+1}]: above thresholds 0..b; the first and last
        # thresholds act as -eps and 1 + eps, so every score passes the first and none the last.
        bucket = (scores * (self.num_thresholds - 1)).ceil().long().sub(1).clamp(0, self.num_thresholds - 2)
        positive = actual_classes("binary", y_pred, y_true) == 1
        self.state["positives"].index_add_(0, bucket, positive.long())
        self.state["negatives"].index_add_(0, bucket, (~positive).long())

    def compute(self):
        # Reversed cumulative sums: counts of scores above each threshold, (num_thresholds,).
        tp = self.state["positives"].flip(0).cumsum(0).flip(0)
        fp = self.state["negatives"].flip(0).cumsum(0).flip(0)
        tpr = tp / tp[0].clamp_min(1)
        fpr = fp / fp[0].clamp_min(1)
        return ((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2).sum()

    def get_config(self):
        return {"num_thresholds": self.num_thresholds, "from_logits": self.from_logits, **super().get_config()}


# -- means ------------------------------------------------------------------------------------------
def _mean_state(reference: torch.Tensor) -> dict[str, torch.Tensor]:
    dtype = _sum_dtype(reference.device)
    return {"total": _zeros(reference, dtype=dtype), "count": _zeros(reference, dtype=dtype)}


def _add_weighted(state: dict[str, torch.Tensor], values: torch.Tensor, sample_weight: torch.Tensor | None) -> None:
    """Adds ``values`` (weighted by ``sample_weight``, broadcast over their trailing axes) into total and count."""
    values = values.to(state["total"].dtype)
    if sample_weight is None:
        state["total"] += values.sum()
        state["count"] += values.numel()
        return
    weights = _weights(sample_weight, values if values.dim() else sample_weight)
    state["total"] += (values * weights).sum()
    state["count"] += weights.sum()


@METRICS.register("mean")
class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values, sample_weight=None)``.

    Example:
        >>> m = Mean()
        >>> m.update_state([1, 3, 5, 7])
        >>> float(m.result())
        4.0
        >>> m.reset_state()
        >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        2.0
    """

    def __init__(self, name: str = "mean", dtype: Any = None):
        super().__init__(name, dtype)

    def update_state(self, values: torch.Tensor, sample_weight: torch.Tensor | None = None) -> None:
        if self.state is None:
            self.state = _mean_state(values)
        _add_weighted(self.state, values, sample_weight)

    def compute(self):
        return (self.state["total"] / self.state["count"].clamp_min(1e-12)).float()


@METRICS.register("sum")
class Sum(Mean):
    """The (weighted) sum of the values given to ``update_state(values, sample_weight=None)``.

    Example:
        >>> m = Sum()
        >>> m.update_state([1, 3, 5, 7])
        >>> float(m.result())
        16.0
    """

    def __init__(self, name: str = "sum", dtype: Any = None):
        super().__init__(name, dtype)

    def compute(self):
        return self.state["total"].float()


class MeanMetricWrapper(Metric):
    """The (weighted) mean over samples of ``fn(y_true, y_pred, **kwargs)`` (Keras's class of that name).

    Functions given to ``compile(metrics=[...])`` become one, so they are called with the targets first.

    Args:
        fn: returns per-sample values ``(N, ...)`` (averaged per sample) or a scalar for the batch
            (which then counts once per sample).
        name: logging key (default: the function's name).
        dtype: unused; Keras's argument.
        **kwargs: passed to ``fn`` on every call.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dtype: Any = None, **kwargs: Any):
        super().__init__(name or getattr(fn, "__name__", None) or type(fn).__name__.lower(), dtype)
        self.fn, self.fn_kwargs = fn, kwargs

    def build(self, y_true, y_pred):
        return _mean_state(y_pred)

    def accumulate(self, y_true, y_pred, sample_weight):
        value = torch.as_tensor(self.fn(y_true, y_pred, **self.fn_kwargs), device=y_pred.device)
        batch_size = y_pred.shape[0] if y_pred.dim() else 1
        per_sample = value.reshape(batch_size, -1).mean(1) if value.dim() else value.expand(batch_size)  # (N,)
        _add_weighted(self.state, per_sample, sample_weight)

    def compute(self):
        return (self.state["total"] / self.state["count"].clamp_min(1e-12)).float()

    def get_config(self):
        fn = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"
        return {"fn": fn, **super().get_config()}

    @classmethod
    def from_config(cls, config):
        raise TypeError(f"A wrapped function cannot be rebuilt from a config (received fn={config.get('fn')!r}): "
                        f"pass the function to compile(metrics=[...]) again")


# -- regression --------------------------------------------------------------------------------------
class MeanOfElements(Metric):
    """The (weighted) mean over all elements of ``elementwise(y_true, y_pred)``.

    y_true must have y_pred's shape; a trailing axis of size 1 may be missing on either side
    (``(N, 1)`` predictions against ``(N,)`` targets). A sample's weight applies to all its elements.
    """

    def __init__(self, name: str | None = None, dtype: Any = None):
        super().__init__(name or self.default_name, dtype)

    default_name: str

    def build(self, y_true, y_pred):
        check_same_shape(y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        return _mean_state(y_pred)

    @staticmethod
    def elementwise(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def accumulate(self, y_true, y_pred, sample_weight):
        y_pred = y_pred.to(self.state["total"].dtype)
        _add_weighted(self.state, self.elementwise(y_true.reshape(y_pred.shape).to(y_pred.dtype), y_pred),
                      sample_weight)

    def compute(self):
        return (self.state["total"] / self.state["count"].clamp_min(1e-12)).float()


@METRICS.register("mean_absolute_error", None, "mae")
class MeanAbsoluteError(MeanOfElements):
    """``|y_true - y_pred|`` averaged."""

    default_name = "mae"

    @staticmethod
    def elementwise(y_true, y_pred):
        return (y_pred - y_true).abs()


@METRICS.register("mean_squared_error", None, "mse")
class MeanSquaredError(MeanOfElements):
    """``(y_true - y_pred)^2`` averaged.

    Example:
        >>> m = MeanSquaredError()
        >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
        >>> float(m.result())
        0.25
    """

    default_name = "mse"

    @staticmethod
    def elementwise(y_true, y_pred):
        return (y_pred - y_true).square()


@METRICS.register("root_mean_squared_error", None, "rmse")
class RootMeanSquaredError(MeanSquaredError):
    """The square root of :class:`MeanSquaredError`."""

    default_name = "rmse"

    def compute(self):
        return super().compute().sqrt()


@METRICS.register("mean_absolute_percentage_error", None, "mape")
class MeanAbsolutePercentageError(MeanOfElements):
    """``100 |y_true - y_pred| / max(|y_true|, 1e-7)`` averaged, as in Keras.

    Example:
        >>> m = MeanAbsolutePercentageError()
        >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
        >>> float(m.result())
        250000000.0
    """

    default_name = "mape"

    @staticmethod
    def elementwise(y_true, y_pred):
        return 100 * (y_true - y_pred).abs() / y_true.abs().clamp_min(losses.EPSILON)


@METRICS.register("mean_squared_logarithmic_error", None, "msle")
class MeanSquaredLogarithmicError(MeanOfElements):
    """``(log(1 + max(y_pred, 1e-7)) - log(1 + max(y_true, 1e-7)))^2`` averaged, as in Keras."""

    default_name = "msle"

    @staticmethod
    def elementwise(y_true, y_pred):
        return (y_pred.clamp_min(losses.EPSILON).log1p() - y_true.clamp_min(losses.EPSILON).log1p()).square()


@METRICS.register("log_cosh_error", None, "logcosh")
class LogCoshError(MeanOfElements):
    """``log(cosh(y_pred - y_true))`` averaged."""

    default_name = "logcosh"

    @staticmethod
    def elementwise(y_true, y_pred):
        x = y_pred - y_true
        return x + torch.nn.functional.softplus(-2 * x) - torch.log(torch.tensor(2.0, dtype=x.dtype))


# -- the losses as metrics ---------------------------------------------------------------------------
class LossMetric(MeanMetricWrapper):
    """A loss's per-sample values averaged over samples (Keras's metric of the same name)."""

    loss_class: type

    def __init__(self, name: str | None = None, dtype: Any = None, **loss_kwargs: Any):
        loss = self.loss_class(reduction="none", **loss_kwargs)
        super().__init__(loss, name or loss.name, dtype)
        self.loss_kwargs = loss_kwargs

    def get_config(self):
        return {"name": self.name, **self.loss_kwargs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _loss_metric(loss_class: type) -> type:
    metric = type(loss_class.__name__, (LossMetric,), {
        "loss_class": loss_class, "__module__": __name__,
        "__doc__": f"The mean of :class:`deepzen.losses.{loss_class.__name__}` over samples; arguments as there."})
    return METRICS.register(loss_class.default_name, metric)


BinaryCrossentropy = _loss_metric(losses.BinaryCrossentropy)
CategoricalCrossentropy = _loss_metric(losses.CategoricalCrossentropy)
SparseCategoricalCrossentropy = _loss_metric(losses.SparseCategoricalCrossentropy)
KLDivergence = _loss_metric(losses.KLDivergence)
Hinge = _loss_metric(losses.Hinge)


# -- lookup ------------------------------------------------------------------------------------------
def _binary_crossentropy_reading(loss: Any) -> tuple[bool, bool]:
    """(is the loss binary cross-entropy?, does it take logits?), from its name and ``from_logits``."""
    if loss is None:
        return False, False
    loss = getattr(loss, "module", None) or getattr(loss, "fn", None) or loss  # unwrap losses.as_loss
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "__name__", None) or type(loss).__name__
    name = name.lower().replace("_", "").replace("-", "")
    if name == "bcewithlogitsloss":  # torch.nn's own
        return True, True
    binary = name in ("bceloss", "bce") or ("binary" in name and "crossentropy" in name)
    return binary, binary and bool(getattr(loss, "from_logits", False))


def _read_like(metric: Metric, loss: Any) -> Metric:
    # Keras's rule: under binary cross-entropy "accuracy" is elementwise binary (right for
    # multi-label too), and with logits the decision threshold is 0 instead of 0.5.
    binary, from_logits = _binary_crossentropy_reading(loss)
    if binary and getattr(metric, "kind", None) == "auto":
        metric.kind = "binary"
    if from_logits:
        if hasattr(metric, "threshold"):
            metric.threshold = 0.0
        if hasattr(metric, "from_logits"):
            metric.from_logits = True
    return metric


def get(identifier: Any, *, loss: Any = None) -> Metric:
    """A metric from a name ("accuracy", "f1", "mae", ...), a :class:`Metric`, or a function.

    Args:
        identifier: a registered name (case-insensitive), a :class:`Metric` instance or class, or
            a callable ``fn(y_true, y_pred) -> tensor`` (wrapped in :class:`MeanMetricWrapper`).
        loss: the loss the metric is compiled with, if any. Named metrics read predictions the
            way it does: binary cross-entropy makes "accuracy" binary, and ``from_logits=True``
            moves thresholds to 0 (and makes "auc" apply a sigmoid).

    Raises:
        ValueError: for an unknown name (listing the valid ones).
        TypeError: for anything else that is not a metric.
    """
    if isinstance(identifier, str):
        return _read_like(METRICS.get(identifier)(name=identifier), loss)
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"A metric must be a name, a Metric or a function fn(y_true, y_pred). Received: {identifier!r}")
