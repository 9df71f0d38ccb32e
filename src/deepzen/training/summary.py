"""``model.summary()``: a layer table with output shapes, parameters and multiply-adds."""

from __future__ import annotations

import torch
from torch import nn

from deepzen.data.arrays import map_structure
from deepzen.layers.base import Layer, shape_str
from deepzen.layers.subclassing import weight_tensors


def multiply_adds(module: nn.Module, inputs: tuple, output) -> int | None:
    """Multiply-adds per sample of a module with a weight matrix or kernel (dense, conv, transposed conv).

    Each output element of a dense or conv layer costs ``weight[0].numel()`` multiply-adds; a
    transposed conv spends that per *input* element. Modules without such a weight report None.
    """
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2 or isinstance(module, nn.Embedding):
        return None
    if not isinstance(output, torch.Tensor):
        return None
    per_element = weight[0].numel()
    transposed = getattr(module, "transposed", False) or "Transpose" in type(module).__name__
    reference = inputs[0] if transposed and inputs and isinstance(inputs[0], torch.Tensor) else output
    return int(reference[0].numel() * per_element)


def summarize(model: nn.Module, input_shape=None) -> str:
    """Runs one forward pass on two zero samples and tabulates the leaf layers (``model`` is a deepzen
    ``Model``: it has ``built``, ``build``, ``build_for`` and ``input_spec``)."""
    if not model.built:
        model.build(input_shape)
    rows: list[tuple[str, str, str, int, int | None]] = []
    names = {module: name for name, module in model.named_modules()}
    leaves = _rows(model)

    def record(module, inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        shape = shape_str((None, *first.shape[1:])) if isinstance(first, torch.Tensor) else type(output).__name__
        params = sum(w.numel() for w in weight_tensors(module)[2])
        rows.append((names[module], type(module).__name__, shape, params, multiply_adds(module, inputs, output)))

    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        model.build_for(_zeros_like_spec(model.input_spec, model.device))
    finally:
        for handle in handles:
            handle.remove()

    trainable_weights, _, every = weight_tensors(model)
    trainable = sum(w.numel() for w in trainable_weights)
    total = sum(w.numel() for w in every)
    total_macs = sum(r[4] for r in rows if r[4] is not None)
    headers = ("Layer (type)", "Output shape", "Params", "Mult-adds")
    table = [(f"{name} ({kind})", shape, f"{params:,}", "-" if macs is None else f"{macs:,}")
             for name, kind, shape, params, macs in rows]
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
    out = [f'Model: "{getattr(model, "name", type(model).__name__)}"', rule, line(headers), rule]
    out += [line(r) for r in table]
    out += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", f"Mult-adds per sample: {total_macs:,}", rule]
    return "\n".join(out)


def _rows(model: nn.Module) -> list[nn.Module]:
    """The modules shown as rows: outermost deepzen layers, and torch leaf modules outside them."""
    rows, covered = [], []
    for name, module in model.named_modules():
        if module is model or any(name.startswith(prefix + ".") for prefix in covered):
            continue
        if isinstance(module, Layer) or not any(True for _ in module.children()):
            rows.append(module)
            covered.append(name)
    return rows


def _zeros_like_spec(spec, device):
    return map_structure(lambda s: torch.zeros((2, *s.shape), dtype=s.dtype, device=device), spec)
