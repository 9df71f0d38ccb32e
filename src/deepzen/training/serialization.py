"""Model files: safetensors weights with the JSON config in the header, written atomically.

A file is one safetensors blob. Its ``__metadata__`` holds the architecture (layer classes and their
constructor arguments), the per-sample input spec, the compile settings given by name, and a
SHA-256 of the tensor bytes. Loading parses JSON and raw tensors only — never pickle — and refuses
files whose header, size or checksum do not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from deepzen._registry import Registry

FORMAT = "deepzen-model/1"

# Classes a config may name besides layers: Model, Sequential, and architectures such as the vision zoo.
ARCHITECTURES: Registry[type] = Registry("architecture", overwrite=True)


class ModelFileError(ValueError):
    """A model file is missing, truncated, tampered with, or does not fit the model."""


def register_architecture(cls: type) -> type:
    """Lets ``load_model`` rebuild ``cls`` from ``cls.from_config(module.get_config())``."""
    ARCHITECTURES.register(cls.__name__, cls)
    return cls


def module_config(module: nn.Module) -> dict[str, Any] | None:
    """``{"class": ..., "config": ...}`` for modules deepzen can rebuild; None for other modules."""
    from deepzen.layers.base import Layer

    name = type(module).__name__
    if isinstance(module, Layer):
        return {"class": name, "kind": "layer", "config": module.get_config()}
    if name in ARCHITECTURES and ARCHITECTURES.get(name) is type(module):
        return {"class": name, "kind": "architecture", "config": module.get_config()}
    return None


def module_from_config(config: dict[str, Any] | None) -> nn.Module:
    from deepzen.layers.base import LAYERS

    if config is None:
        raise ModelFileError("The file holds weights of a custom module that deepzen cannot rebuild from its config: "
                             "construct the model in Python and call model.load_weights(path)")
    registry = LAYERS if config.get("kind") == "layer" else ARCHITECTURES
    return registry.get(config["class"]).from_config(config["config"])


# -- bytes on disk ---------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Writes a file so that a crash leaves either the old file or the complete new one.

    ``write(file)`` fills a temporary file in the same folder; it is flushed, fsynced and renamed
    over ``path``, then the folder is fsynced so the rename itself survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fchmod(file.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().contiguous().cpu()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Saves tensors and JSON metadata as one safetensors file, atomically, with a checksum."""
    from safetensors.torch import save

    tensors = {key: value.detach().contiguous().cpu().clone() for key, value in tensors.items()}
    header = {"format": FORMAT, "checksum": tensor_checksum(tensors), "deepzen": json.dumps(metadata)}
    blob = save(tensors, metadata=header)
    atomic_write(path, lambda file: file.write(blob))


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a file written by :func:`write_tensors`; raises :class:`ModelFileError` on any damage."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers and sizes
        raise ModelFileError(f"{path} is not a readable deepzen file (truncated or not safetensors): {error}") from error
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not a deepzen model file "
                             f"(format {header.get('format')!r}, expected {FORMAT!r})")
    if tensor_checksum(tensors) != header.get("checksum"):
        raise ModelFileError(f"{path} is corrupted: its tensors do not match the checksum recorded when it was saved")
    try:
        metadata = json.loads(header["deepzen"])
    except (KeyError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path} has an unreadable config: {error}") from error
    return tensors, metadata


# -- models ----------------------------------------------------------------------------------------------
def _compile_entry(value: Any) -> Any:
    """A compile setting as JSON (names, numbers, deepzen objects with get_config), or None if it has none."""
    from deepzen.layers.base import config_value

    try:
        return config_value(value, "compile")
    except TypeError:
        return None


def save_model(model, path: str | os.PathLike) -> None:
    """Saves ``model`` (weights, architecture, input spec, compile settings) to ``path``."""
    from deepzen.data.arrays import map_structure

    config = {"class": type(model).__name__, "kind": "architecture", "config": model.get_config()} \
        if type(model).__name__ in ARCHITECTURES else None
    spec = None
    if model.input_spec is not None:
        spec = map_structure(lambda s: {"__spec__": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")},
                             model.input_spec)
    given = model.compile_config or {}
    compile_config = {key: _compile_entry(value) for key, value in given.items()}
    if any(compile_config[key] is None and given[key] is not None for key in given):
        compile_config = None  # a setting without a config (a lambda, a torch optimizer): load uncompiled
    write_tensors(path, model.state_dict(), {"model": config, "input_spec": spec, "compile": compile_config})


def _example_from_spec(spec: Any, device) -> Any:
    """Two zero samples shaped like the saved input spec (to build lazy layers before loading)."""
    if isinstance(spec, dict) and "__spec__" in spec:
        return torch.zeros((2, *spec["__spec__"]), dtype=getattr(torch, spec["dtype"]), device=device)
    if isinstance(spec, dict):
        return {key: _example_from_spec(value, device) for key, value in spec.items()}
    return [_example_from_spec(value, device) for value in spec]


def load_weights(model, path: str | os.PathLike) -> None:
    """Loads the weights in ``path`` into ``model``, building its lazy layers first if needed."""
    tensors, metadata = read_tensors(path)
    if not model.built and metadata.get("input_spec") is not None:
        model.build_for(_example_from_spec(metadata["input_spec"], model.device))
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [f"{key}: file {tuple(tensors[key].shape)} vs model {tuple(own[key].shape)}"
                  for key in own if key in tensors and tensors[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing in the file: {', '.join(missing[:8])}")
        if unexpected:
            details.append(f"not in the model: {', '.join(unexpected[:8])}")
        if mismatched:
            details.append(f"shape differs: {'; '.join(mismatched[:8])}")
        raise ModelFileError(f"The weights in {path} do not fit this model ({'; '.join(details)})")
    model.load_state_dict(tensors)


def load_model(path: str | os.PathLike, *, compile: bool = True):
    """Rebuilds a model saved with ``model.save(path)``: architecture, weights and compile settings."""
    _, metadata = read_tensors(path)
    model = module_from_config(metadata.get("model"))
    load_weights(model, path)
    from deepzen.layers.base import value_from_config

    settings = metadata.get("compile")
    if compile and settings and settings.get("loss") is not None:
        model.compile(**{key: value_from_config(value) for key, value in settings.items() if value is not None})
    return model


def register_models() -> None:
    from deepzen.training.model import Model, Sequential

    register_architecture(Model)
    register_architecture(Sequential)


register_models()
