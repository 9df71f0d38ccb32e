"""Streaming metrics by their Keras names, accumulated on the device without host syncs.

The training engine calls ``update(y_pred, y_true)`` on every step and reads ``result()`` only every
N steps and at the end of an epoch. So ``update`` adds into state tensors that live on the
predictions' device and never reads a value back: no ``.item()``, no ``.cpu()``, no Python ``if``
on a tensor. Decisions made in Python (binary or multiclass? how many classes?) look only at
*shapes*, once, at the first update after construction or ``reset()``, which is also when the
state tensors are allocated on ``y_pred``'s device.

Predictions put the class axis last (Keras convention): ``y_pred`` is ``(N,)``/``(N, 1)`` for a
binary task, ``(N, C)`` for C classes and ``(N, T, C)`` for sequences.

Example:
    >>> import torch
    >>> accuracy = get("accuracy")
    >>> accuracy.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
    >>> accuracy.update(torch.tensor([[0.3, 0.7]]), torch.tensor([1]))
    >>> round(float(accuracy.result()), 4)  # 2 of 3 right
    0.6667
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from deepzen._registry import Registry
from deepzen.serializable import Serializable

METRICS: Registry[Any] = Registry("metric")

CLASSIFICATION_KINDS = ("auto", "binary", "sparse", "categorical")


def _sum_dtype(device: torch.device) -> torch.dtype:
    # Sums of errors over an epoch keep float64 where the device has it (MPS has not).
    return torch.float32 if device.type == "mps" else torch.float64


class Metric(Serializable):
    """Base class of streaming metrics.

    Subclasses implement :meth:`build` (allocate zeroed state tensors from the first batch's
    shapes), :meth:`update_state` (add one batch into the state, on the device) and :meth:`compute`
    (the result from the state).

    Args:
        name: the key under which the metric is logged (in ``History``, progress bars, ...).
    """

    def __init__(self, name: str):
        self.name = name
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        """Adds one batch. Never synchronizes with the host.

        Args:
            y_pred: predictions, class axis last, e.g. ``(N,)``, ``(N, C)`` or ``(N, T, C)``.
            y_true: targets for the same samples (labels, one-hot rows or values).
        """
        with torch.no_grad():
            if self.state is None:
                self.state = self.build(y_pred, y_true)
            self.update_state(y_pred, y_true)

    def result(self) -> torch.Tensor:
        """The metric over everything seen since the last reset, as a tensor on the state's device."""
        if self.state is None:
            return torch.zeros(())
        return self.compute()

    def reset(self) -> None:
        """Forgets all batches; the next update allocates fresh state (and re-reads the shapes)."""
        self.state = None

    def build(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update_state(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
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

    Args:
        kind: "auto" (decided from the first batch's shapes, see :func:`classification_kind`),
            "binary" (``y_pred > threshold`` against 0/1 targets, elementwise, so also multi-label),
            "sparse" (integer labels) or "categorical" (one-hot targets).
        k: a position counts as right when its class is among the ``k`` highest scores.
        threshold: binary decision threshold (0.5 for probabilities, 0.0 for logits).
        ignore_index: positions whose label equals it are left out (padding in sequences).
        name: logging key.

    Shapes:
        y_pred ``(N,)``/``(N, 1)`` (binary), ``(N, C)`` or ``(N, T, C)``; y_true ``(N,)``, ``(N, 1)``,
        ``(N, T)`` labels or one-hot rows shaped like y_pred.
    """

    def __init__(self, kind: str = "auto", k: int = 1, threshold: float = 0.5, ignore_index: int = -100,
                 name: str = "accuracy"):
        super().__init__(name)
        if kind not in CLASSIFICATION_KINDS:
            raise ValueError(f"Accuracy expects kind in {CLASSIFICATION_KINDS}. Received: kind={kind!r}")
        if k < 1:
            raise ValueError(f"Accuracy expects k >= 1. Received: k={k}")
        self.kind, self.k, self.threshold, self.ignore_index = kind, int(k), float(threshold), int(ignore_index)

    def build(self, y_pred, y_true):
        self.resolved_kind = classification_kind(self.kind, y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        if self.k > 1 and (self.resolved_kind == "binary" or y_pred.shape[-1] < self.k):
            raise ValueError(f"Metric '{self.name}' expects y_pred with at least k={self.k} classes on its last "
                             f"axis. Received: y_pred.shape={tuple(y_pred.shape)}")
        return {"correct": _zeros(y_pred), "count": _zeros(y_pred)}

    def update_state(self, y_pred, y_true):
        actual = actual_classes(self.resolved_kind, y_pred, y_true)
        if self.k == 1:
            right = predicted_classes(self.resolved_kind, y_pred, self.threshold) == actual
        else:
            top = y_pred.topk(self.k, dim=-1).indices  # (..., k)
            right = (top == actual.unsqueeze(-1)).any(-1)
        kept = actual != self.ignore_index
        self.state["correct"] += (right & kept).sum()
        self.state["count"] += kept.sum()

    def compute(self):
        return self.state["correct"] / self.state["count"].clamp_min(1)

    def get_config(self):
        return {"kind": self.kind, "k": self.k, "threshold": self.threshold, "ignore_index": self.ignore_index,
                **super().get_config()}


def _accuracy_variant(kind: str, k: int = 1) -> Callable[..., Accuracy]:
    def make(**kwargs) -> Accuracy:
        return Accuracy(kind=kind, k=k, **kwargs)

    return make


METRICS.register("accuracy", Accuracy, "acc")
METRICS.register("binary_accuracy", _accuracy_variant("binary"))
METRICS.register("categorical_accuracy", _accuracy_variant("categorical"))
METRICS.register("sparse_categorical_accuracy", _accuracy_variant("sparse"))
METRICS.register("top_k_categorical_accuracy", _accuracy_variant("categorical", k=5))
METRICS.register("sparse_top_k_categorical_accuracy", _accuracy_variant("sparse", k=5))


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

    def build(self, y_pred, y_true):
        self.resolved_kind = classification_kind(self.kind, y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        classes = 2 if self.resolved_kind == "binary" else y_pred.shape[-1]
        if self.num_classes is not None and classes != self.num_classes:
            raise ValueError(f"Metric '{self.name}' expects y_pred with num_classes={self.num_classes} scores on "
                             f"its last axis (2 for binary predictions). Received: y_pred.shape={tuple(y_pred.shape)}")
        self.classes = self.num_classes or classes
        return {"matrix": _zeros(y_pred, self.classes * self.classes)}  # flat (C * C,)

    def update_state(self, y_pred, y_true):
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

    def build(self, y_pred, y_true):
        check_same_shape(y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        return {"positives": _zeros(y_pred, self.num_thresholds), "negatives": _zeros(y_pred, self.num_thresholds)}

    def update_state(self, y_pred, y_true):
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


# -- regression --------------------------------------------------------------------------------------
class MeanOfElements(Metric):
    """Mean over all elements of ``elementwise(y_pred - y_true)``.

    y_true must have y_pred's shape; a trailing axis of size 1 may be missing on either side
    (``(N, 1)`` predictions against ``(N,)`` targets).
    """

    def build(self, y_pred, y_true):
        check_same_shape(y_pred.shape, y_true.shape, f"Metric '{self.name}'")
        return {"total": _zeros(y_pred, dtype=_sum_dtype(y_pred.device)), "count": _zeros(y_pred)}

    @staticmethod
    def elementwise(difference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update_state(self, y_pred, y_true):
        difference = y_pred.to(self.state["total"].dtype) - y_true.reshape(y_pred.shape)
        self.state["total"] += self.elementwise(difference).sum()
        self.state["count"] += difference.numel()

    def compute(self):
        return (self.state["total"] / self.state["count"].clamp_min(1)).float()


@METRICS.register("mean_absolute_error", None, "mae")
class MeanAbsoluteError(MeanOfElements):
    def __init__(self, name: str = "mae"):
        super().__init__(name)

    @staticmethod
    def elementwise(difference):
        return difference.abs()


@METRICS.register("mean_squared_error", None, "mse")
class MeanSquaredError(MeanOfElements):
    def __init__(self, name: str = "mse"):
        super().__init__(name)

    @staticmethod
    def elementwise(difference):
        return difference.square()


@METRICS.register("root_mean_squared_error", None, "rmse")
class RootMeanSquaredError(MeanSquaredError):
    def __init__(self, name: str = "rmse"):
        super().__init__(name)

    def compute(self):
        return super().compute().sqrt()


# -- any function as a metric ------------------------------------------------------------------------
class MeanMetricWrapper(Metric):
    """Averages ``fn(y_pred, y_true)`` over batches, each weighted by its batch size.

    Args:
        fn: returns a scalar for the batch (or per-sample values, which are averaged first).
        name: logging key (default: the function's name).
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str | None = None):
        super().__init__(name or getattr(fn, "__name__", None) or type(fn).__name__.lower())
        self.fn = fn

    def build(self, y_pred, y_true):
        return {"total": _zeros(y_pred, dtype=_sum_dtype(y_pred.device)), "count": _zeros(y_pred)}

    def update_state(self, y_pred, y_true):
        batch_size = y_pred.shape[0] if y_pred.dim() else 1
        value = torch.as_tensor(self.fn(y_pred, y_true), device=y_pred.device)
        self.state["total"] += value.to(self.state["total"].dtype).mean() * batch_size
        self.state["count"] += batch_size

    def compute(self):
        return (self.state["total"] / self.state["count"].clamp_min(1)).float()

    def get_config(self):
        fn = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"
        return {"fn": fn, **super().get_config()}

    @classmethod
    def from_config(cls, config):
        raise TypeError(f"A wrapped function cannot be rebuilt from a config (received fn={config.get('fn')!r}): "
                        f"pass the function to compile(metrics=[...]) again")


# -- lookup ------------------------------------------------------------------------------------------
def _binary_crossentropy_reading(loss: Any) -> tuple[bool, bool]:
    """(is the loss binary cross-entropy?, does it take logits?), from its name and ``from_logits``."""
    if loss is None:
        return False, False
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
            a callable ``fn(y_pred, y_true) -> tensor`` (wrapped in :class:`MeanMetricWrapper`).
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
    raise TypeError(f"A metric must be a name, a Metric or a function fn(y_pred, y_true). Received: {identifier!r}")
