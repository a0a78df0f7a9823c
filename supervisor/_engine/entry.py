"""
Entry points of supervisor processes: the root (spawned by ``Supervisor.start``) and a nested one.

The root's interpreter starts in :func:`boot_root`, which reads the tree's key from its launch pipe
straight into a :class:`~supervisor._keys.Key`, then the rest of its launch: the key never passes
through the root's arguments, environment or an immutable ``bytes`` object.

Each gets its context as arguments (its place in the tree, its spec, and for the root the starter's
pid and the result pipe) and reads no global. Both are named by
:class:`~supervisor._entrypoint.EntryPoint` values in the code that starts them, so that code never
imports the engine.

A supervisor started with ``Supervisor.start_from`` or built with ``ChildSpec.supervisor_from`` gets
an init function instead of its spec, and calls it here, in its own process, before it listens
(:func:`run_init`, OTP's ``init/1``): at the root, an init that declines or fails is reported to the
starter on the result pipe (``("ignore", None)``, ``("start_error", error)``); nested, it is the
child's ``ignore`` or start failure.
"""

from __future__ import annotations

import contextlib
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

from .. import _child, _linux, _published, _spawned
from .._addresses import TreeContext
from .._keys import Key
from ..errors import StartError
from ..reasons import ExitReason, ShutdownExit
from ..specs import IGNORE, DynamicSupervisorSpec, Ignore, InitCall, SupervisorSpec
from .loop import SupervisorProcess
from .processes import raise_open_files_limit

__all__ = [
    "boot_root",
    "keep_existing_loggers",
    "run_init",
    "run_nested_supervisor",
    "run_nested_supervisor_from",
    "run_root",
]

_DEFAULT_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def boot_root(launch_fd: int, result_fd: int) -> None:
    """
    The root's interpreter, started by ``Supervisor.start``: read the launch, then :func:`run_root`.

    Reads the tree's key, then multiprocess's spawn preparation (applied: ``sys.path``, the working
    directory, the starter's main module) and the private directory, then the spec, from
    *launch_fd*; reports on *result_fd*. Returns when the tree has stopped, after removing the
    tree's descriptor (a named tree's, see :mod:`supervisor._published`).
    """
    _spawned.begin(result_fd)
    key = Key.read_from(launch_fd)
    with os.fdopen(launch_fd, "rb") as launch:
        preparation, private_dir, descriptor_file = pickle.load(launch)
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
    try:
        run_root(spec, TreeContext(private_dir, key, "root"), starter_pid, result, logging_config)
    finally:
        if descriptor_file is not None:
            # A named tree: its starter published it once ready; the root removes it on its way out
            # (the starter may be gone), if it still names this root.
            _published.unpublish(descriptor_file, os.getpid())


def run_root(
    spec: SupervisorSpec | DynamicSupervisorSpec | InitCall,
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
    if isinstance(spec, InitCall):
        try:
            from_init = run_init(spec.init, spec.args)
        except BaseException as error:  # SystemExit too: the root's init failing is a start failure
            _report_root_init_failure(result, spec, error)
            shutil.rmtree(tree.private_dir, ignore_errors=True)
            return
        if from_init is None:
            # OTP: start_link returns ignore and the supervisor exits normal; nothing was started.
            with contextlib.suppress(OSError):
                result.send(("ignore", None))
            shutil.rmtree(tree.private_dir, ignore_errors=True)
            return
        spec = from_init
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


def run_nested_supervisor_from(tree: TreeContext, init: Callable[..., Any], *args: Any) -> None:
    """
    The start of a child built with ``ChildSpec.supervisor_from``: ``init(*args)``, then the supervisor.

    Runs in the nested supervisor's own process at each of its starts. :data:`IGNORE` declines the
    start (OTP's ``ignore``); an exception from :func:`run_init` is this child's start failure.
    """
    spec = run_init(init, args)
    if spec is None:
        _child.ignore_start()
        return
    run_nested_supervisor(tree, spec)


def run_init(init: Callable[..., Any], args: tuple[Any, ...]) -> SupervisorSpec | None:
    """
    Call a supervisor's init function in this, the supervisor's, process: its spec, or None for IGNORE.

    Blocks for as long as *init* runs.

    Raises:
        Exception: what *init* raised.
        TypeError: *init* returned neither a :class:`SupervisorSpec` nor :data:`IGNORE` (OTP's
            ``bad_return``); the message names the function and the value.
        RuntimeError: *init* left a thread running; a supervisor forks its children and must have
            only its loop's thread.
    """
    returned = init(*args)
    if _thread_count() > 1:
        raise RuntimeError(
            f"init function {_describe(init)} left {_thread_count() - 1} thread(s) running in the "
            "supervisor's process, which forks its children and must be single-threaded"
        )
    if isinstance(returned, Ignore) and returned is IGNORE:
        return None
    if isinstance(returned, SupervisorSpec):
        return returned
    raise TypeError(
        f"bad_return: init function {_describe(init)} must return a SupervisorSpec or supervisor.IGNORE "
        f"(got {returned!r} that is a {type(returned).__name__})"
    )


def _thread_count() -> int:
    # Every thread of this process, native ones included (threading only knows Python's).
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _describe(function: Any) -> str:
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if module and name else repr(function)


def _report_root_init_failure(result: Any, spec: InitCall, error: BaseException) -> None:
    """Tell the starter that the root's init function failed: a StartError with *error* as its cause."""
    reason = ExitReason.from_exception(error)
    failure = StartError(
        f"start_from: the root supervisor's init function {_describe(spec.init)} failed: {reason.describe()}",
        "root",
        reason,
    )
    with contextlib.suppress(OSError):
        result.send(("start_error", failure))
