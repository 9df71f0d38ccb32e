"""Streaming metrics against scikit-learn / NumPy computed on all the data at once."""

import copy
import doctest

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from deepzen import metrics
from deepzen.metrics import METRICS

N, C = 301, 5
SPLITS = (0, 17, 120, 121, 250, N)  # uneven batches, one of size 1


def batches(*tensors, splits=SPLITS):
    assert splits[-1] == len(tensors[0]), "the splits must cover all the data"
    for start, stop in zip(splits[:-1], splits[1:]):
        yield tuple(t[start:stop] for t in tensors)


def streamed(metric, y_pred, y_true, splits=SPLITS):
    for pred, true in batches(y_pred, y_true, splits=splits):
        metric.update_state(true, pred)
    return metric.result()


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def binary_data(gen, n=N):
    y_true = torch.randint(0, 2, (n,), generator=gen)
    scores = (torch.rand(n, generator=gen) + 0.4 * y_true).clamp(0, 1)  # informative but imperfect
    return scores, y_true


def multiclass_data(gen, n=N, classes=C):
    y_true = torch.randint(0, classes, (n,), generator=gen)
    logits = torch.randn(n, classes, generator=gen)
    logits[torch.arange(n), y_true] += 0.8
    return logits, y_true


# -- accuracy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pred_shape,true_shape", [((N,), (N,)), ((N, 1), (N,)), ((N,), (N, 1)), ((N, 1), (N, 1))])
def test_accuracy_binary_any_trailing_axis(gen, pred_shape, true_shape):
    scores, y_true = binary_data(gen)
    metric = metrics.get("accuracy")
    result = streamed(metric, scores.reshape(pred_shape), y_true.float().reshape(true_shape))
    assert metric.resolved_kind == "binary"
    assert float(result) == pytest.approx(skm.accuracy_score(y_true, scores > 0.5))


def test_binary_accuracy_threshold_on_logits(gen):
    scores, y_true = binary_data(gen)
    logits = torch.logit(scores.clamp(0.01, 0.99))
    result = streamed(metrics.Accuracy(kind="binary", threshold=0.0), logits, y_true)
    assert float(result) == pytest.approx(skm.accuracy_score(y_true, logits > 0))


def test_binary_accuracy_is_elementwise_for_multilabel(gen):
    y_true = torch.randint(0, 2, (N, 4), generator=gen).float()
    scores = torch.rand(N, 4, generator=gen)
    result = streamed(metrics.get("binary_accuracy"), scores, y_true)
    assert float(result) == pytest.approx(np.mean((scores.numpy() > 0.5) == y_true.numpy()))


@pytest.mark.parametrize("name", ["accuracy", "acc", "sparse_categorical_accuracy"])
@pytest.mark.parametrize("label_shape", [(N,), (N, 1)])
def test_sparse_accuracy(gen, name, label_shape):
    logits, y_true = multiclass_data(gen)
    metric = metrics.get(name)
    result = streamed(metric, logits, y_true.reshape(label_shape))
    assert metric.resolved_kind == "sparse"
    assert float(result) == pytest.approx(skm.accuracy_score(y_true, logits.argmax(1)))


@pytest.mark.parametrize("name", ["accuracy", "categorical_accuracy"])
def test_categorical_accuracy(gen, name):
    logits, y_true = multiclass_data(gen)
    one_hot = torch.nn.functional.one_hot(y_true, C).float()
    metric = metrics.get(name)
    result = streamed(metric, logits.softmax(-1), one_hot)
    assert metric.resolved_kind == "categorical"
    assert float(result) == pytest.approx(skm.accuracy_score(y_true, logits.argmax(1)))


@pytest.mark.parametrize("name,one_hot", [("top_k_categorical_accuracy", True),
                                          ("sparse_top_k_categorical_accuracy", False)])
def test_top_k_accuracy(gen, name, one_hot):
    logits, y_true = multiclass_data(gen, classes=12)
    targets = torch.nn.functional.one_hot(y_true, 12) if one_hot else y_true
    result = streamed(metrics.get(name), logits, targets)
    expected = skm.top_k_accuracy_score(y_true, logits, k=5, labels=range(12))
    assert float(result) == pytest.approx(expected)
    assert expected < 1.0  # k=5 of 12 leaves misses: the test could tell k apart


