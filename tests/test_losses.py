import copy
import inspect
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepzen import losses
from deepzen.losses import EPSILON, LOSSES

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=_gen(seed), dtype=F64) * scale


def _ids(*shape, classes, seed=1):
    return torch.randint(0, classes, shape, generator=_gen(seed))


def _one_hot(ids, classes):
    return F.one_hot(ids, classes).to(F64)


# Hand-written references in float64, straight from the definitions.
def _sigmoid(z):
    return 1 / (1 + torch.exp(-z))


def _log_softmax(z):
    shifted = z - z.max(-1, keepdim=True).values
    return shifted - torch.log(torch.exp(shifted).sum(-1, keepdim=True))


def _reduced(per_position, reduction, elementwise=True):
    """The reductions of a per-position loss (N, ...), as the losses module (and Keras) define them:
    Keras averages an elementwise loss over the last axis before it sums ("sum")."""
    if reduction == "mean":
        return per_position.mean()
    if reduction == "sum":
        return per_position.sum() / (per_position.shape[-1] if elementwise and per_position.dim() >= 2 else 1)
    return per_position.reshape(len(per_position), -1).mean(1)


def _huber(e, delta):
    return torch.where(e.abs() <= delta, 0.5 * e ** 2, delta * (e.abs() - 0.5 * delta))


REDUCTIONS = ["mean", "sum", "none"]


# -- regression -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(8, 3), (4, 5, 2)])
@pytest.mark.parametrize("name, kwargs, formula", [
    ("mse", {}, lambda e: e ** 2),
    ("mae", {}, lambda e: e.abs()),
    ("huber", {"delta": 0.5}, lambda e: _huber(e, 0.5)),
    ("huber", {}, lambda e: _huber(e, 1.0)),
    ("huber", {"delta": 2.5}, lambda e: _huber(e, 2.5)),
])
def test_regression_losses_match_formula(name, kwargs, formula, shape, reduction):
    y_pred, y_true = _randn(*shape, seed=1), _randn(*shape, seed=2)
    value = losses.get(name, reduction=reduction, **kwargs)(y_true, y_pred)
    torch.testing.assert_close(value, _reduced(formula(y_pred - y_true), reduction))


def test_regression_losses_match_torch():
    y_pred, y_true = _randn(6, 4, seed=1), _randn(6, 4, seed=2)
    torch.testing.assert_close(losses.get("mse")(y_true, y_pred), nn.MSELoss()(y_pred, y_true))
    torch.testing.assert_close(losses.get("mae")(y_true, y_pred), nn.L1Loss()(y_pred, y_true))
    torch.testing.assert_close(losses.get("huber", delta=0.7)(y_true, y_pred), nn.HuberLoss(delta=0.7)(y_pred, y_true))


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "bce", "hinge"])
def test_trailing_axis_of_one_is_aligned_not_broadcast(name):
    y_pred = _sigmoid(_randn(5, 1, seed=1))
    y_true = (_randn(5, seed=2) > 0).to(F64)
    loss = losses.get(name)
    expected = loss(y_true[:, None], y_pred)
    torch.testing.assert_close(loss(y_true, y_pred), expected)
    torch.testing.assert_close(loss(y_true[:, None], y_pred[:, 0]), expected)
    assert loss(y_true[:, None], y_pred).shape == ()


# -- hinge ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_matches_formula_for_both_label_codings(reduction):
    scores = _randn(6, 3, seed=1)
    signs = torch.where(_randn(6, 3, seed=2) > 0, 1.0, -1.0).to(F64)
    expected = _reduced(torch.clamp(1 - signs * scores, min=0), reduction)
    loss = losses.get("hinge", reduction=reduction)
    torch.testing.assert_close(loss(signs, scores), expected)
    torch.testing.assert_close(loss((signs + 1) / 2, scores), expected)  # 0/1 labels read as -1/1


# -- binary cross-entropy -------------------------------------------------------------------------------------
def _bce(p, y):
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("soft_targets", [False, True])
def test_binary_crossentropy_matches_formula_in_both_modes(reduction, label_smoothing, soft_targets):
    logits = _randn(7, 3, seed=1)
    y_true = _sigmoid(_randn(7, 3, seed=2)) if soft_targets else (_randn(7, 3, seed=2) > 0).to(F64)
    smoothed = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    expected = _reduced(_bce(_sigmoid(logits), smoothed), reduction)
    for from_logits, y_pred in [(True, logits), (False, _sigmoid(logits))]:
        loss = losses.get("bce", from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
        torch.testing.assert_close(loss(y_true, y_pred), expected)


def test_binary_crossentropy_matches_torch():
    logits, y_true = _randn(9, 2, seed=1), (_randn(9, 2, seed=2) > 0).to(F64)
    torch.testing.assert_close(losses.get("bce", from_logits=True)(y_true, logits),
                               nn.BCEWithLogitsLoss()(logits, y_true))
    torch.testing.assert_close(losses.get("bce")(y_true, _sigmoid(logits)), nn.BCELoss()(_sigmoid(logits), y_true))


def test_binary_crossentropy_clips_probabilities_like_keras():
    # p = 0 and p = 1 on the wrong label cost -log(EPSILON), as Keras's clip to [eps, 1 - eps] gives.
    y_pred = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=F64, requires_grad=True)
    y_true = torch.tensor([[1.0], [0.0], [0.0], [1.0]], dtype=F64)
    value = losses.get("bce", reduction="none")(y_true, y_pred)
    expected = torch.tensor([-math.log(EPSILON), -math.log(EPSILON), -math.log(1 - EPSILON), -math.log(1 - EPSILON)],
                            dtype=F64)
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    value.sum().backward()
    assert torch.isfinite(y_pred.grad).all()


