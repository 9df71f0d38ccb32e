"""Model files: safetensors weights with the JSON config in the header, one SHA-256 over every byte.

A file is one safetensors blob, written atomically. Its ``__metadata__`` holds the architecture (layer
classes and their constructor arguments), the per-sample input spec, the compile settings given by
name, and a SHA-256 of the whole file (computed with the hash field itself zeroed), so an edited byte
anywhere - config, tensor header or tensor data - is refused. ``save(..., signing_key=)`` adds an
HMAC of that hash, which ``load_model(..., verify_key=)`` requires.

Loading trusts nothing in the file:

- the safetensors header is parsed and checked (dtypes, shapes, offsets against the file's size)
  before any tensor is read, and configs nested deeper than :data:`MAX_CONFIG_DEPTH` are refused;
- the config builds only registered classes (:mod:`deepzen.serializable`), never imports;
- the model is first built on PyTorch's ``meta`` device, which allocates nothing, so the tensors the
  file declares are checked against the shapes its config implies (and the build probe's size is
  bounded) before memory is spent on either;
- every failure is a :class:`ModelFileError` that names the file. Never pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from deepzen.serializable import (MAX_CONFIG_DEPTH, ModelFileError, check_depth, config_value, custom_object_scope,
                                  is_registered, serializable_class, value_from_config)

FORMAT = "deepzen-model/2"
HASH_FIELD, SIGNATURE_FIELD = "sha256", "signature"
_PLACEHOLDER = "0" * 64  # the hash and signature fields hold this while the file is hashed
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# The build probe (two zero samples through the model) may use this much per tensor, or as much as the
# file's tensors take if that is more: enough for any real input, far from a hostile 80 GB one.
PROBE_FLOOR_BYTES = 1 << 30

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_SPEC_DTYPES = {str(dtype).replace("torch.", ""): dtype for dtype in _DTYPES.values()}


def module_config(module: nn.Module) -> dict[str, Any] | None:
    """``{"class": ..., "config": ...}`` for modules deepzen can rebuild; None for other modules."""
    from deepzen.layers.base import Layer

    graph_of = type(module).__dict__.get("graph_of")  # a Model subclass built from (inputs, outputs)
    cls = graph_of or type(module)
    if graph_of is None and not is_registered(cls):
        return None  # its graph is always known; loading names the class, which custom_objects= supplies
    kind = "layer" if isinstance(module, Layer) else "architecture"
    return {"class": cls.__name__, "module": cls.__module__, "kind": kind, "config": module.get_config()}


def module_from_config(config: dict[str, Any] | None) -> nn.Module:
    """Rebuilds a module from :func:`module_config`'s output; only registered classes are built."""
    if config is None:
        raise ModelFileError("The file holds weights of a custom module that deepzen cannot rebuild from its config: "
                             "construct the model in Python and call model.load_weights(path)")
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"A module config must be {{'class': NAME, 'config': {{...}}}}. Received: {config!r:.200}")
    cls = serializable_class(config.get("class"), config.get("module"))
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelFileError(f"A module config names {config.get('class')!r}, which is not a module")
    return cls.from_config(config["config"])


@contextlib.contextmanager
def building_from(path: str | os.PathLike) -> Iterator[None]:
    """Turns any error raised while a file's config is built into a :class:`ModelFileError` naming the file.

    A config comes from outside, so a wrong argument, an unknown name or a nonsensical shape is a fault of
    the file, reported as such (the original error is chained).
    """
    try:
        yield
    except ModelFileError as error:
        if str(path) in str(error):
            raise
        raise ModelFileError(f"{path}: {error}") from error
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, LookupError, RuntimeError,
            NotImplementedError, OverflowError, RecursionError, AssertionError) as error:
        raise ModelFileError(f"{path}: its config does not build a model ({type(error).__name__}: {error})") from error


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


