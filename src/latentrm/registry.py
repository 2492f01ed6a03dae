"""One small name -> factory registry, used by heads, judges, probes, shapers and generation backends.

    HEADS = Registry("head", hint="--head")
    @HEADS.register("linear")
    class LinearHead: ...
    HEADS.lazy("ensemble", "latentrm.rm.ensemble:EnsembleHead")   # imported on first use
    HEADS.get("linear")        # the factory; an unknown name is a one-line LatentrmError listing the names

`lazy` entries are what keep the import graph free of circles: the module that defines the registry
never imports the modules that fill it, yet every name is known (for `--help` and validation) before
any of them loads. Written by hand because the standard library has no registry and the plugin systems
(entry points, pluggy) are far heavier than a dict.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from latentrm.errors import LatentrmError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories (classes or functions), some resolved on first use.

    Names keep the order in which they were first registered (lazy or not): the audit runs its probes in it.
    """

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind  # "head", "judge", ... for error messages
        self.hint = hint  # the CLI option that takes these names, e.g. "--head"
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._order: dict[str, None] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("name")` on a class or factory function."""

        def decorate(factory: T) -> T:
            self.add(name, factory)
            return factory

        return decorate

    def add(self, name: str, factory: T) -> None:
        self._lazy.pop(name, None)
        self._items[name] = factory
        self._order.setdefault(name, None)

    def lazy(self, name: str, target: str) -> None:
        """Register `name` as `"package.module:attribute"`, imported when first asked for."""
        if name not in self._items:
            self._lazy[name] = target
            self._order.setdefault(name, None)

    def names(self) -> list[str]:
        return list(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            module, _, attribute = self._lazy[name].partition(":")
            imported = importlib.import_module(module)  # may register `name` itself, by decorator
            if name not in self._items:
                self._items[name] = getattr(imported, attribute)
            self._lazy.pop(name, None)
        if name not in self._items:
            where = f" for {self.hint}" if self.hint else ""
            raise LatentrmError(f"unknown {self.kind} '{name}'{where}; choose from {', '.join(self.names())}")
        return self._items[name]