def test_sequence_accuracy_skips_ignore_index(gen):
    n, t, classes = 40, 9, 7
    logits = torch.randn(n, t, classes, generator=gen)
    y_true = torch.randint(0, classes, (n, t), generator=gen)
    padded = y_true.clone()
    padded[torch.rand(n, t, generator=gen) < 0.3] = -100
    for k in (1, 3):
        metric = metrics.Accuracy(k=k)
        result = streamed(metric, logits, padded, splits=(0, 5, 6, 31, n))
        kept = (padded != -100).numpy()
        top = logits.topk(k, -1).indices.numpy()
        right = (top == y_true.numpy()[..., None]).any(-1)
        assert metric.resolved_kind == "sparse"
        assert float(result) == pytest.approx(right[kept].mean())


def test_accuracy_shape_errors_name_the_metric_and_shapes():
    with pytest.raises(ValueError, match=r"'accuracy'.*y_pred.shape=\(4, 3\), y_true.shape=\(4, 2\)"):
        metrics.get("accuracy").update_state(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least k=5 classes"):
        metrics.get("top_k_categorical_accuracy").update_state(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="kind="):
        metrics.Accuracy(kind="multilabel")


# -- precision, recall, F1, confusion matrix ---------------------------------------------------------
SCORES = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}


@pytest.mark.parametrize("name", SCORES)
def test_binary_scores_report_the_positive_class(gen, name):
    scores, y_true = binary_data(gen)
    result = streamed(metrics.get(name), scores[:, None], y_true)
    assert float(result) == pytest.approx(SCORES[name](y_true, scores > 0.5))


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_multiclass_scores_match_sklearn(gen, name, average):
    logits, y_true = multiclass_data(gen)
    logits[:, 3] -= 10  # class 3 is never predicted: a zero denominator for precision
    metric = metrics.get(name)
    metric.average = average
    result = streamed(metric, logits, y_true)
    expected = SCORES[name](y_true, logits.argmax(1), average=average, labels=None if average else range(C),
                            zero_division=0)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)
    if average is None:
        np.testing.assert_allclose(metric.result_per_class().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("name", SCORES)
def test_macro_average_skips_classes_never_seen(gen, name):
    logits, y_true = multiclass_data(gen, classes=C)
    y_true = y_true.clamp(max=C - 2)  # class C-1 is never a target ...
    logits[:, C - 1] = -1e9  # ... nor predicted: sklearn leaves it out of the macro mean
    result = streamed(metrics.get(name), logits, y_true)
    assert float(result) == pytest.approx(SCORES[name](y_true, logits.argmax(1), average="macro"))


def test_sequence_f1_skips_ignore_index(gen):
    n, t, classes = 30, 11, 4
    logits = torch.randn(n, t, classes, generator=gen)
    y_true = torch.randint(0, classes, (n, t), generator=gen)
    y_true[torch.rand(n, t, generator=gen) < 0.25] = -100
    result = streamed(metrics.F1Score(average="micro"), logits, y_true, splits=(0, 1, 12, n))
    kept = y_true != -100
    assert float(result) == pytest.approx(skm.f1_score(y_true[kept], logits.argmax(-1)[kept], average="micro"))


def test_confusion_matrix(gen):
    logits, y_true = multiclass_data(gen)
    metric = metrics.ConfusionMatrix(num_classes=C)
    assert metric.result().shape == (C, C)
    np.testing.assert_array_equal(metric.result().numpy(), 0)
    result = streamed(metric, logits, y_true)
    np.testing.assert_array_equal(result.numpy(), skm.confusion_matrix(y_true, logits.argmax(1), labels=range(C)))
    scores, labels = binary_data(gen)
    binary = streamed(metrics.get("confusion_matrix"), scores, labels)
    np.testing.assert_array_equal(binary.numpy(), skm.confusion_matrix(labels, scores > 0.5))


def test_confusion_matrix_checks_num_classes():
    with pytest.raises(ValueError, match=r"num_classes=4.*y_pred.shape=\(2, 3\)"):
        metrics.ConfusionMatrix(num_classes=4).update_state(torch.zeros(2, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="average"):
        metrics.Precision(average="samples")


# -- AUC ---------------------------------------------------------------------------------------------
def test_auc_close_to_sklearn_on_random_scores(gen):
    scores, y_true = binary_data(gen, n=2000)
    result = streamed(metrics.get("auc"), scores, y_true, splits=(0, 1, 700, 1999, 2000))
    assert float(result) == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-2)


def test_auc_exact_when_each_bucket_holds_one_score_value(gen):
    # Scores halfway between thresholds fall one per bucket: the histogram loses nothing, so the
    # trapezoid over its ROC points must equal sklearn's exact AUC (ties included).
    thresholds = 200
    buckets = torch.randint(1, thresholds, (1500,), generator=gen)
    scores = (buckets - 0.5) / (thresholds - 1)
    y_true = (torch.rand(1500, generator=gen) < scores).long()
    result = streamed(metrics.AUC(num_thresholds=thresholds), scores[:, None], y_true, splits=(0, 400, 1500))
    assert float(result) == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-6)