# -- categorical cross-entropy --------------------------------------------------------------------------------
def _categorical(log_p, y):
    return -(y * log_p).sum(-1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_crossentropy_matches_formula_in_both_modes(shape, reduction, label_smoothing):
    logits = _randn(*shape, seed=1)
    y_true = torch.softmax(_randn(*shape, seed=2), -1)  # soft targets; one-hot ones are a special case
    classes = shape[-1]
    smoothed = y_true * (1 - label_smoothing) + label_smoothing / classes
    expected = _reduced(_categorical(_log_softmax(logits), smoothed), reduction, elementwise=False)
    for from_logits, y_pred in [(True, logits), (False, torch.softmax(logits, -1))]:
        loss = losses.get("categorical_crossentropy", from_logits=from_logits, label_smoothing=label_smoothing,
                          reduction=reduction)
        torch.testing.assert_close(loss(y_true, y_pred), expected)


def test_categorical_crossentropy_matches_torch_and_normalises_probabilities():
    logits, y_true = _randn(3, 5, 4, seed=1), _one_hot(_ids(3, 5, classes=4), 4)
    reference = F.cross_entropy(logits.movedim(-1, 1), y_true.movedim(-1, 1))  # torch: class axis 1
    torch.testing.assert_close(losses.get("categorical_crossentropy", from_logits=True)(y_true, logits), reference)
    probabilities = torch.softmax(logits, -1)
    torch.testing.assert_close(losses.get("categorical_crossentropy")(y_true, 3 * probabilities), reference)


def test_categorical_crossentropy_all_zero_rows_add_nothing():
    logits, y_true = _randn(4, 3, seed=1), _one_hot(_ids(4, classes=3), 3)
    y_true[1] = 0
    value = losses.get("categorical_crossentropy", from_logits=True, reduction="none")(y_true, logits)
    assert value[1] == 0
    torch.testing.assert_close(value, _categorical(_log_softmax(logits), y_true))


# -- sparse categorical cross-entropy -------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)])
def test_sparse_categorical_crossentropy_matches_formula_in_both_modes(shape, reduction):
    logits, ids = _randn(*shape, seed=1), _ids(*shape[:-1], classes=shape[-1])
    expected = _reduced(-_log_softmax(logits).gather(-1, ids[..., None])[..., 0], reduction, elementwise=False)
    for from_logits, y_pred in [(True, logits), (False, torch.softmax(logits, -1))]:
        loss = losses.get("sparse_categorical_crossentropy", from_logits=from_logits, reduction=reduction)
        torch.testing.assert_close(loss(ids, y_pred), expected)
        torch.testing.assert_close(loss(ids[..., None], y_pred), expected)  # (N, 1) / (N, T, 1) targets
    categorical = losses.get("categorical_crossentropy", from_logits=True, reduction=reduction)
    torch.testing.assert_close(categorical(_one_hot(ids, shape[-1]), logits), expected)


def test_sparse_categorical_crossentropy_matches_torch():
    logits, ids = _randn(3, 5, 4, seed=1), _ids(3, 5, classes=4)
    loss = losses.get("sparse_categorical_crossentropy", from_logits=True)
    torch.testing.assert_close(loss(ids, logits), F.cross_entropy(logits.movedim(-1, 1), ids))


@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_sparse_ignore_index_is_left_out_of_every_reduction(ignore_index):
    logits, ids = _randn(3, 5, 4, seed=1), _ids(3, 5, classes=4)
    ids[0, 3:] = ignore_index
    ids[2, :] = ignore_index  # a sample with every position ignored
    counted = ids != ignore_index
    per_position = -_log_softmax(logits).gather(-1, ids.clamp_min(0)[..., None])[..., 0] * counted
    kwargs = dict(from_logits=True, ignore_index=ignore_index)
    value = {r: losses.get("sparse_categorical_crossentropy", reduction=r, **kwargs)(ids, logits) for r in REDUCTIONS}
    torch.testing.assert_close(value["mean"], per_position.sum() / counted.sum())
    torch.testing.assert_close(value["sum"], per_position.sum())
    torch.testing.assert_close(value["none"], per_position.sum(1) / counted.sum(1).clamp_min(1))
    assert value["none"][2] == 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sparse_label_smoothing_matches_formula_and_smoothed_one_hot(reduction):
    smoothing, classes = 0.2, 4
    logits, ids = _randn(3, 5, classes, seed=1), _ids(3, 5, classes=classes)
    log_p = _log_softmax(logits)
    nll = -log_p.gather(-1, ids[..., None])[..., 0]
    expected = _reduced((1 - smoothing) * nll + smoothing * (-log_p).mean(-1), reduction, elementwise=False)
    sparse = losses.get("sparse_categorical_crossentropy", from_logits=True, label_smoothing=smoothing,
                        reduction=reduction)
    torch.testing.assert_close(sparse(ids, logits), expected)
    categorical = losses.get("categorical_crossentropy", from_logits=True, label_smoothing=smoothing,
                             reduction=reduction)
    torch.testing.assert_close(categorical(_one_hot(ids, classes), logits), expected)


def test_sparse_label_smoothing_with_ignore_index():
    logits, ids = _randn(6, 3, seed=1), _ids(6, classes=3)
    ids[[1, 4]] = -100
    loss = losses.get("sparse_categorical_crossentropy", from_logits=True, label_smoothing=0.3)
    counted = ids != -100
    log_p = _log_softmax(logits[counted])
    nll = -log_p.gather(-1, ids[counted][:, None])[:, 0]
    torch.testing.assert_close(loss(ids, logits), (0.7 * nll + 0.3 * (-log_p).mean(-1)).mean())


# -- KL divergence --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)])
def test_kl_divergence_matches_formula_in_both_modes(shape, reduction):
    logits = _randn(*shape, seed=1)
    y_true = torch.softmax(_randn(*shape, seed=2), -1)
    y_true[0, 0] = 0  # a zero entry: clipped to EPSILON, as in Keras
    y_true[0, 1] = 1 - y_true[0].sum() + y_true[0, 1]
    q = torch.softmax(logits, -1)
    clipped = y_true.clamp(EPSILON, 1)
    expected = _reduced((clipped * torch.log(clipped / q)).sum(-1), reduction, elementwise=False)
    for from_logits, y_pred in [(True, logits), (False, q)]:
        loss = losses.get("kld", from_logits=from_logits, reduction=reduction)
        torch.testing.assert_close(loss(y_true, y_pred), expected)


def test_kl_divergence_matches_torch():
    q, p = torch.softmax(_randn(8, 5, seed=1), -1), torch.softmax(_randn(8, 5, seed=2), -1)
    torch.testing.assert_close(losses.get("kl_divergence")(p, q), F.kl_div(q.log(), p, reduction="batchmean"))


# -- every loss: reductions, stability, config ----------------------------------------------------------------
def _example(name, from_logits=False, shape=(4, 3, 5)):
    """(loss kwargs, y_pred, y_true) valid for the named loss, predictions of ``shape`` (class axis last)."""
    logits = _randn(*shape, seed=1)
    kwargs = {"from_logits": from_logits} if name in CLASSIFIERS else {}
    if name in ("categorical_crossentropy", "kl_divergence"):
        y_pred = logits if from_logits else torch.softmax(logits, -1)
        return kwargs, y_pred, torch.softmax(_randn(*shape, seed=2), -1)
    if name == "sparse_categorical_crossentropy":
        y_pred = logits if from_logits else torch.softmax(logits, -1)
        return kwargs, y_pred, _ids(*shape[:-1], classes=shape[-1])
    if name in OVERLAP:  # segmentation-style: class ids per position, class axis last
        y_pred = logits if from_logits else torch.softmax(logits, -1)
        return {"from_logits": from_logits}, y_pred, _ids(*shape[:-1], classes=shape[-1])
    if name == "binary_crossentropy":
        return kwargs, logits if from_logits else _sigmoid(logits), (_randn(*shape, seed=2) > 0).to(F64)
    if name == "hinge":
        return kwargs, logits, torch.where(_randn(*shape, seed=2) > 0, 1.0, -1.0).to(F64)
    return kwargs, logits, _randn(*shape, seed=2)


NAMES = ["mean_squared_error", "mean_absolute_error", "huber", "hinge", "binary_crossentropy",
         "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence", "dice", "jaccard"]
OVERLAP = ["dice", "jaccard"]  # one value per sample (not per position), from all its positions
CLASSIFIERS = ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence"]


def test_every_registered_loss_is_tested():
    assert {LOSSES.get(name) for name in LOSSES.names()} == {LOSSES.get(name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_reductions_are_consistent(name):
    kwargs, y_pred, y_true = _example(name)
    value = {r: losses.get(name, reduction=r, **kwargs)(y_true, y_pred) for r in REDUCTIONS}
    # Keras's positions: an elementwise loss is averaged over the last axis; an overlap loss has one per sample
    positions = y_pred.shape[0] if name in OVERLAP else y_pred[..., 0].numel()
    assert value["mean"].shape == value["sum"].shape == () and value["none"].shape == (4,)
    torch.testing.assert_close(value["none"].mean(), value["mean"])  # equal positions per sample
    torch.testing.assert_close(value["sum"], value["mean"] * positions)
    weighted = copy.copy(losses.get(name, **kwargs))  # how the engine makes its per-sample loss
    weighted.reduction = "none"
    torch.testing.assert_close(weighted(y_true, y_pred), value["none"])


@pytest.mark.parametrize("name", NAMES)
def test_invalid_reduction(name):
    with pytest.raises(ValueError, match=r"reduction in \('sum_over_batch_size', 'mean', 'sum', 'none', None\)\. Received: reduction='avg'"):
        losses.get(name, reduction="avg")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_from_logits_true_and_false_agree(name):
    kwargs, logits, y_true = _example(name, from_logits=True)
    probabilities = _sigmoid(logits) if name == "binary_crossentropy" else torch.softmax(logits, -1)
    torch.testing.assert_close(losses.get(name, from_logits=False)(y_true, probabilities),
                               losses.get(name, from_logits=True)(y_true, logits))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_extreme_logits_give_finite_loss_and_gradient(name, dtype):
    logits = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0]], dtype=dtype, requires_grad=True)
    targets = {"binary_crossentropy": torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=dtype),
               "categorical_crossentropy": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype),
               "kl_divergence": torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype=dtype),
               "sparse_categorical_crossentropy": torch.tensor([1, 0])}
    value = losses.get(name, from_logits=True)(targets[name], logits)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    if name == "sparse_categorical_crossentropy":  # -log softmax: (200 + log(1 + e^-100)) and 200, exactly
        torch.testing.assert_close(value, torch.tensor(200.0, dtype=dtype))
    if name == "binary_crossentropy":  # 100 per wrong sign, log 2 for the 0 logit: (4 * 100 + log 2) / 6
        torch.testing.assert_close(value, torch.tensor((400 + math.log(2)) / 6, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_probabilities_of_exactly_zero_and_one_give_finite_loss_and_gradient(name, dtype):
    kwargs, y_pred, y_true = _example(name, shape=(4, 3))
    y_pred = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=dtype,
                          requires_grad=True)
    value = losses.get(name)(y_true.to(dtype) if y_true.is_floating_point() else y_true, y_pred)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_pred.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    kwargs, y_pred, y_true = _example(name, from_logits=name in CLASSIFIERS)
    extra = {"huber": {"delta": 0.3}, "binary_crossentropy": {"label_smoothing": 0.1},
             "categorical_crossentropy": {"label_smoothing": 0.1},
             "sparse_categorical_crossentropy": {"ignore_index": 2, "label_smoothing": 0.1}}.get(name, {})
    loss = losses.get(name, reduction="sum", **kwargs, **extra)
    config = json.loads(json.dumps(loss.get_config()))
    given = {"reduction": "sum", **kwargs, **extra}
    assert {key: config[key] for key in given} == given
    assert set(config) == set(inspect.signature(type(loss).__init__).parameters) - {"self"}
    rebuilt = type(loss).from_config(config)
    assert rebuilt.get_config() == config
    torch.testing.assert_close(rebuilt(y_true, y_pred), loss(y_true, y_pred))
    assert repr(loss).startswith(type(loss).__name__ + "(") and "reduction='sum'" in repr(loss)


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match=r"label_smoothing in \[0, 1\]\. Received: label_smoothing=1.5"):
        losses.get("categorical_crossentropy", label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"delta > 0\. Received: delta=0"):
        losses.get("huber", delta=0)


