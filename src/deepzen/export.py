"""ONNX export with a dynamic batch axis, and its check against deepzen under onnxruntime.

Single-input models export as one graph (:func:`export_onnx`). Text generators export as the graphs
a decoding loop needs (:func:`export_generator`): a translator as ``encoder.onnx`` (source ids ->
the encoder's state) and ``decoder_step.onnx`` (the target prefix and that state -> the next
token's log-probabilities); a language model as ``decoder_step.onnx`` alone (the prefix -> the next
token's log-probabilities: a decoder-only model has no encoder). The step graphs take the whole prefix
and keep no cache between calls (the key/value and recurrent caches of deepzen's own decoding are
Python state), so a loop that calls them is correct but does quadratic work in the output length.

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
EXPORTED_GENERATOR = ("encoder.onnx maps source ids to the encoder's state (absent for a language model); "
                      "decoder_step.onnx maps the whole prefix (and that state) to the next token's log-probabilities, "
                      "without a cache between calls")


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


# -- text generators ------------------------------------------------------------------------------------
class _Encoder(nn.Module):
    """A translator's encoder as a graph: (N, S) source ids -> its state's tensors, in ``names`` order."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, source):
        return tuple(_state_tensors(self.model.encode(source), self.names))


class _DecoderStep(nn.Module):
    """One decoding step as a graph: (N, T) prefix [and the encoder's state] -> (N, V) next-token log-probs."""

    def __init__(self, model: nn.Module, names: list[str] | None):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, prefix, *state):
        if self.names is None:  # a language model
            logits = self.model(prefix)                                                   # (N, T, V)
        else:
            logits = self.model.decode(prefix, _state_dict(state, self.names))            # (N, T, V)
        return torch.log_softmax(logits[:, -1], dim=-1)                                   # (N, V)


def generator_kind(model: nn.Module) -> str | None:
    """"translator" (encode/decode), "language_model" (step over a vocabulary) or None."""
    if all(callable(getattr(model, name, None)) for name in ("encode", "decode", "generate")):
        return "translator"
    if callable(getattr(model, "step", None)) and callable(getattr(model, "generate", None)) and \
            hasattr(model, "vocab"):
        return "language_model"
    return None


def export_generator(model: nn.Module, folder: str | os.PathLike, *, opset_version: int | None = None,
                     example_length: int = 7) -> dict[str, Path]:
    """Writes a translator's encoder and decoder-step graphs, or a language model's decoder-step graph.

    Args:
        model: a built translator (``encode``/``decode``) or language model (``step``, ``vocab``).
        folder: where ``encoder.onnx`` and ``decoder_step.onnx`` go (created if missing).
        opset_version: the ONNX opset; None uses torch's default.
        example_length: the example sequences' length (batch, source and target axes are dynamic).

    Returns:
        ``{"encoder": path, "decoder_step": path}`` (no encoder for a language model).

    Raises:
        ValueError: the model is neither, with what was expected.
    """
    kind = generator_kind(model)
    if kind is None:
        raise ValueError(f"export_generator takes a translator (encode, decode, generate) or a language model "
                         f"(step, generate, vocab). Received: {type(model).__name__}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = getattr(model, "device", None) or torch.device("cpu")  # deepzen models know theirs, built or not
    generator = torch.Generator().manual_seed(0)
    batch = torch.export.Dim("batch")
    was_training = model.training
    model.eval()
    paths = {}
    try:
        with torch.no_grad():
            if kind == "translator":
                source = torch.randint(4, model.source_vocab_size, (2, example_length), generator=generator).to(device)
                prefix = torch.randint(4, model.target_vocab_size, (2, example_length - 2),
                                       generator=generator).to(device)
                model(source, prefix)  # builds lazily built layers before tracing
                state = model.encode(source)
                names = _state_names(state)
                tensors = tuple(_state_tensors(state, names))
                source_axis = torch.export.Dim("source")
                paths["encoder"] = _export(_Encoder(model, names), (source,), folder / "encoder.onnx",
                                           ["source"], names, ({0: batch, 1: source_axis},), opset_version)
                state_axes = tuple({0: batch, 1: source_axis} if t.dim() >= 2 and t.shape[1] == source.shape[1]
                                   else {0: batch} for t in tensors)
                # forward(prefix, *state): the state's axes go in one tuple, as torch.export reads varargs
                inputs, axes = (prefix, *tensors), ({0: batch, 1: torch.export.Dim("target")}, state_axes)
                paths["decoder_step"] = _export(_DecoderStep(model, names), inputs, folder / "decoder_step.onnx",
                                                ["prefix", *names], ["log_probs"], axes, opset_version)
            else:
                context = getattr(model, "context", None)
                length = min(example_length, context) if context else example_length
                prefix = torch.randint(0, len(model.vocab), (2, length), generator=generator).to(device)
                model(prefix)
                maximum = {"max": context} if context else {}
                paths["decoder_step"] = _export(_DecoderStep(model, None), (prefix,), folder / "decoder_step.onnx",
                                                ["prefix"], ["log_probs"],
                                                ({0: batch, 1: torch.export.Dim("length", **maximum)},),
                                                opset_version)
    finally:
        model.train(was_training)
    return paths


def verify_generator(paths: dict[str, Path], model: nn.Module, atol: float = TOLERANCE) -> float:
    """The largest absolute difference between the exported step's log-probabilities and the model's, on random
    inputs of other sizes than the export's (3 sequences, source length 9, prefix length 4).

    Raises:
        ExportMismatchError: above ``atol``.
    """
    import onnxruntime

    generator = torch.Generator().manual_seed(1)
    device = getattr(model, "device", None) or torch.device("cpu")
    options = {"providers": ["CPUExecutionProvider"]}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if "encoder" in paths:
                source = torch.randint(4, model.source_vocab_size, (3, 9), generator=generator)
                prefix = torch.randint(4, model.target_vocab_size, (3, 4), generator=generator)
                state = model.encode(source.to(device))
                names = _state_names(state)
                expected = _DecoderStep(model, names)(prefix.to(device), *_state_tensors(state, names))
                encoder = onnxruntime.InferenceSession(str(paths["encoder"]), **options)
                outputs = encoder.run(None, {"source": source.numpy()})
                feeds = dict(zip([o.name for o in encoder.get_outputs()], outputs))
            else:
                prefix = torch.randint(0, len(model.vocab), (3, 4), generator=generator)
                expected, feeds = _DecoderStep(model, None)(prefix.to(device)), {}
    finally:
        model.train(was_training)
    decoder = onnxruntime.InferenceSession(str(paths["decoder_step"]), **options)
    received = decoder.run(None, {"prefix": prefix.numpy(), **feeds})[0]
    difference = float(np.abs(received - expected.float().cpu().numpy()).max())
    if not difference <= atol:
        raise ExportMismatchError(f"The exported decoder step differs from the model's by up to {difference:.3g} "
                                  f"(tolerance {atol:g})")
    return difference


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_shapes: tuple, opset_version: int | None) -> Path:
    program = torch.onnx.export(module, inputs, dynamo=True, opset_version=opset_version, input_names=input_names,
                                output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False)
    blob = program.model_proto.SerializeToString()
    atomic_write(path, lambda file: file.write(blob))
    return path


