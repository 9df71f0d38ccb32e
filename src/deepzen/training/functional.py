"""The Functional API's model: ``Model(inputs, outputs)`` over a graph of layer calls (Keras's ``Functional``).

``Input`` gives symbolic tensors; calling layers (and models) on them records :class:`~deepzen.layers.
symbolic.Node` s; ``Model(inputs, outputs)`` walks the nodes back from the outputs once, checks that the
inputs reach every output, and turns the graph into a plan: a list of layer calls over numbered slots.
``forward`` is a plain loop over that plan -- no graph work per step.

Example:
    >>> import torch
    >>> from deepzen.layers import Dense, Input, concatenate
    >>> a, b = Input((3,), name="a"), Input((2,), name="b")
    >>> hidden = Dense(4, activation="relu")(concatenate([a, b]))
    >>> model = Model([a, b], [Dense(1, name="score")(hidden), Dense(2, name="kind")(hidden)])
    >>> [tuple(o.shape) for o in model([torch.zeros(5, 3), torch.zeros(5, 2)])]
    [(5, 1), (5, 2)]
    >>> model.output_names
    ['score', 'kind']
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from deepzen.layers.base import Layer, shape_str, snake_case
from deepzen.layers.input_layer import InputLayer
from deepzen.layers.merge import Merge
from deepzen.layers.symbolic import SymbolicTensor, layer_name, leaves, map_leaves
from deepzen.layers.subclassing import weight_tensors
from deepzen.serializable import (ModelFileError, config_value, custom_object_scope, register_serializable,
                                  value_from_config)
from deepzen.training.model import InputSpec, Model
from deepzen.training.serialization import module_config, module_from_config

_TENSOR = "__tensor__"  # marks a symbolic tensor in a saved call: {"__tensor__": [node, output]}


class _Slot:
    """A numbered place in the plan's value list, standing for one symbolic tensor in a call's arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def _fill(template: Any, values: list) -> Any:
    if isinstance(template, _Slot):
        return values[template.index]
    if isinstance(template, (list, tuple)):
        return type(template)(_fill(item, values) for item in template)
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


class _Replay:
    """A layer call with several arguments or outputs: rebuilds the arguments from the slots, stores the
    outputs in theirs. A merge of masked tensors also sets its output's mask (``compute_mask`` of the list
    of inputs and their masks, Keras's rule)."""

    __slots__ = ("args", "kwargs", "targets", "mask_sources", "mask_target")

    def __init__(self, args, kwargs, targets, mask_sources=None, mask_target=None):
        self.args, self.kwargs, self.targets = args, kwargs, targets
        self.mask_sources, self.mask_target = mask_sources, mask_target

    def __call__(self, layer, values, extra):
        args = _fill(self.args, values)
        output = layer(*args, **{**extra, **_fill(self.kwargs, values)})  # the call's own arguments win
        for target, value in zip(self.targets, leaves(output)):
            values[target] = value
        if self.mask_target is not None:
            values[self.mask_target] = layer.compute_mask(
                args[0], [values[s] if s is not None else None for s in self.mask_sources])


class _Masked:
    """A one-tensor layer call in a graph that carries padding masks, with Sequential's rule: a layer with
    ``compute_mask`` (Embedding(mask_zero=True), Masking, an RNN) sets its output's mask, other layers pass
    their input's mask on, and a layer whose ``forward`` takes ``mask`` receives it."""

    __slots__ = ("source", "target", "mask_source", "mask_target", "passes_mask")

    def __init__(self, source, target, mask_source, mask_target, passes_mask):
        self.source, self.target = source, target
        self.mask_source, self.mask_target, self.passes_mask = mask_source, mask_target, passes_mask

    def __call__(self, layer, values, extra):
        x = values[self.source]
        mask = values[self.mask_source] if self.mask_source is not None else None
        values[self.target] = layer(x, mask=mask, **extra) if self.passes_mask else layer(x, **extra)
        if self.mask_target is not None:
            values[self.mask_target] = layer.compute_mask(x, mask)


def _structure_kind(structure: Any, what: str) -> tuple[str, list]:
    """("single" | "list" | "dict", flat tensors) for Model's inputs or outputs argument."""
    if isinstance(structure, SymbolicTensor):
        return "single", [structure]
    if isinstance(structure, dict) and all(isinstance(v, SymbolicTensor) for v in structure.values()):
        return "dict", list(structure.values())
    if isinstance(structure, (list, tuple)) and structure and all(isinstance(v, SymbolicTensor) for v in structure):
        return "list", list(structure)
    raise TypeError(f"Model(inputs, outputs) expects {what} as a symbolic tensor (from deepzen.Input or a layer "
                    f"called on one), or a list or dict of them. Received: {type(structure).__name__}")