# -- get ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("MeanSquaredError", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
    ("bce", losses.BinaryCrossentropy), ("binary-crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
    ("kld", losses.KLDivergence), ("kl_divergence", losses.KLDivergence), ("Huber", losses.Huber),
    ("hinge", losses.Hinge),
])
def test_get_by_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls and loss.reduction == "sum_over_batch_size"


def test_get_objects_and_errors():
    assert losses.get("bce", from_logits=True).from_logits is True
    assert type(losses.get(losses.Huber, delta=2.0)) is losses.Huber
    instance, torch_loss = losses.get("mse"), nn.SmoothL1Loss()

    def custom(y_true, y_pred):
        return (y_pred - y_true).abs().max()

    assert losses.get(instance) is instance and losses.get(torch_loss) is torch_loss and losses.get(custom) is custom
    with pytest.raises(ValueError, match=r"Unknown loss 'msee'\. Expected one of: .*binary_crossentropy.*mse"):
        losses.get("msee")
    with pytest.raises(TypeError, match=r"Received: 3 of type int"):
        losses.get(3)
    with pytest.raises(TypeError, match="Keyword arguments apply only to a loss given by name or class"):
        losses.get(instance, reduction="sum")


# -- prepare_targets and check_targets ------------------------------------------------------------------------
def test_prepare_targets_dtypes():
    sparse = losses.get("sparse_categorical_crossentropy")
    for raw in (torch.tensor([0.0, 2.0, 1.0]), torch.tensor([0, 2, 1], dtype=torch.int32), np.array([0, 2, 1])):
        prepared = sparse.prepare_targets(raw)
        assert prepared.dtype == torch.int64 and prepared.tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match=r"integer class ids\. Received: the value 0.5"):
        sparse.prepare_targets(torch.tensor([0.0, 0.5]))
    for name in ["mse", "bce", "categorical_crossentropy", "hinge"]:
        prepared = losses.get(name).prepare_targets(np.array([[0, 1]]))
        assert prepared.dtype == torch.get_default_dtype() and prepared.tolist() == [[0.0, 1.0]]
        assert losses.get(name).prepare_targets(torch.tensor([[1, 0]]), dtype=F64).dtype == F64


