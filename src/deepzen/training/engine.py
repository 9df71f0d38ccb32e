"""The training step and the epoch loops behind ``fit``, ``evaluate`` and ``predict``.

Where speed is won: data lives on the device and is batched by index (``data/arrays.py``); the
optimizer is torch's fused/foreach implementation; per-step losses go into a preallocated device
buffer and metrics accumulate on the device, so the host reads them only at sync points (about once
a second and at the end of an epoch); the callback table is resolved once per ``fit``. On the CPU,
models with 2-D convolutions train in the channels-last memory layout, which oneDNN's convolutions
run faster (``memory_format="auto"``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from deepzen.data.arrays import ArrayData, map_structure
from deepzen import losses, metrics, optimizers
from deepzen.optimizers import clip_gradients
from deepzen.training import distributed
from deepzen.training.callbacks import CallbackList, RunningLogs
from deepzen.training.diagnostics import named_layer_errors

PRECISIONS = {"float32": None, "32": None, "mixed_bfloat16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
              "mixed_float16": torch.float16, "16-mixed": torch.float16}

SYNC_SECONDS = 1.0  # the host reads the running loss (and checks it is finite) about this often
NO_CALLBACKS = CallbackList([], None)  # evaluate/predict without callbacks: every event's table is empty
MEMORY_FORMATS = ("auto", "channels_last", "channels_first")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class Unresumable(TypeError):
    """A metric of an overriding ``train_step`` whose state a mid-epoch checkpoint cannot hold."""


STEP_METRICS = "step_metrics"  # EpochProgress.metric_states' key for an overriding train_step's metrics


def first_non_finite(step_values: torch.Tensor, steps: int) -> int | None:
    """The index of the first of the first ``steps`` rows of ``step_values`` ((steps, ...) per-step losses
    or statistics in a device buffer) that holds a NaN or inf, or None. A host sync."""
    finite = torch.isfinite(step_values[:steps].reshape(steps, -1)).all(dim=1)  # (steps,)
    if bool(finite.all()):
        return None
    return int((~finite).nonzero()[0, 0])


def call_model(model: nn.Module, x: Any, **kwargs: Any) -> Any:
    """Tensor -> model(x); tuple/list -> model(*x); dict -> model(**x) (multi-input models). ``kwargs``
    (``training=``) go along."""
    if isinstance(x, (tuple, list)):
        return model(*x, **kwargs)
    if isinstance(x, dict):
        return model(**x, **kwargs)
    return model(x, **kwargs)


def has_2d_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` holds a 2-D convolution (its weights are 4-D)."""
    from deepzen.layers.conv import BaseConv

    return any(isinstance(module, BaseConv) and module.rank == 2 or isinstance(module, nn.Conv2d)
               for module in model.modules())


def channels_last_inputs(x: Any) -> Any:
    """``x`` with every 4-D floating-point tensor in the channels-last layout (the values are unchanged)."""
    return map_structure(lambda t: t.contiguous(memory_format=torch.channels_last)
                         if isinstance(t, torch.Tensor) and t.dim() == 4 and t.is_floating_point() else t, x)


def _outputs_by_key(outputs: Any) -> dict[Any, torch.Tensor]:
    if isinstance(outputs, dict):
        return outputs
    if isinstance(outputs, (tuple, list)):
        return dict(enumerate(outputs))
    return {0: outputs}


def _per_output(spec: Any, keys: list, what: str) -> dict[Any, Any]:
    """Spreads a loss/metric/weight spec over the model's outputs (one spec for all, a list, or a dict)."""
    if isinstance(spec, dict):
        unknown = set(spec) - set(keys)
        if unknown:
            raise ValueError(f"{what} names outputs {sorted(map(str, unknown))}, but the model's outputs are "
                             f"{[str(k) for k in keys]}")
        return spec
    if isinstance(spec, (list, tuple)) and len(keys) > 1:
        if len(spec) != len(keys):
            raise ValueError(f"{what} has {len(spec)} entries for a model with {len(keys)} outputs")
        return dict(zip(keys, spec))
    return {key: spec for key in keys}


