"""``Model`` and ``Sequential``: Keras's compile / fit / evaluate / predict on any ``nn.Module``.

``Model(module)`` gives the verbs to any PyTorch module (single or multiple inputs and outputs);
``Sequential`` stacks deepzen or torch layers; subclassing ``Model`` and writing ``forward`` or Keras's
``call`` works too. A model is itself an ``nn.Module``: its ``state_dict``, ``parameters()`` and ``to()`` are torch's.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from deepzen.config import dtype_policy
from deepzen.data.arrays import ArrayData, leaves, map_structure, to_tensor
from deepzen.layers.base import Layer, set_trainable, snake_case
from deepzen.layers.input_layer import InputLayer
from deepzen.layers.normalization import BatchNormalization
from deepzen.layers.subclassing import CALLS, SubclassingAPI, current_losses, forward_from_call, weight_penalties
from deepzen.layers.symbolic import SymbolicTensor, call_symbolic, has_symbolic
from deepzen.serializable import custom_object_scope, register_serializable
from deepzen.training import distributed
from deepzen.training.callbacks import (Callback, CallbackList, FitState, History, OneCycleScheduler, ProgressBar,
                                       provided_fit_callbacks)
from deepzen.training.diagnostics import named_layer_errors
from deepzen.training.engine import Engine, call_model, predict_batches, run_test_steps, run_train_steps
from deepzen.training.lr_finder import LRFinderResult, lr_find
from deepzen.training.serialization import (load_weights, module_config, module_from_config, save_model,
                                            write_tensors)
from deepzen.training.summary import summarize

@dataclass(frozen=True)
class InputSpec:
    """The per-sample shape and dtype of one model input, recorded when the model is built."""

    shape: tuple[int, ...]
    dtype: torch.dtype


FIT_BATCH_SIZE = 32  # Keras's default
INFERENCE_BATCH_SIZE = 256  # evaluate/predict: no gradients, so larger batches are cheaper


_GRAPH_SUBCLASSES: dict[type, type] = {}


def graph_arguments(args: tuple, kwargs: dict) -> bool:
    """Whether a model is being built as ``(inputs, outputs)`` of symbolic tensors (Keras's test)."""
    given = len(args) + ("inputs" in kwargs) + ("outputs" in kwargs)
    return given == 2 and ("inputs" not in kwargs or "outputs" in kwargs) and has_symbolic(args, kwargs)


def graph_subclass(cls: type) -> type:
    """The class a ``Model`` subclass's instances take when built from ``(inputs, outputs)``: the subclass with
    the graph model behind it (Keras's functional subclass), so its own ``train_step`` and attributes stay and
    the graph runs its ``forward``. ``Model`` itself maps to the graph model."""
    graph = Model._graph()
    if cls is Model or issubclass(cls, graph):
        return graph
    if cls not in _GRAPH_SUBCLASSES:
        _GRAPH_SUBCLASSES[cls] = type(cls.__name__, (cls, graph), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "graph_of": cls})
    return _GRAPH_SUBCLASSES[cls]


