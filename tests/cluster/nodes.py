"""
The cluster tests' nodes: Applications of this test process, each its own tree of processes (its
root spawned, everything below forked from it), joined to one etcd under a prefix of the test's own.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from supervisor import Application, EtcdCluster, SessionInfo, SessionManagerHandle
from supervisor._procstat import process_start_time
from supervisor.testing import descendants

SECRET = b"cluster tests' shared secret, 32B"
TTL = 3
"""The nodes' lease TTL in the tests: short, so deaths and fencing are quick, yet renewals survive load."""

T = TypeVar("T")


def config(name: str, endpoints: Sequence[str], prefix: str, **options: Any) -> EtcdCluster:
    options.setdefault("lease_ttl", TTL)
    return EtcdCluster(endpoints=list(endpoints), node=name, secret=SECRET, prefix=prefix, **options)


class Nodes:
    """The running nodes of one test, by name; stops them all at the end, killed ones included."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.apps: dict[str, Application] = {}
        self.started: list[Application] = []

    def start(self, name: str, endpoints: Sequence[str], **options: Any) -> SessionManagerHandle:
        """Start the node *name* (again, if it ran before: the new one takes the name)."""
        app = Application(cluster=config(name, endpoints, self.prefix, **options), max_restarts=100)
        app.start()
        self.apps[name] = app
        self.started.append(app)
        return app.session_manager

    def __getitem__(self, name: str) -> SessionManagerHandle:
        return self.apps[name].session_manager

    def pids(self, name: str) -> set[int]:
        """Every process of the node *name*'s tree, its root included."""
        root = self.apps[name].supervisor.pid
        assert root is not None
        return {root} | {entry.pid for entry in descendants(root)}

    def kill(self, name: str) -> set[int]:
        """SIGKILL the node's root; the pids its tree had."""
        pids = self.pids(name)
        root = self.apps[name].supervisor.pid
        assert root is not None
        os.kill(root, signal.SIGKILL)
        return pids

    def stop_all(self) -> None:
        for app in reversed(self.started):
            app.stop(timeout=30)


@contextmanager
def cluster(
    endpoints: dict[str, Sequence[str]] | Sequence[str], names: Sequence[str] = (), **options: Any
) -> Iterator[Nodes]:
    """
    Start a node for each of *names* (each on *endpoints*, or on its own list when *endpoints* is a
    dict by name); stop them all at the end.
    """
    nodes = Nodes(f"/test-{uuid.uuid4().hex[:12]}/")
    try:
        for name in names or list(endpoints):
            node_endpoints = endpoints[name] if isinstance(endpoints, dict) else endpoints
            nodes.start(name, node_endpoints, **options)
        yield nodes
    finally:
        nodes.stop_all()


def eventually(check: Callable[[], T], timeout: float = 15.0, pause: float = 0.05) -> T:
    """*check*'s first truthy value, asked until *timeout*; AssertionError with its last value after."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: last {value!r}")
        time.sleep(pause)


def by_node(infos: Sequence[SessionInfo]) -> dict[str, set[str]]:
    """Session ids by owning node."""
    owners: dict[str, set[str]] = {}
    for info in infos:
        owners.setdefault(info.node, set()).add(info.session_id)
    return owners


def alive(pid: int) -> bool:
    """True if *pid* runs (a zombie counts as gone)."""
    return process_start_time(pid) is not None