@pytest.mark.parametrize("name", NAMES)
def test_check_targets_accepts_valid_targets(name):
    kwargs, y_pred, y_true = _example(name)
    losses.get(name, **kwargs).check_targets(y_pred[:2], y_true)  # a few predictions, all targets


def _check(name, y_pred, y_true, **kwargs):
    losses.get(name, **kwargs).check_targets(y_pred, y_true)


P3 = torch.full((2, 3), 1 / 3)  # predictions of a 3-class model on two samples


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_sparse_rejects_one_hot_targets(dtype):
    y_true = F.one_hot(torch.tensor([0, 2, 1]), 3).to(dtype)
    with pytest.raises(ValueError, match=r"expects class ids of shape \(None,\) for predictions of shape \(None, 3\)\. "
                                         r"Received: y_true\.shape=\(None, 3\), which looks one-hot: use "
                                         r"categorical_crossentropy"):
        _check("sparse_categorical_crossentropy", P3, y_true)


@pytest.mark.parametrize("bad, shown", [(3, "3"), (7, "7"), (-1, "-1")])
def test_sparse_rejects_class_ids_out_of_range(bad, shown):
    with pytest.raises(ValueError, match=rf"class ids in \[0, 3\) \(the predictions have C=3 classes on their last "
                                         rf"axis\) or ignore_index=-100\. Received: class id {shown}$"):
        _check("sparse_categorical_crossentropy", P3, torch.tensor([0, 2, bad, 1]))


