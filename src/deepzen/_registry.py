"""One small registry type behind every string name in deepzen ("relu", "adam", "resnet20", ...)."""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise an error that lists the valid ones.

    Args:
        kind: what the registry holds, used in error messages ("activation", "loss", ...).

    Example:
        >>> colors = Registry("color")
        >>> _ = colors.register("red", "#f00")
        >>> colors.get("red")
        '#f00'
        >>> colors.get("blue")
        Traceback (most recent call last):
        ...
        ValueError: Unknown color 'blue'. Expected one of: red
    """

    def __init__(self, kind: str, *, overwrite: bool = False):
        self.kind = kind
        self.overwrite = overwrite  # True where a user's class may replace one of the same name
        self._items: dict[str, T] = {}
        self._display: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *aliases: str) -> Any:
        """Registers ``obj`` under ``name`` (and aliases); usable as a decorator when obj is None.

        Names are matched case-insensitively and with "-" and "_" treated alike.
        """

        def add(item: T) -> T:
            for alias in (name, *aliases):
                key = self._normalize(alias)
                if key in self._items and self._items[key] is not item and not self.overwrite:
                    raise ValueError(f"{self.kind} name {alias!r} is already registered")
                self._items[key] = item
                self._display[key] = alias
            return item

        if obj is None:
            return add
        return add(obj)

    @staticmethod
    def _normalize(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    def get(self, name: str) -> T:
        key = self._normalize(name)
        if key not in self._items:
            raise ValueError(f"Unknown {self.kind} {name!r}. Expected one of: {', '.join(self.names())}")
        return self._items[key]

    def __contains__(self, name: str) -> bool:
        return self._normalize(name) in self._items

    def names(self) -> list[str]:
        return sorted(self._display.values())

    def items(self) -> list[tuple[str, T]]:
        return [(self._display[key], self._items[key]) for key in sorted(self._items, key=self._display.get)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def resolve(registry: Registry, identifier: Any, *, factory: Callable[[Any], Any] | None = None, **kwargs) -> Any:
    """Turns a name into an object: strings go through the registry, objects pass through.

    If the registered entry is a class (or ``factory`` is given) it is instantiated with ``kwargs``.
    """
    if not isinstance(identifier, str):
        return identifier
    entry = registry.get(identifier)
    if factory is not None:
        return factory(entry, **kwargs)
    if isinstance(entry, type):
        return entry(**kwargs)
    return entry
