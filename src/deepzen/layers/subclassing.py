"""Keras's subclassing API on ``nn.Module``: ``call``, ``add_weight``, ``add_loss``, ``losses``.

A ``Layer`` or ``Model`` subclass may define ``call(self, inputs, training=None, mask=None)`` instead of
``forward``. When the class is created, ``forward`` becomes a thin wrapper of ``call`` (once, not per
step) that does what Keras's ``__call__`` does for a ``call``:

- ``training`` that the caller leaves out (or passes as None) is filled from the module's mode
  (``self.training``: True inside ``fit``, False inside ``evaluate``/``predict``), so it reaches every
  layer whose ``call`` takes it; passed explicitly to a layer with sublayers, it sets their mode for
  that call, so the ``Dropout`` and ``BatchNormalization`` inside honour it too;
- losses given to ``self.add_loss(value)`` during a call are kept until the next top-level call, as
  Keras resets ``layer.losses`` "at the start of every ``__call__`` to the top-level layer".

A model adds its layers' losses to the training loss on the path of the activity penalties
(``Model.regularization_loss``), so ``fit`` minimises them with or without a compiled loss.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import torch
from torch import nn


class _Calls:
    """Which top-level call is running: ``generation`` counts top-level calls (a loss added during one
    belongs to it), ``depth`` tells a nested call from a top-level one."""

    depth = 0
    generation = 0


CALLS = _Calls()


def takes_training(function: Callable) -> bool:
    return "training" in inspect.signature(function).parameters


def forward_from_call(cls: type) -> None:
    """Makes ``cls.forward`` run ``cls.call`` when the class defines ``call`` and not ``forward``."""
    if "call" not in cls.__dict__ or "forward" in cls.__dict__:
        return
    call = cls.__dict__["call"]
    parameters = list(inspect.signature(call).parameters)
    accepts = "training" in parameters
    position = parameters.index("training") - 1 if accepts else None  # training's place after self

    @functools.wraps(call)  # inspect.signature(forward) shows call's arguments (masks, training)
    def forward(self, *args, **kwargs):
        training = kwargs.get("training")
        modes = None
        if training is not None and bool(training) != self.training and self._modules:
            modes = [(module, module.training) for module in self.modules()]
            self.train(bool(training))  # the sublayers follow an explicit training= for this call
        if accepts:
            if training is None and len(args) <= position:
                kwargs["training"] = self.training
        else:
            kwargs.pop("training", None)
        if CALLS.depth == 0:
            CALLS.generation += 1  # a new top-level call: earlier add_loss values are forgotten
        CALLS.depth += 1
        try:
            return call(self, *args, **kwargs)
        finally:
            CALLS.depth -= 1
            if modes is not None:
                for module, mode in modes:
                    module.training = mode

    cls.forward = forward
    cls._defines_call = True


def weight_penalties(module: nn.Module) -> list[tuple[torch.Tensor, Callable]]:
    """(weight, penalty) pairs of ``module`` itself: a layer's regularizers and ``add_weight``'s."""
    terms = module.regularization_terms() if hasattr(module, "regularization_terms") else []
    return [*terms, *module.__dict__.get("_weight_penalties", ())]


def current_losses(module: nn.Module) -> list[torch.Tensor]:
    """The values ``module`` gave ``add_loss`` during the latest top-level call."""
    if module.__dict__.get("_loss_generation") != CALLS.generation:
        return []
    return module.__dict__["_added_losses"]


def weight_tensors(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """(trainable, non-trainable, all) weights of ``module``, layer by layer, as Keras counts them: the
    parameters that require gradients are trainable; frozen parameters and the persistent floating-point
    buffers (moving statistics such as BatchNormalization's) are not."""
    trainable, frozen, every = [], [], []
    seen: set[int] = set()
    for inner in module.modules():
        buffers = [b for name, b in inner.named_buffers(recurse=False)
                   if b is not None and b.is_floating_point() and name not in inner._non_persistent_buffers_set]
        for tensor in [*inner.parameters(recurse=False), *buffers]:
            if id(tensor) in seen:  # shared weights count once
                continue
            seen.add(id(tensor))
            every.append(tensor)
            (trainable if isinstance(tensor, nn.Parameter) and tensor.requires_grad else frozen).append(tensor)
    return trainable, frozen, every


class SubclassingAPI:
    """Keras's ``add_weight``, ``add_loss``, ``losses`` and weight lists, for ``Layer`` and ``Model``."""

    _defines_call = False  # set on classes whose forward runs their call

    def add_weight(self, shape: Any = None, initializer: Any = None, dtype: Any = None, trainable: bool = True,
                   regularizer: Any = None, constraint: Any = None, name: str | None = None,
                   **kwargs: Any) -> nn.Parameter:
        """Creates a weight, registers it with the module and returns it (Keras's ``add_weight``).

        Assign it to an attribute (``self.w = self.add_weight(...)``) and it is kept under that name;
        otherwise under ``name``. Call it in ``__init__`` (the weight is made on the CPU) or in
        ``build(input_shape)`` (on the device and dtype of the first input).

        Args:
            shape: the weight's shape; ``()`` for a scalar. Keras's layout, e.g. ``(in, out)`` for a
                kernel used as ``inputs @ w``.
            initializer: a name ("zeros", "random_normal", ...), an initializer or a callable on a tensor;
                default "glorot_uniform" for floating-point weights, "zeros" otherwise (Keras's).
            dtype: default: the dtype of the first input for a layer being built, else torch's default.
            trainable: False makes a non-trainable weight (``requires_grad=False``; ``fit`` leaves it
                alone and ``layer.trainable = True`` does not change it).
            regularizer: a name or callable; its penalty joins the model's training loss.
            name: the weight's name when it is not assigned to an attribute.

        Example:
            >>> import torch
            >>> from deepzen.layers import Layer
            >>> class Linear(Layer):
            ...     def __init__(self, units=4):
            ...         super().__init__()
            ...         self.units = units
            ...     def build(self, input_shape):
            ...         self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")
            ...         self.b = self.add_weight(shape=(self.units,), initializer="zeros")
            ...     def call(self, inputs):
            ...         return inputs @ self.w + self.b
            >>> tuple(Linear()(torch.ones(2, 3)).shape)
            (2, 4)
        """
        from deepzen import initializers, regularizers

        for ignored in ("autocast", "aggregation", "synchronization", "overwrite_with_gradient", "use_resource"):
            kwargs.pop(ignored, None)
        if kwargs:
            raise TypeError(f"add_weight() got unknown argument(s) {', '.join(sorted(kwargs))}")
        if constraint is not None:
            raise NotImplementedError(f"{type(self).__name__}.add_weight: constraint= is not supported in deepzen; "
                                      f"clamp the weight after the optimizer step (a Callback's on_train_batch_end). "
                                      f"Received: constraint={constraint!r}")
        shape = () if shape is None else (tuple(shape) if not isinstance(shape, int) else (shape,))
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        dtype = dtype or self.__dict__.get("_dtype") or torch.get_default_dtype()
        tensor = torch.empty(shape, dtype=dtype, device=self.__dict__.get("_device"))
        if initializer is None:
            initializer = "glorot_uniform" if tensor.is_floating_point() else "zeros"
        with torch.no_grad():
            if len(shape) < 2 and initializer in ("glorot_uniform", "glorot_normal"):
                torch.nn.init.uniform_(tensor, -0.05, 0.05)  # fans need two dimensions (Keras's rule alike)
            else:
                initializers.get(initializer)(tensor)
        weight = nn.Parameter(tensor, requires_grad=bool(trainable) and tensor.is_floating_point())
        names = self.__dict__.setdefault("_weight_names", {})
        key = name or f"weight_{len(names)}"
        if key in self._parameters or (key in self.__dict__ and key not in names.values()):
            key = f"{key}_{len(names)}"
        self.register_parameter(key, weight)
        names[id(weight)] = key
        if not trainable:
            self.__dict__.setdefault("_fixed_weights", []).append(weight)
        penalty = regularizers.get(regularizer)
        if penalty is not None:
            self.__dict__.setdefault("_weight_penalties", []).append((weight, penalty))
        return weight

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        # `self.w = self.add_weight(...)`: the weight moves from its add_weight name to the attribute
        names = self.__dict__.get("_weight_names")
        if names and param is not None and id(param) in names:
            old = names[id(param)]
            if old != name and self._parameters.get(old) is param:
                del self._parameters[old]
            names[id(param)] = name
        super().register_parameter(name, param)

    def add_loss(self, value: Any) -> None:
        """Adds ``value`` (a scalar tensor) to the training loss of the current forward pass (Keras's
        ``add_loss``): call it in ``call``. ``losses`` lists the values of the latest top-level call."""
        if CALLS.generation != self.__dict__.get("_loss_generation"):
            self.__dict__["_added_losses"] = []
            self.__dict__["_loss_generation"] = CALLS.generation
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        self.__dict__["_added_losses"].append(value)

    @property
    def losses(self) -> list[torch.Tensor]:
        """The losses of the latest top-level call (``add_loss`` and activity penalties, this module's and
        its sublayers') and the weights' regularization penalties, as Keras's ``layer.losses``."""
        values = []
        for module in self.modules():
            values.extend(current_losses(module))
            if getattr(module, "activity_regularizer", None) is not None and \
                    getattr(module, "activity_loss", None) is not None:
                values.append(module.activity_loss)
            values.extend(penalty(weight) for weight, penalty in weight_penalties(module))
        return values

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        return weight_tensors(self)[0]

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        """Frozen parameters and the moving statistics (float buffers such as BatchNormalization's)."""
        return weight_tensors(self)[1]

    @property
    def weights(self) -> list[torch.Tensor]:
        """Every weight, layer by layer."""
        return weight_tensors(self)[2]


def refreeze(module: nn.Module) -> None:
    """Keeps ``add_weight(trainable=False)`` weights frozen after ``module.requires_grad_(True)``."""
    for inner in module.modules():
        for weight in inner.__dict__.get("_fixed_weights", ()):
            weight.requires_grad_(False)
