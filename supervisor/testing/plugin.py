"""
The pytest plugin of otp-supervisor: fixtures that start trees and stop them after the test, and a
check that a test leaves no process behind.

Installed with the package and loaded by pytest through the ``pytest11`` entry point
``otp_supervisor`` (``-p no:otp_supervisor`` disables it). It provides:

- ``supervisor_tree``: a factory, ``supervisor_tree(children, **start_options)``, that starts a tree
  with :meth:`Supervisor.start <supervisor.Supervisor.start>` (or, given a
  :class:`~supervisor.SupervisorSpec`, with that spec's strategy and flags) and returns its started
  handle; ``supervisor_tree.dynamic(**options)`` starts a root DynamicSupervisor. Every tree it
  started is stopped when the test ends, pass or fail, newest first.
- ``application``: a factory, ``application(**options)``, that starts an
  :class:`~supervisor.Application` and returns it; stopped when the test ends.
- The leftover check: a test marked ``@pytest.mark.no_leftovers``, or every test when the ini
  option ``supervisor_no_leftovers = true`` or the command-line flag ``--supervisor-no-leftovers``
  is given, errors at teardown if it leaves a new descendant process of the test process, or a new
  zombie, once its fixtures are torn down (the trees of the two factories are stopped first). The
  processes are read from ``/proc``, not from any handle. ``@pytest.mark.no_leftovers(False)``
  exempts one test from the ini option or the flag.

Nothing here changes a test that does not use it: the check is off unless asked for, and the
fixture names are the two above (and ``supervisor_leftover_check``, which the check runs in).
Trees are stopped with ``stop(timeout=...)``, bounded by the ini option
``supervisor_stop_timeout`` (seconds, 30 by default), after which the root is SIGKILLed. The waits
for restarts and sessions (:func:`~supervisor.testing.wait_restarted`,
:func:`~supervisor.testing.wait_session_down`) are in :mod:`supervisor.testing`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from .._root import DynamicSupervisor, Supervisor
from ..handle import SupervisorHandle
from ..sessions.application import Application
from ..specs import ChildSpec, SupervisorSpec
from .processes import ProcessEntry, descendants

__all__ = ["ApplicationFactory", "TreeFactory"]

MARKER = "no_leftovers"
INI_CHECK = "supervisor_no_leftovers"
INI_STOP_TIMEOUT = "supervisor_stop_timeout"
FLAG_CHECK = "--supervisor-no-leftovers"
DEFAULT_STOP_TIMEOUT = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini options and the command-line flag of the plugin."""
    group = parser.getgroup("otp_supervisor", "otp-supervisor: supervision trees in tests")
    group.addoption(
        FLAG_CHECK,
        action="store_true",
        default=False,
        help="fail every test that leaves a new descendant process or zombie behind",
    )
    parser.addini(
        INI_CHECK,
        type="bool",
        default=False,
        help="fail every test that leaves a new descendant process or zombie behind",
    )
    parser.addini(
        INI_STOP_TIMEOUT,
        default=str(DEFAULT_STOP_TIMEOUT),
        help="seconds a tree started by a fixture has to stop after its test before it is SIGKILLed (30)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``no_leftovers`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(enabled=True): fail the test if it leaves a new descendant process or zombie behind "
        "(otp-supervisor); no_leftovers(False) exempts it from the ini option or the flag",
    )


def _stop_timeout(config: pytest.Config) -> float:
    raw = config.getini(INI_STOP_TIMEOUT)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{INI_STOP_TIMEOUT} must be a number of seconds (got {raw!r})") from None
    if not value >= 0:
        raise pytest.UsageError(f"{INI_STOP_TIMEOUT} must be seconds >= 0 (got {raw!r})")
    return value