@dataclass
class LossTerm:
    key: Any
    loss: Any
    weight: float
    weighted_loss: Any = None  # the same loss with reduction="none", for sample/class weights

    def __post_init__(self):
        # Every loss is called loss(y_true, y_pred) (Keras's order); a torch.nn module keeps torch's.
        self.loss = losses.as_loss(self.loss)


@dataclass
class EpochProgress:
    """How far an epoch got, to continue it after a restart (see ``training/checkpoint.py``).

    Attributes:
        step: steps done.
        losses: (step,) the loss of each of those steps.
        sizes: the batch size of each of those steps.
        metric_states: per output key, each metric's state tensors (sums) after those steps, or None.
            For an overriding ``train_step``: ``{"step_metrics": [...]}``, the states of ``model.metrics``
            (and ``losses`` and ``sizes`` are empty).
    """

    step: int
    losses: torch.Tensor
    sizes: list[int]
    metric_states: dict[Any, list[dict[str, torch.Tensor] | None]]


def _resolve_names(spec: Any, get) -> None:
    """Looks up every string in a compile setting (a name, or lists and dicts of them) with ``get``."""
    if isinstance(spec, str):
        get(spec)
    elif isinstance(spec, dict):
        for value in spec.values():
            _resolve_names(value, get)
    elif isinstance(spec, (list, tuple)):
        for value in spec:
            _resolve_names(value, get)


