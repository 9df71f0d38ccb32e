"""Keras 1 and 2 spellings of layer arguments: the one conversion table, applied to every layer.

Textbook code says ``Dense(output_dim=8)``, ``Convolution2D(32, 3, 3, border_mode="same")`` or
``Embedding(1000, 64, input_length=10)``. Every deepzen layer accepts those spellings: the layer base
class passes its constructor's keyword arguments through :func:`modernize_arguments`, which renames
them to Keras 3's names with a ``DeprecationWarning`` naming the new spelling. A name is converted
only where it is not an argument of the layer itself (a custom layer's own ``bias=`` stays its own).

Example:
    >>> import warnings
    >>> from deepzen.layers.core import Dense
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     layer = Dense(output_dim=8, init="he_normal")
    >>> layer.units, layer.kernel_initializer
    (8, 'he_normal')
    >>> for warning in caught:
    ...     print(warning.message)
    Dense(init=...) is Keras 1's spelling; use kernel_initializer=... instead
    Dense(output_dim=...) is Keras 1's spelling; use units=... instead
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

# Keras 2.0's conversion table (keras/legacy/interfaces.py), keyed by the deepzen class (or base class)
# it applies to; a subclass's entry overrides its bases'.
RENAMED: dict[str, dict[str, str]] = {
    "Layer": {"init": "kernel_initializer", "W_regularizer": "kernel_regularizer",
              "b_regularizer": "bias_regularizer", "W_constraint": "kernel_constraint",
              "b_constraint": "bias_constraint", "bias": "use_bias", "border_mode": "padding",
              "subsample": "strides", "dim_ordering": "data_format"},
    "Dense": {"output_dim": "units"},
    "BaseConv": {"nb_filter": "filters", "filter_length": "kernel_size", "subsample_length": "strides",
                 "atrous_rate": "dilation_rate"},
    "BaseDepthwiseConv": {"depthwise_init": "depthwise_initializer"},
    "BaseSeparableConv": {"depthwise_init": "depthwise_initializer", "pointwise_init": "pointwise_initializer"},
    "BasePooling": {"pool_length": "pool_size", "stride": "strides"},
    "BaseUpSampling": {"length": "size"},
    "Recurrent": {"output_dim": "units", "inner_init": "recurrent_initializer",
                  "U_regularizer": "recurrent_regularizer", "forget_bias_init": "unit_forget_bias"},
    "RecurrentCell": {"output_dim": "units", "inner_init": "recurrent_initializer", "dropout_W": "dropout",
                      "dropout_U": "recurrent_dropout", "inner_activation": "recurrent_activation",
                      "forget_bias_init": "unit_forget_bias"},
    "Embedding": {"init": "embeddings_initializer", "W_regularizer": "embeddings_regularizer"},
    "BatchNormalization": {"beta_init": "beta_initializer", "gamma_init": "gamma_initializer"},
    "Dropout": {"p": "rate"},
    "GaussianDropout": {"p": "rate"},
    "GaussianNoise": {"sigma": "stddev"},
    "LeakyReLU": {"alpha": "negative_slope"},
    "PReLU": {"init": "alpha_initializer"},
}

# Arguments Keras 3 accepts and ignores (with a warning), and why.
IGNORED: dict[str, dict[str, str]] = {
    "Embedding": {"input_length": "Keras 3 ignores it: the sequence length comes from the inputs"},
    "BatchNormalization": {"mode": "Keras 2 removed it: use the layer as is"},
    "Recurrent": {"consume_less": "Keras 2 removed it: the fused kernel chooses"},
}

# Keras 1's values of a renamed argument.
VALUES: dict[str, dict[Any, Any]] = {
    "data_format": {"th": "channels_first", "tf": "channels_last", "default": None},
    "unit_forget_bias": {"one": True, "zero": False},
}

# Convolution kernel sizes given one axis per argument (Keras 1's Convolution2D/3D).
KERNEL_AXES = {2: ("nb_row", "nb_col"), 3: ("kernel_dim1", "kernel_dim2", "kernel_dim3")}


def _warn(layer: str, old: str, new: str) -> None:
    warnings.warn(f"{layer}({old}=...) is Keras 1's spelling; use {new} instead", DeprecationWarning, stacklevel=4)


def valid_arguments(cls: type) -> list[str]:
    """The keyword arguments ``cls``'s constructor chain accepts (its own and its base classes')."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in parameters if p.name != "self" and p.name not in names
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if klass.__name__ == "Layer":
            break
    return names


def _table(cls: type, table: dict[str, dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        merged.update(table.get(klass.__name__, {}))
    return merged


def modernize_arguments(cls: type, kwargs: dict[str, Any], positional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``kwargs`` with Keras 1/2 names converted to Keras 3's, one DeprecationWarning per converted name.

    ``positional`` names the arguments already given by position (a new name must not repeat them).

    Raises:
        TypeError: an old and a new spelling of the same argument are both given.
    """
    valid = None
    renamed = _table(cls, RENAMED)
    ignored = _table(cls, IGNORED)
    rank = getattr(cls, "rank", 0)
    axes = KERNEL_AXES.get(rank, ()) if any(k.__name__ == "BaseConv" for k in cls.__mro__) else ()
    if not any(key in renamed or key in ignored or key in axes for key in kwargs):
        return kwargs  # the common case: nothing to convert
    valid = valid_arguments(cls)
    kwargs, layer = dict(kwargs), cls.__name__
    if axes and any(a in kwargs and a not in valid for a in axes):
        if "kernel_size" in kwargs or not all(a in kwargs for a in axes):
            raise TypeError(f"{layer}: give kernel_size=, or all of {', '.join(axes)} (Keras 1). Received: "
                            f"{sorted(k for k in kwargs if k in axes or k == 'kernel_size')}")
        kwargs["kernel_size"] = tuple(kwargs.pop(a) for a in axes)
        _warn(layer, "/".join(axes), "kernel_size=(...)")
    for old, new in renamed.items():
        if old in kwargs and old not in valid:
            if new in kwargs or new in positional:
                raise TypeError(f"{layer} received both {old}= (Keras 1's spelling) and {new}=; give only {new}=")
            value = kwargs.pop(old)
            kwargs[new] = VALUES.get(new, {}).get(value, value) if isinstance(value, str) else value
            _warn(layer, old, f"{new}=...")
    for old, why in ignored.items():
        if old in kwargs and old not in valid:
            kwargs.pop(old)
            warnings.warn(f"{layer}({old}=...) is deprecated and ignored ({why}); remove it", DeprecationWarning,
                          stacklevel=3)
    return kwargs


def unknown_argument_error(cls: type, unknown: dict[str, Any]) -> TypeError:
    """The error for constructor arguments no layer in ``cls``'s chain takes, listing the valid ones."""
    names = ", ".join(sorted(unknown))
    return TypeError(f"{cls.__name__} got unexpected argument(s): {names}. "
                     f"Valid arguments: {', '.join(valid_arguments(cls))}")
