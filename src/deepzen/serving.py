"""A JSON prediction API over HTTP, on the standard library's ``ThreadingHTTPServer``.

Endpoints:

- ``POST /predict`` with ``Content-Type: application/json`` and ``{"inputs": [sample, ...]}``, each
  sample a nested list of the model's per-sample input shape -> ``{"outputs": [...]}`` (plus
  ``"classes"``, the arg-max, when each output is a vector of class scores).
- ``GET /health`` -> ``{"status": "ok", ...counters}``.
- ``GET /metadata`` -> the input and output specs, the limits, and what the server was told about
  the model (run folder, recipe).

Concurrent requests are batched: request threads put their samples on a queue; one worker thread
takes everything queued (waiting up to ``max_wait_ms`` for more, up to ``max_batch_size`` samples),
runs the model once, and hands each request its rows. Only the worker touches the model.

Every malformed request gets a 4xx answer ``{"error": message}`` saying what was expected: bad JSON,
fields other than ``inputs``, wrong shape or dtype, ids outside the vocabulary, a body over the size
limit, a content type other than JSON, unknown paths and methods. The server binds to 127.0.0.1
unless told otherwise; it has no authentication.

Example:
    >>> server = ModelServer(model, port=0)          # doctest: +SKIP
    >>> server.start()                               # in a background thread  # doctest: +SKIP
    >>> server.url                                   # doctest: +SKIP
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from torch import nn

from deepzen.data.arrays import map_structure

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
JSON_TYPE = "application/json"


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status (4xx), the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- what the model takes --------------------------------------------------------------------------------
def input_spec(model: nn.Module) -> tuple[tuple[int, ...], torch.dtype]:
    """The per-sample input shape and dtype of a built single-input deepzen model."""
    spec = getattr(model, "input_spec", None)
    if spec is None:
        raise ValueError("The model is not built: call it once (or load it from a model file) before serving")
    if not hasattr(spec, "shape"):
        raise ValueError(f"Serving and export take models with one input tensor. Received a model with inputs {spec}")
    return tuple(spec.shape), spec.dtype


def vocabulary_size(model: nn.Module) -> int | None:
    """The number of ids the model's first embedding accepts (None for models without integer inputs)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module.num_embeddings
        if getattr(module, "takes_integer_inputs", False):
            return getattr(module, "input_dim", None)
    return None


def random_inputs(model: nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A batch of valid random inputs for the model: uniform [0, 1) floats, or ids within the vocabulary."""
    shape, dtype = input_spec(model)
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.rand((batch_size, *shape), generator=generator, dtype=dtype)
    return torch.randint(0, vocabulary_size(model) or 2, (batch_size, *shape), generator=generator, dtype=dtype)


# -- batching ----------------------------------------------------------------------------------------------
class MicroBatcher:
    """Runs ``model`` on the samples of concurrent requests together, in one worker thread.

    Args:
        model: the model (put in eval mode; run under ``torch.inference_mode``).
        max_batch_size: most samples per model call (a request is never split).
        max_wait_ms: how long the worker waits for more requests after the first one of a batch.
        max_queue: requests waiting at most; more get HTTP 503.
    """

    def __init__(self, model: nn.Module, max_batch_size: int = 64, max_wait_ms: float = 2.0, max_queue: int = 1024):
        self.model = model.eval()
        self.shape, self.dtype = input_spec(model)
        self.device = next(model.parameters()).device
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000.0
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batches = self.samples = self.requests = self.largest_batch_requests = 0
        self._held: tuple | None = None  # a request that did not fit into the previous batch
        self._worker = threading.Thread(target=self._work, name="deepzen-batcher", daemon=True)
        self._worker.start()

    def submit(self, array: np.ndarray) -> Future:
        """Queues (n, *shape) samples; the future resolves to the model's outputs for them."""
        future: Future = Future()
        try:
            self.queue.put_nowait((array, future))
        except queue.Full:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "The server is busy: too many queued requests. "
                               "Retry shortly") from None
        return future

    def close(self) -> None:
        self.queue.put(None)
        self._worker.join(timeout=5)

    def run(self, array: np.ndarray) -> Any:
        """The model's outputs for ``array`` as NumPy arrays (called by the worker thread)."""
        with torch.inference_mode():
            outputs = self.model(torch.as_tensor(array, dtype=self.dtype, device=self.device))
        return map_structure(lambda t: t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy(), outputs)

    def _next_batch(self) -> list[tuple] | None:
        first = self._held if self._held is not None else self.queue.get()
        self._held = None
        if first is None:
            return None
        batch, size = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None or size + len(item[0]) > self.max_batch_size:
                self._held = item
                break
            batch.append(item)
            size += len(item[0])
        return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            arrays = [array for array, _ in batch]
            try:
                outputs = self.run(np.concatenate(arrays))
            except Exception as error:  # a model failure fails this batch's requests, not the server
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.batches += 1
            self.requests += len(batch)
            self.samples += sum(len(a) for a in arrays)
            self.largest_batch_requests = max(self.largest_batch_requests, len(batch))
            start = 0
            for array, future in batch:
                rows = slice(start, start + len(array))
                future.set_result(map_structure(lambda o: o[rows], outputs))
                start += len(array)