@dataclass
class Engine:
    """Everything ``compile`` fixed: optimizer spec, losses, metrics, precision, jit.

    Created by ``Model.compile``; ``setup`` finishes it once the model is built and its outputs known.
    """

    model: nn.Module
    optimizer_spec: Any
    loss_spec: Any
    metric_spec: Any
    loss_weights: Any = None
    jit: bool = False
    precision: str = "float32"
    memory_format: str = "auto"
    optimizer: torch.optim.Optimizer | None = None
    terms: list[LossTerm] = field(default_factory=list)
    metrics: dict[Any, list] = field(default_factory=dict)
    ready: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {self.precision!r}. Expected one of: {', '.join(PRECISIONS)}")
        self.autocast_dtype = PRECISIONS[self.precision]
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"Unknown memory_format {self.memory_format!r}. Expected one of: {', '.join(MEMORY_FORMATS)}")
        # Every name resolves now, so a typo fails at compile (as in Keras), not at the first fit.
        _resolve_names(self.loss_spec, losses.get)
        _resolve_names(self.metric_spec, metrics.get)
        _resolve_names(self.optimizer_spec, optimizers.get)
        self.channels_last = False  # decided in setup(), once the model is built
        self.forward = torch.compile(self.model) if self.jit else self.model
        self.train_forward = self.forward  # DistributedDataParallel's wrapper under torchrun (distributed.wrap)
        # Keras passes training=True/False to a model's own call/forward that takes it (layers/subclassing.py)
        passes = getattr(type(self.model), "_fit_passes_training", False)
        self.train_kwargs = {"training": True} if passes else {}
        self.test_kwargs = {"training": False} if passes else {}
        self.scaler = None
        self.running: tuple[torch.Tensor, list[int]] | None = None  # this epoch's step losses and batch sizes
        self.step_metrics: list | None = None  # the metrics an overriding train_step feeds, in its epochs

    # -- setup, once the model is built --------------------------------------------------------------
    def setup(self, example_output: Any, require_loss: bool = True) -> None:
        """Finishes the engine for the model's outputs. Only the built-in ``train_step``/``test_step``
        need a compiled loss (``require_loss``); an overriding step may compute its own."""
        outputs = _outputs_by_key(example_output) if example_output is not None else {0: None}
        keys = list(outputs)
        if self.loss_spec is None and require_loss:
            raise ValueError("compile() needs a loss, e.g. compile(loss='sparse_categorical_crossentropy'), "
                             "unless the model overrides train_step/test_step and computes its own")
        loss_by_key = _per_output(self.loss_spec, keys, "loss") if self.loss_spec is not None else {}
        weights = _per_output(self.loss_weights if self.loss_weights is not None else 1.0, keys, "loss_weights")
        self.terms = [LossTerm(key, losses.get(spec), float(weights.get(key, 1.0)))
                      for key, spec in loss_by_key.items() if spec is not None]
        metric_by_key = _per_output(self.metric_spec or [], keys[:1] if not isinstance(self.metric_spec, dict)
                                    else keys, "metrics")
        self.metrics = {}
        term_by_key = {term.key: term.loss for term in self.terms}
        for key, specs in metric_by_key.items():
            specs = specs if isinstance(specs, (list, tuple)) else [specs]
            self.metrics[key] = [metrics.get(spec, loss=term_by_key.get(key)) for spec in specs]
        self.multi_output = len(keys) > 1
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        if self.autocast_dtype is torch.float16 and device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
        self.channels_last = has_2d_convolutions(self.model) and (
            self.memory_format == "channels_last" or self.memory_format == "auto" and device.type == "cpu")
        if self.channels_last:  # before the optimizer, so its state takes the same layout
            self.model.to(memory_format=torch.channels_last)
        if self.optimizer is None:
            self.build_optimizer()
        self.loss_tracker = metrics.Mean(name="loss")  # the "loss" of Model.metrics: a train_step's update_state(loss)
        self.compiled_metrics = CompiledMetrics(self)
        self.ready = True

    def build_optimizer(self) -> None:
        """The optimizer over the trainable parameters only (``trainable = False`` takes effect here, at the
        compile after it, as in Keras); none when nothing is trainable."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.clipping = None
        if self.optimizer_spec is None:  # compile(optimizer=None): the model's train_step brings its own (GAN)
            self.optimizer = None
            return
        if isinstance(self.optimizer_spec, torch.optim.Optimizer):
            self.optimizer = self.optimizer_spec
            if not isinstance(self.optimizer, optimizers.KerasAttributes):
                # Keras's learning_rate / apply on the user's own torch optimizer (still an instance of its class):
                # model.optimizer.learning_rate = x must change the rate, not add an unused attribute
                self.optimizer.__class__ = optimizers.with_keras_attributes(type(self.optimizer))
            return
        if not params:
            self.optimizer = None
            return
        spec = optimizers.get(self.optimizer_spec)
        self.optimizer = spec.build(params)
        if isinstance(self.optimizer, optimizers.UpdateRules):  # it clips in step(), after accumulating
            if self.scaler is not None and self.optimizer.accumulation > 1:
                raise ValueError("gradient_accumulation_steps does not combine with precision='mixed_float16' on "
                                 "CUDA (its loss scaling unscales at every step); use mixed_bfloat16")
            return
        clipping = (spec.clipnorm, spec.clipvalue, spec.global_clipnorm)
        self.clipping = clipping if any(c is not None for c in clipping) else None

    def metric_names(self) -> list[str]:
        return [f"{key}_{m.name}" if self.multi_output else m.name
                for key, metrics in self.metrics.items() for m in metrics]

    def metric_index(self, key: Any, metric: Any) -> int:
        """The position of ``metric`` (compiled for output ``key``) in :meth:`metric_names`."""
        flat = [(k, m) for k, group in self.metrics.items() for m in group]
        return next(i for i, (k, m) in enumerate(flat) if k == key and m is metric)

    def validation_metrics(self) -> dict[Any, list]:
        fresh = {key: [copy.deepcopy(m) for m in metrics] for key, metrics in self.metrics.items()}
        for metrics in fresh.values():
            for metric in metrics:
                metric.reset_state()
        return fresh

    # -- targets, checked once -------------------------------------------------------------------------
    def prepare_targets(self, y: Any, example_output: Any) -> Any:
        """Converts target dtypes once and checks that targets fit the losses (before training)."""
        outputs = _outputs_by_key(example_output)
        targets = _outputs_by_key(y)
        if set(targets) != set(outputs) and len(self.terms) > 0:
            if len(targets) != len(outputs):
                raise ValueError(f"The model has {len(outputs)} output(s) but y has {len(targets)} target(s)")
        prepared = dict(targets)
        for term in self.terms:
            target = targets[term.key]
            if hasattr(term.loss, "prepare_targets"):
                target = term.loss.prepare_targets(target)
            if hasattr(term.loss, "check_targets"):
                term.loss.check_targets(outputs[term.key], target)
            prepared[term.key] = target
        if isinstance(y, dict):
            return prepared
        if isinstance(y, (tuple, list)):
            return type(y)(prepared[i] for i in range(len(y)))
        return prepared[0]

    def enable_sample_weights(self) -> None:
        for term in self.terms:
            if term.weighted_loss is None:
                if not hasattr(term.loss, "reduction"):
                    raise ValueError(f"sample_weight/class_weight need a loss with a 'reduction' attribute; "
                                     f"{term.loss!r} has none")
                term.weighted_loss = copy.copy(term.loss)
                term.weighted_loss.reduction = "none"

    # -- the step ---------------------------------------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=self.autocast_dtype)

    def compute_loss(self, outputs: Any, y: Any, sample_weight: torch.Tensor | None) -> torch.Tensor:
        if not self.multi_output and len(self.terms) == 1:
            term = self.terms[0]
            if sample_weight is None:
                total = term.loss(y, outputs)
            else:
                total = (term.weighted_loss(y, outputs) * sample_weight).mean()
            total = total * term.weight if term.weight != 1.0 else total
        else:
            outs, targets = _outputs_by_key(outputs), _outputs_by_key(y)
            total = 0.0
            for term in self.terms:
                if sample_weight is None:
                    value = term.loss(targets[term.key], outs[term.key])
                else:
                    value = (term.weighted_loss(targets[term.key], outs[term.key]) * sample_weight).mean()
                total = total + term.weight * value
        return total + self.model.regularization_loss() if self.model.has_regularization else total

    def update_metrics(self, metrics: dict[Any, list], outputs: Any, y: Any) -> None:
        if not metrics:
            return
        if not self.multi_output:
            for metric in metrics.get(0, ()):
                metric.update_state(y, outputs)
            return
        outs, targets = _outputs_by_key(outputs), _outputs_by_key(y)
        for key, group in metrics.items():
            for metric in group:
                metric.update_state(targets[key], outs[key])

    def train_step(self, x: Any, y: Any, sample_weight: torch.Tensor | None, step: int,
                   after_backward: list) -> tuple[torch.Tensor, Any]:
        if self.channels_last:
            x = channels_last_inputs(x)
        with self.autocast():
            outputs = call_model(self.train_forward, x, **self.train_kwargs)
            loss = self.compute_loss(outputs, y, sample_weight)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        for handler in after_backward:
            handler(step)
        if self.clipping is not None:
            clip_gradients(self.model.parameters(), *self.clipping)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach(), outputs

    # -- loops ---------------------------------------------------------------------------------------
    def train_epoch(self, batches: Iterable, steps: int | None, callbacks: CallbackList, epoch: int,
                    resume: EpochProgress | None = None) -> dict:
        """One epoch over ``batches``; with ``resume``, the epoch's first ``resume.step`` batches are skipped
        and the losses and metric sums of those steps are carried into this epoch's logs."""
        model = self.model
        model.train()
        for group in self.metrics.values():
            for metric in group:
                metric.reset_state()
        device = next(model.parameters()).device
        step_losses = torch.zeros(steps if steps else 1024, device=device)  # per-step losses, read at syncs
        sizes: list[int] = []
        start, carried_metrics = 0, None
        if resume is not None:
            start, carried_metrics = resume.step, resume.metric_states
            step_losses[:start] = resume.losses.to(device)
            sizes.extend(resume.sizes)
            batches = itertools.islice(batches, start, None)
        self.running = (step_losses, sizes)  # epoch_progress() reads them when a checkpoint is taken
        self.step_metrics = None
        running = RunningLogs(lambda step: self._read_running(step_losses, sizes, step, epoch))
        batch_begin = callbacks.handlers["on_train_batch_begin"]
        batch_end = callbacks.handlers["on_train_batch_end"]
        after_backward = callbacks.handlers["on_after_backward"]
        track_metrics = any(self.metrics.values())
        first = True
        last_sync = time.monotonic()
        step = start - 1
        for step, (x, y, weight) in enumerate(batches, start):
            if step >= step_losses.numel():  # an iterable of unknown length: grow the buffer
                step_losses = torch.cat([step_losses, torch.zeros_like(step_losses)])
                self.running = (step_losses, sizes)
            running.step = step
            for handler in batch_begin:
                callbacks.fire_handler(handler, "on_train_batch_begin", step, {})  # Keras passes no logs here
            if first:  # the first step of a fit names the failing layer on errors
                with named_layer_errors(model):
                    loss, outputs = self.train_step(x, y, weight, step, after_backward)
                first = False
            else:
                loss, outputs = self.train_step(x, y, weight, step, after_backward)
            step_losses[step] = loss
            sizes.append(_batch_size(y))
            if track_metrics:
                self.update_metrics(self.metrics, outputs.detach() if isinstance(outputs, torch.Tensor) else outputs, y)
            if carried_metrics is not None:  # the metric states exist now: add the sums of the skipped steps
                _add_metric_states(self.metrics, carried_metrics)
                carried_metrics = None
            for handler in batch_end:
                callbacks.fire_handler(handler, "on_train_batch_end", step, running)
            now = time.monotonic()
            if now - last_sync > SYNC_SECONDS:
                last_sync = now
                self._check_finite(step_losses, step, epoch)  # host sync, about once a second
            if model.stop_training:
                break
        if step < 0:
            raise ValueError("fit received no batches: the training data is empty")
        return self._read_running(step_losses, sizes, step, epoch, epoch_end=True)

    def epoch_progress(self, steps_done: int) -> EpochProgress:
        """A copy of the current epoch's progress after ``steps_done`` steps (for checkpoints).

        In an epoch of an overriding ``train_step`` the logs come from ``model.metrics``, so the progress
        is their states (``metric_states["step_metrics"]``, no per-step losses).

        Raises:
            Unresumable: a metric of an overriding step keeps no state a checkpoint can hold.
        """
        if self.step_metrics is not None:
            return EpochProgress(steps_done, torch.zeros(0), [], {STEP_METRICS: [
                step_metric_state(metric) for metric in self.step_metrics]})
        step_losses, sizes = self.running
        states = {key: [None if m.state is None else {name: t.clone() for name, t in m.state.items()} for m in group]
                  for key, group in self.metrics.items()}
        return EpochProgress(steps_done, step_losses[:steps_done].clone(), list(sizes[:steps_done]), states)

    def _check_finite(self, step_losses: torch.Tensor, step: int, epoch: int) -> None:
        bad = first_non_finite(step_losses, step + 1)
        if bad is not None:
            self.model.stop_training = True
            raise NonFiniteLossError(f"The training loss became {float(step_losses[bad])} at epoch {epoch + 1}, "
                                     f"step {bad + 1}. Lower the learning rate, check the inputs for NaN/inf, or "
                                     f"add clipnorm to the optimizer.")

    def _read_running(self, step_losses, sizes, step, epoch, epoch_end=False) -> dict[str, float]:
        if epoch_end:
            self._check_finite(step_losses, step, epoch)
        count = step + 1
        weights = torch.tensor(sizes[:count], dtype=step_losses.dtype, device=step_losses.device)
        # Under torchrun the epoch-end logs are summed over the processes (every process reads them
        # there); reads inside the epoch (progress bars, rank 0 only) stay local.
        return self._results((step_losses[:count] * weights).sum(), weights.sum(), self.metrics, across_ranks=epoch_end)

    def _results(self, loss_sum: torch.Tensor, count: Any, metrics: dict[Any, list], across_ranks: bool) -> dict:
        """The mean loss and the metric results (over all processes when ``across_ranks`` under torchrun)."""
        group = [m for ms in metrics.values() for m in ms]
        if across_ranks and distributed.active():
            loss_sum, count, results = distributed.reduce_results(loss_sum, count, group)
        else:
            results = [m.result().float() for m in group]
        values = [loss_sum / count] + results
        numbers = torch.stack([v.reshape(()).float() for v in values]).tolist()  # host sync
        return dict(zip(["loss", *self.metric_names()], numbers))

    @torch.no_grad()
    def evaluate(self, data: ArrayData | Iterable, batch_size: int, callbacks: CallbackList | None = None
                 ) -> dict[str, float]:
        """The mean loss and metrics over ``data``; ``callbacks`` get the test-batch events."""
        model = self.model
        model.eval()
        metrics = self.validation_metrics()
        total, count = None, 0
        batches = data.batches(batch_size) if isinstance(data, ArrayData) else data
        callbacks = callbacks or NO_CALLBACKS
        batch_begin, batch_end = callbacks.handlers["on_test_batch_begin"], callbacks.handlers["on_test_batch_end"]
        running = RunningLogs(lambda step: self._results(total, count, metrics, across_ranks=False))
        first = True
        for step, (x, y, weight) in enumerate(batches):
            for handler in batch_begin:
                callbacks.fire_handler(handler, "on_test_batch_begin", step, {})
            if self.channels_last:
                x = channels_last_inputs(x)
            with self.autocast():
                if first:
                    with named_layer_errors(model):
                        outputs = call_model(self.forward, x, **self.test_kwargs)
                    first = False
                else:
                    outputs = call_model(self.forward, x, **self.test_kwargs)
                loss = self.compute_loss(outputs, y, weight)
            n = _batch_size(y)
            total = loss.float() * n if total is None else total + loss.float() * n
            count += n
            self.update_metrics(metrics, outputs, y)
            running.step = step
            for handler in batch_end:
                callbacks.fire_handler(handler, "on_test_batch_end", step, running)
        if total is None:
            raise ValueError("evaluate received no batches: the data is empty")
        return self._results(total, count, metrics, across_ranks=True)  # host sync: once per evaluation