def test_sparse_accepts_ignore_index_and_rejects_other_shapes_and_fractions():
    _check("sparse_categorical_crossentropy", P3, torch.tensor([0, -100, 2]))
    _check("sparse_categorical_crossentropy", P3, torch.tensor([[0], [1], [2]]))
    _check("sparse_categorical_crossentropy", P3, torch.tensor([0, 5, 2]), ignore_index=5)
    with pytest.raises(ValueError, match=r"class ids of shape \(None, 7\) for predictions of shape \(None, 7, 3\)\. "
                                         r"Received: y_true\.shape=\(None, 5\)"):
        _check("sparse_categorical_crossentropy", torch.full((2, 7, 3), 1 / 3), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer class ids\. Received: the value 1.5"):
        _check("sparse_categorical_crossentropy", P3, torch.tensor([0.0, 1.5]))


def test_categorical_rejects_class_ids_wrong_shapes_and_bad_rows():
    with pytest.raises(ValueError, match=r"Received: y_true\.shape=\(None,\), which looks like class ids: use "
                                         r"sparse_categorical_crossentropy"):
        _check("categorical_crossentropy", P3, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"shaped like the predictions, \(None, 3\)\. Received: y_true\.shape="
                                         r"\(None, 4\) for y_pred\.shape=\(None, 3\)"):
        _check("categorical_crossentropy", P3, torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]: one-hot rows or class distributions\. "
                                         r"Received: values from 0 to 2"):
        _check("categorical_crossentropy", P3, torch.tensor([[0.0, 2.0, 0.0]]))
    multi_hot = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    with pytest.warns(UserWarning, match=r"Received: a row summing to 2; the loss is -sum\(y_true \* log\(y_pred\)\) "
                                         r"as in Keras\. For several labels per sample use binary_crossentropy"):
        _check("categorical_crossentropy", P3[:2], multi_hot)
    # Keras's value for multi-hot rows: the sum over the hot classes of -log p
    expected = -(multi_hot * P3[:2].log()).sum(-1).mean()
    assert torch.allclose(losses.get("categorical_crossentropy")(multi_hot, P3[:2]), expected, atol=1e-6)
    _check("categorical_crossentropy", P3, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))


def test_binary_rejects_targets_outside_unit_interval_and_wrong_shapes():
    p1 = torch.full((2, 1), 0.5)
    _check("bce", p1, torch.tensor([0.0, 1.0, 1.0]))  # (N,) targets for (N, 1) predictions
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]: 0/1 labels or probabilities\. "
                                         r"Received: values from -1 to 1"):
        _check("bce", p1, torch.tensor([[-1.0], [1.0]]))
    with pytest.raises(ValueError, match=r"BinaryCrossentropy expects targets shaped like the predictions, "
                                         r"\(None, 1\)\. "
                                         r"Received: y_true\.shape=\(None, 3\) for y_pred\.shape=\(None, 1\)"):
        _check("bce", p1, torch.zeros(4, 3))


@pytest.mark.parametrize("name, activation", [
    ("binary_crossentropy", "sigmoid"), ("categorical_crossentropy", "softmax"),
    ("sparse_categorical_crossentropy", "softmax"), ("kl_divergence", "softmax"),
])
def test_probability_losses_reject_logit_predictions(name, activation):
    kwargs, logits, y_true = _example(name, from_logits=True)
    with pytest.raises(ValueError, match=rf"\(from_logits=False\) expects the model to output probabilities "
                                         rf"in \[0, 1\]\. "
                                         rf"Received: predictions from .* pass from_logits=True .* {activation}"):
        _check(name, logits, y_true)
    _check(name, logits, y_true, from_logits=True)