# -- requests -------------------------------------------------------------------------------------------
def parse_predict_body(body: bytes, shape: tuple[int, ...], dtype: torch.dtype, vocabulary: int | None,
                       max_samples: int) -> np.ndarray:
    """Validates a ``/predict`` body and returns its samples as an (n, *shape) array.

    Raises:
        RequestError: 400 for bad JSON or fields, 422 for inputs of the wrong shape, type or range.
    """
    try:
        request = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"The body must be UTF-8 JSON: {error}") from None
    except json.JSONDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"The body is not valid JSON: {error.msg} at line {error.lineno} "
                           f"column {error.colno}. Expected {{\"inputs\": [sample, ...]}}") from None
    if not isinstance(request, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Expected a JSON object {{\"inputs\": [sample, ...]}}. "
                           f"Received: a JSON {_json_type(request)}")
    unknown = sorted(set(request) - {"inputs"})
    if unknown:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Unknown field(s): {', '.join(map(repr, unknown))}. "
                           f"Expected only \"inputs\"")
    if "inputs" not in request:
        raise RequestError(HTTPStatus.BAD_REQUEST, "Missing field \"inputs\": expected {\"inputs\": [sample, ...]}")
    inputs = request["inputs"]
    expected = f"a list of samples, each of shape {list(shape)}"
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}. "
                           f"Received: {'an empty list' if isinstance(inputs, list) else 'a JSON ' + _json_type(inputs)}")
    if len(inputs) > max_samples:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"At most {max_samples} samples per request. "
                           f"Received: {len(inputs)}")
    array = _numeric_array(inputs, expected)
    if tuple(array.shape[1:]) != tuple(shape):
        hint = " (wrap a single sample in a list)" if tuple(array.shape) == tuple(shape) else ""
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}{hint}. "
                           f"Received: shape {list(array.shape)}")
    if dtype.is_floating_point:
        if array.dtype.kind not in "iuf":
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected numbers in \"inputs\". Received: "
                               f"{_kind_name(array.dtype)}")
        largest = np.finfo(np.float32).max
        if array.max() > largest or array.min() < -largest:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, "Expected numbers within float32's range in "
                               "\"inputs\". Received: a number too large for float32")
        return array.astype(np.float32)
    if array.dtype.kind not in "iu":
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"The model takes integer ids. Received: "
                           f"{_kind_name(array.dtype)} in \"inputs\"")
    if vocabulary is not None and (array.min() < 0 or array.max() >= vocabulary):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Ids must be in [0, {vocabulary}). Received: ids from "
                           f"{array.min()} to {array.max()}")
    return array.astype(np.int64)


def _numeric_array(inputs: list, expected: str) -> np.ndarray:
    try:
        array = np.array(inputs)
    except OverflowError:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}. Received: an "
                           f"integer too large for 64 bits") from None
    except ValueError:  # numpy refuses ragged nesting
        array = None
    if array is None or array.dtype == object:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}, of numbers only. "
                           f"Received: nested lists of uneven length or mixed types")
    return array


def _refuse_constant(name: str):
    raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} is not a number JSON allows. Expected finite numbers")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "U": "strings", "f": "non-integer numbers", "O": "mixed values"}.get(dtype.kind, str(dtype))


def to_json(outputs: Any) -> Any:
    return map_structure(lambda array: array.tolist(), outputs)


