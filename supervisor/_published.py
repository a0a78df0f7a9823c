"""
Named trees published for the same user's tools: one descriptor file per name in a private runtime directory.

``Supervisor.start(..., name=...)`` and ``Application(name=...)`` write a descriptor (JSON, mode 0600) to
``$XDG_RUNTIME_DIR/otp-supervisor/NAME.json``, or, without a usable ``XDG_RUNTIME_DIR``, to
``<tempdir>/otp-supervisor-<uid>/NAME.json``. It holds what a client needs to build handles: the root's
control socket and the tree's key, the root's pid and its start time in clock ticks (field 22 of
``/proc/<pid>/stat``), the kind (``tree`` or ``application``), the name, when it started and the files its
logging configuration writes. The directory is the user's own, mode 0700, checked (owner, mode, not a
symlink) before anything in it is trusted, so no other user can read a key or replace a descriptor.

A descriptor is *live* while its root runs: the pid exists and has the recorded start time (a reused pid
has another). A stale one (its root was SIGKILLed) is ignored by readers and replaced by the next tree of
that name. The starter's handle removes the descriptor when it stops the tree, and the root removes it on
its way out; both only when it still names that root.

This module holds files and values only: no sockets, no processes of its own. OTP has no counterpart
closer than epmd's name table, which this is not: nothing here listens.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs

from ._procstat import process_start_time

__all__ = [
    "KIND_APPLICATION",
    "KIND_TREE",
    "Descriptor",
    "check_name",
    "file_for",
    "log_files_of",
    "name_of",
    "process_start_time",
    "publish",
    "read",
    "running",
    "runtime_dir",
    "unpublish",
]

KIND_TREE = "tree"
"""A descriptor's kind: a tree started with ``Supervisor.start``."""
KIND_APPLICATION = "application"
"""A descriptor's kind: an ``Application`` (it has a SessionManager and sessions)."""
_FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SUFFIX = ".json"


def check_name(name: object) -> str:
    """
    *name* as given if it is a valid tree name: 1 to 64 letters, digits, '_', '.' or '-', not starting
    with '.', '_' or '-'. Does not block.

    Raises:
        TypeError, ValueError: it is not such a str (the message names the argument and the value).
    """
    if not isinstance(name, str):
        raise TypeError(f"'name' must be a str or None (got {name!r} that is a {type(name).__name__})")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"'name' must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit "
            f"(got {name!r})"
        )
    return name


@attrs.frozen
class Descriptor:
    """
    A published tree, as its descriptor file holds it.

    Attributes:
        name: the tree's published name.
        kind: ``KIND_TREE`` or ``KIND_APPLICATION``.
        address: the root supervisor's control socket.
        key: the tree's key (it opens every supervisor of the tree): kept out of the repr.
        pid: the root supervisor's pid.
        pid_start: the root's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22).
        started_at: when the tree was started, UTC.
        log_files: the files the tree's ``logging_config`` writes (its handlers' ``filename``).
        file: where this descriptor was read from or written to.
    """

    name: str
    kind: str
    address: str
    key: bytes = attrs.field(repr=False)
    pid: int
    pid_start: int
    started_at: datetime.datetime
    log_files: tuple[str, ...] = ()
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object (the key in hex)."""
        return {
            "format": _FORMAT,
            "name": self.name,
            "kind": self.kind,
            "address": self.address,
            "key": self.key.hex(),
            "pid": self.pid,
            "pid_start": self.pid_start,
            "started_at": self.started_at.isoformat(),
            "log_files": list(self.log_files),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], file: str) -> Descriptor:
        """A descriptor from the file *file*'s JSON object; ValueError if it is not one."""
        try:
            return cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                address=str(data["address"]),
                key=bytes.fromhex(str(data["key"])),
                pid=int(data["pid"]),
                pid_start=int(data["pid_start"]),
                started_at=datetime.datetime.fromisoformat(str(data["started_at"])),
                log_files=tuple(str(path) for path in data.get("log_files", ())),
                file=file,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{file} is not a tree descriptor: {error}") from error

    @property
    def is_live(self) -> bool:
        """True while the recorded root runs: its pid exists with the recorded start time."""
        return process_start_time(self.pid) == self.pid_start