@register_serializable
class Model(SubclassingAPI, nn.Module):
    """A trainable model with Keras's verbs.

    Subclasses may override ``train_step(data)``, ``test_step(data)`` and ``predict_step(data)``, as in
    Keras 3's guide "Customizing what happens in fit() with PyTorch": ``fit``, ``evaluate`` and ``predict``
    then call the override for each batch, and the dict it returns is what the progress bar, the
    callbacks and ``History`` see. Inside a step, ``self.compute_loss(x, y, y_pred, sample_weight)``,
    ``self.optimizer`` (the ``torch.optim.Optimizer`` that ``compile`` built over the trainable weights:
    ``self.optimizer.zero_grad()``, ``loss.backward()``, ``self.optimizer.step()`` -- torch's idiom for
    Keras's ``optimizer.apply(grads, weights)``), ``self.metrics`` (reset at each epoch) and
    ``self.compiled_metrics`` are there. Without an override the built-in step runs: the fast engine.

    A subclass may define Keras's ``call(self, inputs, training=None)`` instead of ``forward``, create
    weights with ``self.add_weight`` and add losses with ``self.add_loss`` (``layers/subclassing.py``);
    ``model(x, training=True)`` takes tensors or NumPy arrays, and ``fit``/``evaluate`` pass
    ``training=True``/``False`` to a ``call``/``forward`` of yours that takes it.

    Args:
        module: any ``nn.Module`` to wrap; leave it out when subclassing and defining ``call``/``forward``.
        name: a display name.

    Example:
        >>> import numpy as np, torch
        >>> model = Model(torch.nn.Linear(3, 1))
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(np.ones((8, 3)), np.zeros((8, 1)), epochs=2, verbose=0)
        >>> len(history.history["loss"])
        2
    """

    # What Model(inputs, outputs) builds: training/functional.py's graph model, which sets this when it is
    # imported (deepzen.Model, deepzen.models and deepzen.training import it), so Model never imports it.
    graph_class: type | None = None

    def __new__(cls, *args, **kwargs):
        if graph_arguments(args, kwargs) and not issubclass(cls, Model._graph()):
            # Model(inputs, outputs), or Keras's functional subclass CustomModel(inputs, outputs)
            return super().__new__(graph_subclass(cls))
        return super().__new__(cls)

    @staticmethod
    def _graph() -> type:
        if Model.graph_class is None:
            raise RuntimeError("Model(inputs, outputs) needs the Functional API: import Model from deepzen or "
                               "deepzen.models (they load deepzen.training.functional)")
        return Model.graph_class

    def __init__(self, module: nn.Module | None = None, *args: Any, name: str | None = None, **kwargs: Any):
        positional = (module, *args) if module is not None else args
        if graph_arguments(positional, kwargs):
            # Keras's functional subclass: a subclass's __init__ that calls super().__init__(inputs, outputs)
            self.__class__ = graph_subclass(type(self))
            Model._graph().__init__(self, *positional, name=name, **kwargs)
            return
        if args or kwargs:
            raise TypeError(f"Model() takes a module (or inputs and outputs from deepzen.Input) and name=. "
                            f"Received: {len(args) + 1} positional argument(s) and {sorted(kwargs) or 'no'} keywords")
        super().__init__()
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(f"Model wraps a torch.nn.Module. Received: {type(module).__name__}")
        self.module = module
        self.name = name or snake_case(type(self).__name__)
        self.engine: Engine | None = None
        self.stop_training = False
        self.history: History | None = None
        self.fit_state: FitState | None = None  # set by fit
        self.input_spec = None  # per-sample (shape, dtype) of each input, recorded when built
        self.has_regularization = False
        self._penalties: list = []
        self._activity_layers: list = []
        self.compile_config: dict[str, Any] | None = None

    _forward_takes_training = False  # whether forward has a `training` argument (set per class)
    _fit_passes_training = False  # whether fit/evaluate pass training= (a user's call/forward that takes it)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        forward_from_call(cls)  # Keras's call(): forward runs it (decided once, here)
        cls._forward_takes_training = "training" in inspect.signature(cls.forward).parameters
        # deepzen's own models (Sequential, Functional) follow the module's mode, which fit sets
        cls._fit_passes_training = cls._forward_takes_training and not cls.__module__.startswith("deepzen.")

    def __call__(self, *args, **kwargs):
        if has_symbolic(args, kwargs):  # a model used as a layer in a graph (layers/symbolic.py)
            return call_symbolic(self, args, kwargs)
        if any(isinstance(a, np.ndarray) for a in args):  # Keras's model(numpy_array)
            device, as_float = self.device, not expects_integer_inputs(self)
            args = tuple(to_tensor(a, device, integers_as_float=as_float) if isinstance(a, np.ndarray) else a
                         for a in args)
        training = kwargs.get("training")
        if "training" in kwargs and not self._forward_takes_training:
            del kwargs["training"]  # the layers follow the mode set below
        modes = None
        if training is not None and bool(training) != self.training:
            modes = [(module, module.training) for module in self.modules()]
            self.train(bool(training))  # training= reaches every layer for this call
        if CALLS.depth == 0:
            CALLS.generation += 1  # a new top-level call: the add_loss values of the last one are dropped
            if self.input_spec is None and args and not kwargs and "_called_spec" not in self.__dict__:
                # Keras builds a model on its first call: summary() needs no shape afterwards
                inputs = args[0] if len(args) == 1 else tuple(args)
                if all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in leaves(inputs)):
                    self.__dict__["_called_spec"] = map_structure(
                        lambda t: InputSpec(tuple(t.shape[1:]), t.dtype), inputs)
        CALLS.depth += 1
        try:
            return super().__call__(*args, **kwargs)
        finally:
            CALLS.depth -= 1
            if modes is not None:
                for module, mode in modes:
                    module.training = mode

    def forward(self, *args, **kwargs):
        if self.module is None:
            raise NotImplementedError(f"{type(self).__name__} has no forward: pass a module to Model(module) "
                                      f"or subclass Model and define forward()")
        return self.module(*args, **kwargs)

    # -- building ------------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.input_spec is not None or self.__dict__.get("_declared_built", False)

    @built.setter
    def built(self, value: bool) -> None:
        """Keras's ``self.built = True`` in a model whose parts are built already (a GAN of two built models):
        nothing probes it with data."""
        if not isinstance(value, bool):
            raise TypeError(f"built must be True or False. Received: {value!r}")
        self.__dict__["_declared_built"] = value

    @property
    def device(self) -> torch.device:
        parameter = next(self.parameters(), None)
        return parameter.device if parameter is not None else getattr(self, "_device", torch.device("cpu"))

    def declared_input_shape(self) -> tuple | None:
        """The per-sample input shape the model declares before seeing data (Sequential's first layer)."""
        return None

    def build(self, input_shape=None) -> Any:
        """Builds the model's lazy layers for inputs of ``input_shape`` (per sample) and returns the output
        of a forward pass on two zero samples. Without a shape, the declared one is used."""
        shape = input_shape or self.declared_input_shape()
        if shape is None:
            raise ValueError(f"{self.name}: no input shape to build with. Pass input_shape, give the first layer "
                             f"input_shape=/input_dim=, or call fit/predict with data")
        dtype = torch.long if expects_integer_inputs(self) else torch.float32
        return self.build_for(torch.zeros((2, *shape), dtype=dtype, device=self.device))

    def build_for(self, sample: Any) -> Any:
        """Builds with an example batch (a few samples) and returns the model's output on it."""
        was_training = self.training
        self.eval()  # no batch-norm statistics are updated by this probe
        try:
            with torch.no_grad(), named_layer_errors(self):
                output = call_model(self, sample)
        finally:
            self.train(was_training)
        self.input_spec = map_structure(lambda t: InputSpec(tuple(t.shape[1:]), t.dtype), sample)
        self._output_shape = map_structure(lambda t: (None, *t.shape[1:]), output)
        self._apply_trainable()  # weights a lazy layer created after `trainable = False` are frozen too
        layers = [m for m in self.modules() if isinstance(m, Layer)]
        self._penalties = [term for module in self.modules() for term in weight_penalties(module)]
        self._activity_layers = [layer for layer in layers if getattr(layer, "activity_regularizer", None) is not None]
        # modules whose add_loss values join the training loss: Keras-style classes, and any that added one
        self._loss_modules = [m for m in self.modules() if getattr(m, "_defines_call", False)
                              or "_loss_generation" in m.__dict__]
        self.adds_losses = any(current_losses(m) for m in self._loss_modules)  # the probe above added some
        self.has_regularization = bool(self._penalties or self._activity_layers or self._loss_modules)
        return output

    # -- trainable and the weights API (Keras's) ---------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """Whether ``fit`` updates the weights; ``model.trainable = False`` (or ``layer.trainable = False``)
        freezes them from the next ``compile`` on, and a frozen BatchNormalization runs in inference mode."""
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        set_trainable(self, value)

    def _apply_trainable(self) -> None:
        for module in self.modules():
            if module.__dict__.get("_trainable", True) is False:
                module.requires_grad_(False)

    def train(self, mode: bool = True) -> "Model":
        super().train(mode)
        if mode:  # Keras's transfer-learning rule: a frozen batch normalization keeps its moving statistics
            for module in self.modules():
                if (module.__dict__.get("_trainable", True) is False
                        and isinstance(module, (BatchNormalization, nn.modules.batchnorm._NormBase))):
                    module.eval()
        return self

    def count_params(self) -> int:
        return sum(w.numel() for w in self.weights)

    def get_weights(self) -> list[np.ndarray]:
        """The weights as NumPy arrays (copies), in the order of :attr:`weights`."""
        return [w.detach().cpu().numpy().copy() for w in self.weights]

    def set_weights(self, weights: list) -> None:
        """Sets the weights from arrays in the order of :meth:`get_weights`."""
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"{self.name}: set_weights expected a list of {len(own)} arrays. "
                             f"Received: {len(weights)} arrays")
        for index, (target, value) in enumerate(zip(own, weights)):
            value = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{self.name}: weight {index} has shape {tuple(target.shape)}. "
                                 f"Received: shape {tuple(value.shape)}")
            with torch.no_grad():
                target.copy_(value.to(target.device, target.dtype))

    @property
    def input_shape(self) -> Any:
        """The input shape with ``None`` for the batch, e.g. ``(None, 784)``."""
        if self.input_spec is not None:
            return map_structure(lambda s: (None, *s.shape), self.input_spec)
        declared = self.declared_input_shape()
        if declared is None:
            raise ValueError(f"{self.name} has no input shape yet: build it (model.build(input_shape)) or "
                             f"call it on data first")
        return (None, *declared)

    @property
    def output_shape(self) -> Any:
        """The output shape with ``None`` for the batch, known once the model is built."""
        if not self.built and self.declared_input_shape() is not None:
            self.build()
        if not self.built:
            raise ValueError(f"{self.name} has no output shape yet: build it (model.build(input_shape)) or "
                             f"call it on data first")
        return self._output_shape

    @property
    def layers(self) -> list[nn.Module]:
        """The model's top-level layers (those of the wrapped module for ``Model(module)``)."""
        if self.module is not None:
            return list(self.module.children()) or [self.module]
        return list(self.children())

    def get_layer(self, name: str | None = None, index: int | None = None) -> nn.Module:
        """A layer by ``name`` (its deepzen name or attribute path) or by ``index`` in :attr:`layers`."""
        if (name is None) == (index is None):
            raise ValueError(f"get_layer takes a name or an index. Received: name={name!r}, index={index!r}")
        if index is not None:
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"{self.name} has {len(layers)} layers. Received: index={index}")
            return layers[index]
        for path, module in self.named_modules():
            if module is not self and (getattr(module, "name", None) == name or path == name):
                return module
        names = [getattr(m, "name", None) or path for path, m in self.named_modules() if path]
        raise ValueError(f"{self.name} has no layer named {name!r}. Its layers: {', '.join(map(str, names))}")

    def save_weights(self, path: str | os.PathLike) -> None:
        """Writes the weights alone (safetensors, with the input spec to build lazy layers) for
        :meth:`load_weights`; :meth:`save` writes the whole model."""
        spec = None
        if self.input_spec is not None:
            spec = map_structure(lambda s: {"__spec__": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")},
                                 self.input_spec)
        write_tensors(path, self.state_dict(), {"model": None, "input_spec": spec, "compile": None})

    def regularization_loss(self) -> torch.Tensor:
        """The sum of the layers' weight and activity penalties and of the values given to ``add_loss``
        in the latest call (added to the training loss)."""
        total = sum(penalty(weight) for weight, penalty in self._penalties)
        for layer in self._activity_layers:
            if layer.activity_loss is not None:
                total = total + layer.activity_loss
        for module in self._loss_modules:
            for value in current_losses(module):
                total = total + value
        return total

    # -- compile -------------------------------------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, loss_weights: Any = None,
                jit: bool = False, precision: str | None = None, memory_format: str = "auto",
                device: Any = None, **kwargs: Any) -> None:
        """Configures training. Weights frozen with ``trainable = False`` stay out of the optimizer.

        Args:
            optimizer: a name ("adam", "sgd", ...), a ``deepzen.optimizers`` spec, or a
                ``torch.optim.Optimizer`` already built on this model's parameters; None for none (an
                overriding ``train_step`` that steps optimizers of its own, listed in :attr:`optimizers`).
            loss: a name, a loss object or callable; a list/dict for several outputs. Leave it out only
                when the model overrides ``train_step``/``test_step`` and computes its own loss.
            metrics: names or metric objects (a dict maps output keys to lists for several outputs).
            loss_weights: weights of the output losses (a list or dict).
            jit: run the forward through ``torch.compile`` (costs a cold compile; measure first).
            precision: "float32", "mixed_bfloat16" or "mixed_float16" (autocast); None: the global dtype
                policy (``deepzen.config.set_dtype_policy``, Keras's), "float32" unless set.
            memory_format: layout of 2-D convolution weights and 4-D inputs: "channels_last",
                "channels_first", or "auto" (channels-last on the CPU, where oneDNN's convolutions run
                it faster; the values, the inputs and outputs you see and the saved weights are the same).
            device: where to train; default cuda, then mps, then cpu.
            jit_compile: Keras's name of ``jit`` ("auto" means False).
        """
        from deepzen.runtime import default_device

        precision = dtype_policy() if precision is None else precision
        if "jit_compile" in kwargs:
            jit_compile = kwargs.pop("jit_compile")
            jit = jit or jit_compile is True
        _refuse_unknown(self.compile, kwargs, extra=("jit_compile",))
        self._apply_trainable()

        self._device = torch.device(device) if device is not None else default_device()
        self.to(self._device)
        self.engine = Engine(self, optimizer, loss, metrics, loss_weights, jit=jit, precision=precision,
                             memory_format=memory_format)
        self.compile_config = {"optimizer": optimizer, "loss": loss, "metrics": metrics, "loss_weights": loss_weights,
                               "precision": precision, "memory_format": memory_format}
        if not self.built and self.declared_input_shape() is not None:
            self.build()

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.engine.optimizer if self.engine is not None else None

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer training steps, by name: what a checkpoint saves and restores. The compiled
        ``optimizer`` by default; a model whose ``train_step`` steps others (a GAN's two) lists those."""
        return {"optimizer": self.optimizer} if self.optimizer is not None else {}

    def _compiled_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError(f"{self.name} must be compiled before training or evaluation: call "
                               f"model.compile(optimizer=..., loss=...)")
        return self.engine

    # -- data ----------------------------------------------------------------------------------------
    def _as_data(self, x: Any, y: Any = None, sample_weight: Any = None, call: str = "fit") -> ArrayData | Iterable:
        if x is None:
            raise ValueError(f"{call}: x is required")
        if _is_batch_iterable(x):
            if y is not None:
                raise ValueError("When x is a DataLoader or iterable of batches, y must be None "
                                 "(the batches carry their targets)")
            return x
        x, y, sample_weight = (_numeric_argument(value, name, call) for name, value in
                               (("x", x), ("y", y), ("sample_weight", sample_weight)))
        return ArrayData(x, y, sample_weight, device=self.device,
                         integer_inputs_as_float=not expects_integer_inputs(self))

    def _batches(self, data, batch_size: int, shuffle: bool = False, seed: int | None = None):
        """Batches of ``data``; a shuffled epoch's order depends only on ``seed`` (so a resumed run and
        every DDP process draw the same one)."""
        if isinstance(data, ArrayData):
            generator = None
            if shuffle and seed is not None:
                generator = torch.Generator(device=data.device or "cpu").manual_seed(seed)
            return data.batches(batch_size, shuffle, generator)
        return _device_batches(data, self.device)

    def _example(self, data) -> tuple[Any, Any]:
        """A two-sample example batch (x, y) for building and checking targets."""
        if isinstance(data, ArrayData):
            return data._take(slice(0, 2))[:2]
        x, y, _ = next(iter(_device_batches(data, self.device)))
        return x, y

    def _prepare(self, data, needs_loss: bool = True) -> None:
        """Builds the model and the engine for this data; converts and checks the targets once. A model
        with no forward of its own (a GAN whose train_step calls its parts) is not probed."""
        engine = self._compiled_engine()
        output = None
        if self.module is not None or type(self).forward is not Model.forward:
            x_example, _ = self._example(data)
            output = self.build_for(x_example)  # a two-sample forward, once per call
            needs_loss = needs_loss and not self.adds_losses  # Keras: add_loss alone can be the loss
        if not engine.ready:
            engine.setup(output, require_loss=needs_loss)
        elif needs_loss and not engine.terms:
            raise ValueError("compile() needs a loss, e.g. compile(loss='sparse_categorical_crossentropy'), "
                             "unless the model overrides train_step/test_step and computes its own")
        if isinstance(data, ArrayData) and data.y is not None and output is not None:
            data.y = engine.prepare_targets(data.y, output)

    # -- fit / evaluate / predict -----------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: list[Callback] | None = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, class_weight: dict | None = None,
            sample_weight: Any = None, initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: Any = 1, **kwargs: Any) -> History:
        """Trains for ``epochs`` epochs and returns the :class:`History`.

        Args:
            x: inputs (array/tensor, nested Python lists of numbers, tuple or dict of them), or an iterable
                of (x, y[, weight]) batches.
            y: targets, like x.
            batch_size: samples per step (default 32).
            epochs: index of the last epoch (with ``initial_epoch``, training runs epochs
                ``initial_epoch .. epochs - 1``). Keras 1's ``nb_epoch`` still works, with a warning.
            verbose: 0 silent, 1 progress bar, 2 one line per epoch; "auto" = 1.
            callbacks: extra :class:`Callback` objects.
            validation_split: fraction of the samples (taken from the end, before shuffling) held out.
            validation_data: (x_val, y_val) evaluated at each epoch end.
            shuffle: reshuffle the training samples every epoch.
            class_weight: {class id: weight} scaling each sample's loss by its class.
            sample_weight: (N,) weights of the samples' losses.
            initial_epoch: epoch to start at (resuming).
            steps_per_epoch: batches per epoch (default: the whole data). An iterator (a generator) is
                drawn on across epochs; arrays and re-iterable loaders start over each epoch.
            validation_steps: validation batches per evaluation (default: all).
            validation_batch_size: samples per validation batch (default 256).
            validation_freq: validate every N epochs (an int), or after the listed (1-based) epochs.
        """
        if "nb_epoch" in kwargs:
            warnings.warn("fit(nb_epoch=) is Keras 1's spelling; use fit(epochs=)", DeprecationWarning, stacklevel=2)
            epochs = kwargs.pop("nb_epoch")
        _refuse_unknown(self.fit, kwargs, extra=("nb_epoch",))
        engine = self._compiled_engine()
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer. Received: epochs={epochs!r}")
        for name, value in (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None. Received: {name}={value!r}")
        validate_after = _validation_epochs(validation_freq)
        batch_size = _check_batch_size(batch_size, FIT_BATCH_SIZE)
        validation_batch_size = _check_batch_size(validation_batch_size, INFERENCE_BATCH_SIZE)
        custom_train = type(self).train_step is not Model.train_step  # decided once per fit
        custom_test = type(self).test_step is not Model.test_step
        data = self._as_data(x, y, sample_weight, call="fit")
        validation = None
        if validation_split:
            if not isinstance(data, ArrayData):
                raise ValueError("validation_split needs array inputs; pass validation_data with a DataLoader")
            data, validation = data.split(validation_split)
        elif validation_data is not None:
            validation = self._as_data(*_unpack_validation(validation_data), call="fit(validation_data=...)")
        # a one-shot iterator (a generator) is drawn on across epochs, as in Keras; its first batch,
        # peeked to build the model, is trained on too
        stream = iter(data) if not isinstance(data, ArrayData) and iter(data) is data else None
        if stream is not None:
            first = next(stream, None)
            if first is None:
                raise ValueError("fit received no batches: the training data is empty")
            stream = itertools.chain([first], stream)
        self._prepare([first] if stream is not None else data, needs_loss=not custom_train)
        if validation is not None:
            self._prepare(validation, needs_loss=not custom_test)
        if class_weight is not None:
            if not isinstance(data, ArrayData):
                raise ValueError("class_weight needs array inputs")
            data.sample_weight = _class_sample_weights(data.y, class_weight, data.sample_weight)
        if isinstance(data, ArrayData) and data.sample_weight is not None or not isinstance(data, ArrayData):
            engine.enable_sample_weights()
        if validation is not None and (not isinstance(validation, ArrayData) or validation.sample_weight is not None):
            engine.enable_sample_weights()
        if not custom_train and engine.optimizer is None:
            raise ValueError(f"{self.name} has no trainable weights to fit (every layer has trainable=False)")
        if distributed.active():  # under torchrun: each process trains on its slice of every global batch
            data, validation = distributed.shard(data, whole_batches=True), distributed.shard(validation)
            distributed.wrap(engine)

        verbose = 1 if verbose == "auto" else int(verbose)
        self.history = History()
        extra = [ProgressBar(verbose)] if verbose and distributed.is_rank_zero() else []
        recorders = provided_fit_callbacks()  # inside `deepzen train`, the run folder records and checkpoints every fit
        listed = [*(callbacks or []), *extra, self.history, *recorders]  # History before the recorders
        # the callback that resumes a fit (a checkpoint) runs last at every event: it saves what the others did
        resumers = [cb for cb in listed if type(cb).resume_fit is not Callback.resume_fit]
        if len(resumers) > 1:
            raise ValueError(f"fit: one callback may resume a fit; these all would: "
                             f"{', '.join(type(cb).__name__ for cb in resumers)}")
        callback_list = CallbackList([cb for cb in listed if cb not in resumers] + resumers, self)
        steps = data.num_batches(batch_size) if isinstance(data, ArrayData) else _length(data)
        if steps_per_epoch is not None:
            steps = steps_per_epoch if steps is None else min(steps, steps_per_epoch)
        shuffle_seed = distributed.broadcast_object(int(torch.randint(0, 2**62, ())))  # consumes the global RNG
        state = self.fit_state = FitState(epochs, steps, batch_size, initial_epoch, shuffle_seed,
                                          callback_list.callbacks)
        self.stop_training = False
        callback_list.fire("on_train_begin", {})
        for resumer in resumers:  # the resume step: may move initial_epoch and set resume_progress
            CallbackList.fire_handler(resumer.resume_fit, "resume_fit", state)
        for epoch in range(state.initial_epoch, epochs):
            state.epoch = epoch
            callback_list.fire("on_epoch_begin", epoch, {})
            if stream is not None:
                batches = _device_batches(stream, self.device)
            else:
                batches = self._batches(data, batch_size, shuffle, seed=state.shuffle_seed + epoch)
            if steps_per_epoch is not None:
                batches = itertools.islice(batches, steps_per_epoch)
            progress, state.resume_progress = state.resume_progress, None
            if custom_train:
                logs = run_train_steps(self, batches, callback_list, epoch, progress)
            else:
                logs = engine.train_epoch(batches, steps, callback_list, epoch, progress)
            if validation is not None and validate_after(epoch + 1):
                callback_list.fire("on_test_begin", {})
                val_batches = self._batches(validation, validation_batch_size)
                if validation_steps is not None:
                    val_batches = itertools.islice(val_batches, validation_steps)
                if custom_test:
                    val_logs = run_test_steps(self, val_batches, callback_list)
                else:
                    val_logs = engine.evaluate(val_batches, validation_batch_size, callback_list)
                callback_list.fire("on_test_end", val_logs)
                logs.update({f"val_{key}": value for key, value in val_logs.items()})
            callback_list.fire("on_epoch_end", epoch, logs)
            if self.stop_training:
                break
        callback_list.fire("on_train_end", dict(self.history.last_logs()))  # Keras passes the last epoch's logs
        return self.history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None, verbose: Any = "auto",
                 sample_weight: Any = None, steps: int | None = None, callbacks: list[Callback] | None = None,
                 return_dict: bool = False, **kwargs: Any) -> Any:
        """The loss (and metrics) on the given data. ``callbacks`` get ``on_test_begin``, the test-batch
        events and ``on_test_end`` (with the logs).

        Returns:
            The loss as a float, or ``[loss, metric1, ...]`` when metrics were compiled (Keras's order);
            a dict with ``return_dict=True``. An overriding ``test_step``'s dict gives the values.
        """
        _refuse_unknown(self.evaluate, kwargs)
        engine = self._compiled_engine()
        batch_size = _check_batch_size(batch_size, INFERENCE_BATCH_SIZE)
        custom_test = type(self).test_step is not Model.test_step
        data = self._as_data(x, y, sample_weight, call="evaluate")
        if isinstance(data, ArrayData) and data.y is None and not custom_test:
            raise ValueError("evaluate needs targets: evaluate(x, y)")
        self._prepare(data, needs_loss=not custom_test)
        if not isinstance(data, ArrayData) or data.sample_weight is not None:
            engine.enable_sample_weights()
        if distributed.active():  # each process evaluates its block; the sums are reduced over all
            data = distributed.shard(data)
        batches = self._batches(data, batch_size)
        if steps is not None:
            batches = itertools.islice(batches, steps)
        callback_list = CallbackList(callbacks or [], self)
        callback_list.fire("on_test_begin", {})
        if custom_test:
            logs = run_test_steps(self, batches, callback_list)
        else:
            logs = engine.evaluate(batches, batch_size, callback_list)
        callback_list.fire("on_test_end", logs)
        if verbose not in (0, False) and distributed.is_rank_zero():
            print(" - ".join(f"{key}: {value:.4g}" for key, value in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0, steps: int | None = None,
                callbacks: list[Callback] | None = None, **kwargs: Any) -> Any:
        """Outputs for ``x``, batched, without gradients: NumPy for NumPy input, tensors for tensor input.
        ``callbacks`` get ``on_predict_begin``, the predict-batch events and ``on_predict_end``."""
        _refuse_unknown(self.predict, kwargs)
        batch_size = _check_batch_size(batch_size, INFERENCE_BATCH_SIZE)
        data = self._as_data(x, call="predict")
        custom_predict = type(self).predict_step is not Model.predict_step
        if isinstance(data, ArrayData):
            if not self.built and (self.module is not None or type(self).forward is not Model.forward):
                self.build_for(data._take(slice(0, 2))[0])
            batches = (bx for bx, _, _ in data.batches(batch_size))
        else:
            batches = (bx for bx, _, _ in _device_batches(data, self.device, targets=False))
        if steps is not None:
            batches = itertools.islice(batches, steps)
        autocast = self.engine.autocast if self.engine is not None else _no_autocast
        callback_list = CallbackList(callbacks or [], self)
        callback_list.fire("on_predict_begin", {})
        outputs = predict_batches(self, batches, autocast, self.predict_step if custom_predict else None,
                                  callback_list)
        callback_list.fire("on_predict_end", {})
        if any(isinstance(leaf, torch.Tensor) for leaf in leaves(x)):
            return outputs
        return map_structure(lambda t: t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy(), outputs)

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: dict | None = None,
                       return_dict: bool = False) -> Any:
        """One optimizer step on one batch; returns that batch's loss (and metrics)."""
        engine = self._compiled_engine()
        custom_train = type(self).train_step is not Model.train_step
        data = self._as_data(x, y, sample_weight, call="train_on_batch")
        self._prepare(data, needs_loss=not custom_train)
        if class_weight is not None:
            data.sample_weight = _class_sample_weights(data.y, class_weight, data.sample_weight)
        if data.sample_weight is not None:
            engine.enable_sample_weights()
        self.train()
        callbacks = CallbackList([], self)
        if custom_train:
            logs = run_train_steps(self, data.batches(len(data)), callbacks)
        else:
            epoch = self.fit_state.epoch if self.fit_state is not None and self.fit_state.epoch is not None else 0
            logs = engine.train_epoch(data.batches(len(data)), 1, callbacks, epoch)
        return _batch_result(logs, return_dict)

    def fit_one_cycle(self, x: Any = None, y: Any = None, epochs: int = 1, max_learning_rate: float | None = None, *,
                      pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e5,
                      moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
                      callbacks: list[Callback] | None = None, **kwargs: Any) -> History:
        """``fit`` under fastai's one-cycle policy (:class:`~deepzen.callbacks.OneCycleScheduler`): the rate
        goes from ``max_learning_rate / div_factor`` up to ``max_learning_rate`` over the first ``pct_start`` of
        the steps, then down to ``max_learning_rate / final_div_factor``, while the momentum goes from
        ``moms[0]`` down to ``moms[1]`` and back to ``moms[2]`` (None: left alone). ``max_learning_rate`` None:
        the optimizer's rate (e.g. set from :meth:`lr_find`'s suggestion). Other arguments are ``fit``'s."""
        scheduler = OneCycleScheduler(max_learning_rate, pct_start, div_factor, final_div_factor, moms)
        return self.fit(x, y, epochs=epochs, callbacks=[*(callbacks or []), scheduler], **kwargs)

    def lr_find(self, x: Any, y: Any = None, **kwargs: Any) -> LRFinderResult:
        """fastai's learning-rate range test (exponential sweep, smoothed loss, suggested rate, a plot); the
        weights and the optimizer are left exactly as they were. Arguments: :func:`deepzen.training.lr_finder.lr_find`."""
        return lr_find(self, x, y, **kwargs)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """The loss (and metrics) of one batch, without updating the weights."""
        size = len(self._as_data(x, y, sample_weight, call="test_on_batch"))
        return self.evaluate(x, y, batch_size=size, verbose=0, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        """The outputs for one batch."""
        return self.predict(x, batch_size=len(self._as_data(x, call="predict_on_batch")))

    # -- the step contract (Keras 3) --------------------------------------------------------------------
    def train_step(self, data: Any) -> dict[str, Any]:
        """One training step on ``data`` (``x``, ``(x, y)`` or ``(x, y, sample_weight)``); returns the logs.

        Override it to train differently; ``fit`` then calls the override for every batch and reads the
        dict it returns. Left alone, ``fit`` runs the engine's fused loop and never calls this method;
        it is here for ``super().train_step(data)`` and for direct calls.
        """
        x, y, weight = _unpack_data(data)
        engine = self._compiled_engine()
        loss, outputs = engine.train_step(x, y, weight, 0, [])
        engine.loss_tracker.update_state(loss)
        engine.compiled_metrics.update_state(y, outputs)
        return self.get_metrics_result()

    def test_step(self, data: Any) -> dict[str, Any]:
        """One evaluation step on ``data`` (no gradients); returns the logs. See :meth:`train_step`."""
        x, y, weight = _unpack_data(data)
        y_pred = call_model(self, x, **({"training": False} if self._fit_passes_training else {}))
        loss = self.compute_loss(x, y, y_pred, weight, training=False)
        self._compiled_engine().loss_tracker.update_state(loss)
        self.compiled_metrics.update_state(y, y_pred)
        return self.get_metrics_result()

    def predict_step(self, data: Any) -> Any:
        """The outputs for one batch of inputs. See :meth:`train_step`."""
        return call_model(self, data, **({"training": False} if self._fit_passes_training else {}))

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> torch.Tensor:
        """The compiled loss of ``y_pred`` against ``y`` (weighted by ``sample_weight``), plus the layers'
        regularization penalties: Keras 3's ``compute_loss``. ``x`` and ``training`` are there for
        overrides."""
        engine = self._compiled_engine()
        if not engine.ready or not engine.terms:
            if self.has_regularization:
                return self.regularization_loss()
            raise ValueError(f"{self.name}: no loss to compute. Pass loss= to compile() or compute the loss "
                             f"in your train_step")
        if sample_weight is not None:
            engine.enable_sample_weights()
            sample_weight = torch.as_tensor(sample_weight).reshape(-1).float()
        return engine.compute_loss(y_pred, y, sample_weight)

    @property
    def metrics(self) -> list:
        """The metrics ``fit`` resets at each epoch and ``evaluate`` at its start: the loss tracker
        ("loss") and the compiled metrics. Override it to list a custom step's own metrics, as in Keras."""
        if self.engine is None or not self.engine.ready:
            return []
        return [self.engine.loss_tracker, *self.engine.compiled_metrics.metrics]

    @property
    def compiled_metrics(self):
        """The metrics given to ``compile``: ``update_state(y_true, y_pred)``, ``result()``, ``metrics``."""
        return self._compiled_engine().compiled_metrics

    def get_metrics_result(self) -> dict[str, torch.Tensor]:
        """``{name: result}`` for each of :attr:`metrics` (tensors on the device; no host sync)."""
        return {metric.name: metric.result() for metric in self.metrics}

    # -- inspection and files ------------------------------------------------------------------------
    def summary(self, input_shape=None, print_fn=print) -> str:
        """Prints (and returns) the layer table: output shapes, parameters (trainable and not, as Keras counts
        them), multiply-adds."""
        called = self.__dict__.get("_called_spec")
        if not self.built and input_shape is None and called is not None and self.declared_input_shape() is None:
            self.build_for(map_structure(lambda spec: torch.zeros((2, *spec.shape), dtype=spec.dtype,
                                                                  device=self.device), called))
        text = summarize(self, input_shape)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-ready data (for ``save``); ``None`` for modules that cannot say."""
        return {"name": self.name, "module": module_config(self.module) if self.module is not None else None}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> "Model":
        if "nodes" in config and not issubclass(cls, Model._graph()):  # a graph's config (Functional's get_config)
            return graph_subclass(cls).from_config(config, custom_objects)
        with custom_object_scope(custom_objects):
            return cls(module_from_config(config["module"]), name=config.get("name"))

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as a JSON string (no weights), for :func:`deepzen.models.model_from_json`.
        ``kwargs`` go to ``json.dumps`` (e.g. ``indent=2``)."""
        config = module_config(self)
        if config is None or (config.get("config") or {}).get("module", 0) is None:
            raise ValueError(f"{self.name}: to_json needs an architecture deepzen can rebuild from its config "
                             f"(Sequential, a Functional model, or registered layers and classes with get_config). "
                             f"{type(self).__name__} cannot say its architecture; save its weights instead")
        return json.dumps(config, **kwargs)

    def save(self, path: str | os.PathLike, signing_key: str | bytes | None = None) -> None:
        """Writes weights (safetensors) and the JSON config to one file, atomically, with one SHA-256 over it.

        Args:
            signing_key: also sign the file with an HMAC of this key; ``load_model(path, verify_key=key)``
                then refuses any file not signed with it.
        """
        save_model(self, path, signing_key=signing_key)

    def load_weights(self, path: str | os.PathLike, verify_key: str | bytes | None = None) -> None:
        """Loads weights saved by :meth:`save` into this (already constructed) model."""
        load_weights(self, path, verify_key=verify_key)


@register_serializable
class Sequential(Model):
    """A plain stack of layers, each taking the previous one's output.

    Masks (e.g. from ``Embedding(mask_zero=True)``) flow Keras-style: a layer with ``compute_mask``
    produces one, and a layer whose ``forward`` takes ``mask=`` receives it.

    Example:
        >>> from deepzen.layers import Dense
        >>> model = Sequential([Dense(8, input_dim=2, activation="relu"), Dense(1)])
        >>> tuple(model.build().shape)
        (2, 1)
    """

    def __init__(self, layers: Iterable[nn.Module] | None = None, *, name: str | None = None):
        super().__init__(name=name)
        self._names_used: dict[str, int] = {}
        self.mask_plan: list[tuple[bool, bool]] | None = None
        # the symbolic input and each layer's symbolic output, once the input shape is known (Keras's build)
        self._trace: list[SymbolicTensor] | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: nn.Module) -> None:
        """Appends a layer (a deepzen layer or any ``nn.Module``).

        Once the input shape is known (``Input(shape)`` first, or a first layer given ``input_shape=``), each
        added layer is built at once on the previous layer's output, as in Keras: a layer that cannot take that
        shape fails here, naming itself and both shapes, and ``layer.output`` is its symbolic output."""
        if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer  # Sequential([Input(shape), ...]): Keras adds the InputLayer behind it
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Sequential.add expects a layer (an nn.Module). Received: {type(layer).__name__}")
        base = getattr(layer, "name", None) or snake_case(type(layer).__name__)
        count = self._names_used.get(base, 0)
        name = base if count == 0 else f"{base}_{count}"
        if isinstance(layer, Layer) and layer.name is None:
            layer.name = name
        trace = self._trace
        if not self._modules:  # the first layer: does it declare the input?
            declared = layer.__dict__.get("input_shape") if isinstance(layer, Layer) else None
            trace = [layer.output] if isinstance(layer, InputLayer) else (
                [InputLayer(shape=declared).output] if isinstance(declared, tuple) else None)
        if trace is not None and not isinstance(layer, InputLayer):
            trace = [*trace, call_symbolic(layer, (trace[-1],), {})]  # builds the layer; fails before adding it
        self._names_used[base] = count + 1
        self.add_module(name, layer)
        self._trace = trace
        self.input_spec = None  # a new layer means a new build
        self._plan_masks()

    def _plan_masks(self) -> None:
        plan = [(hasattr(m, "compute_mask"), "mask" in inspect.signature(m.forward).parameters)
                for m in self._modules.values()]
        self.mask_plan = plan if any(produces for produces, _ in plan) else None

    @property
    def layers(self) -> list[nn.Module]:
        """The layers, without the ``InputLayer`` that ``Input(shape)`` adds (as in Keras)."""
        return [m for m in self._modules.values() if not isinstance(m, InputLayer)]

    def _traced(self, what: str) -> list:
        if self._trace is None:
            raise ValueError(f"Sequential model '{self.name}' has no defined {what} yet: start it with "
                             f"deepzen.Input(shape), or give its first layer input_shape=, as in Keras")
        return self._trace

    @property
    def inputs(self) -> list[SymbolicTensor]:
        """``[symbolic input]``, once the input shape is known (for ``Model(inputs=seq.inputs, ...)``)."""
        return self._traced("inputs")[:1]

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return self._traced("outputs")[-1:]

    @property
    def input(self) -> SymbolicTensor:
        return self._traced("input")[0]

    @property
    def output(self) -> SymbolicTensor:
        return self._traced("output")[-1]

    def pop(self) -> nn.Module:
        """Removes and returns the last layer (the model builds again on its next use)."""
        if not self.layers:
            raise TypeError(f"{self.name} has no layers to pop")
        name, layer = next(reversed(self._modules.items()))
        del self._modules[name]
        self.input_spec = None
        if self._trace is not None:
            self._trace = self._trace[:-1]
        self._plan_masks()
        return layer

    def declared_input_shape(self):
        first = next(iter(self._modules.values()), None)
        return getattr(first, "input_shape", None) if isinstance(first, Layer) else None

    def forward(self, x):
        if self.mask_plan is None:
            for layer in self._modules.values():
                x = layer(x)
            return x
        mask = None
        for layer, (produces, consumes) in zip(self._modules.values(), self.mask_plan):
            out = layer(x, mask=mask) if consumes else layer(x)
            if produces:
                mask = layer.compute_mask(x, mask)
            x = out
        return x

    def get_config(self):
        return {"name": self.name, "layers": [module_config(layer) for layer in self._modules.values()]}

    @classmethod
    def from_config(cls, config):
        return cls([module_from_config(layer) for layer in config["layers"]], name=config.get("name"))