def _check_enabled(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        return bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
    return bool(request.config.getoption(FLAG_CHECK) or request.config.getini(INI_CHECK))


def _describe(entry: ProcessEntry) -> str:
    what = "zombie" if entry.state == "Z" else f"state {entry.state}"
    return f"pid {entry.pid} ({entry.name!r}, {what}, parent {entry.ppid})"


@pytest.fixture(autouse=True)
def supervisor_leftover_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    When enabled for this test (marker, ini option or flag): fail it at teardown if it left a new
    descendant process, or a new zombie, behind. A no-op otherwise.

    Its teardown runs after those of ``supervisor_tree`` and ``application`` (they depend on it) and
    of every fixture the test requested after it, so their trees are stopped when it looks.
    """
    if not _check_enabled(request):
        yield
        return
    me = os.getpid()
    before = {entry.pid: entry.state for entry in descendants(me)}
    yield
    leftovers = [
        entry
        for entry in descendants(me)
        if entry.pid not in before or (entry.state == "Z" and before[entry.pid] != "Z")
    ]
    if leftovers:
        listed = "; ".join(_describe(entry) for entry in leftovers)
        pytest.fail(
            f"{request.node.nodeid} left {len(leftovers)} process(es) behind: {listed}", pytrace=False
        )


class TreeFactory:
    """
    The ``supervisor_tree`` fixture: starts trees for one test and stops them all when it ends.

    Not thread-safe; a test uses it from its own thread.
    """

    def __init__(self, stop_timeout: float) -> None:
        self._stop_timeout = stop_timeout
        self._handles: list[SupervisorHandle] = []

    def __call__(
        self, children: Sequence[ChildSpec] | SupervisorSpec, *args: Any, **start_options: Any
    ) -> SupervisorHandle:
        """
        Start a tree: ``Supervisor.start(children, *args, **start_options)``; return its handle.

        Given a :class:`~supervisor.SupervisorSpec` (as :func:`supervisor.testing.strategies.supervisor_specs`
        draws), start its children with its strategy, intensity and ``auto_shutdown``; then only
        ``logging_config`` and ``env`` may be given. Blocks as ``Supervisor.start`` does: until
        every child is ready.

        Raises:
            TypeError: a SupervisorSpec with positional arguments or its own flags as options.
            Whatever :meth:`Supervisor.start <supervisor.Supervisor.start>` raises.
        """
        if isinstance(children, SupervisorSpec):
            flags = sorted(set(start_options) - {"logging_config", "env"})
            if args or flags:
                raise TypeError(
                    "supervisor_tree: a SupervisorSpec carries its own strategy, intensity and "
                    f"auto_shutdown; only logging_config and env may be given (got {len(args)} positional "
                    f"argument(s) and {', '.join(map(repr, flags)) or 'no other option'})"
                )
            spec = children
            handle = Supervisor.start(
                spec.children,
                spec.strategy,
                spec.max_restarts,
                spec.max_seconds,
                auto_shutdown=spec.auto_shutdown,
                **start_options,
            )
        else:
            handle = Supervisor.start(children, *args, **start_options)
        self._handles.append(handle)
        return handle

    def dynamic(self, *args: Any, **options: Any) -> SupervisorHandle:
        """
        Start a root DynamicSupervisor: ``DynamicSupervisor.start(*args, **options)``; return its handle.

        Raises:
            Whatever :meth:`DynamicSupervisor.start <supervisor.DynamicSupervisor.start>` raises.
        """
        handle = DynamicSupervisor.start(*args, **options)
        self._handles.append(handle)
        return handle

    def stop_all(self) -> None:
        """Stop every tree started here, newest first; each within the stop timeout, then SIGKILLed."""
        while self._handles:
            self._handles.pop().stop(timeout=self._stop_timeout)


class ApplicationFactory:
    """The ``application`` fixture: starts Applications for one test and stops them all when it ends."""

    def __init__(self, stop_timeout: float) -> None:
        self._stop_timeout = stop_timeout
        self._apps: list[Application] = []

    def __call__(self, **options: Any) -> Application:
        """
        Start ``Application(**options)`` and return it, started: its registry and SessionManager are ready.

        Raises:
            TypeError, ValueError: a bad option, named; nothing is started.
            Whatever :meth:`Supervisor.start <supervisor.Supervisor.start>` raises.
        """
        app = Application(**options)
        app.start()
        self._apps.append(app)
        return app

    def stop_all(self) -> None:
        """Stop every Application started here (sessions included), newest first."""
        while self._apps:
            self._apps.pop().stop(timeout=self._stop_timeout)


@pytest.fixture
def supervisor_tree(request: pytest.FixtureRequest, supervisor_leftover_check: None) -> Iterator[TreeFactory]:
    """
    A factory of started trees: ``supervisor_tree(children, **start_options)`` returns the handle.

    Every tree it started is stopped when the test ends, pass or fail. See :class:`TreeFactory`.
    """
    factory = TreeFactory(_stop_timeout(request.config))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def application(
    request: pytest.FixtureRequest, supervisor_leftover_check: None
) -> Iterator[ApplicationFactory]:
    """
    A factory of started Applications: ``application(**options)`` returns the Application.

    Every Application it started is stopped when the test ends, pass or fail.
    """
    factory = ApplicationFactory(_stop_timeout(request.config))
    try:
        yield factory
    finally:
        factory.stop_all()
