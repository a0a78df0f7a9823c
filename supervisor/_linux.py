"""
The few Linux calls the tree relies on: the parent-death signal, the subreaper flag, close_range.

Linux only (kernel 5.3 or newer for ``pidfd_open``); the package says so and does not fall back, except
for ``close_range`` (5.9), which a kernel or a seccomp filter may refuse: then each open descriptor is
closed by itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
from collections.abc import Iterable

__all__ = [
    "DirectoryWatch",
    "arm_parent_death_signal",
    "close_fds_except",
    "make_fds_close_on_exec",
    "set_child_subreaper",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
# Resolved once here, in the supervisor, so children forked from it do not look the symbol up again.
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int
_SYS_CLOSE_RANGE = 436  # one number on every architecture (system calls from 424 on are unified)
_FD_MAX = 0xFFFFFFFF  # close_range's "to the last descriptor"
_syscall = _libc.syscall
_syscall.argtypes = (ctypes.c_long, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)
_syscall.restype = ctypes.c_long


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


def close_fds_except(keep: Iterable[int]) -> None:
    """
    Close every descriptor of this process except those in *keep*; does not block.

    One close_range(2) per gap between the kept descriptors, whatever the number of open ones. Where
    close_range is refused (a kernel before 5.9, or a seccomp filter), each open descriptor listed in
    ``/proc/self/fd`` is closed by itself. Not :func:`os.closerange`: its fallback would call close(2)
    on every number up to the end of the range, billions of them.
    """
    kept = sorted(set(keep))
    low = 0
    for end in [*kept, _FD_MAX + 1]:
        if end > low and _syscall(_SYS_CLOSE_RANGE, low, end - 1, 0) != 0:
            _close_listed(set(kept))
            return
        low = end + 1


def make_fds_close_on_exec() -> None:
    """Mark every descriptor of this process above stderr close-on-exec (those a spawn passed on are not)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.set_inheritable(fd, False)


def _close_listed(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):  # its own descriptor is closed again by then: EBADF
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


class DirectoryWatch:
    """
    Names of files created in (or renamed into) one directory, through inotify: its descriptor becomes
    readable when one is, so a wait on it is woken by the kernel, never by polling. Holds one
    descriptor (close-on-exec) until :meth:`close`.
    """

    def __init__(self, directory: str) -> None:
        """Raises OSError: the directory does not exist, or inotify is out of instances or watches."""
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd
        if _libc.inotify_add_watch(fd, os.fsencode(directory), _IN_CREATE | _IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err), directory)

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> list[bytes]:
        """The names created since the last read, without blocking (empty if none)."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        names = []
        offset = 0
        while offset + _IN_EVENT.size <= len(data):
            _, _, _, length = _IN_EVENT.unpack_from(data, offset)
            start = offset + _IN_EVENT.size
            names.append(data[start : start + length].rstrip(b"\0"))
            offset = start + length
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
