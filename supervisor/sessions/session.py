"""
A session's process, the SessionSupervisor: the session's isolation, then an ordinary supervisor.

It takes its own key, HMAC-SHA256(tree key, its id path), and zeroes the tree key it inherited from
the SessionManager: its control socket accepts only the session's key, and none of its processes
holds the tree's (but a worker given a handle that carries it). It applies the session's working
directory, environment and resource limits (its own process group comes with every child), then
supervises the session's children, ready once they all are, with their
ids and pids as its ready report (the SessionManager publishes them).
"""

from __future__ import annotations

import os
import resource

from .. import _titles
from .._addresses import TreeContext
from .._engine.entry import run_supervisor
from .._engine.loop import SupervisorProcess
from .._keys import keep_only
from ..specs import SupervisorSpec
from .values import Placement, SessionOptions

__all__ = ["run_session_supervisor"]


def run_session_supervisor(
    tree: TreeContext, spec: SupervisorSpec, options: SessionOptions, placement: Placement | None = None
) -> None:
    """
    The start of a session's SessionSupervisor at *tree*: isolate, then supervise; never returns.

    Its process title says ``session`` and its path, which ends with the full session id.
    *placement* is read by the SessionManager's publisher only.
    """
    _titles.set_title("session", tree.shown_path)
    own = tree.authkey.derive(tree.path)
    keep_only(own, (spec, options))  # the tree key goes; keys given to the session's workers stay
    tree = tree.with_key(own, scope=tree.path)
    _isolate(options)
    supervisor = SupervisorProcess(spec, tree)
    run_supervisor(supervisor, lambda: {"children": [(c.id, c.pid) for c in supervisor.state.children]})


def _isolate(options: SessionOptions) -> None:
    if options.cwd is not None:
        os.chdir(options.cwd)
    if options.env is not None:
        os.environ.clear()
        os.environ.update(options.env)
    limits = {
        resource.RLIMIT_AS: options.max_memory_bytes,
        resource.RLIMIT_CPU: options.max_cpu_seconds,
        resource.RLIMIT_NOFILE: options.max_open_files,
    }
    for kind, value in limits.items():
        if value is not None:
            resource.setrlimit(kind, (value, value))
