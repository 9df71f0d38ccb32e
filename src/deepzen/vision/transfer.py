"""Transfer learning: freeze and unfreeze layers, replace the head, re-initialize layers, extract
features, fine-tune with a slower backbone.

Works on any ``nn.Module``; the zoo models (:class:`deepzen.vision.models.ImageClassifier`) add a
known head (``classifier``) and ``forward_features`` / ``forward_head``. The two classic recipes::

    net = models.create("lenet5")            # trained on the source task
    replace_head(net, 5)                      # a new, randomly initialized 5-way classifier

    # Feature extraction: the backbone is frozen, only the head learns.
    freeze(net)
    unfreeze(net, "classifier")                # or freeze(net, up_to="pre_logits")
    model = Model(net); model.compile(optimizer="adam", loss=...); model.fit(x, y)
    # ... or the frozen trunk's features, computed once, into a new small classifier:
    classifier = feature_classifier(400, 5, hidden=(128,))
    classifier.compile(optimizer="adam", loss=...); classifier.fit(extract_features(net, x), y)

    # Fine-tuning: everything learns, the backbone ten times more slowly than the head (here the
    # source's fully connected layers are drawn afresh and count as head).
    unfreeze(net)
    reinitialize(net, "pre_logits")
    optimizer = fine_tuning_optimizer(net, "adam", learning_rate=1e-3, backbone_factor=0.1,
                                      head=("pre_logits", "classifier"))
    model.compile(optimizer=optimizer, loss=...)

Layers are named as in ``module.named_modules()`` ("features.0", "features.layer3", "classifier").
``compile`` builds the optimizer over the parameters that are trainable when it runs: after
freezing or unfreezing, compile again.

A frozen batch-norm layer also stops updating its running statistics and normalizes with them
(Keras's ``trainable=False``): it is kept in eval mode while frozen, even when the model trains.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

def _stay_in_eval_mode(module: nn.Module, inputs: Any) -> None:
    module.training = False  # a frozen BN layer normalizes with its running statistics and keeps them


def _keep_in_eval_mode(batch_norm: nn.Module, keep: bool) -> None:
    """Adds or removes the forward pre-hook that holds a batch-norm layer in eval mode.

    The hook is found in the layer's own hook table (not in a side registry), so a copy of a frozen
    network (``copy.deepcopy``) can be unfrozen too.
    """
    hooks = batch_norm._forward_pre_hooks
    for key in [key for key, hook in hooks.items() if hook is _stay_in_eval_mode]:
        del hooks[key]
    if keep:
        batch_norm.register_forward_pre_hook(_stay_in_eval_mode)


def _scope(module: nn.Module, layers: str | Sequence[str] | None, up_to: str | None,
           where: str) -> list[tuple[str, nn.Module]]:
    """The ``(name, submodule)`` pairs selected by ``layers`` (names and everything under them) or
    ``up_to`` (every module registered before that one, and that one with everything under it);
    all modules when both are ``None``."""
    if layers is not None and up_to is not None:
        raise ValueError(f"{where} expects layers= or up_to=, not both. Received: layers={layers!r}, up_to={up_to!r}")
    named = list(module.named_modules())
    names = {name for name, _ in named}
    if isinstance(layers, str):
        layers = [layers]
    wanted = list(layers) if layers is not None else [up_to] if up_to is not None else None
    unknown = [name for name in wanted or [] if name not in names]
    if unknown:
        top = ", ".join(name for name, _ in named if name and name.count(".") <= 1)
        raise ValueError(f"{where} expects layer names from module.named_modules() (e.g. {top}). "
                         f"Received: {', '.join(map(repr, unknown))}")
    if wanted is None:
        return named
    inside = lambda name, root: root == "" or name == root or name.startswith(root + ".")  # noqa: E731
    if layers is not None:
        return [(name, m) for name, m in named if any(inside(name, root) for root in wanted)]
    last = max(index for index, (name, _) in enumerate(named) if inside(name, up_to))
    return named[:last + 1]  # pre-order: what comes before up_to, up_to, and everything under it


def _set_trainable(module: nn.Module, trainable: bool, layers, up_to, where: str) -> list[str]:
    changed = []
    for name, submodule in _scope(module, layers, up_to, where):
        for parameter_name, parameter in submodule.named_parameters(recurse=False):
            if parameter.requires_grad != trainable:
                parameter.requires_grad_(trainable)
                changed.append(f"{name}.{parameter_name}" if name else parameter_name)
        if isinstance(submodule, nn.modules.batchnorm._BatchNorm):
            _keep_in_eval_mode(submodule, keep=not trainable)
    return changed


def freeze(module: nn.Module, layers: str | Sequence[str] | None = None, *, up_to: str | None = None) -> list[str]:
    """Stops parameters from training (``requires_grad = False``).

    Args:
        module: the network.
        layers: names from ``module.named_modules()``; each is frozen with everything inside it.
            ``None`` (and no ``up_to``) freezes the whole module.
        up_to: freeze every layer defined before this one, and this one (Keras's "freeze the first
            layers"), e.g. ``up_to="features"`` freezes a zoo model's convolutional trunk.

    Returns:
        The names of the parameters this call froze.

    Raises:
        ValueError: for a name that is not a module of ``module`` (the message lists the top ones).
    """
    return _set_trainable(module, False, layers, up_to, "freeze")


def unfreeze(module: nn.Module, layers: str | Sequence[str] | None = None, *, up_to: str | None = None) -> list[str]:
    """Lets parameters train again; arguments as for :func:`freeze`. Returns the names it unfroze."""
    return _set_trainable(module, True, layers, up_to, "unfreeze")


def frozen_parameters(module: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad = False``."""
    return [name for name, parameter in module.named_parameters() if not parameter.requires_grad]


def replace_head(module: nn.Module, num_classes: int) -> nn.Module:
    """Puts a new, randomly initialized ``num_classes``-way classifier on top of a network.

    Zoo models use ``reset_classifier``; for any other module the last ``nn.Linear`` is replaced by
    one with the same input width (on the same device and dtype). The new layer is trainable.

    Returns:
        The new head module.
    """
    if hasattr(module, "reset_classifier"):
        module.reset_classifier(num_classes)
        return module.classifier
    linears = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"replace_head expects a zoo model (with reset_classifier) or a module containing an "
                         f"nn.Linear head. Received: {type(module).__name__} with neither")
    name, old = linears[-1]
    parent_name, _, attribute = name.rpartition(".")
    parent = module.get_submodule(parent_name)
    head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight)
    setattr(parent, attribute, head)
    return head