def test_hinge_rejects_other_label_values():
    scores = torch.zeros(2, 1)
    _check("hinge", scores, torch.tensor([[0.0], [1.0]]))
    for bad in ([[-1.0], [0.0], [1.0]], [[2.0], [1.0]]):
        with pytest.raises(ValueError, match=r"Hinge expects targets in \{-1, 1\} \(or \{0, 1\}\)\. Received: values"):
            _check("hinge", scores, torch.tensor(bad))


def test_regression_and_kld_reject_bad_targets():
    with pytest.raises(ValueError, match=r"MeanSquaredError expects targets shaped like the predictions, \(None, 2\)\. "
                                         r"Received: y_true\.shape=\(None, 3\)"):
        _check("mse", torch.zeros(2, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"expects finite targets\. Received: y_true contains 2 NaN or infinite"):
        _check("mae", torch.zeros(2, 2), torch.tensor([[0.0, math.nan], [math.inf, 1.0]]))
    with pytest.raises(ValueError, match=r"KLDivergence expects targets shaped like the predictions, \(None, 3\)\. "
                                         r"Received: y_true\.shape=\(None,\)"):
        _check("kld", P3, torch.zeros(4))
    with pytest.raises(ValueError, match=r"KLDivergence expects targets in \[0, 1\]: class distributions"):
        _check("kld", P3, torch.tensor([[1.5, -0.5, 0.0]]))


# -- Keras's documented examples (keras.io API pages), called loss(y_true, y_pred) ---------------------------
KERAS_REGRESSION = ([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
KERAS_PROBABILITIES = ([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])
KERAS_CATEGORICAL = ([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])


@pytest.mark.parametrize("loss, data, expected", [
    (losses.MeanSquaredError(), KERAS_REGRESSION, 0.5),
    (losses.MeanSquaredError(reduction="sum"), KERAS_REGRESSION, 1.0),
    (losses.MeanSquaredError(reduction=None), KERAS_REGRESSION, [0.5, 0.5]),
    (losses.MeanAbsoluteError(), KERAS_REGRESSION, 0.5),
    (losses.MeanAbsoluteError(reduction="sum"), KERAS_REGRESSION, 1.0),
    (losses.BinaryCrossentropy(), KERAS_PROBABILITIES, 0.815),
    (losses.BinaryCrossentropy(reduction="sum"), KERAS_PROBABILITIES, 1.630),
    (losses.BinaryCrossentropy(reduction="none"), KERAS_PROBABILITIES, [0.916, 0.714]),
    (losses.BinaryCrossentropy(from_logits=True), ([[0, 1], [0, 0]], [[-18.6, 0.51], [2.94, -12.8]]), 0.865),
    (losses.CategoricalCrossentropy(), KERAS_CATEGORICAL, 1.177),
    (losses.CategoricalCrossentropy(reduction="sum"), KERAS_CATEGORICAL, 2.354),
    (losses.CategoricalCrossentropy(reduction="none"), KERAS_CATEGORICAL, [0.0513, 2.303]),
    (losses.SparseCategoricalCrossentropy(), ([1, 2], KERAS_CATEGORICAL[1]), 1.177),
    (losses.SparseCategoricalCrossentropy(reduction="sum"), ([1, 2], KERAS_CATEGORICAL[1]), 2.354),
    (losses.Hinge(), KERAS_PROBABILITIES, 1.3),
    (losses.Huber(), KERAS_PROBABILITIES, 0.155),
    (losses.KLDivergence(), KERAS_PROBABILITIES, 0.458),
])
def test_keras_documented_values(loss, data, expected):
    y_true, y_pred = data
    value = loss(y_true, y_pred)  # lists, as in Keras's examples
    np.testing.assert_allclose(value.numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("loss, data, sample_weight, expected", [
    (losses.MeanSquaredError(), KERAS_REGRESSION, [0.7, 0.3], 0.25),
    (losses.MeanAbsoluteError(), KERAS_REGRESSION, [0.7, 0.3], 0.25),
    (losses.BinaryCrossentropy(), KERAS_PROBABILITIES, [1.0, 0.0], 0.458),
    (losses.CategoricalCrossentropy(), KERAS_CATEGORICAL, [0.3, 0.7], 0.814),
    (losses.SparseCategoricalCrossentropy(), ([1, 2], KERAS_CATEGORICAL[1]), [0.3, 0.7], 0.814),
    (losses.Hinge(), KERAS_PROBABILITIES, [1.0, 0.0], 0.55),
    (losses.Huber(), KERAS_PROBABILITIES, [1.0, 0.0], 0.09),
    (losses.KLDivergence(), KERAS_PROBABILITIES, [0.8, 0.2], 0.366),
    (losses.MeanSquaredError(reduction="sum"), KERAS_REGRESSION, [0.7, 0.3], 0.5),
])
def test_keras_documented_values_with_sample_weight(loss, data, sample_weight, expected):
    y_true, y_pred = data
    np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=sample_weight).numpy(), expected, atol=1e-3)


def test_arguments_are_not_symmetric_in_the_order_keras_documents():
    # KL(y_true || y_pred) with y_true = [1, 0]: swapping the arguments would give a different number.
    y_true, y_pred = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])
    assert float(losses.KLDivergence()(y_true, y_pred)) == pytest.approx(math.log(2), abs=1e-5)
    assert float(losses.KLDivergence()(y_pred, y_true)) != pytest.approx(math.log(2), abs=1e-2)