def expects_integer_inputs(model: nn.Module) -> bool:
    """True when the model's first parameterised layer is an embedding (token ids stay integers)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding) or getattr(module, "takes_integer_inputs", False):
            return True
        if next(module.parameters(recurse=False), None) is not None:
            return False
    return False


def _refuse_unknown(method, kwargs: dict, extra: tuple = ()) -> None:
    """A TypeError naming the unknown keyword arguments of ``method`` and listing the valid ones."""
    if kwargs:
        valid = [name for name, p in inspect.signature(method).parameters.items()
                 if p.kind is not inspect.Parameter.VAR_KEYWORD] + list(extra)
        raise TypeError(f"{method.__name__}() got unknown argument(s) {', '.join(sorted(kwargs))}. "
                        f"Valid arguments: {', '.join(valid)}")


def _validation_epochs(validation_freq: Any):
    """A test ``epoch (1-based) -> validate?`` from Keras's ``validation_freq`` (an int or a list of epochs)."""
    if isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool) and validation_freq >= 1:
        return lambda epoch: epoch % int(validation_freq) == 0
    if isinstance(validation_freq, (list, tuple, set, range)):
        listed = set(validation_freq)
        return lambda epoch: epoch in listed
    raise ValueError(f"validation_freq must be a positive integer or a list of epochs. "
                     f"Received: validation_freq={validation_freq!r}")