def head_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The head's parameters: a zoo model's ``head_parameters()``, else those of the last ``nn.Linear``."""
    if hasattr(module, "head_parameters"):
        return list(module.head_parameters())
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head_parameters expects a zoo model or a module with an nn.Linear head. "
                         f"Received: {type(module).__name__}")
    return list(linears[-1].parameters())


FEATURE_LAYERS = ("features", "pre_logits")


@torch.no_grad()
def extract_features(module: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 256, *,
                     layer: str = "features") -> np.ndarray:
    """What a trained network computes from new data, flattened: frozen features for a new classifier.

    For zoo models, ``layer="features"`` is the convolutional trunk's map ``forward_features(x)``
    (400 values for LeNet-5, 64 x 7 x 7 for ResNet-20 on MNIST), the more general choice far
    from the source task (Yosinski et al. 2014); ``"pre_logits"`` is the vector the classifier reads
    (84 for LeNet-5, 64 for ResNet-20), more specific to the source classes. Other modules: their
    output. Runs in eval mode without gradients; the module's mode is restored.

    Args:
        module: the (trained) network.
        x: ``(N, C, H, W)`` images prepared as the network expects.
        batch_size: images per forward pass.
        layer: "features" or "pre_logits" (zoo models).

    Returns:
        float32 ``(N, D)``.
    """
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"extract_features expects layer in {FEATURE_LAYERS}. Received: layer={layer!r}")
    parameter = next(module.parameters())
    was_training = module.training
    module.eval()
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(x[start:start + batch_size]).to(parameter.device, parameter.dtype)
            if not hasattr(module, "forward_features"):
                features = module(batch)
            elif layer == "features":
                features = module.forward_features(batch)  # (B, C', H', W')
            else:
                features = module.forward_head(module.forward_features(batch), pre_logits=True)
            outputs.append(features.flatten(1).float().cpu())  # host copy: collected for a new classifier
    finally:
        module.train(was_training)
    return torch.cat(outputs).numpy()


def reinitialize(module: nn.Module, layers: str | Sequence[str]) -> list[str]:
    """Draws fresh weights for layers whose source-task weights are too specific to keep.

    Every module under the named layers that has ``reset_parameters()`` (``nn.Linear``,
    ``nn.Conv2d``, batch norm, ...) is reset to PyTorch's initialization. Typical: the hidden fully
    connected layers of LeNet/AlexNet/VGG (``"pre_logits"``), which encode the source classes.

    Returns:
        The names of the modules that were reset.
    """
    reset = []
    for name, submodule in _scope(module, layers, None, "reinitialize"):
        if hasattr(submodule, "reset_parameters"):
            submodule.reset_parameters()
            reset.append(name)
    return reset


def fine_tuning_groups(module: nn.Module, learning_rate: float, backbone_factor: float = 0.1,
                       head: str | Sequence[str] | None = None) -> list[dict]:
    """torch param groups: the head at ``learning_rate``, the backbone at ``backbone_factor`` times it.

    Args:
        module: the network.
        learning_rate: the head's learning rate.
        backbone_factor: the backbone's rate relative to the head's (>= 0).
        head: layer names whose parameters form the head (e.g. ``("pre_logits", "classifier")``
            after :func:`reinitialize`); default the classifier (:func:`head_parameters`).

    Returns:
        ``[{"params": backbone, "lr": ...}, {"params": head, "lr": learning_rate}]`` with only
        trainable parameters (frozen ones stay out of the optimizer); empty groups are left out.
    """
    if backbone_factor < 0:
        raise ValueError(f"fine_tuning_groups expects backbone_factor >= 0. "
                         f"Received: backbone_factor={backbone_factor}")
    if head is None:
        head_ids = {id(p) for p in head_parameters(module)}
    else:
        head_ids = {id(p) for _, m in _scope(module, head, None, "fine_tuning_groups") for p in m.parameters()}
    trainable = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in head_ids], "lr": learning_rate * backbone_factor},
              {"params": [p for p in trainable if id(p) in head_ids], "lr": learning_rate}]
    return [group for group in groups if group["params"]]


def fine_tuning_optimizer(module: nn.Module, optimizer: Any = "adam", learning_rate: float = 1e-3,
                          backbone_factor: float = 0.1, head: str | Sequence[str] | None = None,
                          **kwargs: Any) -> torch.optim.Optimizer:
    """A torch optimizer over :func:`fine_tuning_groups`, for ``model.compile(optimizer=...)``.

    Args:
        module: the network (its parameters must already be on the training device).
        optimizer: a ``deepzen.optimizers`` name or spec class, e.g. "adam" or "sgd".
        learning_rate: the head's learning rate.
        backbone_factor: the backbone learns at ``backbone_factor * learning_rate``.
        head: the head's layer names, as for :func:`fine_tuning_groups`.
        **kwargs: other Keras-named arguments of the optimizer (``momentum=0.9``, ``weight_decay=``...).

    Note:
        ``LearningRateScheduler`` and ``ReduceLROnPlateau`` set one learning rate for every param
        group, which undoes the ratio; use a constant rate (or a torch scheduler) when fine-tuning.
    """
    from deepzen import optimizers

    spec = optimizers.get(optimizer, learning_rate=learning_rate, **kwargs)
    return spec.build(fine_tuning_groups(module, learning_rate, backbone_factor, head))


def feature_classifier(num_features: int, num_classes: int, hidden: Iterable[int] = (), dropout: float = 0.0):
    """A small classifier for extracted features: ``Dense(h, relu)`` (+ dropout) per hidden width, then
    ``Dense(num_classes)`` logits, as a :class:`deepzen.models.Sequential` taking ``(N, num_features)``."""
    from deepzen.layers import Dense, Dropout, Input
    from deepzen.models import Sequential

    layers: list[nn.Module] = [Input((num_features,))]
    for units in hidden:
        layers.append(Dense(units, activation="relu"))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(num_classes))
    return Sequential(layers, name="feature_classifier")