def test_auc_from_logits(gen):
    scores, y_true = binary_data(gen, n=1000)
    logits = torch.logit(scores.clamp(1e-4, 1 - 1e-4))
    result = streamed(metrics.AUC(from_logits=True), logits, y_true, splits=(0, 333, 1000))
    assert float(result) == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-2)


# -- regression --------------------------------------------------------------------------------------
REGRESSION = {"mae": skm.mean_absolute_error, "mse": skm.mean_squared_error,
              "rmse": lambda y, p: np.sqrt(skm.mean_squared_error(y, p))}


@pytest.mark.parametrize("name", REGRESSION)
@pytest.mark.parametrize("pred_shape,true_shape", [((N, 3), (N, 3)), ((N, 1), (N,)), ((N,), (N,))])
def test_regression_metrics(gen, name, pred_shape, true_shape):
    y_pred = torch.randn(pred_shape, generator=gen)
    y_true = torch.randn(true_shape, generator=gen).double()
    result = streamed(metrics.get(name), y_pred, y_true)
    expected = REGRESSION[name](y_true.numpy().reshape(pred_shape), y_pred.numpy())
    assert float(result) == pytest.approx(expected, rel=1e-6)


def test_regression_shape_error():
    with pytest.raises(ValueError, match=r"'mse'.*y_pred.shape=\(4, 2\), y_true.shape=\(4,\)"):
        metrics.get("mse").update_state(torch.zeros(4), torch.zeros(4, 2))


# -- functions as metrics ----------------------------------------------------------------------------
def test_function_metric_is_averaged_weighted_by_batch_size(gen):
    y_pred, y_true = torch.randn(N, 2, generator=gen), torch.randn(N, 2, generator=gen)

    def max_error(true, pred):  # not additive over samples: the per-batch weighting shows
        return (pred - true).abs().max()

    metric = metrics.get(max_error)
    assert isinstance(metric, metrics.MeanMetricWrapper) and metric.name == "max_error"
    result = streamed(metric, y_pred, y_true)
    values = [float(max_error(t, p)) * len(p) for p, t in batches(y_pred, y_true)]
    assert float(result) == pytest.approx(sum(values) / N)


# -- lookup ------------------------------------------------------------------------------------------
def test_get_passes_metrics_through_and_names_them_as_asked():
    metric = metrics.Recall()
    assert metrics.get(metric) is metric
    assert isinstance(metrics.get(metrics.MeanSquaredError), metrics.MeanSquaredError)
    assert metrics.get("acc").name == "acc" and metrics.get("F1_Score").name == "F1_Score"
    with pytest.raises(TypeError, match="Received: 3"):
        metrics.get(3)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="Unknown metric 'acuracy'") as error:
        metrics.get("acuracy")
    for name in METRICS.names():
        assert name in str(error.value)