def test_keras_style_subclass_implements_call_and_gets_reduction_and_sample_weight():
    class MeanAbsolute(losses.Loss):
        def call(self, y_true, y_pred):
            return (y_true - y_pred).abs().mean(-1)  # (N,), as Keras's subclasses return

    y_true, y_pred = torch.tensor(KERAS_REGRESSION[0]), torch.tensor(KERAS_REGRESSION[1])
    loss = MeanAbsolute(name="my_mae")
    assert loss.name == "my_mae" and loss.reduction == "sum_over_batch_size"
    assert float(loss(y_true, y_pred)) == 0.5
    assert float(MeanAbsolute(reduction="sum")(y_true, y_pred)) == 1.0
    torch.testing.assert_close(MeanAbsolute(reduction=None)(y_true, y_pred), torch.tensor([0.5, 0.5]))
    assert float(loss(y_true, y_pred, sample_weight=torch.tensor([0.7, 0.3]))) == pytest.approx(0.25)
    assert MeanAbsolute().name == "mean_absolute"


def test_subclasses_in_the_old_order_are_refused_when_defined():
    with pytest.raises(TypeError, match=r"defines forward\(\).*call\(self, y_true, y_pred\)"):
        class OldForward(losses.Loss):
            def forward(self, y_pred, y_true):
                return (y_pred - y_true).mean()
    with pytest.raises(TypeError, match=r"takes 'y_pred' first"):
        class SwappedCall(losses.Loss):
            def call(self, y_pred, y_true):
                return (y_pred - y_true).mean()
    with pytest.raises(TypeError, match=r"takes 'logits' first"):
        class SwappedCompute(losses.Loss):
            def compute(self, logits, labels, reduction):
                return logits.mean()


def test_as_loss_wraps_functions_in_keras_order_and_torch_modules_in_torch_order():
    y_true, y_pred = torch.tensor([1, 2]), torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    module = nn.CrossEntropyLoss()
    wrapped = losses.as_loss(module)
    assert isinstance(wrapped, losses.TorchLoss) and wrapped.module is module
    torch.testing.assert_close(wrapped(y_true, y_pred), module(y_pred, y_true))
    per_sample = nn.CrossEntropyLoss(reduction="none")(y_pred, y_true)
    torch.testing.assert_close(wrapped(y_true, y_pred, sample_weight=torch.tensor([1.0, 0.0])), per_sample[0] / 2)

    def asymmetric(y_true, y_pred):
        return (y_true * 1000 + y_pred).mean(-1)

    function = losses.as_loss(asymmetric)
    assert isinstance(function, losses.LossFunctionWrapper) and function.name == "asymmetric"
    y_true, y_pred = torch.ones(2, 1), torch.zeros(2, 1)
    assert float(function(y_true, y_pred)) == 1000.0
    assert losses.as_loss(losses.get("mse")) is not None and isinstance(losses.as_loss(losses.MeanSquaredError()),
                                                                        losses.MeanSquaredError)
    with pytest.raises(TypeError, match="fn\\(y_true, y_pred\\)"):
        losses.as_loss(3)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(losses)
    assert result.failed == 0 and result.attempted > 0


def test_keras_loss_functions_return_one_value_per_sample():
    np.testing.assert_allclose(losses.binary_crossentropy(*KERAS_PROBABILITIES).numpy(), [0.916, 0.714], atol=1e-3)
    np.testing.assert_allclose(losses.mean_squared_error(*KERAS_REGRESSION).numpy(), [0.5, 0.5])
    np.testing.assert_allclose(losses.categorical_crossentropy(*KERAS_CATEGORICAL).numpy(), [0.0513, 2.303], atol=1e-3)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy([1, 2], KERAS_CATEGORICAL[1]).numpy(),
                               [0.0513, 2.303], atol=1e-3)
    logits = [[-18.6, 0.51], [2.94, -12.8]]
    assert float(losses.binary_crossentropy([[0, 1], [0, 0]], logits, from_logits=True).mean()) == pytest.approx(
        0.865, abs=1e-3)
    for function in (losses.mean_absolute_error, losses.huber, losses.hinge, losses.kl_divergence):
        assert function(*KERAS_PROBABILITIES).shape == (2,)
    assert losses.hinge.__name__ == "hinge" and "keras.losses.hinge" in losses.hinge.__doc__