# -- overriding steps: Model.train_step / test_step / predict_step -----------------------------------
class MetricView:
    """A compiled metric as Keras's step code uses it: ``update_state(y_true, y_pred)``, ``result()``,
    ``reset_state()``. The update goes through ``Engine.update_metrics``, the one place metrics are fed.
    ``sample_weight`` is accepted and not applied (deepzen's metrics are unweighted)."""

    def __init__(self, engine: "Engine", key: Any, metric: Any):
        self.engine, self.key, self.metric = engine, key, metric
        self.name = engine.metric_names()[engine.metric_index(key, metric)]

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, y_pred)
        self.engine.update_metrics({self.key: [self.metric]}, y_pred, y_true)

    def result(self) -> torch.Tensor:
        return self.metric.result()

    def reset_state(self) -> None:
        reset_metrics([self.metric])


class CompiledMetrics:
    """Keras's ``model.compiled_metrics``: the metrics given to ``compile``, updated together."""

    def __init__(self, engine: "Engine"):
        self.engine = engine
        self.metrics = [MetricView(engine, key, m) for key, group in engine.metrics.items() for m in group]

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        for view in self.metrics:
            view.update_state(y_true, y_pred, sample_weight)

    def result(self) -> dict[str, torch.Tensor]:
        return {view.name: view.result() for view in self.metrics}

    def reset_state(self) -> None:
        for view in self.metrics:
            view.reset_state()


