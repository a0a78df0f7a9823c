"""
Session children for the cluster tests: importable by name (a cluster keeps a session's options in
etcd, and any node may start them).

:class:`Exclusive` is how the tests see that no session ever runs twice: while it runs it holds an
exclusive ``flock`` on a file named after its session, in a directory shared by every node of the
test (one machine). A second copy of the same session that starts while the first still runs cannot
take the lock, and writes ``TWICE`` to the shared log. The kernel drops the lock when its holder
dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from typing import Any

from supervisor import Caller, GenServer, whoami


def _append(directory: str, line: str) -> None:
    with open(os.path.join(directory, "log"), "a") as log:
        log.write(line + "\n")


class Exclusive(GenServer):
    """A session's server that proves it is the only copy of its session running (see the module)."""

    def init(self, directory: str) -> None:
        self.directory = directory
        self.session_id = whoami().session_id or "?"
        self.lock = os.open(os.path.join(directory, f"{self.session_id}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _append(directory, f"TWICE {self.session_id} {os.getpid()} {time.time()}")
        _append(directory, f"start {self.session_id} {os.getpid()} {time.time()}")

    def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "whoami":
            return self.session_id, os.getpid()
        if request == "imported":
            return sorted(name for name in ("etcd3gw", "requests", "urllib3") if name in sys.modules)
        return "echo", request


def log_lines(directory: str) -> list[str]:
    """The shared log's lines (none if nothing was written yet)."""
    try:
        with open(os.path.join(directory, "log")) as log:
            return log.read().splitlines()
    except FileNotFoundError:
        return []
