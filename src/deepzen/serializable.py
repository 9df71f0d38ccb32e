"""What a file may name: the registry of classes that configs rebuild, and config <-> value conversion.

Loading a file never imports or executes anything it names. A config says ``{"class": "L2", "module":
"deepzen.regularizers", "config": {...}}``, and only a class registered here is built from it:

- every deepzen layer, architecture, loss, metric, optimizer, initializer and regularizer (their
  base classes register their subclasses);
- a user's class registered with :func:`register_serializable` (or defined as a subclass of one of
  deepzen's bases), or given to ``load_model(..., custom_objects={"Name": cls})``.

The ``module`` string only tells apart registered classes that share a name (``losses.MeanSquaredError``
and ``metrics.MeanSquaredError``); it is compared, never imported. This is Keras's safe mode.

Example:
    >>> @register_serializable
    ... class Doubler:
    ...     def __init__(self, factor=2):
    ...         self.factor = factor
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    ...     @classmethod
    ...     def from_config(cls, config):
    ...         return cls(**config)
    >>> saved = config_value(Doubler(3), "example")
    >>> value_from_config(saved).factor
    3
    >>> value_from_config({"class": "os.system", "module": "os", "config": {}})
    Traceback (most recent call last):
    ...
    deepzen.serializable.ModelFileError: A config names the class 'os.system' (module 'os'), which is not registered. Register it with deepzen.register_serializable, or pass it to load_model as custom_objects={'os.system': cls}
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

# A config nests this deep at most: Model -> Sequential -> layer -> regularizer -> ... stays far below it,
# and it keeps every recursive walk over a hostile file well inside Python's recursion limit.
MAX_CONFIG_DEPTH = 64


class ModelFileError(ValueError):
    """A model or checkpoint file that is missing, damaged, altered, hostile, or does not fit the model."""


_CLASSES: dict[str, list[type]] = {}
_custom_objects: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("custom_objects", default={})


def register_serializable(cls: type | None = None, *, name: str | None = None) -> Any:
    """Lets configs name ``cls`` (by ``name``, default its class name), so files can rebuild it.

    Usable as ``@register_serializable`` or ``@register_serializable(name="MyBlock")``. The class needs
    ``get_config()`` and a ``from_config(config)`` classmethod (deepzen layers have both).
    """

    def add(item: type) -> type:
        key = name or item.__name__
        classes = _CLASSES.setdefault(key, [])
        # A class defined again (a re-run notebook cell) replaces the earlier one of the same module.
        classes[:] = [c for c in classes if (c.__module__, c.__qualname__) != (item.__module__, item.__qualname__)]
        classes.append(item)
        return item

    return add if cls is None else add(cls)


def is_registered(cls: type) -> bool:
    """Whether configs can name ``cls`` (it is registered under its class name)."""
    return cls in _CLASSES.get(cls.__name__, [])


class Serializable:
    """Base of classes that configs rebuild: each subclass registers itself by its class name."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_serializable(cls)


@contextlib.contextmanager
def custom_object_scope(objects: dict[str, Any] | None) -> Iterator[None]:
    """Inside the block, configs may also name the classes in ``objects`` (``{"Name": cls}``); they win
    over registered classes of the same name."""
    token = _custom_objects.set({**_custom_objects.get(), **(objects or {})})
    try:
        yield
    finally:
        _custom_objects.reset(token)


# deepzen's own modules whose classes register themselves on import. A fixed list, imported the first time
# a config names a class not yet registered - never a module named by a file.
BUILTIN_MODULES = ("deepzen.layers", "deepzen.losses", "deepzen.metrics", "deepzen.optimizers",
                   "deepzen.initializers", "deepzen.regularizers", "deepzen.data.text", "deepzen.training.model",
                   "deepzen.training.functional", "deepzen.vision.models", "deepzen.text.language_model",
                   "deepzen.text.classification", "deepzen.text.tagging", "deepzen.text.translation",
                   "deepzen.generative.trainer", "deepzen.vision.detection.train")
_builtins_imported = False


def _import_builtin_classes() -> None:
    global _builtins_imported
    if not _builtins_imported:
        import importlib

        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_imported = True


def serializable_class(name: Any, module: Any = None) -> type:
    """The class a config names; raises :class:`ModelFileError` for any class not registered."""
    if not isinstance(name, str) or (module is not None and not isinstance(module, str)):
        raise ModelFileError(f"A config names a class by {name!r} (module {module!r}); expected strings")
    custom = _custom_objects.get()
    if name in custom:
        return custom[name]
    if name not in _CLASSES:
        _import_builtin_classes()
    candidates = _CLASSES.get(name, [])
    if len(candidates) > 1 and module is not None:
        candidates = [c for c in candidates if c.__module__ == module] or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        where = f" (module {module!r})" if module else ""
        raise ModelFileError(f"A config names the class {name!r}{where}, which is not registered. Register it with "
                             f"deepzen.register_serializable, or pass it to load_model as "
                             f"custom_objects={{{name!r}: cls}}")
    raise ModelFileError(f"A config names the class {name!r}, and several registered classes have that name "
                         f"({', '.join(c.__module__ + '.' + c.__qualname__ for c in candidates)}); pass the one "
                         f"meant as custom_objects={{{name!r}: cls}}")


def config_value(value: Any, where: str) -> Any:
    """A constructor argument as JSON-ready data; objects with ``get_config`` keep their class and module."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [config_value(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): config_value(v, where) for k, v in value.items()}
    if hasattr(value, "get_config"):
        return {"class": type(value).__name__, "module": type(value).__module__,
                "config": config_value(value.get_config(), where)}  # e.g. an optimizer's schedule
    raise TypeError(f"{where}={value!r} cannot be saved in a model config: pass it by its string name, "
                    f"or give its class get_config()/from_config()")


def value_from_config(value: Any) -> Any:
    """The inverse of :func:`config_value`: only registered classes (or custom objects) are rebuilt."""
    if isinstance(value, dict) and set(value) == {"class", "module", "config"}:
        cls = serializable_class(value["class"], value["module"])
        if not hasattr(cls, "from_config"):
            raise ModelFileError(f"A config names {value['class']!r}, which has no from_config to rebuild it with")
        return cls.from_config(value["config"])
    if isinstance(value, dict):
        return {k: value_from_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [value_from_config(v) for v in value]
    return value


def check_depth(tree: Any, what: str, limit: int = MAX_CONFIG_DEPTH) -> None:
    """Refuses JSON data nested deeper than ``limit`` (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise ModelFileError(f"{what} is nested more than {limit} levels deep; a deepzen config never is")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