def reset_metrics(metrics: Iterable) -> None:
    """Resets each metric (Keras's ``reset_state`` or deepzen's ``reset``), as fit does at each epoch."""
    for metric in metrics:
        reset = getattr(metric, "reset_state", None) or getattr(metric, "reset", None)
        if reset is not None:
            reset()


def step_data(x: Any, y: Any, weight: Any) -> Any:
    """What an overriding step receives, as in Keras: ``x``, ``(x, y)`` or ``(x, y, sample_weight)``."""
    if weight is not None:
        return x, y, weight
    return x if y is None else (x, y)


def logs_as_floats(logs: Any) -> dict:
    """A step's returned logs with each scalar tensor read as a float (a host sync per tensor: called at
    the step events someone listens to and at the end of an epoch, never otherwise)."""
    if logs is None:
        return {}
    if not isinstance(logs, dict):
        logs = {"loss": logs}
    return {key: (float(value) if value.numel() == 1 else value.tolist()) if isinstance(value, torch.Tensor)
            else value for key, value in logs.items()}


def run_train_steps(model: nn.Module, batches: Iterable, callbacks: CallbackList, epoch: int = 0,
                    resume: EpochProgress | None = None) -> dict:
    """One epoch that calls the model's own ``train_step(data)`` for each batch. The dict it returns is
    what the progress bar and the step callbacks read, and its last value is the epoch's logs.

    The logs stay on the device: the host reads them about once a second (to check they are finite) and
    at the end of the epoch. With ``resume`` (a checkpoint taken inside this epoch), the epoch's first
    ``resume.step`` batches are skipped and ``model.metrics`` continue from their saved states, so the
    logs are those of the uninterrupted epoch."""
    model.train()
    tracked = list(model.metrics)
    reset_metrics(tracked)
    start = 0
    if resume is not None:
        if STEP_METRICS not in resume.metric_states:
            raise ValueError("this checkpoint was taken inside an epoch of the built-in training step; the "
                             "model now overrides train_step. Resume it with the model that saved it")
        start = resume.step
        load_step_metric_states(tracked, resume.metric_states[STEP_METRICS], _model_device(model))
        batches = itertools.islice(batches, start, None)
    engine = getattr(model, "engine", None)
    if engine is not None:
        engine.running, engine.step_metrics = None, tracked  # epoch_progress() reads their states
    logs: Any = {}
    running = RunningLogs(lambda step: logs_as_floats(logs))
    batch_begin = callbacks.handlers["on_train_batch_begin"]
    batch_end = callbacks.handlers["on_train_batch_end"]
    last_sync = time.monotonic()
    step = start - 1
    for step, (x, y, weight) in enumerate(batches, start):
        running.step = step
        for handler in batch_begin:
            callbacks.fire_handler(handler, "on_train_batch_begin", step, {})  # Keras passes no logs here
        if step == start:
            with named_layer_errors(model):
                logs = model.train_step(step_data(x, y, weight))
        else:
            logs = model.train_step(step_data(x, y, weight))
        for handler in batch_end:
            callbacks.fire_handler(handler, "on_train_batch_end", step, running)
        now = time.monotonic()
        if now - last_sync > SYNC_SECONDS:
            last_sync = now
            _check_finite_logs(model, logs_as_floats(logs), step, epoch)  # host sync, about once a second
        if model.stop_training:
            break
    if step < 0:
        raise ValueError("fit received no batches: the training data is empty")
    logs = logs_as_floats(logs)  # host sync: once per epoch
    _check_finite_logs(model, logs, step, epoch)
    return logs


