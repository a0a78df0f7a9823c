"""
The SessionManager's dead man's switch in a cluster: its sessions never outlive the node's lease.

The node agent fences the node when it cannot renew its lease, but a frozen agent (SIGSTOP, a
debugger, a cgroup freezer) fences nothing. So the agent also writes, at each renewal, the time its
sessions may run until: the last renewal sent plus 0.8 TTL, on ``CLOCK_MONOTONIC`` (one clock for
every process of the machine), eight bytes in a file of the tree's private directory. The
SessionManager, while it has sessions, asks its loop to wake at that time; if the time has come and
the file says no later one, it kills itself with SIGKILL, and its sessions die with it (their
parent-death signal), before the lease can expire. The Application's supervisor then restarts it,
with no sessions. One read of eight bytes per renewal period: no polling, no thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct

__all__ = ["LeaseClock", "lease_file"]

_VALUE = struct.Struct("!d")


def lease_file(private_dir: str, app_path: str) -> str:
    """The switch's file of the Application at *app_path*, in the tree's private directory."""
    digest = hashlib.sha256(app_path.encode()).hexdigest()[:16]
    return os.path.join(private_dir, f"lease-{digest}")


class LeaseClock:
    """The file that says until when (monotonic seconds) the node's sessions may run."""

    def __init__(self, path: str, *, create: bool = False) -> None:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        self.fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        if create:
            self.write(0.0)

    def write(self, until: float) -> None:
        """Say the sessions may run until *until* (one write of eight bytes: readers see it whole)."""
        os.pwrite(self.fd, _VALUE.pack(until), 0)

    def read(self) -> float:
        """Until when the sessions may run; 0.0 if nothing was written."""
        data = os.pread(self.fd, _VALUE.size, 0)
        return _VALUE.unpack(data)[0] if len(data) == _VALUE.size else 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
