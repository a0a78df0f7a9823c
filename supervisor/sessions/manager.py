"""
The SessionManager process: a dynamic supervisor of sessions, and the registry's only writer.

It runs the engine in concurrent mode (one lane per session, so a slow start delays no other request)
with the :class:`~supervisor.sessions.publisher.RegistryPublisher` as its hooks. When it starts, it
clears the registry: the sessions of a previous incarnation died with it.
"""

from __future__ import annotations

from .._addresses import TreeContext
from .._engine.entry import run_supervisor
from .._engine.loop import SupervisorProcess
from ..specs import SupervisorSpec
from .publisher import RegistryPublisher
from .registry_writer import RegistryWriter

__all__ = ["run_session_manager"]


def run_session_manager(tree: TreeContext, spec: SupervisorSpec) -> None:
    """The start of the SessionManager child at *tree* (under an Application's supervisor); never returns."""
    registry = RegistryWriter(tree.parent().registry.address, tree.authkey)
    publisher = RegistryPublisher(registry)
    publisher.publish_all()
    supervisor = SupervisorProcess(spec, tree, concurrent=True, hooks=publisher)
    run_supervisor(supervisor, lambda: {"address": tree.address})
