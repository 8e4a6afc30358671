"""Plug-ins by name: one lazy registry convention for tasks, models, evaluators, augmentation and
mixing ops, OOD detectors, derived datasets and attacks.

A `Registry(kind, modules=..., package=...)` maps names to objects. A module registers its
pieces when it is imported:

    TASKS = plugins.Registry('task', package='jaxcv.tasks', modules={'afd': 'jaxcv.tasks.afd'})

    @TASKS.register('afd')
    class AFDTask(...): ...

`TASKS['afd']` imports the module that provides an unknown name first:
the one the lazy index `modules` names, else `<package>.<name>` by convention (as big_vision
imports `big_vision.evaluators.<name>` on demand), so a paper's package is imported only when a
config uses one of its names, and importing the training loop stays light. A name that is still
unknown raises UnknownNameError (a ConfigError, and a KeyError for Mapping code) listing the
known names: the registered ones and the index (`TASKS.get(name, default)` returns the default
instead). `name in registry` looks at those without importing anything.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

from jaxcv.errors import ConfigError

T = TypeVar('T')
_IDENTIFIER = re.compile(r'[A-Za-z_]\w*')


class UnknownNameError(ConfigError, KeyError):
  """A name no registry entry, index entry or conventional module provides."""

  def __str__(self) -> str:  # KeyError would quote the message.
    return str(self.args[0]) if self.args else ''


class Registry(MutableMapping):
  """Name -> object, filled by `register` when the providing module is imported.

  Args:
    kind: what the entries are, for messages ('task', 'augmentation op').
    modules: the lazy index, name -> 'module' that registers the name when imported, or
      'module:attribute' whose attribute is the entry itself.
    package: names missing from the index are looked for in module `<package>.<name>`.
    entries: entries registered at once (a module's built-in ones).
  """

  def __init__(self, kind: str, modules: Optional[Mapping[str, str]] = None,
               package: Optional[str] = None, entries: Optional[Mapping[str, Any]] = None):
    self.kind = kind
    self.modules = dict(modules or {})
    self.package = package
    self._entries: dict[str, Any] = {}
    for name, value in (entries or {}).items():
      self.register(name, value)

  def register(self, name: str, obj: Any = None) -> Callable[[T], T]:
    """Decorator (`@REG.register('name')`), or a direct call with `obj`. Registering another
    object under a taken name is an error (a module imported twice under two names)."""
    def add(value: T) -> T:
      old = self._entries.get(name)
      if old is not None and old is not value and _qualname(old) != _qualname(value):
        raise ValueError(f'{self.kind} {name!r} registered twice: {_qualname(old)} and '
                         f'{_qualname(value)}')
      self._entries[name] = value
      return value
    return add if obj is None else add(obj)

  def _provider(self, name: str) -> Optional[str]:
    if name in self.modules:
      return self.modules[name]
    if self.package and _IDENTIFIER.fullmatch(name):
      return f'{self.package}.{name}'
    return None

  def __getitem__(self, name: str) -> Any:
    if name not in self._entries:
      module = self._provider(name)
      if module is not None:
        module, _, attribute = module.partition(':')
        try:
          imported = importlib.import_module(module)
          if attribute:
            self.register(name, getattr(imported, attribute))
        except ModuleNotFoundError as e:
          # Only a conventional module that does not exist means "unknown name"; a missing
          # import inside an existing module is a real error and propagates.
          if name in self.modules or not module.startswith(e.name or '\0'):
            raise
      if name not in self._entries:
        if name in self.modules:
          raise ConfigError(f'{self.kind} {name!r}: module {module} was imported but registers '
                            f'no {self.kind} of that name')
        raise UnknownNameError(f'unknown {self.kind} {name!r}; known: {", ".join(self.names())}')
    return self._entries[name]

  def __setitem__(self, name: str, value: Any) -> None:
    self._entries[name] = value

  def __delitem__(self, name: str) -> None:
    del self._entries[name]

  def __contains__(self, name: object) -> bool:
    """Known without importing: registered or in the lazy index."""
    return name in self._entries or name in self.modules

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self.names())

  def names(self) -> list[str]:
    """The known names, sorted: registered ones and the lazy index."""
    return sorted(set(self._entries) | set(self.modules))

  def registered(self) -> list[str]:
    """The names registered so far (their modules are imported)."""
    return sorted(self._entries)

  def __repr__(self) -> str:
    return f'Registry({self.kind!r}, {len(self._entries)} registered, {len(self.modules)} indexed)'


def _qualname(obj: Any) -> str:
  return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'