def _key_bytes(key: str | bytes | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError(f"A signing or verify key is a non-empty bytes or str. Received: {type(key).__name__}")
    return bytes(key)


def _signature(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def _field(name: str, value: str) -> bytes:
    return f'"{name}":"{value}"'.encode()  # as safetensors writes metadata: compact JSON


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                  signing_key: str | bytes | None = None) -> None:
    """Saves tensors and JSON metadata as one safetensors file, atomically, hashed (and signed when a key is given)."""
    from safetensors.torch import save

    key = _key_bytes(signing_key)
    tensors = {name: value.detach().contiguous().cpu().clone() for name, value in tensors.items()}
    header = {"format": FORMAT, HASH_FIELD: _PLACEHOLDER, "deepzen": json.dumps(metadata)}
    if key is not None:
        header[SIGNATURE_FIELD] = _PLACEHOLDER
    blob = bytearray(save(tensors, metadata=header))
    end = 8 + int.from_bytes(blob[:8], "little")
    digest = hashlib.sha256(blob).hexdigest()
    filled = {HASH_FIELD: digest, **({SIGNATURE_FIELD: _signature(key, digest)} if key is not None else {})}
    for name, value in filled.items():
        start = blob.index(_field(name, _PLACEHOLDER), 0, end)
        blob[start:start + len(_field(name, value))] = _field(name, value)
    atomic_write(path, lambda file: file.write(blob))


@dataclass(frozen=True)
class TensorSpec:
    """What a file's header declares about one tensor, checked against the file before anything is read."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class FileHeader:
    """A deepzen file whose header is checked and whose hash (and signature, if asked) matches."""

    path: Path
    tensors: dict[str, TensorSpec]
    metadata: dict[str, Any]
    signed: bool

    @property
    def nbytes(self) -> int:
        return sum(spec.nbytes for spec in self.tensors.values())

    def read_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors (call only once the declared shapes are known to be wanted)."""
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as file:
                return {key: file.get_tensor(key) for key in file.keys()}
        except Exception as error:  # safetensors raises its own error types; the file changed since it was checked
            raise ModelFileError(f"{self.path} could not be read: {error}") from error


def read_header(path: str | os.PathLike, verify_key: str | bytes | None = None) -> FileHeader:
    """Checks a deepzen file's header and hash (and its signature with ``verify_key``); reads no tensor.

    Raises:
        ModelFileError: naming the file, for a missing, truncated, altered, unsigned (when a key is given)
            or otherwise malformed file.
    """
    path = Path(path)
    key = _key_bytes(verify_key)
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}")
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < 8:
            raise ModelFileError(f"{path} is not a deepzen file: it has {size} bytes (truncated?)")
        length = int.from_bytes(file.read(8), "little")
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise ModelFileError(f"{path} is not a deepzen file (truncated or not safetensors): its header declares "
                                 f"{length} bytes in a file of {size}")
        header_bytes = file.read(length)
        header = _parse_json(header_bytes, path, "header")
        if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
            raise ModelFileError(f"{path} is not a deepzen file: its safetensors header has no metadata")
        fields = header.pop("__metadata__")
        if fields.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a deepzen model file of this version (format "
                                 f"{str(fields.get('format'))[:40]!r}, expected {FORMAT!r}); files of older versions "
                                 f"are not covered by one hash: save the model again")
        tensors = _tensor_specs(header, size - 8 - length, path)
        digest, signature = fields.get(HASH_FIELD), fields.get(SIGNATURE_FIELD)
        zeroed = header_bytes
        for name, value in ((HASH_FIELD, digest), (SIGNATURE_FIELD, signature)):
            if value is None:
                continue
            if not isinstance(value, str) or len(value) != 64 or zeroed.count(_field(name, value)) != 1:
                raise ModelFileError(f"{path} has a malformed {name} field")
            zeroed = zeroed.replace(_field(name, value), _field(name, _PLACEHOLDER))
        if digest is None:
            raise ModelFileError(f"{path} has no {HASH_FIELD} in its header")
        hasher = hashlib.sha256(length.to_bytes(8, "little") + zeroed)
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    if not hmac.compare_digest(hasher.hexdigest(), digest):
        raise ModelFileError(f"{path} was altered or damaged after it was saved: its SHA-256 does not match the one "
                             f"recorded in it")
    if key is not None:
        if signature is None:
            raise ModelFileError(f"{path} is not signed, and a verify_key was given: refusing an unsigned file")
        if not hmac.compare_digest(_signature(key, digest), signature):
            raise ModelFileError(f"{path} is not signed with this key (its HMAC does not match)")
    metadata = _parse_json(fields.get("deepzen", "").encode(), path, "config")
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path} has a config that is not a JSON object")
    return FileHeader(path, tensors, metadata, signed=signature is not None)


