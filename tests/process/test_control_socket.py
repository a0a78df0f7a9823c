"""
The control socket under hostile or unlucky clients: nothing a client does holds a supervisor's loop.

A connection that sends nothing, or trickles its handshake, is dropped at its one deadline while the
loop serves everyone else; a supervisor out of descriptors keeps running and accepts again once it
can. ``HANG_TIMEOUT`` only guards against hangs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import resource
import signal
import socket
import time
from typing import Any

import pytest

from supervisor import CallTimeout, ChildSpec, SupervisorHandle
from supervisor._transport import AUTH_TIMEOUT
from tests.children import HANG_TIMEOUT, EventSink, report_then_sleep, sleep_forever


def raw_connection(handle: SupervisorHandle) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(HANG_TIMEOUT)
    sock.connect(handle._address)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer has closed *sock* (EOF now), False if it is still open; never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(64) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(HANG_TIMEOUT)


def fresh(handle: SupervisorHandle) -> SupervisorHandle:
    """A copy of *handle* with no connection yet, as another process would have."""
    copy: SupervisorHandle = pickle.loads(pickle.dumps(handle))
    return copy


class TestSilentClients:
    def test_a_silent_connection_does_not_hold_the_loop(self, start_tree: Any) -> None:
        """A call made after a silent client connected is served while that client's handshake is open."""
        handle = start_tree([ChildSpec("a", sleep_forever)])
        silent = raw_connection(handle)
        try:
            assert len(silent.recv(32)) == 32  # the greeting: the handshake has begun

            assert [info.id for info in fresh(handle).which_children()] == ["a"]

            assert not closed_by_peer(silent)  # served before the silent client's deadline
        finally:
            silent.close()

    def test_a_killed_worker_is_restarted_while_silent_clients_wait(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """Five silent connections do not delay a restart: it is done while their handshakes are open."""
        handle = start_tree([ChildSpec("w", report_then_sleep, args=(events.path, "w"))])
        old = events.expect("started", "w")
        silent = [raw_connection(handle) for _ in range(5)]
        try:
            for sock in silent:
                sock.recv(32)
            os.kill(old, signal.SIGKILL)
            new = events.expect("started", "w")

            assert new != old
            assert not any(closed_by_peer(sock) for sock in silent)
        finally:
            for sock in silent:
                sock.close()

    def test_a_trickling_client_is_dropped_at_one_deadline(self, start_tree: Any) -> None:
        """A client with the key that sends its handshake a byte at a time is dropped at the deadline."""
        handle = start_tree([ChildSpec("a", sleep_forever)])
        sock = raw_connection(handle)
        try:
            greeting = sock.recv(32)
            answer = hmac.new(handle._authkey.material, b"client" + greeting, hashlib.sha256).digest()
            handshake = answer + os.urandom(32)
            dropped = False
            sent = 0
            while sent < len(handshake) and not dropped:
                try:
                    sock.sendall(handshake[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    dropped = True
                    break
                sent += 1
                dropped = closed_by_peer(sock)
                time.sleep(AUTH_TIMEOUT / 16)  # each byte in time, the whole far too slow

            assert dropped
            assert sent < len(handshake)
        finally:
            sock.close()
        assert [info.id for info in handle.which_children()] == ["a"]


class TestOutOfDescriptors:
    def test_emfile_on_accept_does_not_kill_the_supervisor(self, start_tree: Any) -> None:
        """A supervisor that cannot accept (EMFILE) lives on, and accepts again once it can."""
        handle = start_tree([ChildSpec.supervisor("sub", [ChildSpec("leaf", sleep_forever)])])
        sub_pid = handle.which_children()[0].pid
        assert sub_pid is not None
        sub = handle.child_supervisor("sub")
        open_fds = {int(fd) for fd in os.listdir(f"/proc/{sub_pid}/fd")}
        lowest_free = min(set(range(len(open_fds) + 1)) - open_fds)
        limits = resource.prlimit(sub_pid, resource.RLIMIT_NOFILE)
        resource.prlimit(sub_pid, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
        try:
            with pytest.raises(CallTimeout):
                fresh(sub).which_children()
        finally:
            resource.prlimit(sub_pid, resource.RLIMIT_NOFILE, limits)

        assert [info.id for info in fresh(sub).which_children(timeout=HANG_TIMEOUT)] == ["leaf"]
        assert sub_pid == handle.which_children()[0].pid
