"""Reading request bodies within the server's limits: every malformed body becomes a :class:`RequestError`
(a 4xx) that says what was expected, before anything reaches a model.

JSON is checked for nesting depth *before* it is parsed (Python's parser recurses, so a 1,000-deep
body would otherwise end in a ``RecursionError``), integers are refused by digit count before they
are converted (a 5,000-digit integer would otherwise raise deep inside ``int()``), and the
non-standard constants ``NaN``/``Infinity`` are refused.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

import numpy as np
import torch

JSON_TYPE = "application/json"
# A JSON string, escapes included; its brackets must not count towards the nesting depth.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET_STEPS = np.zeros(256, np.int8)  # byte -> +1 for [ and {, -1 for ] and }
_BRACKET_STEPS[[ord("["), ord("{")]], _BRACKET_STEPS[[ord("]"), ord("}")]] = 1, -1


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status (4xx, or 503), the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)


def json_depth(body: bytes, at_most: int | None = None) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings' contents do not count).

    With ``at_most``, a body with no more than ``at_most`` opening brackets in all returns their count
    at once (it cannot nest deeper): the common small request is not scanned.
    """
    openings = body.count(b"[") + body.count(b"{")
    if at_most is not None and openings <= at_most:
        return openings
    if b'"' in body:
        body = _JSON_STRING.sub(b'""', body)
    steps = _BRACKET_STEPS[np.frombuffer(body, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max()) if len(steps) else 0


def parse_json(body: bytes, max_depth: int, max_abs_number: float) -> Any:
    """The JSON value of a request body, or a :class:`RequestError` saying what was wrong.

    Args:
        body: the raw body (its size was checked when it was read).
        max_depth: deepest nesting of arrays and objects allowed.
        max_abs_number: largest magnitude of an integer (floats are checked where they are used).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"The body must be UTF-8 JSON: {error}") from None
    depth = json_depth(body, at_most=max_depth)
    if depth > max_depth:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"The JSON body is nested {depth} levels deep; the limit is "
                           f"{max_depth}")
    digits = len(str(int(max_abs_number)))

    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > digits or abs(int(literal)) > max_abs_number:
            shown = literal if len(literal) <= 20 else f"{literal[:12]}... ({len(literal)} digits)"
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected numbers within +-{max_abs_number:g}. "
                               f"Received: {shown}")
        return int(literal)

    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=parse_int)
    except json.JSONDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"The body is not valid JSON: {error.msg} at line {error.lineno} "
                           f"column {error.colno}") from None


def _refuse_constant(name: str):
    raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} is not a number JSON allows. Expected finite numbers")


def json_object(value: Any, fields: dict[str, str], required: tuple[str, ...]) -> dict[str, Any]:
    """``value`` as a JSON object with only the ``fields`` (name -> what it holds) and the ``required`` ones."""
    expected = "{" + ", ".join(f'"{name}": {what}' for name, what in fields.items()) + "}"
    if not isinstance(value, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Expected a JSON object {expected}. Received: a JSON "
                           f"{json_type(value)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Unknown field(s): {', '.join(map(repr, unknown))}. Expected "
                           f"{expected}")
    missing = [name for name in required if name not in value]
    if missing:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Missing field \"{missing[0]}\": expected {expected}")
    return value


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def sample_array(inputs: Any, shape: tuple[int, ...], dtype: torch.dtype, vocabulary: int | None,
                 max_samples: int, max_abs_number: float) -> np.ndarray:
    """``"inputs"`` of a request as an ``(n, *shape)`` array of the model's dtype.

    Raises:
        RequestError: 422 for inputs of the wrong shape, type or range, naming what was expected.
    """
    expected = f"a list of samples, each of shape {list(shape)}"
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}. Received: "
                           f"{'an empty list' if isinstance(inputs, list) else 'a JSON ' + json_type(inputs)}")
    if len(inputs) > max_samples:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"At most {max_samples} samples per request. "
                           f"Received: {len(inputs)}")
    try:
        array = np.array(inputs)
    except ValueError:  # numpy refuses ragged nesting
        array = None
    if array is None or array.dtype == object:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}, of numbers only. "
                           f"Received: nested lists of uneven length or mixed types")
    if tuple(array.shape[1:]) != tuple(shape):
        hint = " (wrap a single sample in a list)" if tuple(array.shape) == tuple(shape) else ""
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"\"inputs\" must be {expected}{hint}. "
                           f"Received: shape {list(array.shape)}")
    if dtype.is_floating_point:
        if array.dtype.kind not in "iuf":
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected numbers in \"inputs\". Received: "
                               f"{_kind_name(array.dtype)}")
        if not np.all(np.abs(array) <= max_abs_number):  # also refuses inf, which 1e400 parses to
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Expected numbers within +-{max_abs_number:g} in "
                               f"\"inputs\". Received: {np.abs(array).max():g}")
        return array.astype(np.float32)
    if array.dtype.kind == "f" and np.all(np.abs(array) <= max_abs_number) and np.all(array == np.round(array)):
        array = array.astype(np.int64)  # 19.0 is an integer to JSON Schema too
    if array.dtype.kind not in "iu":
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"The model takes integer ids. Received: "
                           f"{_kind_name(array.dtype)} in \"inputs\"")
    if vocabulary is not None and (array.min() < 0 or array.max() >= vocabulary):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Ids must be in [0, {vocabulary}). Received: ids from "
                           f"{array.min()} to {array.max()}")
    return array.astype(np.int64)


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "U": "strings", "f": "non-integer numbers", "O": "mixed values"}.get(dtype.kind, str(dtype))
