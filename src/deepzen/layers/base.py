"""The deepzen layer: a plain ``nn.Module`` that learns its input shape on the first call.

A deepzen layer creates its parameters in ``build(input_shape)`` the first time it sees data (or at
construction when ``input_shape``/``input_dim`` is given), like a Keras layer. The build runs from a
forward pre-hook that removes itself afterwards, so a built layer's call is bare ``forward``: no
shape checks or bookkeeping on the hot path.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable

import torch
from torch import nn

from deepzen.data.arrays import map_structure
from deepzen.layers import legacy
from deepzen.layers.subclassing import SubclassingAPI, forward_from_call, refreeze
from deepzen.layers.symbolic import STEPS_FEATURES, call_symbolic, has_symbolic
from deepzen.serializable import config_value, register_serializable, value_from_config


def snake_case(name: str) -> str:
    """``"BatchNormalization"`` -> ``"batch_normalization"``, ``"Conv2D"`` -> ``"conv2d"`` (Keras's names)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def shape_str(shape) -> str:
    """Shapes are shown Keras-style, with ``None`` for the batch dimension: ``(None, 28, 28)``."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Keras's ``trainable`` setter for any module: sets it on ``module`` and every module inside it and
    turns ``requires_grad`` of their parameters on or off. ``Model.compile`` builds its optimizer from
    the trainable parameters only, and a frozen batch normalization runs in inference mode in ``fit``."""
    for inner in module.modules():
        inner.__dict__["_trainable"] = bool(trainable)
    module.requires_grad_(bool(trainable))
    if trainable:
        refreeze(module)  # add_weight(trainable=False) weights stay non-trainable, as in Keras


class Layer(SubclassingAPI, nn.Module):
    """Base class of deepzen layers.

    Subclasses create parameters in :meth:`build` from the full input shape (batch dimension
    included, as Keras passes it; a list of shapes for a tuple or list of inputs) and compute in
    ``forward``, or, as in Keras, in ``call(self, inputs, training=None, mask=None)`` with weights made
    by ``self.add_weight(...)`` and extra losses given to ``self.add_loss(...)`` (see
    ``layers/subclassing.py``). Constructor arguments are recorded automatically, so
    :meth:`get_config` / :meth:`from_config` round-trip any layer whose arguments are plain values.

    Args:
        name: the layer's name in summaries and state dicts (default: snake_case of the class).
        input_shape: per-sample input shape (no batch dimension); lets a model build before data.
        input_dim: shorthand for ``input_shape=(input_dim,)``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_serializable(cls)  # so model files can name it
        forward_from_call(cls)  # Keras's call(): forward runs it (decided once, here)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            # The outermost __init__ records the arguments; super().__init__ calls leave them alone.
            if "_init_arguments" not in self.__dict__:
                kw = legacy.modernize_arguments(type(self), kw, tuple(signature.parameters)[1:1 + len(args)])
                try:
                    bound = signature.bind(self, *args, **kw)
                except TypeError as error:
                    unknown = {k: v for k, v in kw.items() if k not in signature.parameters}
                    raise (legacy.unknown_argument_error(type(self), unknown) if unknown else error) from None
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                for key, param in signature.parameters.items():
                    if param.kind is inspect.Parameter.VAR_KEYWORD:
                        arguments.update(arguments.pop(key, {}))
                    elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                        arguments.pop(key, None)
                self.__dict__["_init_arguments"] = arguments
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def __init__(self, *, name: str | None = None, input_shape=None, input_dim: int | None = None, **unknown):
        if unknown:  # arguments no constructor in the chain took
            raise legacy.unknown_argument_error(type(self), unknown)
        super().__init__()
        if input_dim is not None:
            if input_shape is not None:
                raise ValueError(f"{type(self).__name__}: give input_shape or input_dim, not both. "
                                 f"Received: input_shape={input_shape}, input_dim={input_dim}")
            input_shape = (input_dim,)
        self.name = name
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.built = False
        self.activity_loss: torch.Tensor | None = None
        self._build_hook = self.register_forward_pre_hook(type(self)._build_on_first_call)
        self._steps_hook = self.register_forward_hook(type(self)._mark_steps_features)

    def __call__(self, *args, **kwargs):
        if has_symbolic(args, kwargs):  # Functional API: record the call (layers/symbolic.py)
            return call_symbolic(self, args, kwargs)
        return super().__call__(*args, **kwargs)

    # -- building -----------------------------------------------------------------------------------
    produces_steps_features = False
    """Whether the output is ``(batch, steps, features)`` (Embedding; recurrent layers with return_sequences)."""

    def _mark_steps_features(self, args, output):
        """After the first call (the one that builds the next layers): tags a ``(batch, steps, features)``
        output with :data:`STEPS_FEATURES`, and passes the tag on through layers that keep the shape
        (Dropout, normalization, attention), so that a 1-d image layer under channels_first can warn."""
        self._steps_hook.remove()
        if not isinstance(output, torch.Tensor) or output.ndim != 3:
            return
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if self.produces_steps_features or (source is not None and getattr(source, STEPS_FEATURES, False)
                                            and source.shape == output.shape):
            setattr(output, STEPS_FEATURES, True)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Creates the parameters for inputs of ``input_shape`` (batch dimension first)."""

    def _build_on_first_call(self, args):
        if not args or not isinstance(args[0], torch.Tensor) and not (
                isinstance(args[0], (tuple, list)) and args[0] and all(isinstance(t, torch.Tensor) for t in args[0])):
            raise TypeError(f"Layer '{self.display_name}' expects a tensor (or a tuple or list of tensors) as its "
                            f"first input. Received: {type(args[0]).__name__ if args else 'no input'}")
        self.build_for(args[0])

    def build_for(self, x: Any) -> None:
        """Builds the layer for the example input ``x`` (its device and dtype are used); for a tuple or
        list of tensors, ``build`` receives the list of their shapes."""
        if self.built:
            return
        if not isinstance(x, torch.Tensor):  # several inputs: build(list of shapes), as in Keras
            self._device, self._dtype = x[0].device, (x[0].dtype if x[0].is_floating_point()
                                                      else torch.get_default_dtype())
            shapes = map_structure(lambda t: tuple(t.shape), list(x))
            self.build(shapes)
            self.train(self.training)
            self.built_input_shape = shapes
            self.built = True
            self._build_hook.remove()
            return
        received = tuple(x.shape[1:])
        if self.input_shape is not None and len(received) == len(self.input_shape):
            mismatched = [e is not None and e != r for e, r in zip(self.input_shape, received)]
            if any(mismatched):
                raise ValueError(f"Layer '{self.display_name}' expected input shape "
                                 f"{shape_str((None, *self.input_shape))}, received {shape_str((None, *received))}")
        self._device, self._dtype = x.device, (x.dtype if x.is_floating_point() else torch.get_default_dtype())
        self.build(tuple(x.shape))
        self.train(self.training)  # submodules made in build follow an earlier .eval()
        self.built_input_shape = tuple(x.shape)
        self.built = True
        self._build_hook.remove()

    def new_parameter(self, shape, initializer: Any = "zeros") -> nn.Parameter:
        """A parameter on the build input's device, filled by ``initializer`` (name or callable).

        Weights use PyTorch's layout, ``(out, in, *kernel)``, so fans match ``initializers.fans``.
        """
        from deepzen import initializers

        tensor = torch.empty(shape, device=self._device, dtype=self._dtype)
        initializers.get(initializer)(tensor)
        return nn.Parameter(tensor)

    @property
    def trainable(self) -> bool:
        """Whether ``fit`` updates this layer's weights (Keras's flag; see :func:`set_trainable`)."""
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        set_trainable(self, value)

    @property
    def display_name(self) -> str:
        return self.name or snake_case(type(self).__name__)

    # -- regularization -----------------------------------------------------------------------------
    def regularization_terms(self) -> list[tuple[torch.Tensor, Callable]]:
        """(parameter, penalty) pairs this layer adds to the training loss; see ``regularizers``."""
        return []

    def record_activity(self, output: torch.Tensor, regularizer: Callable | None) -> torch.Tensor:
        """Stores the activity penalty of ``output`` for the training loss (when a regularizer is set)."""
        if regularizer is not None:
            self.activity_loss = regularizer(output)
        return output

    # -- configuration ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (objects with ``get_config`` are nested)."""
        return {key: config_value(value, f"{type(self).__name__}.{key}")
                for key, value in self.__dict__.get("_init_arguments", {}).items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        return cls(**{key: value_from_config(value) for key, value in config.items()})

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self.__dict__.get("_init_arguments", {}).items()
                 if v is not None and k not in ("name",)}
        return ", ".join(f"{k}={v!r}" for k, v in shown.items())
