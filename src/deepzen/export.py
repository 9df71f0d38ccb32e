"""ONNX export with a dynamic batch axis, and its check against deepzen under onnxruntime.

The export is torch's own (``torch.onnx.export``, the ``torch.export``-based exporter that is torch's
default since 2.9; it needs the ``onnx`` and ``onnxscript`` packages). :func:`verify_onnx` runs the
file in onnxruntime on random valid inputs - a batch size other than the one used to export, so the
dynamic axis is exercised too - and compares with the model's own outputs.

Example:
    >>> export_onnx(model, "model.onnx")                # doctest: +SKIP
    >>> verify_onnx("model.onnx", model)  # max abs difference, raises above 1e-4  # doctest: +SKIP
    2.9e-07
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepzen.data.arrays import leaves
from deepzen.serving.spec import input_spec, random_inputs
from deepzen.training.serialization import atomic_write

TOLERANCE = 1e-4


class ExportMismatchError(AssertionError):
    """onnxruntime's outputs differ from the model's by more than the tolerance."""


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset_version: int | None = None,
                dynamic_batch: bool = True) -> Path:
    """Writes ``model`` (in eval mode) as an ONNX file with input ``input`` of shape (batch, *input_shape).

    Args:
        model: a built deepzen model with one input tensor.
        path: the .onnx file (written atomically).
        opset_version: the ONNX opset; None uses torch's default.
        dynamic_batch: export the batch axis as dynamic (else fixed to the example's 2).
    """
    input_spec(model)  # refuses unbuilt and multi-input models with a clear message
    example = random_inputs(model, 2).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        outputs = len(leaves(_outputs(model, example)))
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset_version, input_names=["input"],
            output_names=["output"] if outputs == 1 else [f"output_{i}" for i in range(outputs)],
            dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic_batch else None, verbose=False)
    finally:
        model.train(was_training)
    blob = program.model_proto.SerializeToString()
    atomic_write(path, lambda file: file.write(blob))
    return Path(path)


def verify_onnx(path: str | os.PathLike, model: nn.Module, inputs: torch.Tensor | None = None,
                atol: float = TOLERANCE) -> float:
    """The largest absolute difference between onnxruntime's and the model's outputs.

    Args:
        path: an ONNX file written by :func:`export_onnx`.
        model: the model it was exported from.
        inputs: (n, *input_shape) inputs; default 3 random valid samples.
        atol: raise :class:`ExportMismatchError` above this difference.
    """
    import onnxruntime

    if inputs is None:
        inputs = random_inputs(model, 3, seed=1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    received = session.run(None, {session.get_inputs()[0].name: inputs.cpu().numpy()})
    was_training = model.training
    model.eval()
    try:
        expected = [t.float().cpu().numpy() for t in leaves(_outputs(model, inputs.to(next(model.parameters()).device)))]
    finally:
        model.train(was_training)
    if len(received) != len(expected):
        raise ExportMismatchError(f"{path} has {len(received)} outputs; the model has {len(expected)}")
    difference = max(float(np.abs(r.astype(np.float32) - e).max()) for r, e in zip(received, expected))
    if not difference <= atol:
        raise ExportMismatchError(f"onnxruntime's outputs for {path} differ from the model's by up to {difference:.3g} "
                                  f"(tolerance {atol:g})")
    return difference


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor):
    return model(x)