class BinaryCrossentropy:  # stands in for deepzen.losses.BinaryCrossentropy: only its name and flag matter
    def __init__(self, from_logits=False):
        self.from_logits = from_logits


class CategoricalCrossentropy(BinaryCrossentropy):
    pass


@pytest.mark.parametrize("loss,kind,threshold", [
    (None, "auto", 0.5),
    (BinaryCrossentropy(), "binary", 0.5),
    (BinaryCrossentropy(from_logits=True), "binary", 0.0),
    (torch.nn.BCEWithLogitsLoss(), "binary", 0.0),
    (torch.nn.BCELoss(), "binary", 0.5),
    ("binary_crossentropy", "binary", 0.5),
    (CategoricalCrossentropy(from_logits=True), "auto", 0.5),
])
def test_accuracy_reads_predictions_like_the_loss(loss, kind, threshold):
    metric = metrics.get("accuracy", loss=loss)
    assert (metric.kind, metric.threshold) == (kind, threshold)


def test_accuracy_under_binary_crossentropy_from_logits(gen):
    logits = torch.randn(N, 3, generator=gen)  # multi-label logits: binary per element, threshold 0
    y_true = torch.randint(0, 2, (N, 3), generator=gen).float()
    result = streamed(metrics.get("accuracy", loss=BinaryCrossentropy(from_logits=True)), logits, y_true)
    assert float(result) == pytest.approx(np.mean((logits.numpy() > 0) == y_true.numpy()))
    assert metrics.get("auc", loss=BinaryCrossentropy(from_logits=True)).from_logits
    assert metrics.get("precision", loss=torch.nn.BCEWithLogitsLoss()).threshold == 0.0
    assert metrics.get("categorical_accuracy", loss=BinaryCrossentropy()).kind == "categorical"


# -- every registered metric: no host sync, reset, config round trip ---------------------------------
def binary_example(gen, n):
    scores, y_true = binary_data(gen, n)
    return scores[:, None], y_true.float()


def sparse_sequence_example(gen, n):
    logits = torch.randn(n, 4, 6, generator=gen)
    y_true = torch.randint(0, 6, (n, 4), generator=gen)
    y_true[:, -1] = -100
    return logits, y_true


def categorical_example(gen, n):
    logits, y_true = multiclass_data(gen, n, classes=6)
    return logits, torch.nn.functional.one_hot(y_true, 6).float()


def regression_example(gen, n):
    return torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen)


def weighted_values_example(gen, n):
    """(weights, values): Mean and Sum take update_state(values, sample_weight)."""
    return torch.rand(n, generator=gen), torch.randn(n, generator=gen)


CLASSIFICATION = (binary_example, sparse_sequence_example, categorical_example)
EXAMPLES = {
    "acc": CLASSIFICATION, "accuracy": CLASSIFICATION, "binary_accuracy": (binary_example,),
    "categorical_accuracy": (categorical_example,), "sparse_categorical_accuracy": (sparse_sequence_example,),
    "top_k_categorical_accuracy": (categorical_example,),
    "sparse_top_k_categorical_accuracy": (sparse_sequence_example,),
    "precision": CLASSIFICATION, "recall": CLASSIFICATION, "f1": CLASSIFICATION, "f1_score": CLASSIFICATION,
    "confusion_matrix": CLASSIFICATION, "auc": (binary_example,),
    "mae": (regression_example,), "mean_absolute_error": (regression_example,),
    "mse": (regression_example,), "mean_squared_error": (regression_example,),
    "rmse": (regression_example,), "root_mean_squared_error": (regression_example,),
    "mape": (regression_example,), "mean_absolute_percentage_error": (regression_example,),
    "msle": (regression_example,), "mean_squared_logarithmic_error": (regression_example,),
    "logcosh": (regression_example,), "log_cosh_error": (regression_example,),
    "mean": (weighted_values_example,), "sum": (weighted_values_example,),
    "binary_crossentropy": (binary_example,), "hinge": (binary_example,),
    "categorical_crossentropy": (categorical_example,), "kl_divergence": (categorical_example,),
    "sparse_categorical_crossentropy": (sparse_sequence_example,),
    "mean_iou": (sparse_sequence_example,), "dice": (sparse_sequence_example,),
}
CASES = [(name, example) for name, examples in EXAMPLES.items() for example in examples]