def _parse_json(text: bytes, path: Path, what: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise ModelFileError(f"{path} has a {what} nested too deeply to be a deepzen file") from error
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError, or an integer of thousands of digits
        raise ModelFileError(f"{path} has an unreadable {what}: {error}") from error
    check_depth(value, f"{path}'s {what}", MAX_CONFIG_DEPTH)
    return value


def _tensor_specs(header: dict[str, Any], data_bytes: int, path: Path) -> dict[str, TensorSpec]:
    """Checks every tensor entry of a safetensors header: dtype, shape, and offsets that tile the data exactly."""
    specs, spans = {}, []
    for name, entry in header.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            if not all(type(d) is int and d >= 0 for d in (*shape, begin, end)):
                raise ValueError("negative or non-integer sizes")
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{path} has a malformed entry for tensor {name!r:.80}: {error!r:.100}") from error
        spec = TensorSpec(dtype, shape)
        if end - begin != spec.nbytes:
            raise ModelFileError(f"{path}: tensor {name!r:.80} declares shape {list(shape)} of {entry['dtype']} "
                                 f"({spec.nbytes} bytes) over {end - begin} bytes")
        specs[name] = spec
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ModelFileError(f"{path}: its tensors overlap or leave gaps in the data")
        position = end
    if position != data_bytes:
        raise ModelFileError(f"{path} is truncated or padded: its tensors declare {position} bytes of data, "
                             f"the file holds {data_bytes}")
    return specs


def read_tensors(path: str | os.PathLike, verify_key: str | bytes | None = None,
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a file written by :func:`write_tensors`; raises :class:`ModelFileError` on any damage."""
    header = read_header(path, verify_key)
    return header.read_tensors(), header.metadata


# -- models ----------------------------------------------------------------------------------------------
def _compile_entry(value: Any) -> Any:
    """A compile setting as JSON (names, numbers, deepzen objects with get_config), or None if it has none."""
    try:
        return config_value(value, "compile")
    except TypeError:
        return None


def save_model(model, path: str | os.PathLike, signing_key: str | bytes | None = None) -> None:
    """Saves ``model`` (weights, architecture, input spec, compile settings) to ``path``; signs it with an HMAC
    of ``signing_key`` when one is given."""
    from deepzen.data.arrays import map_structure

    spec = None
    if model.input_spec is not None:
        spec = map_structure(lambda s: {"__spec__": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")},
                             model.input_spec)
    given = model.compile_config or {}
    compile_config = {key: _compile_entry(value) for key, value in given.items()}
    if any(compile_config[key] is None and given[key] is not None for key in given):
        compile_config = None  # a setting without a config (a lambda, a torch optimizer): load uncompiled
    write_tensors(path, model.state_dict(), {"model": module_config(model), "input_spec": spec,
                                             "compile": compile_config}, signing_key=signing_key)


def _example_from_spec(spec: Any, device) -> Any:
    """Two zero samples shaped like the saved input spec (to build lazy layers before loading)."""
    if isinstance(spec, dict) and "__spec__" in spec:
        shape, dtype = spec["__spec__"], _SPEC_DTYPES.get(spec.get("dtype"))
        if dtype is None or not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ModelFileError(f"An input spec must give a list of sizes and a dtype. Received: {spec!r:.200}")
        return torch.zeros((2, *shape), dtype=dtype, device=device)
    if isinstance(spec, dict):
        return {key: _example_from_spec(value, device) for key, value in spec.items()}
    if isinstance(spec, list):
        return [_example_from_spec(value, device) for value in spec]
    raise ModelFileError(f"An input spec is a dict or a list of them. Received: {spec!r:.200}")


def _real_example(spec: Any, device, limit: int) -> Any:
    """The build example on ``device``, refused before allocation when one of its tensors exceeds ``limit``."""
    from deepzen.data.arrays import leaves, map_structure

    example = _example_from_spec(spec, "meta")
    largest = max((_nbytes(t) for t in leaves(example)), default=0)
    if largest > limit:
        raise ModelFileError(f"its input spec asks for {largest} bytes per build example (limit {limit})")
    return map_structure(lambda t: torch.zeros_like(t, device=device), example)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _probe_bytes(model: nn.Module, example: Any) -> int:
    """Builds ``model`` on ``example`` and returns the size of the largest tensor a module produced."""
    from deepzen.data.arrays import leaves

    largest = max((_nbytes(t) for t in leaves(example)), default=0)

    def record(module, args, output):
        nonlocal largest
        outputs = output if isinstance(output, (tuple, list)) else [output]
        largest = max([largest] + [_nbytes(t) for t in outputs if isinstance(t, torch.Tensor)])

    handles = [module.register_forward_hook(record) for module in model.modules()]
    try:
        model.build_for(example)
    finally:
        for handle in handles:
            handle.remove()
    return largest


def _check_declared(header: FileHeader, expected: dict[str, torch.Tensor]) -> None:
    """Refuses a file whose tensors are not exactly the model's (names and shapes), before reading any."""
    declared = header.tensors
    missing = sorted(set(expected) - set(declared))
    unexpected = sorted(set(declared) - set(expected))
    mismatched = [f"{key}: file {declared[key].shape} vs model {tuple(expected[key].shape)}"
                  for key in expected if key in declared and declared[key].shape != tuple(expected[key].shape)]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing in the file: {', '.join(missing[:8])}")
        if unexpected:
            details.append(f"not in the model: {', '.join(str(k)[:80] for k in unexpected[:8])}")
        if mismatched:
            details.append(f"shape differs: {'; '.join(mismatched[:8])}")
        raise ModelFileError(f"The weights in {header.path} do not fit this model ({'; '.join(details)})")


def _build_checked(header: FileHeader, make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` built for the file's input spec, once the file's tensors are known to be what it needs.

    The first build runs on the ``meta`` device, which allocates nothing: it gives the shapes the config
    implies and the build probe's size. Only when those match the file is the model built for real.
    """
    spec = header.metadata.get("input_spec")
    limit = max(PROBE_FLOOR_BYTES, header.nbytes)
    try:
        with torch.device("meta"):
            skeleton = make()
            probe = _probe_bytes(skeleton, _example_from_spec(spec, "meta")) if spec is not None else 0
    except Exception:  # an operation without a meta kernel (a config error recurs in the real build below)
        skeleton = None  # the real build then checks the example's size, and the tensors after it
    if skeleton is not None:
        _check_declared(header, skeleton.state_dict())
        if probe > limit:
            raise ModelFileError(f"its model would take {probe} bytes in one tensor to build (limit {limit})")
    model = make()
    if spec is not None:
        model.build_for(_real_example(spec, model.device, limit))
    _check_declared(header, model.state_dict())
    return model


def load_weights(model, path: str | os.PathLike, verify_key: str | bytes | None = None) -> None:
    """Loads the weights in ``path`` into ``model``, building its lazy layers first if needed."""
    header = read_header(path, verify_key)
    spec = header.metadata.get("input_spec")
    if not model.built and spec is not None:
        with building_from(path):
            model.build_for(_real_example(spec, model.device, max(PROBE_FLOOR_BYTES, header.nbytes)))
    _check_declared(header, model.state_dict())
    model.load_state_dict(header.read_tensors())


def load_model(path: str | os.PathLike, *, compile: bool = True, custom_objects: dict[str, Any] | None = None,
               verify_key: str | bytes | None = None):
    """Rebuilds a model saved with ``model.save(path)``: architecture, weights and compile settings.

    Args:
        compile: compile the model with its saved settings (when it was saved compiled).
        custom_objects: ``{"Name": cls}`` for the user's classes the file names that are not registered
            with :func:`deepzen.register_serializable` (Keras's argument).
        verify_key: refuse the file unless it was saved with ``signing_key=`` this key.

    Raises:
        ModelFileError: naming the file, for any missing, damaged, altered, unsigned or hostile file.
    """
    header = read_header(path, verify_key)
    metadata = header.metadata
    with building_from(path), custom_object_scope(custom_objects):
        model = _build_checked(header, lambda: module_from_config(metadata.get("model")))
        model.load_state_dict(header.read_tensors())
        settings = metadata.get("compile")
        if compile and isinstance(settings, dict) and settings.get("loss") is not None:
            model.compile(**{key: value_from_config(value) for key, value in settings.items() if value is not None})
    return model


def model_from_json(json_string: str, custom_objects: dict[str, Any] | None = None):
    """Rebuilds a model's architecture (no weights) from ``model.to_json()``, as Keras's
    ``model_from_json``. Only registered classes are built; nothing in the string is imported or run.

    Raises:
        ValueError: for a string that is not a model config deepzen can build.
    """
    try:
        config = json.loads(json_string)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model_from_json expects the JSON string of model.to_json(). Received: {error}") from None
    try:
        check_depth(config, "The JSON config")
        with custom_object_scope(custom_objects):
            return module_from_config(config)
    except ModelFileError as error:
        raise ValueError(f"model_from_json: {error}") from None


def clone_model(model, custom_objects: dict[str, Any] | None = None):
    """A new model with ``model``'s architecture and freshly initialized weights (Keras's ``clone_model``):
    rebuilt from its config, on the same device, and built for the same inputs when ``model`` is built.
    Not compiled. A model whose architecture has no config (``Model(module)`` around an unregistered
    module, a ``Model`` subclass) cannot be cloned; construct it again in Python instead."""
    from deepzen.data.arrays import map_structure

    config = module_config(model)
    if config is None or (config.get("config") or {}).get("module", 0) is None:
        raise ValueError(f"clone_model rebuilds a model from its config; {type(model).__name__} has none (use "
                         f"Sequential, a Functional model, or registered classes with get_config/from_config)")
    with custom_object_scope(custom_objects):
        clone = module_from_config(config)
    device = model.device
    clone.to(device)
    if getattr(model, "input_spec", None) is not None:
        clone.build_for(map_structure(lambda s: torch.zeros((2, *s.shape), dtype=s.dtype, device=device),
                                      model.input_spec))
    return clone