@register_serializable
class Functional(Model):
    """A model defined by a graph of layer calls; built by ``deepzen.Model(inputs, outputs)``.

    Args:
        inputs: an ``Input`` (or another symbolic tensor), or a list or dict of them.
        outputs: a symbolic tensor reached from ``inputs``, or a list or dict of them.
        name: the model's name.

    Call it with tensors in the order of ``inputs`` (``model(a, b)`` or ``model([a, b])``), or by input name
    (``model(a=..., b=...)`` or ``model({"a": ...})``). It returns the outputs in the structure of ``outputs``.
    """

    def __init__(self, inputs: Any, outputs: Any, *, name: str | None = None):
        super().__init__(name=name)
        self._input_kind, input_list = _structure_kind(inputs, "inputs")
        self._output_kind, output_list = _structure_kind(outputs, "outputs")
        self._input_keys = list(inputs) if self._input_kind == "dict" else None
        self._output_keys = list(outputs) if self._output_kind == "dict" else None
        self._inputs, self._outputs = input_list, output_list
        labels = [repr(key) for key in outputs] if self._output_kind == "dict" else list(range(len(output_list)))
        self._nodes = self._walk(input_list, output_list, labels)
        self._register_layers()
        self._make_plan()
        self.input_names = self._input_keys or [layer_name(t.node.layer) for t in input_list]
        self.output_names = self._output_keys or [layer_name(t.node.layer) for t in output_list]
        if all(None not in t.shape[1:] for t in input_list):  # built: every layer ran on the inputs' shapes
            specs = [InputSpec(tuple(t.shape[1:]), t.dtype) for t in input_list]
            self.input_spec = self._pack(specs, self._input_kind, self._input_keys)
        self._output_shape = self._pack([t.shape for t in output_list], self._output_kind, self._output_keys)

    # -- the graph -----------------------------------------------------------------------------------
    @staticmethod
    def _walk(inputs: list, outputs: list, labels: list) -> list:
        """The nodes between ``inputs`` and ``outputs`` in an order where every node follows its inputs' (a
        depth-first walk back from each output, without recursion, so deep graphs need no stack)."""
        sources = {id(t) for t in inputs}
        order, done = [], set()
        for label, output in zip(labels, outputs):
            stack = [(output, False)]
            while stack:
                tensor, expanded = stack.pop()
                node = tensor.node
                if id(tensor) in sources or id(node) in done:
                    continue
                if expanded:
                    done.add(id(node))
                    order.append(node)
                    continue
                if not node.inputs:  # an Input that is not among the model's inputs
                    given = ", ".join(f"'{layer_name(t.node.layer)}' {shape_str(t.shape)}" for t in inputs)
                    raise ValueError(f"Output {label} of Model(inputs, outputs) ({output!r}) cannot be computed from "
                                     f"the inputs: it depends on the Input '{layer_name(node.layer)}' "
                                     f"{shape_str(tensor.shape)}, which is not among the inputs ({given})")
                stack.append((tensor, True))
                stack.extend((parent, False) for parent in reversed(node.inputs))
        input_nodes = []
        for tensor in inputs:
            if not tensor.node.inputs and tensor.node not in input_nodes:
                input_nodes.append(tensor.node)
        return input_nodes + order

    def _register_layers(self) -> None:
        """Adds each layer once, as a submodule named after it (names made unique as Keras does)."""
        layers: list[nn.Module] = []
        for node in self._nodes:
            if not any(node.layer is known for known in layers):
                layers.append(node.layer)
        used = {layer.name for layer in layers if isinstance(layer, Layer) and layer.name}
        explicit = [layer.name for layer in layers if isinstance(layer, Layer) and layer.name]
        duplicates = sorted({n for n in explicit if explicit.count(n) > 1})
        if duplicates:
            raise ValueError(f"Model(inputs, outputs): every layer needs its own name. Used more than once: "
                             f"{', '.join(duplicates)}")
        for layer in layers:
            name = layer.name if isinstance(layer, Layer) and layer.name else None
            if name is None:
                base = getattr(layer, "name", None) or snake_case(type(layer).__name__)
                name, count = base, 0
                while name in used:
                    count += 1
                    name = f"{base}_{count}"
                used.add(name)
                if isinstance(layer, (Layer, Model)):
                    layer.name = name
            self.add_module(name.replace(".", "_"), layer)
        self._layer_list = layers

    def _make_plan(self) -> None:
        """Numbers every tensor and lists the calls: (layer, source slot, target slot, replay or None)."""
        slots: dict[int, int] = {}
        for tensor in self._inputs:
            slots[id(tensor)] = len(slots)
        plan = []
        # masks flow when a layer makes them (Embedding(mask_zero=True), Masking, ...); merges only combine them
        with_masks = any(hasattr(node.layer, "compute_mask") and not isinstance(node.layer, Merge)
                         for node in self._nodes)
        masks: dict[int, int] = {}  # id(tensor) -> slot of its mask, in graphs with mask producers
        mask_slots = iter(range(1 << 20, 1 << 30))  # renumbered below, after the tensors
        for node in self._nodes:
            if not node.inputs:
                continue
            for tensor in node.flat_outputs:
                slots.setdefault(id(tensor), len(slots))
            to_slot = lambda v: _Slot(slots[id(v)]) if isinstance(v, SymbolicTensor) else v  # noqa: E731
            single_in = len(node.args) == 1 and isinstance(node.args[0], SymbolicTensor) and not node.kwargs
            if single_in and isinstance(node.outputs, SymbolicTensor) and with_masks:
                source, target = slots[id(node.args[0])], slots[id(node.outputs)]
                mask_in = masks.get(id(node.args[0]))
                mask_out = next(mask_slots) if hasattr(node.layer, "compute_mask") else None
                if mask_out is not None or mask_in is not None:
                    masks[id(node.outputs)] = mask_out if mask_out is not None else mask_in
                passes = mask_in is not None and "mask" in inspect.signature(node.layer.forward).parameters
                plan.append((node.layer, None, None, _Masked(source, target, mask_in, mask_out, passes)))
            elif single_in and isinstance(node.outputs, SymbolicTensor):
                plan.append((node.layer, slots[id(node.args[0])], slots[id(node.outputs)], None))
            else:
                replay = _Replay(map_leaves(to_slot, node.args), map_leaves(to_slot, node.kwargs),
                                 [slots[id(t)] if isinstance(t, SymbolicTensor) else -1  # the spare slot
                                  for t in leaves(node.outputs)])
                merged = node.args[0] if len(node.args) == 1 and not node.kwargs else None
                if with_masks and isinstance(merged, (list, tuple)) and hasattr(node.layer, "compute_mask") and \
                        isinstance(node.outputs, SymbolicTensor) and any(id(t) in masks for t in merged):
                    replay.mask_sources = [masks.get(id(t)) for t in merged]
                    replay.mask_target = masks[id(node.outputs)] = next(mask_slots)
                plan.append((node.layer, None, None, replay))
        renumber = {old: len(slots) + index for index, old in enumerate(sorted(set(masks.values())))}
        for _, _, _, call in plan:
            if isinstance(call, _Masked):
                call.mask_source = renumber.get(call.mask_source)
                call.mask_target = renumber.get(call.mask_target)
            elif isinstance(call, _Replay) and call.mask_target is not None:
                call.mask_sources = [renumber.get(source) for source in call.mask_sources]
                call.mask_target = renumber[call.mask_target]
        self._plan = plan
        self._slot_count = len(slots) + len(renumber) + 1  # one spare slot catches non-tensor outputs
        self._input_slots = [slots[id(t)] for t in self._inputs]
        self._output_slots = [slots[id(t)] for t in self._outputs]
        self._takes_training = [("training" in inspect.signature(layer.forward).parameters) for layer, *_ in plan]

    # -- calling ---------------------------------------------------------------------------------------
    def _bind(self, args: tuple, kwargs: dict) -> list:
        """The input tensors in the order of ``inputs``, from positional, list, dict or by-name arguments."""
        if len(args) == 1 and not kwargs and len(self._inputs) > 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            args, kwargs = (), args[0]
        if kwargs and not args:
            missing = [name for name in self.input_names if name not in kwargs]
            unknown = [name for name in kwargs if name not in self.input_names]
            if missing or unknown:
                raise ValueError(f"{self.name} takes the inputs {self.input_names}. Received: {sorted(kwargs)}")
            return [kwargs[name] for name in self.input_names]
        if len(args) != len(self._inputs) or kwargs:
            raise ValueError(f"{self.name} takes {len(self._inputs)} input(s) ({', '.join(self.input_names)}). "
                             f"Received: {len(args)} positional and {len(kwargs)} named argument(s)")
        return list(args)

    def forward(self, *args, training: bool | None = None, **kwargs):
        values = [None] * self._slot_count
        for slot, value in zip(self._input_slots, self._bind(args, kwargs)):
            values[slot] = value
        if training is None:
            for layer, source, target, replay in self._plan:  # the whole per-step graph work
                if replay is None:
                    values[target] = layer(values[source])
                else:
                    replay(layer, values, {})
        else:  # Keras's training= reaches every layer whose forward takes it
            for (layer, source, target, replay), takes in zip(self._plan, self._takes_training):
                extra = {"training": training} if takes else {}
                if replay is None:
                    values[target] = layer(values[source], **extra)
                else:
                    replay(layer, values, extra)
        return self._pack([values[slot] for slot in self._output_slots], self._output_kind, self._output_keys)

    @staticmethod
    def _pack(flat: list, kind: str, keys: list | None) -> Any:
        if kind == "single":
            return flat[0]
        if kind == "dict":
            return dict(zip(keys, flat))
        return list(flat)

    # -- Keras's views ---------------------------------------------------------------------------------
    @property
    def layers(self) -> list[nn.Module]:
        return list(self._layer_list)

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return list(self._outputs)

    @property
    def input(self) -> Any:
        """The symbolic input(s), in the structure given to ``Model`` (Keras's ``model.input``)."""
        return self._pack(self._inputs, self._input_kind, self._input_keys)

    @property
    def output(self) -> Any:
        """The symbolic output(s), in the structure given to ``Model`` (Keras's ``model.output``)."""
        return self._pack(self._outputs, self._output_kind, self._output_keys)

    @property
    def input_shape(self) -> Any:
        return self._pack([t.shape for t in self._inputs], self._input_kind, self._input_keys)

    @property
    def output_shape(self) -> Any:
        return self._output_shape

    def _by_output_name(self, value: Any) -> Any:
        """A dict keyed by output layer names, as a list in the order of the outputs (Keras matches the
        names of list outputs' layers in compile and fit); anything else unchanged."""
        if self._output_kind != "list" or not isinstance(value, dict) or not value:
            return value
        if not set(value) <= set(self.output_names):
            return value  # the engine names the unknown keys
        return [value.get(name) for name in self.output_names]

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, loss_weights: Any = None,
                **kwargs: Any) -> None:
        """:meth:`Model.compile`; with list outputs, ``loss``, ``metrics`` and ``loss_weights`` may be dicts keyed
        by the output layers' names, as in Keras."""
        if isinstance(metrics, dict) and self._output_kind == "list" and set(metrics) <= set(self.output_names):
            metrics = {index: metrics[name] for index, name in enumerate(self.output_names) if name in metrics}
        if isinstance(loss_weights, dict) and self._output_kind == "list":
            loss_weights = [loss_weights.get(name, 1.0) for name in self.output_names] \
                if set(loss_weights) <= set(self.output_names) else loss_weights
        super().compile(optimizer, self._by_output_name(loss), metrics, loss_weights, **kwargs)

    def _as_data(self, x: Any, y: Any = None, sample_weight: Any = None, call: str = "fit"):
        return super()._as_data(x, self._by_output_name(y), sample_weight, call=call)

    def connections(self) -> tuple[list[nn.Module], list[tuple[nn.Module, nn.Module]], dict[int, str]]:
        """(layers, (inbound layer, layer) pairs, ``{id(layer): output shape text}``) for ``plot_model``."""
        edges, shapes = [], {}
        for node in self._nodes:
            shapes.setdefault(id(node.layer), ", ".join(shape_str(t.shape) for t in node.flat_outputs))
            for tensor in node.inputs:
                if (tensor.node.layer, node.layer) not in edges:
                    edges.append((tensor.node.layer, node.layer))
        return self.layers, edges, shapes

    # -- summary ---------------------------------------------------------------------------------------
    def summary(self, input_shape=None, print_fn=print) -> str:
        """Prints (and returns) Keras's functional table: each layer, its output shape, its parameters and
        the layers it is connected to (``name[node][output]``)."""
        node_index: dict[int, tuple[str, int]] = {}
        calls: dict[int, list] = {}
        for node in self._nodes:
            position = len(calls.setdefault(id(node.layer), []))
            calls[id(node.layer)].append(node)
            node_index[id(node)] = (layer_name(node.layer), position)
        rows = []
        for layer in self._layer_list:
            nodes = calls[id(layer)]
            shapes = {tuple(tuple(t.shape) for t in n.flat_outputs) for n in nodes}
            shape = ", ".join(shape_str(s) for s in next(iter(shapes))) if len(shapes) == 1 else "multiple"
            inbound = [f"{node_index[id(t.node)][0]}[{node_index[id(t.node)][1]}][{t.index}]"
                       for n in nodes for t in n.inputs if id(t.node) in node_index]
            params = sum(w.numel() for w in weight_tensors(layer)[2])
            rows.append((f"{layer_name(layer)} ({type(layer).__name__})", shape or "-", f"{params:,}",
                         ", ".join(inbound) or "-"))
        trainable_weights, _, every = weight_tensors(self)
        trainable, total = sum(w.numel() for w in trainable_weights), sum(w.numel() for w in every)
        headers = ("Layer (type)", "Output shape", "Params", "Connected to")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c.rjust(w) if i == 2 else c.ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
        out = [f'Model: "{self.name}"', rule, line(headers), rule, *(line(r) for r in rows), rule,
               f"Total params: {total:,}", f"Trainable params: {trainable:,}",
               f"Non-trainable params: {total - trainable:,}", rule]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- configuration -----------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The graph as JSON-ready data: the layers' configs and, node by node, each call's arguments with
        ``{"__tensor__": [node, output]}`` in place of the symbolic tensors."""
        names = {id(layer): name for name, layer in self.named_children()}
        position = {id(t): [n, i] for n, node in enumerate(self._nodes) for i, t in enumerate(node.flat_outputs)}

        def encode(value, where):
            if isinstance(value, SymbolicTensor):
                return {_TENSOR: position[id(value)]}
            if isinstance(value, (list, tuple)):
                return [encode(v, where) for v in value]
            if isinstance(value, dict):
                return {str(k): encode(v, where) for k, v in value.items()}
            return config_value(value, where)

        layers = []
        for layer in self._layer_list:
            config = module_config(layer)
            if config is None:
                raise TypeError(f"{self.name}: layer '{names[id(layer)]}' ({type(layer).__name__}) is not a registered "
                                f"class, so the graph cannot be saved; register it with deepzen.register_serializable")
            layers.append({"name": names[id(layer)], "module": config})
        nodes = [{"layer": names[id(node.layer)], "args": encode(list(node.args), names[id(node.layer)]),
                  "kwargs": encode(node.kwargs, names[id(node.layer)]),
                  "tuple_args": [isinstance(a, tuple) for a in node.args]} for node in self._nodes]
        refs = [encode(t, "inputs") for t in self._inputs], [encode(t, "outputs") for t in self._outputs]
        return {"name": self.name, "layers": layers, "nodes": nodes,
                "inputs": self._pack(refs[0], self._input_kind, self._input_keys),
                "outputs": self._pack(refs[1], self._output_kind, self._output_keys)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> "Functional":
        """Rebuilds the graph from :meth:`get_config`'s output (``custom_objects``: ``{"Name": cls}`` for
        unregistered layer classes, as in Keras)."""
        with custom_object_scope(custom_objects):
            return cls._from_config(config)

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> "Functional":
        layers = {}
        for entry in config["layers"]:
            layer = module_from_config(entry["module"])
            if isinstance(layer, (Layer, Model)):
                layer.name = entry["name"]
            layers[entry["name"]] = layer
        produced: list[list] = []

        def decode(value):
            if isinstance(value, dict) and set(value) == {_TENSOR}:
                node, index = value[_TENSOR]
                return produced[node][index]
            if isinstance(value, list):
                return [decode(v) for v in value]
            if isinstance(value, dict):
                return {k: decode(v) for k, v in value.items()}
            return value_from_config(value)

        for entry in config["nodes"]:
            layer = layers.get(entry["layer"])
            if layer is None:
                raise ModelFileError(f"A graph node calls the layer {entry['layer']!r}, which the config does not list")
            if isinstance(layer, InputLayer) and not entry["args"] and not entry["kwargs"]:
                produced.append([layer.output])
                continue
            tuples = entry.get("tuple_args") or [False] * len(entry["args"])
            args = [tuple(a) if is_tuple else a for a, is_tuple in zip(decode(entry["args"]), tuples)]
            output = layer(*args, **decode(entry["kwargs"]))
            produced.append([t for t in leaves(output) if isinstance(t, SymbolicTensor)])
        try:
            return cls(decode(config["inputs"]), decode(config["outputs"]), name=config.get("name"))
        except TypeError as error:
            user_class = cls.__dict__.get("graph_of")
            if user_class is None:
                raise
            raise TypeError(f"{user_class.__name__} is rebuilt from its file as {user_class.__name__}(inputs, outputs, "
                            f"name=...), which its __init__ does not take ({error}). Give {user_class.__name__} a "
                            f"from_config(cls, config) classmethod, as in Keras") from error


Model.graph_class = Functional  # Model(inputs, outputs) returns a Functional