def test_every_registered_metric_has_examples():
    assert sorted(EXAMPLES) == METRICS.names()


class HostSync(AssertionError):
    pass


@pytest.fixture
def forbid_host_sync(monkeypatch):
    def host_sync(*args, **kwargs):
        raise HostSync("a metric update read a tensor back to the host")

    for method in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, method, host_sync)
    with pytest.raises(HostSync):  # the trap is armed
        bool(torch.ones(()))
    yield
    monkeypatch.undo()


@pytest.mark.parametrize("name,example", CASES)
def test_update_never_syncs_with_the_host(gen, name, example, forbid_host_sync):
    metric = metrics.get(name)
    for y_pred, y_true in [example(gen, 16), example(gen, 7)]:
        metric.update_state(y_true, y_pred.requires_grad_())
    assert all(not state.requires_grad for state in metric.state.values())


@pytest.mark.parametrize("name,example", CASES)
def test_reset_starts_over_and_config_round_trips(gen, name, example):
    metric = metrics.get(name)
    assert metric.result().shape == (() if name != "confusion_matrix" else (0, 0))
    first, second = example(gen, 50), example(gen, 40)
    metric.update_state(*first[::-1])
    metric.reset_state()
    metric.update_state(*second[::-1])
    rebuilt = type(metric).from_config(metric.get_config())
    fresh = metrics.get(name)
    fresh.update_state(*second[::-1])
    rebuilt.update_state(*second[::-1])
    torch.testing.assert_close(metric.result(), fresh.result())
    torch.testing.assert_close(rebuilt.result(), fresh.result())
    metric.update_state(*first[::-1])  # and it keeps accumulating after the reset
    fresh.update_state(*first[::-1])
    torch.testing.assert_close(metric.result(), fresh.result())


def test_module_docstring_example():
    result = doctest.testmod(metrics)
    assert result.failed == 0 and result.attempted > 0


