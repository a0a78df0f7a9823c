"""
The tree's secrets: keys held in mutable memory, so a process can zero the ones it was not given.

A tree has one random 32-byte key (the *tree key*). Every supervisor of the tree serves its control
socket with it, but for a session: a session's SessionSupervisor serves with its *session key*,
HMAC-SHA256(tree key, the session's id path), and holds no other. A process that holds the tree key
(the SessionManager, a client with the Application's handle) can derive any session's key; a session
holding its own key cannot go the other way.

A :class:`Key` keeps its bytes in a ``bytearray`` and registers itself in this process's list of
held keys. A forked process shares its supervisor's memory, keys included, so the first thing a child
does is :func:`keep_only` what it was given: its context's key for the package's own processes, none
for a worker, and in both cases the keys its start arguments carry (a handle passed explicitly). The
others are zeroed in place. A key crosses processes as a pickled ``bytearray`` (pickle protocol 5
loads it straight into a new ``bytearray``), or, for the root, through a pipe read into one, never as
an immutable ``bytes`` that would linger in freed memory. This module imports nothing of the package.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import pickle
import weakref
from typing import Any

import dill

__all__ = ["KEY_SIZE", "Key", "carried_by", "keep_only"]

KEY_SIZE = 32
"""Bytes in a tree key and in a session key."""

_held: dict[int, weakref.ref[Key]] = {}  # id -> the keys this process holds, while they live
# Where a bytes object's data starts: its basic size counts the data's terminating NUL.
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1


class Key:
    """
    A secret key in a ``bytearray``: never shown in a repr, zeroed by :meth:`zero` or :func:`keep_only`.

    It pickles as its bytes (a ``bytearray``); the process that unpickles it holds a new Key.
    """

    __slots__ = ("__weakref__", "_secret")

    def __init__(self, secret: bytes | bytearray) -> None:
        """
        Hold *secret*; a ``bytearray`` is adopted (not copied), so its owner must not keep using it.

        Raises:
            TypeError: *secret* is not bytes or a bytearray.
        """
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError(f"'secret' must be bytes or a bytearray (got a {type(secret).__name__})")
        self._secret = secret if isinstance(secret, bytearray) else bytearray(secret)
        ident = id(self)
        _held[ident] = weakref.ref(self, lambda _: _held.pop(ident, None))

    @classmethod
    def random(cls) -> Key:
        """A new random tree key, read from the kernel straight into its ``bytearray``."""
        secret = bytearray(KEY_SIZE)
        with open("/dev/urandom", "rb", buffering=0) as source:
            _read_exactly(source.fileno(), secret)
        return cls(secret)

    @classmethod
    def read_from(cls, fd: int) -> Key:
        """
        Read a key of ``KEY_SIZE`` bytes from the descriptor *fd*; blocks until they have come.

        Raises:
            EOFError: *fd* reached its end first.
        """
        secret = bytearray(KEY_SIZE)
        _read_exactly(fd, secret)
        return cls(secret)

    def write_to(self, fd: int) -> None:
        """Write the key's bytes to the descriptor *fd*; blocks until they are written."""
        view = memoryview(self._secret)
        while view:
            view = view[os.write(fd, view) :]

    @property
    def material(self) -> bytearray:
        """The key's bytes, for HMAC. Do not copy them into ``bytes``: those could not be zeroed."""
        return self._secret

    @property
    def is_zeroed(self) -> bool:
        """True once :meth:`zero` has run: the key opens nothing any more."""
        return not any(self._secret)

    def derive(self, label: str) -> Key:
        """
        The key HMAC-SHA256(this key, *label*): a session's key from the tree key and its id path.

        Does not block. The digest passes through one ``bytes`` object, zeroed before it is freed.
        """
        digest = hmac.new(self._secret, label.encode(), hashlib.sha256).digest()
        derived = Key(bytearray(digest))
        _wipe(digest)
        return derived

    def zero(self) -> None:
        """Overwrite the key's bytes with zeros, in place; every holder of this Key loses it."""
        self._secret[:] = bytes(len(self._secret))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Key, (self._secret,))

    def __len__(self) -> int:
        return len(self._secret)

    def __eq__(self, other: object) -> bool:
        """Keys are equal when their bytes are (compared in constant time)."""
        if not isinstance(other, Key):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    __hash__ = None  # type: ignore[assignment]  # mutable: zeroing changes what it equals

    def __repr__(self) -> str:
        return "<Key: zeroed>" if self.is_zeroed else "<Key>"


def _read_exactly(fd: int, buffer: bytearray) -> None:
    view = memoryview(buffer)
    got = 0
    while got < len(buffer):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError(f"end of file after {got} of {len(buffer)} key bytes")
        got += n


def _wipe(data: bytes) -> None:
    # A bytes object is immutable to Python, but this one was just made here and nothing else refers
    # to it: overwrite its buffer, or the digest would linger in freed memory that children inherit.
    ctypes.memset(id(data) + _BYTES_DATA_OFFSET, 0, len(data))


class _Sink:
    """A file that keeps nothing: what is pickled to find keys must not leave copies of them."""

    def write(self, data: Any) -> int:
        return len(data)


class _KeyFinder:
    """Pickles objects into nothing, noting every :class:`Key` it meets (a pickler's persistent_id)."""

    def __init__(self) -> None:
        self.found: dict[int, Key] = {}

    def persistent_id(self, obj: Any) -> None:
        if isinstance(obj, Key):
            self.found[id(obj)] = obj


def carried_by(obj: Any) -> list[Key]:
    """
    Every Key that pickling *obj* would send: the keys a child's start arguments give it.

    Does not block. Uses the C pickler, then dill for what only dill can pickle (a lambda); an
    object neither can pickle carries no key as far as this says.
    """
    finder = _KeyFinder()

    class Finder(pickle.Pickler):
        def persistent_id(self, obj: Any) -> None:
            finder.persistent_id(obj)

    class DillFinder(dill.Pickler):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> None:
            finder.persistent_id(obj)

    for pickler in (Finder, DillFinder):
        finder.found.clear()
        try:
            pickler(_Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        except Exception:  # any failure to pickle: try the next pickler
            continue
        return list(finder.found.values())
    return []


def keep_only(own: Key | None, carriers: object = ()) -> None:
    """
    Zero every key this process holds but *own* and those *carriers* carry (see :func:`carried_by`).

    Called first thing in a forked child, which holds its supervisor's keys. Does not block; when
    no other key is held, it does not look at *carriers* at all.
    """
    others = [key for key in held() if key is not own and not key.is_zeroed]
    if not others:
        return
    given = {id(key) for key in carried_by(carriers)}
    for key in others:
        if id(key) not in given:
            key.zero()


def held() -> list[Key]:
    """The keys this process holds (zeroed ones included); does not block."""
    return [key for key in (ref() for ref in list(_held.values())) if key is not None]