def runtime_dir(create: bool = False) -> str:
    """
    The user's private directory for descriptors, made (mode 0700) if *create*.

    ``$XDG_RUNTIME_DIR/otp-supervisor`` when ``XDG_RUNTIME_DIR`` names an existing path, else
    ``<tempfile.gettempdir()>/otp-supervisor-<uid>``. Does not block.

    Raises:
        PermissionError: the directory (or ``XDG_RUNTIME_DIR``) is not this user's own, is a symlink,
            or other users may enter it: nothing in it is trusted.
        FileNotFoundError: it does not exist and *create* is false.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and not os.path.lexists(base):
        base = None  # set but pointing nowhere (a stale login's): not usable, so the temp directory
    if base:
        _check_private(base, "XDG_RUNTIME_DIR")
        path = os.path.join(base, "otp-supervisor")
    else:
        path = os.path.join(tempfile.gettempdir(), f"otp-supervisor-{os.geteuid()}")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    _check_private(path, "the descriptor directory")
    return path


def _check_private(path: str, what: str) -> None:
    """Raise PermissionError unless *path* is a real directory of this user that only it can enter."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{what} {path} is not a directory (a symlink or a file): not trusted")
    if info.st_uid != os.geteuid():
        raise PermissionError(
            f"{what} {path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): not trusted"
        )
    if info.st_mode & 0o077:
        raise PermissionError(
            f"{what} {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users may enter it, not trusted "
            "(it must be 0700)"
        )


def file_for(name: str, create: bool = False) -> str:
    """
    Where the descriptor of the tree *name* is (or would be) published; see :func:`runtime_dir`.

    Raises:
        TypeError, ValueError: *name* is not a valid name.
        PermissionError, FileNotFoundError: as :func:`runtime_dir`.
    """
    return os.path.join(runtime_dir(create), check_name(name) + _SUFFIX)


def name_of(descriptor_file: str) -> str:
    """The name of the tree whose descriptor is the file *descriptor_file* (:func:`file_for`'s inverse)."""
    return os.path.basename(descriptor_file).removesuffix(_SUFFIX)


def publish(descriptor: Descriptor) -> Descriptor:
    """
    Write *descriptor* under its name (mode 0600); return it with its ``file``.

    A stale descriptor of that name is replaced. Does not block (a few file operations).

    Raises:
        ValueError: a live tree already has this name; nothing is written.
        PermissionError: the runtime directory is not private (see :func:`runtime_dir`).
    """
    path = file_for(descriptor.name, create=True)
    published = attrs.evolve(descriptor, file=path)
    fd, temporary = tempfile.mkstemp(prefix=".publish-", dir=os.path.dirname(path))  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(published.to_json(), file)
        for _ in range(3):
            try:
                os.link(temporary, path)  # fails if the name exists: two starters cannot both win
                return published
            except FileExistsError:
                current = _load(path)
                if current is not None and current.is_live:
                    raise ValueError(
                        f"'name' {descriptor.name!r} is already published by a running tree "
                        f"(root pid {current.pid}, {path}); stop it or choose another name"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its root is gone
        raise ValueError(f"'name' {descriptor.name!r}: {path} keeps being replaced by another starter")
    finally:
        os.unlink(temporary)


def _load(path: str) -> Descriptor | None:
    """The descriptor in *path*, None if it is gone or unreadable as one."""
    try:
        with open(path) as file:
            data = json.load(file)
        return Descriptor.from_json(data, path)
    except (OSError, ValueError):
        return None


def read(name: str) -> Descriptor | None:
    """
    The live tree published as *name*, or None (none, or a stale descriptor). Does not block.

    Raises:
        TypeError, ValueError: *name* is not a valid name.
        PermissionError: the runtime directory is not private.
    """
    try:
        path = file_for(name)
    except FileNotFoundError:
        return None
    descriptor = _load(path)
    return descriptor if descriptor is not None and descriptor.is_live else None


def running() -> list[Descriptor]:
    """
    Every live published tree of this user, by name; stale descriptors are skipped. Does not block.

    Raises:
        PermissionError: the runtime directory is not private.
    """
    try:
        directory = runtime_dir()
    except FileNotFoundError:
        return []
    found = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(_SUFFIX) and not entry.startswith("."):
            descriptor = _load(os.path.join(directory, entry))
            if descriptor is not None and descriptor.is_live:
                found.append(descriptor)
    return found


def unpublish(file: str, pid: int, pid_start: int | None = None) -> None:
    """
    Remove the descriptor *file* if it still names the root *pid* (started at *pid_start*, if given).

    Another tree may have taken the name once this one's root was gone: its descriptor is left alone.
    Never raises for a missing or unreadable file. Does not block.
    """
    current = _load(file)
    if current is None or current.pid != pid:
        return
    if pid_start is not None and current.pid_start != pid_start:
        return
    with contextlib.suppress(OSError):
        os.unlink(file)


def log_files_of(logging_config: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The ``filename`` of each handler of a ``dictConfig`` dict, as absolute paths, in order."""
    if not logging_config:
        return ()
    handlers = logging_config.get("handlers")
    if not isinstance(handlers, Mapping):
        return ()
    files = []
    for handler in handlers.values():
        if isinstance(handler, Mapping) and isinstance(handler.get("filename"), (str, os.PathLike)):
            files.append(os.path.abspath(os.fspath(handler["filename"])))
    return tuple(files)
