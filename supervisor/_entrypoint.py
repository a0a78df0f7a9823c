"""
A start function named by module and attribute, resolved where it runs: a value, not an import.

The package's own processes (the root, a nested supervisor, the registry server, the SessionManager,
a session's supervisor) are started from code that must not import the engine that runs them: the
client handles and ``Application`` live in every process that unpickles one, and a value module
cannot depend on the machinery. So their specs name their start function instead of holding it, as
setuptools entry points do, and the engine resolves the name (in the supervisor, before it forks,
so the child inherits the imported module).

An :class:`EntryPoint` used as a ``ChildSpec.start`` is called with the child's tree context first:
``function(context, *args, **kwargs)``, where a plain start function gets only its arguments. This
module imports nothing of the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["EntryPoint"]


@attrs.frozen
class EntryPoint:
    """The function *name* of the module *module*; calling the value resolves it and calls it."""

    module: str
    name: str

    def resolve(self) -> Callable[..., Any]:
        """Import the module (a dictionary lookup once imported) and return the function."""
        function: Callable[..., Any] = getattr(importlib.import_module(self.module), self.name)
        return function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)
