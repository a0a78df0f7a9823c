"""
Process titles, read from the OS: every process of a tree shows ``otp-supervisor: ROLE PATH``.

Each expected title is built from the pids the handles report and compared with
``/proc/<pid>/cmdline`` of every process below the root (``supervisor.testing.descendants``), so a
process with no title, or one too many, fails. Titles are set before a child's start function runs,
so a child's own report (or its ready, for a NOTIFY child) means its title is there. A named tree
(``name=``, published in a runtime directory of the test's own) shows its name in place of ``root``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisor import Application, ChildSpec, Restart, StartMode
from supervisor.testing import descendants
from tests.children import EventSink, init_children, notify_then_sleep, set_title_then_sleep
from tests.servers import Echo

from .helpers import worker

PREFIX = "otp-supervisor: "


def title_of(pid: int) -> str:
    """What ``ps`` shows as *pid*'s command line: its argv memory, NULs as spaces, trailing ones cut."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def titles_below(root: int) -> dict[int, str]:
    """The title of *root* and of every process below it."""
    return {pid: title_of(pid) for pid in [root, *(entry.pid for entry in descendants(root))]}


def environ_of(pid: int) -> dict[str, str]:
    """The environment block of *pid* as the kernel shows it (``/proc/<pid>/environ``)."""
    with open(f"/proc/{pid}/environ", "rb") as block:
        entries = [entry.decode() for entry in block.read().split(b"\0") if entry]
    return dict(entry.split("=", 1) for entry in entries)


class TestPlainTree:
    def test_every_process_of_a_nested_tree_names_its_role_and_path(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """Root, nested supervisors (spec and init), workers (NOTIFY and IMMEDIATE) and a GenServer."""
        handle = start_tree(
            [
                worker(events, "a"),
                ChildSpec("quick", notify_then_sleep, args=(events.path, "quick")),
                Echo.child_spec("srv"),
                ChildSpec.supervisor("sub", [worker(events, "b"), Echo.child_spec("inner_srv")]),
                ChildSpec.supervisor_from("from", init_children, events.path, "from", ("c",)),
                ChildSpec.dynamic_supervisor("pool"),
            ]
        )
        pool = handle.child_supervisor("pool")
        job = pool.start_child(ChildSpec("job", notify_then_sleep, args=(events.path, "job")))
        events.expect_all("started", {"a", "quick", "b", "c", "job"})  # IMMEDIATE ones: after the title
        top = {info.id: info.pid for info in handle.which_children()}
        sub = {info.id: info.pid for info in handle.child_supervisor("sub").which_children()}
        nested_from = {info.id: info.pid for info in handle.child_supervisor("from").which_children()}

        titles = titles_below(handle.pid)

        job_title = titles.pop(job)
        assert job_title.startswith(f"{PREFIX}worker root/pool/")
        assert {
            handle.pid: f"{PREFIX}root root",
            top["a"]: f"{PREFIX}worker root/a",
            top["quick"]: f"{PREFIX}worker root/quick",
            top["srv"]: f"{PREFIX}server root/srv",
            top["sub"]: f"{PREFIX}supervisor root/sub",
            sub["b"]: f"{PREFIX}worker root/sub/b",
            sub["inner_srv"]: f"{PREFIX}server root/sub/inner_srv",
            top["from"]: f"{PREFIX}supervisor root/from",
            nested_from["c"]: f"{PREFIX}worker root/from/c",
            top["pool"]: f"{PREFIX}supervisor root/pool",
        } == titles

    def test_a_named_trees_processes_show_its_name_in_place_of_root(
        self, start_tree: Any, events: EventSink, private_runtime_dir: Path
    ) -> None:
        """Supervisor.start(..., name="shop"): the root, a nested supervisor and its worker say ``shop``."""
        handle = start_tree([ChildSpec.supervisor("api", [worker(events, "handler")])], name="shop")
        handler = events.expect("started", "handler")
        api = handle.which_child("api").pid

        assert {
            handle.pid: f"{PREFIX}root shop",
            api: f"{PREFIX}supervisor shop/api",
            handler: f"{PREFIX}worker shop/api/handler",
        } == titles_below(handle.pid)

    def test_a_restarted_worker_has_its_title_again(self, start_tree: Any, events: EventSink) -> None:
        """The replacement of a killed worker is titled like the first, before its start function runs."""
        start_tree([worker(events, "a")])
        first = events.expect("started", "a")
        os.kill(first, signal.SIGKILL)

        second = events.expect("started", "a")

        assert second != first
        assert f"{PREFIX}worker root/a" == title_of(second)

    def test_a_worker_that_sets_its_own_title_keeps_it(self, start_tree: Any, events: EventSink) -> None:
        """A start function's own setproctitle call wins over the supervisor's."""
        own = "my-worker: listening on 8080"
        start_tree([ChildSpec("own", set_title_then_sleep, args=(events.path, "own", own))])

        pid = events.expect("started", "own")

        assert own == title_of(pid)


class TestApplication:
    @pytest.mark.parametrize("name", [None, "agents"])
    def test_every_process_of_an_application_with_a_session_names_its_role_and_path(
        self, events: EventSink, private_runtime_dir: Path, name: str | None
    ) -> None:
        """Root, registry, manager, the session (its full id), its worker and its server; env= too. A
        named tree shows its name in place of ``root``."""
        env = {"ONLY": "this", "LANG": "C"}
        with Application(env=env, name=name) as app:
            sessions = app.session_manager
            sid = sessions.create_session(
                children=[
                    ChildSpec("ctx", notify_then_sleep, start_mode=StartMode.NOTIFY),
                    Echo.child_spec("conv"),
                ],
                restart=Restart.TEMPORARY,
            )
            root = app.supervisor.pid
            fixed = {info.id: info.pid for info in app.supervisor.which_children()}
            session_pid = sessions.get_session_pid(sid)
            inside = {info.id: info.pid for info in sessions.session_supervisor(sid).which_children()}

            titles = titles_below(root)
            environments = {pid: environ_of(pid) for pid in titles}

        tree = name or "root"
        session = f"{tree}/session_manager/{sid}"
        assert {
            root: f"{PREFIX}root {tree}",
            fixed["registry"]: f"{PREFIX}registry {tree}/registry",
            fixed["session_manager"]: f"{PREFIX}manager {tree}/session_manager",
            session_pid: f"{PREFIX}session {session}",
            inside["ctx"]: f"{PREFIX}worker {session}/ctx",
            inside["conv"]: f"{PREFIX}server {session}/conv",
        } == titles
        # The titles are written over the command line only: the environment block is untouched.
        assert all(environment == env for environment in environments.values())
