"""
The SessionManager process: a dynamic supervisor of sessions, and the registry's only writer.

It is a DynamicSupervisor (the public one's machinery: one lane per session, so a slow start delays
no other request; sessions stopped all at once) that keeps its children's ids, the session ids, and
addresses them by id; the :class:`~supervisor.sessions.publisher.RegistryPublisher` is its hooks.
When it starts, it clears the registry: the sessions of a previous incarnation died with it.
"""

from __future__ import annotations

import os

from .. import _titles
from .._addresses import TreeContext
from .._engine.entry import run_supervisor
from .._engine.loop import SupervisorProcess
from ..specs import DynamicSupervisorSpec
from .lease_guard import LeaseClock, lease_file
from .publisher import RegistryPublisher
from .registry_writer import RegistryWriter

__all__ = ["run_session_manager"]


def run_session_manager(tree: TreeContext, spec: DynamicSupervisorSpec, guarded: bool = False) -> None:
    """
    The start of the SessionManager child at *tree* (under an Application's supervisor); never returns.

    *guarded* (a node of a cluster): it kills itself, and so its sessions, when the node's lease is
    not renewed in time (``lease_guard.py``). Its process title says ``manager`` and its path.
    """
    _titles.set_title("manager", tree.shown_path)
    registry = RegistryWriter(tree.parent().registry.address, tree.authkey)
    app = tree.parent()
    lease = LeaseClock(lease_file(os.path.dirname(tree.address), app.path)) if guarded else None
    publisher = RegistryPublisher(registry, lease)
    publisher.publish_all()
    supervisor = SupervisorProcess(spec, tree, keep_ids=True, hooks=publisher)
    run_supervisor(supervisor, lambda: {"address": tree.address})
