"""
The Application's own supervisor: its restart intensity is an option (3 restarts in 5 s by default).

A registry server killed more often than the intensity allows stops the whole Application; within it,
the Application lives on. ``HANG_TIMEOUT`` only guards against hangs; nothing here measures speed.
"""

from __future__ import annotations

import os
import signal

import pytest

from supervisor import Application, ChildNotFoundError, ExitKind
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT


def child_pid(app: Application, child_id: str) -> int:
    pid = {info.id: info.pid for info in app.supervisor.which_children()}[child_id]
    assert pid is not None
    return pid


def kill_registry(app: Application) -> None:
    """SIGKILL the registry server; return once the root has handled its exit (and restarted it)."""
    registry_pid = child_pid(app, "registry")
    os.kill(registry_pid, signal.SIGKILL)
    assert wait_gone([registry_pid], HANG_TIMEOUT) == []
    # The root handles the exits it saw before a request, so this reply comes after the restart.
    with pytest.raises(ChildNotFoundError):
        app.supervisor.terminate_child("no-such-child-barrier")


class TestRootIntensity:
    def test_root_intensity_above_the_default_survives_four_registry_deaths(self) -> None:
        """With root_max_restarts=10, four registry deaths (more than the default 3) are all restarted."""
        with Application(root_max_restarts=10, root_max_seconds=3600) as app:
            sessions = app.session_manager
            session_id = sessions.create_session()
            for _ in range(4):
                kill_registry(app)

            assert not app.supervisor.stopped
            assert [session_id] == [info.session_id for info in sessions.list_sessions()]

    def test_root_intensity_of_zero_stops_the_application_at_the_first_death(self) -> None:
        """With root_max_restarts=0, one registry death stops the whole Application (it gives up)."""
        app = Application(root_max_restarts=0, root_max_seconds=3600).start()
        try:
            root_pid = app.supervisor.pid
            assert root_pid is not None
            os.kill(child_pid(app, "registry"), signal.SIGKILL)

            assert wait_gone([root_pid], HANG_TIMEOUT) == []
            assert app.supervisor.stopped
            assert app.supervisor.exit_reason is not None
            assert app.supervisor.exit_reason.kind is ExitKind.SHUTDOWN
        finally:
            app.stop(timeout=HANG_TIMEOUT)

    @pytest.mark.parametrize(
        ("options", "error", "named"),
        [
            ({"root_max_restarts": -1}, ValueError, "root_max_restarts"),
            ({"root_max_restarts": 1.5}, TypeError, "root_max_restarts"),
            ({"root_max_restarts": True}, TypeError, "root_max_restarts"),
            ({"root_max_seconds": 0}, ValueError, "root_max_seconds"),
            ({"root_max_seconds": float("nan")}, ValueError, "root_max_seconds"),
            ({"root_max_seconds": "5"}, TypeError, "root_max_seconds"),
        ],
    )
    def test_a_bad_root_intensity_is_refused_by_name(
        self, options: dict[str, object], error: type[Exception], named: str
    ) -> None:
        """A bad root intensity raises at the caller, naming the argument; nothing is started."""
        with pytest.raises(error, match=named):
            Application(**options)  # type: ignore[arg-type]
        with pytest.raises(error, match=named):
            Application.child_spec("application", **options)  # type: ignore[arg-type]
