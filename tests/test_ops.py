"""deepzen.ops against NumPy, the reference Keras's ops follow (argument names as in Keras 3)."""

import doctest

import numpy as np
import pytest
import torch

from deepzen import ops

RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 4)).astype(np.float32)
B = RNG.normal(size=(4, 2)).astype(np.float32)
P = np.abs(A) + 0.1


@pytest.mark.parametrize("name, args, reference", [
    ("matmul", (A, B), lambda: A @ B),
    ("dot", (A, B), lambda: np.dot(A, B)),
    ("add", (A, A), lambda: A + A),
    ("subtract", (A, 1.5), lambda: A - 1.5),
    ("multiply", (A, A), lambda: A * A),
    ("divide", (A, 2.0), lambda: A / 2.0),
    ("maximum", (A, 0.0), lambda: np.maximum(A, 0.0)),
    ("minimum", (A, 0.0), lambda: np.minimum(A, 0.0)),
    ("clip", (A, -0.5, 0.5), lambda: np.clip(A, -0.5, 0.5)),
    ("where", (A > 0, A, -A), lambda: np.where(A > 0, A, -A)),
    ("transpose", (A,), lambda: A.T),
    ("transpose", (A[None], (2, 0, 1)), lambda: np.transpose(A[None], (2, 0, 1))),
    ("reshape", (A, (2, 6)), lambda: A.reshape(2, 6)),
    ("expand_dims", (A, 1), lambda: np.expand_dims(A, 1)),
    ("squeeze", (A[None], 0), lambda: A),
    ("concatenate", ([A, A], 1), lambda: np.concatenate([A, A], 1)),
    ("stack", ([A, A], 1), lambda: np.stack([A, A], 1)),
    ("tile", (A, (2, 1)), lambda: np.tile(A, (2, 1))),
    ("repeat", (A, 2, 0), lambda: np.repeat(A, 2, 0)),
    ("sum", (A,), lambda: A.sum()),
    ("sum", (A, [0, 1], True), lambda: A.sum((0, 1), keepdims=True)),
    ("mean", (A, 1), lambda: A.mean(1)),
    ("max", (A, 0, True), lambda: A.max(0, keepdims=True)),
    ("min", (A, -1), lambda: A.min(-1)),
    ("prod", (A, 0), lambda: A.prod(0)),
    ("var", (A, 1), lambda: A.var(1)),
    ("std", (A,), lambda: A.std()),
    ("argmax", (A, 1), lambda: A.argmax(1)),
    ("argmin", (A, 0), lambda: A.argmin(0)),
    ("norm", (A,), lambda: np.linalg.norm(A)),
    ("abs", (A,), lambda: np.abs(A)),
    ("square", (A,), lambda: A ** 2),
    ("sqrt", (P,), lambda: np.sqrt(P)),
    ("exp", (A,), lambda: np.exp(A)),
    ("log", (P,), lambda: np.log(P)),
    ("relu", (A,), lambda: np.maximum(A, 0)),
    ("sigmoid", (A,), lambda: 1 / (1 + np.exp(-A))),
    ("tanh", (A,), lambda: np.tanh(A)),
    ("softmax", (A,), lambda: np.exp(A) / np.exp(A).sum(-1, keepdims=True)),
    ("log_softmax", (A, 0), lambda: A - np.log(np.exp(A).sum(0, keepdims=True))),
    ("zeros", ((2, 3),), lambda: np.zeros((2, 3))),
    ("ones", ((2, 3), "int32"), lambda: np.ones((2, 3), np.int32)),
    ("full", ((2,), 7.0), lambda: np.full((2,), 7.0)),
    ("arange", (1, 7, 2), lambda: np.arange(1, 7, 2)),
    ("eye", (3,), lambda: np.eye(3)),
    ("one_hot", (np.array([0, 2]), 3), lambda: np.eye(3)[[0, 2]]),
])
def test_ops_match_numpy(name, args, reference):
    result = getattr(ops, name)(*args)
    assert isinstance(result, torch.Tensor)
    np.testing.assert_allclose(result.numpy(), reference(), rtol=1e-5, atol=1e-6)


def test_split_follows_numpy_and_refuses_unequal_parts():
    parts = ops.split(np.arange(6), [1, 4])
    assert [p.tolist() for p in parts] == [a.tolist() for a in np.split(np.arange(6), [1, 4])]
    with pytest.raises(ValueError, match="does not divide into 4"):
        ops.split(np.arange(6), 4)


def test_ops_follow_autograd_and_dtypes():
    x = torch.ones(3, requires_grad=True)
    ops.sum(ops.square(x)).backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
    assert ops.convert_to_tensor(np.zeros(2)).dtype == torch.float32  # NumPy float64 -> float32, as in Keras
    assert ops.cast([1.7], "int64").tolist() == [1]
    with pytest.raises(ValueError, match="Unknown dtype.*Received: dtype='float8'"):
        ops.zeros((1,), dtype="float8")


def test_docstring_examples():
    result = doctest.testmod(ops)
    assert result.attempted > 0 and result.failed == 0