# -- Dice and Jaccard (IoU) losses ----------------------------------------------------------------------------
def _overlap_by_hand(ids, probabilities, smooth, kind):
    """Per-sample 1 - mean_c score_c with Python loops over samples, classes and positions."""
    values = []
    for sample_ids, sample_p in zip(ids.reshape(len(ids), -1).tolist(),
                                    probabilities.reshape(len(ids), -1, probabilities.shape[-1]).tolist()):
        scores = []
        for c in range(len(sample_p[0])):
            intersection = sum(p[c] for p, y in zip(sample_p, sample_ids) if y == c)
            predicted, actual = sum(p[c] for p in sample_p), sum(1 for y in sample_ids if y == c)
            if kind == "dice":
                scores.append((2 * intersection + smooth) / (predicted + actual + smooth))
            else:
                scores.append((intersection + smooth) / (predicted + actual - intersection + smooth))
        values.append(1 - sum(scores) / len(scores))
    return torch.tensor(values, dtype=F64)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
@pytest.mark.parametrize("name", OVERLAP)
def test_overlap_losses_match_a_hand_computation(name, smooth):
    logits = _randn(3, 4, 5, 4, seed=3)  # (N, H, W, C): a small segmentation output
    ids = _ids(3, 4, 5, classes=4, seed=4)
    expected = _overlap_by_hand(ids, torch.softmax(logits, -1), smooth, name)
    loss = losses.get(name, from_logits=True, smooth=smooth, reduction="none")
    torch.testing.assert_close(loss(ids, logits), expected)
    # One-hot targets give the same value as class ids; the mean reduction averages the samples.
    torch.testing.assert_close(losses.get(name, from_logits=True, smooth=smooth)(F.one_hot(ids, 4).to(F64), logits),
                               expected.mean())
    # A perfect prediction has loss 0; smooth=1 keeps a class absent from both at score 1.
    assert float(losses.get(name, smooth=1.0)(ids, F.one_hot(ids, 4).to(F64))) == pytest.approx(0.0, abs=1e-12)


def test_dice_of_a_binary_mask_is_the_foreground_score():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    p = torch.tensor([[[0.9], [0.6], [0.2], [0.0]]], dtype=F64)  # (N, P, 1): sigmoid outputs
    intersection, sizes = 0.9 + 0.6, (0.9 + 0.6 + 0.2) + 2
    assert float(losses.Dice(smooth=0.0)(mask, p)) == pytest.approx(1 - 2 * intersection / sizes)
    assert float(losses.Jaccard(smooth=0.0)(mask[..., None], p)) == pytest.approx(
        1 - intersection / (sizes - intersection))
    logits = torch.logit(p)
    assert float(losses.Dice(from_logits=True, smooth=0.0)(mask, logits)) == pytest.approx(
        float(losses.Dice(smooth=0.0)(mask, p)))


@pytest.mark.parametrize("name", OVERLAP)
def test_overlap_loss_gradients_match_finite_differences(name):
    logits = _randn(2, 3, 3, 3, seed=5, scale=1.0).requires_grad_()
    ids = _ids(2, 3, 3, classes=3, seed=6)
    loss = losses.get(name, from_logits=True, smooth=0.5)
    assert torch.autograd.gradcheck(lambda x: loss(ids, x), (logits,), eps=1e-6, atol=1e-7)


def test_overlap_loss_checks_targets():
    dice = losses.Dice()
    y_pred = torch.softmax(_randn(2, 4, 4, 3), -1)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*Received: class id 3"):
        dice.check_targets(y_pred, torch.tensor([[[0, 1, 2, 3]] * 4] * 2))
    with pytest.raises(ValueError, match=r"class ids of shape \(None, 4, 4\) or targets shaped like the "
                                         r"predictions, \(None, 4, 4, 3\)\. Received: y_true.shape=\(None, 4\)"):
        dice.check_targets(y_pred, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="expects the model to output probabilities"):
        dice.check_targets(_randn(2, 4, 4, 3), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"smooth >= 0\. Received: smooth=-1"):
        losses.Dice(smooth=-1)
    assert dice.prepare_targets(np.array([[1, 2]])).dtype == torch.int64


def test_sparse_crossentropy_class_weight_is_torchs_weighted_mean():
    logits, ids = _randn(3, 6, 4, seed=7), _ids(3, 6, classes=4, seed=8)
    ids[0, 2] = -100
    weights = [0.1, 1.0, 2.0, 0.5]
    loss = losses.get("sparse_categorical_crossentropy", from_logits=True, class_weight=weights)
    torch.testing.assert_close(loss(ids, logits), F.cross_entropy(
        logits.reshape(-1, 4), ids.reshape(-1), weight=torch.tensor(weights, dtype=F64)))
    # "none": each sample's weighted mean over its counted positions, by hand.
    nll = -_log_softmax(logits)
    expected = []
    for sample_ids, sample_nll in zip(ids.tolist(), nll):
        kept = [(weights[y], sample_nll[t, y]) for t, y in enumerate(sample_ids) if y != -100]
        expected.append(sum(w * v for w, v in kept) / sum(w for w, _ in kept))
    torch.testing.assert_close(losses.get("sparse_categorical_crossentropy", from_logits=True, class_weight=weights,
                                          reduction="none")(ids, logits), torch.stack(expected))
    with pytest.raises(ValueError, match=r"one weight >= 0 per class\. Received: class_weight=\[1, -1\]"):
        losses.get("sparse_categorical_crossentropy", class_weight=[1, -1])
