"""
Child functions for ``bench_core.py``, in a module of their own so spawned processes can import them.

Each benchmarked child and its baseline run the same function, so the comparison measures the
machinery around it, not the child.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from typing import Any


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def handshake_then_sleep(conn: Any) -> None:
    """The baselines' child: say ready on *conn* (a Pipe end), then sleep until killed."""
    conn.send("ready")
    conn.close()
    sleep_forever()


def report_ready(path: str) -> None:
    """Send ``(pid, time.monotonic())`` to the datagram socket at *path* once running, then sleep."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(pickle.dumps((os.getpid(), time.monotonic())), path)
    sleep_forever()