def _check_finite_logs(model: nn.Module, logs: dict, step: int, epoch: int) -> None:
    """Stops training with a NonFiniteLossError when a number in an overriding step's logs is NaN or inf."""
    if all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
        return
    model.stop_training = True
    values = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in logs.items())
    raise NonFiniteLossError(f"{getattr(model, 'name', type(model).__name__)}'s training logs became non-finite "
                             f"by epoch {epoch + 1}, step {step + 1} ({values}). Lower the learning rate(s) or "
                             f"check the inputs for NaN/inf.")


def step_metric_state(metric: Any) -> dict[str, torch.Tensor] | None:
    """A copy of the state of one of an overriding step's ``model.metrics`` (deepzen metrics and the loss
    tracker keep it in ``state``: a dict of tensors, or None before their first update)."""
    state = getattr(_metric_with_state(metric), "state", ...)
    if state is None:
        return None
    if not (isinstance(state, dict) and all(isinstance(t, torch.Tensor) for t in state.values())):
        raise Unresumable(f"the metric {getattr(metric, 'name', type(metric).__name__)!r} keeps no state dict of "
                          f"tensors (deepzen.metrics.Metric's `state`), so a checkpoint inside an epoch cannot "
                          f"hold it")
    return {name: tensor.clone() for name, tensor in state.items()}


