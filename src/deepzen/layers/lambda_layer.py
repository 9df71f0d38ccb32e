"""Lambda (a function as a layer), its registry of saveable functions, and Identity.

A model file holds JSON and tensors, never code (see :mod:`deepzen.serializable`), so a Lambda can be
saved only when its function has a registered name; loading looks the name up and executes nothing
from the file. Keras saves a lambda's bytecode and refuses to load it in safe mode; deepzen refuses
to save an unregistered one and says how to register it.

Example:
    >>> import torch
    >>> @register_lambda
    ... def double(x):
    ...     return 2 * x
    >>> layer = Lambda(double)
    >>> layer(torch.ones(1, 2))
    tensor([[2., 2.]])
    >>> layer.get_config()["function"]
    'double'
    >>> Lambda.from_config(layer.get_config()).function is double
    True
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from deepzen.layers.base import Layer
from deepzen.serializable import ModelFileError, config_value

_FUNCTIONS: dict[str, Callable] = {}


def register_lambda(function: Callable | None = None, *, name: str | None = None) -> Any:
    """Registers ``function`` under ``name`` (default its ``__name__``) so Lambda layers using it can be saved.

    Usable as ``@register_lambda`` or ``@register_lambda(name="scale")``. Registering a name again
    replaces the earlier function (a re-run notebook cell).
    """

    def add(item: Callable) -> Callable:
        key = name or getattr(item, "__name__", None)
        if not callable(item) or not key or key == "<lambda>":
            raise TypeError(f"register_lambda needs a callable with a name (a def, or pass name=...). "
                            f"Received: {item!r}")
        _FUNCTIONS[key] = item
        return item

    return add if function is None else add(function)


def registered_name(function: Callable) -> str | None:
    """The name ``function`` is registered under, or None."""
    return next((key for key, item in _FUNCTIONS.items() if item is function), None)


class Lambda(Layer):
    """Wraps a function of tensors as a layer.

    Args:
        function: a callable ``f(x, **arguments)``, or the name of a registered one. If it takes
            ``mask`` or ``training`` keyword arguments, the layer passes them on.
        output_shape: accepted for Keras compatibility (shapes are inferred by running the function).
        mask: accepted for Keras compatibility; not used.
        arguments: extra keyword arguments for ``function`` (JSON values, to be saveable).

    Call arguments:
        x: the input(s). Returns ``function(x, **arguments)``.

    Saving: ``get_config`` raises TypeError unless ``function`` is registered with :func:`register_lambda`.
    """

    def __init__(self, function: Callable | str, output_shape: Any = None, mask: Any = None,
                 arguments: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(function, str):
            if function not in _FUNCTIONS:
                raise ModelFileError(f"Lambda names the function {function!r}, which is not registered. Registered: "
                                     f"{sorted(_FUNCTIONS)}. Register it with deepzen.layers.register_lambda")
            function = _FUNCTIONS[function]
        if not callable(function):
            raise TypeError(f"Lambda expects a callable or a registered function's name. Received: {function!r}")
        self.function = function
        self.output_shape, self.mask = output_shape, mask
        self.arguments = dict(arguments or {})
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            parameters = {}
        self._takes = tuple(p for p in ("mask", "training") if p in parameters)

    def forward(self, x, mask=None, training=None):
        extra = {"mask": mask, "training": training}
        return self.function(x, **self.arguments, **{key: extra[key] for key in self._takes})

    def get_config(self):
        name = registered_name(self.function)
        if name is None:
            raise TypeError(f"Layer '{self.display_name}' (Lambda) wraps {self.function!r}, which is not registered, "
                            f"so a model file cannot name it (files never hold code). Define it with def and "
                            f"decorate it with @deepzen.layers.register_lambda (or call register_lambda(fn, "
                            f"name=...)), or write a Layer subclass")
        arguments = {**self._init_arguments, "function": name}
        return {key: config_value(value, f"Lambda.{key}") for key, value in arguments.items()}


class Identity(Layer):
    """Returns its input unchanged (a placeholder, e.g. where a skip branch has no layer); masks pass through."""

    def forward(self, x):
        return x
