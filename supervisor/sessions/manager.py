"""
The SessionManager process: a dynamic supervisor of sessions, and the registry's only writer.

It is a DynamicSupervisor (the public one's machinery: one lane per session, so a slow start delays
no other request; sessions stopped all at once) that keeps its children's ids, the session ids, and
addresses them by id; the :class:`~supervisor.sessions.publisher.RegistryPublisher` is its hooks.
When it starts, it clears the registry: the sessions of a previous incarnation died with it.
"""

from __future__ import annotations

from .. import _titles
from .._addresses import TreeContext
from .._engine.entry import run_supervisor
from .._engine.loop import SupervisorProcess
from ..specs import DynamicSupervisorSpec
from .publisher import RegistryPublisher
from .registry_writer import RegistryWriter

__all__ = ["run_session_manager"]


def run_session_manager(tree: TreeContext, spec: DynamicSupervisorSpec) -> None:
    """
    The start of the SessionManager child at *tree* (under an Application's supervisor); never returns.

    Its process title says ``manager`` and its path.
    """
    _titles.set_title("manager", tree.shown_path)
    registry = RegistryWriter(tree.parent().registry.address, tree.authkey)
    publisher = RegistryPublisher(registry)
    publisher.publish_all()
    supervisor = SupervisorProcess(spec, tree, keep_ids=True, hooks=publisher)
    run_supervisor(supervisor, lambda: {"address": tree.address})