# -- the server ---------------------------------------------------------------------------------------------
class ModelServer:
    """Serves ``model`` over HTTP (see the module docstring for the API).

    Args:
        model: a built deepzen model with one input tensor.
        host: address to bind (default loopback).
        port: TCP port; 0 picks a free one (see :attr:`url`).
        max_batch_size: most samples per model call; also the most samples one request may carry.
        max_wait_ms: how long a batch waits for more requests.
        max_body_bytes: larger request bodies get HTTP 413 (default 8 MiB).
        metadata: extra facts for ``GET /metadata`` (run folder, recipe...).
        log_requests: log each request to stderr.
        request_timeout: seconds a connection may stay silent, and a prediction may take.
    """

    def __init__(self, model: nn.Module, host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 64,
                 max_wait_ms: float = 2.0, max_body_bytes: int | None = None, metadata: dict | None = None,
                 log_requests: bool = False, request_timeout: float = 30.0):
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer. Received: {max_batch_size!r}")
        self.batcher = MicroBatcher(model, max_batch_size, max_wait_ms)
        self.max_body_bytes = max_body_bytes or DEFAULT_MAX_BODY_BYTES
        self.vocabulary = vocabulary_size(model)
        self.request_timeout = request_timeout
        probe = self.batcher.run(random_inputs(model, 1).numpy())  # builds nothing; checks the model runs
        shape, dtype = self.batcher.shape, self.batcher.dtype
        self.metadata = {
            **(metadata or {}),
            "model": getattr(model, "name", type(model).__name__),
            "input": {"shape": [None, *shape], "dtype": str(dtype).replace("torch.", ""),
                      **({"vocabulary_size": self.vocabulary} if self.vocabulary else {})},
            "output": map_structure(lambda o: {"shape": [None, *o.shape[1:]], "dtype": str(o.dtype)}, probe),
            "request": {"method": "POST", "path": "/predict", "content_type": JSON_TYPE,
                        "body": {"inputs": f"list of up to {max_batch_size} samples, each of shape {list(shape)}"}},
            "limits": {"max_batch_size": max_batch_size, "max_body_bytes": self.max_body_bytes},
        }
        handler = type("Handler", (_Handler,), {"app": self, "log_requests": log_requests, "timeout": request_timeout})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> "ModelServer":
        """Serves in a background thread (returns at once)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="deepzen-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *error) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        b = self.batcher
        return {"status": "ok", "requests": b.requests, "samples": b.samples, "batches": b.batches,
                "largest_batch_requests": b.largest_batch_requests}

    def predict(self, body: bytes) -> dict[str, Any]:
        array = parse_predict_body(body, self.batcher.shape, self.batcher.dtype, self.vocabulary,
                                   self.batcher.max_batch_size)
        outputs = self.batcher.submit(array).result(timeout=self.request_timeout)
        answer = {"outputs": to_json(outputs)}
        if isinstance(outputs, np.ndarray) and outputs.ndim == 2 and outputs.shape[1] > 1:
            answer["classes"] = outputs.argmax(axis=1).tolist()
        return answer


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests (a thread each); keeps connections alive between requests."""

    app: ModelServer
    log_requests = False
    protocol_version = "HTTP/1.1"
    server_version = "deepzen"

    def do_GET(self):
        if self.path == "/health":
            self._send(HTTPStatus.OK, self.app.health())
        elif self.path == "/metadata":
            self._send(HTTPStatus.OK, self.app.metadata)
        elif self.path == "/predict":
            self._fail(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST /predict with a JSON body {\"inputs\": [...]}")
        else:
            self._unknown_path()

    def do_POST(self):
        if self.path != "/predict":
            if self.path in ("/health", "/metadata"):
                self._fail(HTTPStatus.METHOD_NOT_ALLOWED, f"Use GET {self.path}")
            else:
                self._unknown_path()
            return
        try:
            body = self._read_body()
            self._send(HTTPStatus.OK, self.app.predict(body))
        except RequestError as error:
            self._fail(error.status, str(error))
        except TimeoutError:
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, "The prediction timed out; the server is overloaded")
        except Exception as error:  # the model failed on valid input: a server error, and the server goes on
            self._fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"The model failed: {type(error).__name__}: {error}")

    def do_PUT(self):
        self._fail(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST /predict, GET /health or GET /metadata")

    do_DELETE = do_PATCH = do_PUT

    def _read_body(self) -> bytes:
        kind = self.headers.get("Content-Type", "")
        if kind.split(";")[0].strip().lower() != JSON_TYPE:
            self._discard_body()
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Expected Content-Type: {JSON_TYPE}. "
                               f"Received: {kind or 'none'}")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Expected a Content-Length header with the body size "
                               "(chunked bodies are not accepted)")
        if int(length) > self.app.max_body_bytes:
            self.close_connection = True  # the unread body would otherwise be taken for the next request
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The body is {int(length)} bytes; the limit is "
                               f"{self.app.max_body_bytes} bytes. Send fewer samples per request")
        try:
            return self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"The body did not arrive within {self.timeout:g} s") from None

    def _discard_body(self) -> None:
        """Reads and drops a body this handler will not use, so the connection can carry the next request."""
        length = self.headers.get("Content-Length")
        if length is None and "chunked" not in self.headers.get("Transfer-Encoding", ""):
            return
        if length is not None and length.isdigit() and int(length) <= self.app.max_body_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _unknown_path(self):
        self._discard_body()
        self._fail(HTTPStatus.NOT_FOUND, f"No endpoint {self.path!r}. Expected POST /predict, GET /health or "
                   f"GET /metadata")

    def _fail(self, status: int, message: str):
        self._send(status, {"error": message, "status": int(status)})

    def _send(self, status: int, payload: dict):
        body = json.dumps(payload).encode()  # a model's NaN/inf outputs go out as JSON's NaN/Infinity extensions
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        if self.log_requests:
            super().log_message(format, *args)