# -- Keras's documented examples (keras.io API pages), update_state(y_true, y_pred, sample_weight) ------------
@pytest.mark.parametrize("metric, y_true, y_pred, sample_weight, expected", [
    (metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], None, 0.75),
    (metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], [1, 0, 0, 1], 0.5),
    (metrics.CategoricalAccuracy(), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 0.5),
    (metrics.CategoricalAccuracy(), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (metrics.SparseCategoricalAccuracy(), [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], None, 0.5),
    (metrics.SparseCategoricalAccuracy(), [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (metrics.TopKCategoricalAccuracy(k=1), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 0.5),
    (metrics.TopKCategoricalAccuracy(k=1), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]],
     [0.7, 0.3], 0.3),
    (metrics.SparseTopKCategoricalAccuracy(k=1), [2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 0.5),
    (metrics.SparseTopKCategoricalAccuracy(k=1), [2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (metrics.Precision(), [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
    (metrics.Recall(), [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
    (metrics.MeanIoU(num_classes=2), [0, 0, 1, 1], [0, 1, 0, 1], None, 1 / 3),
    (metrics.AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], None, 0.75),
    (metrics.MeanSquaredError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.25),
    (metrics.MeanSquaredError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.5),
    (metrics.MeanAbsoluteError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.25),
    (metrics.MeanAbsoluteError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.5),
    (metrics.RootMeanSquaredError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.5),
    (metrics.RootMeanSquaredError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.70710677),
    (metrics.MeanAbsolutePercentageError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 250000000.0),
    (metrics.MeanAbsolutePercentageError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 500000000.0),
    (metrics.MeanSquaredLogarithmicError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.12011322),
    (metrics.MeanSquaredLogarithmicError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.24022643),
    (metrics.LogCoshError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.10844523),
    (metrics.LogCoshError(), [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.21689045),
    (metrics.BinaryCrossentropy(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], None, 0.81492424),
    (metrics.BinaryCrossentropy(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], [1, 0], 0.9162905),
    (metrics.CategoricalCrossentropy(), [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], None, 1.1769392),
    (metrics.CategoricalCrossentropy(), [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], [0.3, 0.7],
     1.6271976),
    (metrics.SparseCategoricalCrossentropy(), [1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], None, 1.1769392),
    (metrics.KLDivergence(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], None, 0.45814306),
    (metrics.KLDivergence(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], [1, 0], 0.9162892),
    (metrics.Hinge(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], None, 1.3),
    (metrics.Hinge(), [[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], [1, 0], 1.1),
])
def test_keras_documented_values(metric, y_true, y_pred, sample_weight, expected):
    metric = copy.deepcopy(metric)
    metric.update_state(y_true, y_pred, sample_weight=sample_weight)  # lists, as in Keras's examples
    assert float(metric.result()) == pytest.approx(expected, rel=1e-4)
    metric.reset_state()
    metric.update_state(y_true, y_pred, sample_weight)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-4)


def test_mean_and_sum_as_keras_documents():
    mean, total = metrics.Mean(), metrics.Sum()
    mean.update_state([1, 3, 5, 7])
    total.update_state([1, 3, 5, 7])
    assert float(mean.result()) == 4.0 and float(total.result()) == 16.0
    mean.reset_state()
    mean.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert float(mean.result()) == 2.0
    mean.update_state(torch.tensor(6.0))  # a scalar counts once
    assert float(mean.result()) == pytest.approx(10 / 3)  # (1 + 3 + 6) / 3


def test_metrics_without_sample_weight_say_so():
    for metric in (metrics.Precision(), metrics.AUC(), metrics.ConfusionMatrix()):
        with pytest.raises(ValueError, match="does not take sample_weight"):
            metric.update_state([0, 1], [0.2, 0.8], sample_weight=[1, 0])


class BinaryTruePositives(metrics.Metric):
    """Keras's guide example of a custom metric, with only the imports changed (ops -> torch)."""

    def __init__(self, name="binary_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_weight(name="tp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = (y_true.bool() & (y_pred > 0.5)).float()
        if sample_weight is not None:
            values = values * sample_weight
        self.true_positives.assign_add(values.sum())

    def result(self):
        return self.true_positives


def test_custom_metric_with_add_weight_updates_without_host_sync(forbid_host_sync):
    metric = BinaryTruePositives()
    assert metric.state["tp"] is metric.true_positives and metric.name == "binary_true_positives"
    metric.update_state(torch.tensor([1, 1, 0, 1]), torch.tensor([0.9, 0.2, 0.8, 0.7]))
    metric.update_state(torch.tensor([1]), torch.tensor([0.6]), sample_weight=torch.tensor([0.5]))
    metric.reset_state()
    assert metric.state["tp"] is metric.true_positives  # reset in place: the attribute stays the state
    copied = copy.deepcopy(metric)
    copied.update_state(torch.tensor([1]), torch.tensor([0.9]))
    assert copied.true_positives is copied.state["tp"]


def test_custom_metric_values():
    metric = BinaryTruePositives()
    metric.update_state([1, 1, 0, 1], [0.9, 0.2, 0.8, 0.7])
    metric.update_state([1], [0.6], sample_weight=[0.5])
    assert float(metric.result()) == 2.5
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_metric_in_the_old_order_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"takes 'y_pred' first.*update_state\(y_true, y_pred, sample_weight=None\)"):
        class Swapped(metrics.Metric):
            def update_state(self, y_pred, y_true, sample_weight=None):
                pass
    assert not hasattr(metrics.Accuracy(), "update")  # the old update(y_pred, y_true) is gone


def test_function_metric_receives_y_true_first():
    def first_argument(y_true, y_pred):
        return y_true.float().mean(-1)

    metric = metrics.get(first_argument)
    metric.update_state(torch.ones(4, 2), torch.zeros(4, 2))
    assert float(metric.result()) == 1.0
    weighted = metrics.MeanMetricWrapper(first_argument)
    weighted.update_state(torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1), sample_weight=torch.tensor([1.0, 0.0]))
    assert float(weighted.result()) == 1.0


def test_add_weight_state_moves_to_the_predictions_device_in_place():
    metric = BinaryTruePositives()
    held = metric.true_positives
    metric.update_state(torch.ones(2, device="meta"), torch.ones(2, device="meta"))  # any other device
    assert held.device.type == "meta" and metric.state["tp"] is held and metric.true_positives is held
    assert metric.initial_values["tp"].device.type == "meta"


# -- segmentation: MeanIoU and Dice from the confusion matrix of all pixels -------------------------------
def test_mean_iou_and_dice_match_a_hand_computed_confusion_matrix():
    y_true = torch.tensor([[[0, 0, 1], [1, 2, 2]], [[0, 1, 1], [2, 2, 0]]])  # (N, H, W) = (2, 2, 3)
    predicted = torch.tensor([[[0, 1, 1], [1, 2, 0]], [[0, 1, 2], [2, 2, 0]]])
    # Rows = true class, columns = predicted class, counted by hand from the 12 pixels:
    # true 0 (4 px): predicted 0, 1, 0, 0 -> [3, 1, 0]; true 1 (4 px): 1, 1, 1, 2 -> [0, 3, 1];
    # true 2 (4 px): 2, 0, 2, 2 -> [1, 0, 3].
    matrix = np.array([[3, 1, 0], [0, 3, 1], [1, 0, 3]])
    tp, fp, fn = matrix.diagonal(), matrix.sum(0) - matrix.diagonal(), matrix.sum(1) - matrix.diagonal()
    iou, dice = tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)  # [3/5, 3/5, 3/5], [3/4, 3/4, 3/4]
    scores = torch.nn.functional.one_hot(predicted, 3).float() * 0.8 + 0.1  # (N, H, W, C), argmax = predicted
    for y_pred in (scores, predicted):  # scores, or class ids (Keras's sparse_y_pred=True)
        mean_iou, dice_metric = metrics.MeanIoU(num_classes=3), metrics.Dice(num_classes=3)
        for batch in range(2):  # streamed one image at a time
            mean_iou.update_state(y_true[batch:batch + 1], y_pred[batch:batch + 1])
            dice_metric.update_state(y_true[batch:batch + 1], y_pred[batch:batch + 1])
        np.testing.assert_array_equal(mean_iou.matrix().numpy(), matrix)
        np.testing.assert_allclose(mean_iou.result_per_class().numpy(), iou)
        assert float(mean_iou.result()) == pytest.approx(iou.mean())
        assert float(dice_metric.result()) == pytest.approx(dice.mean())
    one_hot = metrics.MeanIoU(sparse_y_true=False)  # one-hot targets; C read from the scores
    one_hot.update_state(torch.nn.functional.one_hot(y_true, 3), scores)
    assert float(one_hot.result()) == pytest.approx(iou.mean())


def test_mean_iou_ignores_a_class_and_leaves_absent_classes_out():
    y_true = torch.tensor([0, 0, 1, 255, 255])
    y_pred = torch.tensor([0, 1, 1, 0, 3])  # class 2 occurs nowhere; class 3 only where the label is ignored
    metric = metrics.MeanIoU(num_classes=4, ignore_class=255)
    metric.update_state(y_true, y_pred)
    # class 0: tp 1, fn 1 -> 1/2; class 1: tp 1, fp 1 -> 1/2; classes 2 and 3: nothing counted -> left out
    assert float(metric.result()) == pytest.approx(0.5)


def test_mean_iou_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match=r"class axis last \(axis=-1\).*Received: axis=1"):
        metrics.MeanIoU(num_classes=3, axis=1)
    with pytest.raises(ValueError, match=r"sparse_y_pred=True expects class ids of shape \(2, 4\)"):
        metrics.MeanIoU(num_classes=3, sparse_y_pred=True).update_state(torch.zeros(2, 4), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="needs num_classes to read class-id predictions"):
        metrics.MeanIoU().update_state(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="does not take sample_weight"):
        metrics.MeanIoU(num_classes=2).update_state([0, 1], [0, 1], sample_weight=[1.0, 0.5])