def _numeric_argument(value: Any, name: str, call: str) -> Any:
    """``value`` with nested Python lists of numbers made an array (a list of arrays stays several inputs);
    strings and objects are refused, naming the argument."""
    if isinstance(value, (list, tuple)) and value and not any(
            isinstance(v, (np.ndarray, torch.Tensor, dict)) for v in value):
        value = np.asarray(value)
    for leaf in leaves(value) if value is not None else ():
        kind = leaf.dtype.kind if isinstance(leaf, np.ndarray) else None
        if isinstance(leaf, str) or kind in ("U", "S", "O"):
            what = "strings" if isinstance(leaf, str) or kind in ("U", "S") else "Python objects (dtype=object)"
            raise TypeError(f"{call}: {name} holds {what}; deepzen trains on numbers. Encode them first "
                            f"(token ids, one-hot rows or a float array). Received: {name} of "
                            f"{'dtype ' + str(leaf.dtype) if kind else type(leaf).__name__}")
    return value


def _unpack_data(data: Any) -> tuple[Any, Any, Any]:
    """Keras's ``unpack_x_y_sample_weight``: x, (x,), (x, y) or (x, y, sample_weight)."""
    if isinstance(data, tuple) and len(data) in (1, 2, 3):
        return (*data, *(None,) * (3 - len(data)))
    return data, None, None


