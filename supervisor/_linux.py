"""
The few Linux calls the tree relies on: the parent-death signal and pidfds.

Linux only (kernel 5.3 or newer for ``pidfd_open``); the package says so and does not fall back.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["arm_parent_death_signal", "set_child_subreaper"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
# Resolved once here, in the supervisor, so children forked from it do not look the symbol up again.
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int


def arm_parent_death_signal(expected_parent: int, sig: int = signal.SIGKILL) -> None:
    """
    Have the kernel send *sig* to this process when its parent dies; exit now if it already has.

    PR_SET_PDEATHSIG fires when the parent *thread* that forked us exits, and sends nothing if the
    parent died before it was armed, hence the ``getppid`` check against the pid captured before the
    fork. Supervisors are single-threaded and fork from their main thread, so the thread is the process.
    """
    if _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if os.getppid() != expected_parent:
        os._exit(70)


def set_child_subreaper() -> None:
    """Make this process the reaper of orphans below it (PR_SET_CHILD_SUBREAPER), instead of init."""
    if _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
