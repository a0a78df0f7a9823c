"""
Entry points of supervisor processes: the root (spawned by ``Supervisor.start``) and a nested one.

The root's interpreter starts in :func:`boot_root`, which reads the tree's key from its launch pipe
straight into a :class:`~supervisor._keys.Key`, then the rest of its launch: the key never passes
through the root's arguments, environment or an immutable ``bytes`` object.

Each gets its context as arguments (its place in the tree, its spec, and for the root the starter's
pid and the result pipe) and reads no global. Both are named by
:class:`~supervisor._entrypoint.EntryPoint` values in the code that starts them, so that code never
imports the engine.
"""

from __future__ import annotations

import logging
import logging.config
import os
import pickle
import shutil
from collections.abc import Callable
from typing import Any

import multiprocess
from multiprocess import spawn
from multiprocess.connection import Connection

from .. import _child, _linux, _spawned
from .._addresses import TreeContext
from .._keys import Key
from ..reasons import ShutdownExit
from ..specs import DynamicSupervisorSpec, SupervisorSpec
from .loop import SupervisorProcess
from .processes import raise_open_files_limit

__all__ = ["boot_root", "keep_existing_loggers", "run_nested_supervisor", "run_root"]

_DEFAULT_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def boot_root(launch_fd: int, result_fd: int) -> None:
    """
    The root's interpreter, started by ``Supervisor.start``: read the launch, then :func:`run_root`.

    Reads the tree's key, then multiprocess's spawn preparation (applied: ``sys.path``, the working
    directory, the starter's main module) and the private directory, then the spec, from
    *launch_fd*; reports on *result_fd*. Returns when the tree has stopped.
    """
    _spawned.begin(result_fd)
    key = Key.read_from(launch_fd)
    with os.fdopen(launch_fd, "rb") as launch:
        preparation, private_dir = pickle.load(launch)
        _spawned.set_importing_main(True)
        try:
            spawn.prepare(preparation)
        finally:
            _spawned.set_importing_main(False)
        spec, starter_pid, logging_config, env = pickle.load(launch)
    if env is not None:
        # Exactly the given environment: the interpreter may have added to it at start-up (C locale
        # coercion sets LC_CTYPE), and os.environ is what the tree's processes pass on.
        os.environ.clear()
        os.environ.update(env)
    multiprocess.current_process().name = "supervisor:root"
    result = Connection(result_fd, readable=False)
    run_root(spec, TreeContext(private_dir, key, "root"), starter_pid, result, logging_config)


def run_root(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    tree: TreeContext,
    starter_pid: int,
    result: Any,
    logging_config: dict[str, Any] | None,
) -> None:
    """
    The root supervisor process: watch the starter, serve, and report how it ended on *result*.

    Sends ``("running", pid)`` first (the bootstrap is over), ``("ready", pid)`` once every child is
    ready, then ``("exit", reason)`` or ``("start_error", error)``; removes the tree's private
    directory when it is done.
    """
    try:
        result.send(("running", os.getpid()))
    except OSError:
        return  # the starter is gone
    if logging_config is not None:
        logging.config.dictConfig(keep_existing_loggers(logging_config))
    else:
        logging.basicConfig(level=logging.WARNING, format=_DEFAULT_LOG_FORMAT)
    # A pidfd of the starter fires when it exits, whatever it forked; getppid() after opening it
    # tells whether it had already died (then the pidfd would name a reused pid).
    watch = os.pidfd_open(starter_pid)
    if os.getppid() != starter_pid:
        return
    raise_open_files_limit()
    _linux.make_fds_close_on_exec()  # the result pipe came through the spawn
    supervisor = SupervisorProcess(spec, tree, watch_fd=watch)
    supervisor.serve(lambda: result.send(("ready", os.getpid())))
    try:
        if supervisor.start_error is not None:
            result.send(("start_error", supervisor.start_error))
        else:
            result.send(("exit", supervisor.exit_reason))
    except OSError:
        pass  # the starter is gone or dropped its handle: nobody is left to tell
    # Nothing of the tree listens any more; a starter that died cannot remove the directory itself.
    shutil.rmtree(tree.private_dir, ignore_errors=True)


def keep_existing_loggers(config: dict[str, Any]) -> dict[str, Any]:
    """
    *config* with ``"disable_existing_loggers": False`` unless it says otherwise.

    :func:`logging.config.dictConfig` disables every existing logger not named in the config by
    default, the package's own included (they exist once its modules are imported), which would
    silence crash reports. An explicit ``True`` is honoured.
    """
    return {"disable_existing_loggers": False, **config}


def run_supervisor(supervisor: SupervisorProcess, ready_info: Callable[[], Any]) -> None:
    """
    Serve *supervisor* in a child process until it stops; never returns.

    The child is ready, with ``ready_info()`` for its supervisor, once all its children are; a
    child's start failure is this child's start failure; otherwise it exits with reason *shutdown*,
    whether stopped or given up.
    """
    supervisor.serve(lambda: _child.notify_ready(ready_info()))
    if supervisor.start_error is not None:
        raise supervisor.start_error
    raise ShutdownExit()


def run_nested_supervisor(tree: TreeContext, spec: SupervisorSpec | DynamicSupervisorSpec) -> None:
    """
    The start of a child built with ``ChildSpec.supervisor`` or ``ChildSpec.dynamic_supervisor``, at
    *tree*; see :func:`run_supervisor`.
    """
    run_supervisor(SupervisorProcess(spec, tree), lambda: {"address": tree.address})