def load_step_metric_states(metrics: list, states: list, device: torch.device) -> None:
    """Gives each of an overriding step's metrics its saved state (:func:`step_metric_state`'s)."""
    if not isinstance(states, list) or len(states) != len(metrics):
        raise ValueError(f"the checkpoint holds the states of {len(states) if isinstance(states, list) else '?'} "
                         f"step metrics; the model's train_step has {len(metrics)}")
    for metric, saved in zip(metrics, states):
        metric = _metric_with_state(metric)
        own = getattr(metric, "state", None)
        if saved is None:
            continue
        if own is not None and own.keys() == saved.keys():
            for name, tensor in own.items():
                tensor.copy_(saved[name])  # in place: attributes that hold a state tensor stay valid
        else:
            metric.state = {name: tensor.to(device) for name, tensor in saved.items()}


def _metric_with_state(metric: Any) -> Any:
    """The metric that holds the state: a compiled metric's view (``model.compiled_metrics``) holds none."""
    return metric.metric if isinstance(metric, MetricView) else metric


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def run_test_steps(model: nn.Module, batches: Iterable, callbacks: CallbackList | None = None) -> dict:
    """Calls the model's own ``test_step(data)`` for each batch; returns the last logs as floats.
    ``callbacks`` get the test-batch events, with the step's logs."""
    model.eval()
    reset_metrics(model.metrics)
    logs: Any = None
    callbacks = callbacks or NO_CALLBACKS
    batch_begin, batch_end = callbacks.handlers["on_test_batch_begin"], callbacks.handlers["on_test_batch_end"]
    running = RunningLogs(lambda step: logs_as_floats(logs))
    for step, (x, y, weight) in enumerate(batches):
        for handler in batch_begin:
            callbacks.fire_handler(handler, "on_test_batch_begin", step, {})
        logs = model.test_step(step_data(x, y, weight))
        running.step = step
        for handler in batch_end:
            callbacks.fire_handler(handler, "on_test_batch_end", step, running)
    if logs is None:
        raise ValueError("evaluate received no batches: the data is empty")
    return logs_as_floats(logs)  # host sync: once per evaluation