def _batch_result(logs: dict, return_dict: bool) -> Any:
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _no_autocast():
    import contextlib

    return contextlib.nullcontext()


def _is_batch_iterable(x: Any) -> bool:
    return not isinstance(x, (torch.Tensor, np.ndarray, list, tuple, dict)) and hasattr(x, "__iter__")


def _length(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


def _device_batches(iterable, device, targets: bool = True):
    """(x, y, weight) on ``device`` from an iterable yielding (x, y) or (x, y, weight) or x alone."""
    move = lambda t: to_tensor(t, device)  # noqa: E731
    for batch in iterable:
        if isinstance(batch, (tuple, list)) and len(batch) in (2, 3) and targets:
            x, y, *weight = batch
            yield (map_structure(move, x), map_structure(move, y),
                   move(weight[0]).float() if weight else None)
        elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
            yield map_structure(move, batch[0]), None, None
        else:
            yield map_structure(move, batch), None, None


def _unpack_validation(validation_data) -> tuple:
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        if _is_batch_iterable(validation_data):
            return (validation_data,)
        raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or an iterable "
                         "of batches")
    return tuple(validation_data)


def _check_batch_size(batch_size, default: int) -> int:
    if batch_size is None:
        return default
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    return int(batch_size)


def _class_sample_weights(y: torch.Tensor, class_weight: dict, sample_weight: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise ValueError("class_weight needs a single target array")
    if y.is_floating_point() and y.dim() >= 2 and y.shape[-1] > 1:
        ids = y.argmax(-1)  # one-hot
    else:
        ids = y.reshape(y.shape[0], -1)[:, 0].round().long() if y.is_floating_point() else y.reshape(y.shape[0], -1)[:, 0]
    num_classes = int(ids.max()) + 1  # host sync: once per fit
    missing = [c for c in range(num_classes) if c not in class_weight]
    if missing:
        raise ValueError(f"class_weight has no weight for class(es) {missing}; expected a weight for each of "
                         f"0..{num_classes - 1}")
    table = torch.tensor([float(class_weight[c]) for c in range(num_classes)], device=y.device)
    weights = table[ids]
    return weights if sample_weight is None else weights * sample_weight
