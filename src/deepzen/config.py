"""Global settings, as in ``keras.config``: the image data format and the dtype policy.

deepzen reads images channels first, ``(N, C, H, W)``, PyTorch's layout, unless told otherwise. Keras
reads them channels last, ``(N, H, W, C)``. Code ported from Keras either passes
``data_format="channels_last"`` to its image layers or sets the global once, before building models:

Example:
    >>> import deepzen.config
    >>> deepzen.config.image_data_format()
    'channels_first'
    >>> deepzen.config.set_image_data_format("channels_last")
    >>> deepzen.config.image_data_format()
    'channels_last'
    >>> deepzen.config.set_image_data_format("channels_first")  # deepzen's default again

A layer reads the global when it is constructed and saves the resolved value in its config, so a
saved model loads with the layout it was trained with, whatever the global says then.

The dtype policy (Keras's ``keras.config.set_dtype_policy``) is the precision ``compile`` uses when
given none: ``"mixed_bfloat16"`` trains under bfloat16 autocast (weights stay float32), also on the
CPU; ``"mixed_float16"`` under float16 autocast with loss scaling (CUDA). It is read at ``compile``.
"""

from __future__ import annotations

DATA_FORMATS = ("channels_first", "channels_last")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

_image_data_format = "channels_first"
_dtype_policy = "float32"


def normalize_data_format(value: str | None, where: str = "data_format") -> str:
    """``None`` -> the global setting; otherwise checks (any case) and returns the lowercase name."""
    if value is None:
        return _image_data_format
    if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
        raise ValueError(f"{where} expects data_format to be one of {DATA_FORMATS}. Received: data_format={value!r}")
    return value.lower()


def image_data_format() -> str:
    """The layout image layers use when no ``data_format`` is given: ``"channels_first"`` by default."""
    return _image_data_format


def set_image_data_format(data_format: str) -> None:
    """Sets the default layout of image layers constructed from now on (Keras's global).

    Args:
        data_format: ``"channels_first"`` (``(N, C, H, W)``, deepzen's default) or ``"channels_last"``
            (``(N, H, W, C)``, Keras's default).
    """
    global _image_data_format
    _image_data_format = normalize_data_format(data_format, "set_image_data_format")


def dtype_policy() -> str:
    """The precision ``compile`` uses when given none: ``"float32"`` by default (Keras's ``dtype_policy()``)."""
    return _dtype_policy


def set_dtype_policy(policy: str) -> None:
    """Sets the precision of the models compiled from now on (Keras's ``keras.config.set_dtype_policy``).

    Args:
        policy: ``"float32"``, ``"mixed_bfloat16"`` (bfloat16 autocast; see BENCHMARKS.md for what it does
            on a CPU) or ``"mixed_float16"`` (float16 autocast with loss scaling, for CUDA).
    """
    global _dtype_policy
    if policy not in DTYPE_POLICIES:
        raise ValueError(f"set_dtype_policy expects one of {DTYPE_POLICIES}. Received: policy={policy!r}")
    _dtype_policy = policy