def _add_metric_states(metrics: dict[Any, list], states: dict[Any, list]) -> None:
    """Adds saved metric states (sums) into the current ones, metric by metric."""
    for key, group in metrics.items():
        for metric, saved in zip(group, states.get(key, ())):
            if saved is not None and metric.state is not None:
                for name, value in metric.state.items():
                    value += saved[name].to(value.device)


def _batch_size(y: Any) -> int:
    while isinstance(y, (tuple, list)):
        y = y[0]
    if isinstance(y, dict):
        return _batch_size(next(iter(y.values())))
    return int(y.shape[0])


@torch.no_grad()
def predict_batches(model: nn.Module, batches: Iterable, autocast, step=None,
                    callbacks: CallbackList | None = None) -> Any:
    """Runs ``model`` (or ``step(x)``, an overriding ``predict_step``) over batches of inputs and
    concatenates the outputs (on the model's device). ``callbacks`` get the predict-batch events."""
    model.eval()
    extra = {"training": False} if getattr(type(model), "_fit_passes_training", False) else {}
    step = step or (lambda x: call_model(model, x, **extra))  # noqa: E731
    outputs = []
    callbacks = callbacks or NO_CALLBACKS
    batch_begin = callbacks.handlers["on_predict_batch_begin"]
    batch_end = callbacks.handlers["on_predict_batch_end"]
    first = True
    for index, x in enumerate(batches):
        for handler in batch_begin:
            callbacks.fire_handler(handler, "on_predict_batch_begin", index, {})
        with autocast():
            if first:
                with named_layer_errors(model):
                    outputs.append(step(x))
                first = False
            else:
                outputs.append(step(x))
        for handler in batch_end:
            callbacks.fire_handler(handler, "on_predict_batch_end", index, {"outputs": outputs[-1]})
    if not outputs:
        raise ValueError("predict received no data")
    head = outputs[0]
    if isinstance(head, torch.Tensor):
        return torch.cat(outputs)
    if isinstance(head, dict):
        return {key: torch.cat([o[key] for o in outputs]) for key in head}
    return type(head)(torch.cat([o[i] for o in outputs]) for i in range(len(head)))