def _state_names(state: dict) -> list[str]:
    """The tensors of an encoder state, flattened: ``memory``, ``memory_mask``, ``hidden_0``, ... (empty caches
    are Python state of deepzen's decoding loop, not inputs of the graph)."""
    names = []
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            names.append(key)
        elif isinstance(value, (tuple, list)):
            names += [f"{key}_{i}" for i in range(len(value))]
        elif value:
            raise ValueError(f"Cannot export the encoder state {key!r} of type {type(value).__name__}: expected "
                             f"tensors, tuples of tensors or an empty cache")
    return names


def _state_tensors(state: dict, names: list[str]) -> list[torch.Tensor]:
    tensors = []
    for name in names:
        key, _, index = name.rpartition("_")
        if name in state:
            tensors.append(state[name])
        else:
            tensors.append(state[key][int(index)])
    return tensors


def _state_dict(tensors: tuple, names: list[str]) -> dict:
    state: dict = {"cache": {}}
    for name, tensor in zip(names, tensors):
        key, _, index = name.rpartition("_")
        if index.isdigit() and key:
            state.setdefault(key, []).append(tensor)
        else:
            state[name] = tensor
    return {key: tuple(value) if isinstance(value, list) else value for key, value in state.items()}


def greedy_decode_onnx(paths: dict[str, Path], prefix: np.ndarray, steps: int, source: np.ndarray | None = None,
                       eos: int | None = None) -> np.ndarray:
    """Greedy decoding with exported graphs under onnxruntime (a reference loop, and the check of the export).

    Args:
        paths: what :func:`export_generator` returned.
        prefix: (N, t) ids to continue: a translator's start token, or a language model's prompt.
        steps: tokens to generate at most.
        source: (N, S) source ids of a translator.
        eos: stop a row at this id (rows that ended repeat it).

    Returns:
        (N, <= steps) generated ids.
    """
    import onnxruntime

    options = {"providers": ["CPUExecutionProvider"]}
    decoder = onnxruntime.InferenceSession(str(paths["decoder_step"]), **options)
    state = {}
    if "encoder" in paths:
        encoder = onnxruntime.InferenceSession(str(paths["encoder"]), **options)
        names = [output.name for output in encoder.get_outputs()]
        state = dict(zip(names, encoder.run(None, {"source": source.astype(np.int64)})))
    start = prefix.shape[1]
    prefix = prefix.astype(np.int64)
    finished = np.zeros(len(prefix), dtype=bool)
    for _ in range(steps):
        log_probs = decoder.run(None, {"prefix": prefix, **state})[0]                  # (N, V)
        token = log_probs.argmax(axis=1)
        if eos is not None:
            token = np.where(finished, eos, token)
            finished |= token == eos
        prefix = np.concatenate([prefix, token[:, None]], axis=1)
        if finished.all():
            break
    return prefix[:, start:]
