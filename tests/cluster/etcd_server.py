"""
A real single-member etcd server for tests, run as a child process on free loopback ports.

:class:`EtcdServer` starts ``etcd`` (Debian's ``etcd-server`` 3.4 in CI) bound to 127.0.0.1 only, with
its own client and peer ports, a data directory of its own and its log in a file, and blocks until
``GET /health`` says ``"health":"true"``. It can be stopped, killed, restarted on the same ports
and data (keys and leases survive), and paused (SIGSTOP) to make it silent without closing a
socket. Every method reaps what it ends: no zombie, and no file descriptor is left in this process.

What etcd 3.4 (3.4.23) did here, on a 2-core Linux box, idle and with the cores kept busy, with the
default ``--heartbeat-interval 100`` and ``--election-timeout 1000`` (kept: nothing here needs others):

- Start to healthy: 0.2 to 0.9 s on a fresh data directory; 0.9 to 2 s for a restart on existing
  data (the member waits out an election timeout before it elects itself). SIGTERM to exit: a
  few milliseconds when idle.
- Lease minimum TTL: ``ceil(1.5 * election timeout)`` = 2 s with the defaults; a grant of
  ``{"TTL": 1}`` answers ``"TTL": "2"``.
- A lease of TTL 2 s, granted over the JSON gateway (``POST /v3/lease/grant {"TTL": 2}``), a key put
  with it and no keepalive: the key was gone 2.0 to 2.5 s after the grant (42 leases in three runs;
  medians 2.3 to 2.5 s; never before 2 s). etcd looks for expired leases every 500 ms, so a key
  outlives its TTL by up to half a second, plus the time to commit the revoke.
- The TTL counts from the grant and, after a keepalive, from the last keepalive: a keepalive
  sets the remaining time back to the granted TTL (a TTL 4 lease kept alive at 3 s lost its key
  4.1 s after the keepalive).
- A restart (or a leader change) extends every lease: the new leader gives each one its full
  granted TTL again, plus an election timeout (a TTL 5 lease 4.9 s old at a restart lost its key
  6.1 s after the restart): etcd renews every lease when a member becomes leader. A key with a
  lease therefore survives :meth:`EtcdServer.restart`, and a restart resets its clock.
- JSON gateway quirks: 64-bit numbers (lease IDs, revisions, TTLs) are JSON strings; a ``txn``
  whose compare fails answers without ``"succeeded"`` (protobuf's JSON leaves out a false field);
  a keepalive for an unknown or expired lease answers ``{"result": {...}}`` without ``"TTL"``, and
  ``timetolive`` answers ``"TTL": "-1"``.
- The log file lives in the data directory, so etcd logs one harmless warning at each start
  ("found invalid file under data directory").

Not thread-safe: one thread drives a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["EtcdServer"]

HOST = "127.0.0.1"
LOG_NAME = "etcd.log"

# Health checks go straight to 127.0.0.1, whatever http_proxy/no_proxy the environment sets.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_ports(count: int) -> list[int]:
    """Return *count* distinct TCP ports free on 127.0.0.1 right now (the kernel's pick; does not block)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class EtcdServer:
    """
    One ``etcd`` process serving ``http://127.0.0.1:PORT``, started by :meth:`start`.

    Args:
        data_dir: etcd's data directory; ``None`` makes a temporary one, removed by :meth:`close`.
            A directory given here is kept.
        name: the member's ``--name``.
        binary: the etcd executable, looked up on ``PATH``.
        start_timeout: seconds :meth:`start` waits for ``/health`` before it gives up.
        stop_timeout: seconds :meth:`stop` waits after SIGTERM before it sends SIGKILL.

    The ports are picked at the first :meth:`start` and kept for the server's life, so a restart
    serves the same URL.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        name: str = "test-etcd",
        binary: str = "etcd",
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._given_dir = data_dir is not None
        self._data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="etcd-"))
        self._name = name
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._client_port: int | None = None
        self._peer_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    # -- what it serves ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address etcd listens on: always ``127.0.0.1``."""
        return HOST

    @property
    def port(self) -> int:
        """The client port (raises RuntimeError before the first :meth:`start`)."""
        if self._client_port is None:
            raise RuntimeError("etcd has not been started: it has no port yet")
        return self._client_port

    @property
    def peer_port(self) -> int:
        """The peer (raft) port (raises RuntimeError before the first :meth:`start`)."""
        if self._peer_port is None:
            raise RuntimeError("etcd has not been started: it has no peer port yet")
        return self._peer_port

    @property
    def url(self) -> str:
        """The client URL, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def peer_url(self) -> str:
        """The peer URL, ``http://127.0.0.1:PEER_PORT``."""
        return f"http://{HOST}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        """etcd's data directory (the log file is in it too)."""
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The file etcd's stdout and stderr go to (appended to across restarts)."""
        return self._data_dir / LOG_NAME

    @property
    def pid(self) -> int | None:
        """The running etcd's process id, or None when it is not running."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the etcd process exists and has not exited (a paused one counts as running)."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """
        Start etcd and block until ``/health`` answers ``"health":"true"`` (at most ``start_timeout``).

        The first start picks free ports (and picks again, up to three times, if another process
        took one in the meantime); later starts reuse them and the data directory. A no-op if etcd
        is already running.

        Raises:
            RuntimeError: etcd exited or did not become healthy in time; the message holds the tail
                of its log. The process is killed and reaped first.
            FileNotFoundError: no etcd executable.
        """
        if self._closed:
            raise RuntimeError("this EtcdServer was closed")
        if self.running:
            return
        self._reap()
        executable = shutil.which(self._binary)
        if executable is None:
            raise FileNotFoundError(
                f"{self._binary!r} is not on PATH: install etcd (Debian: apt-get install etcd-server)"
            )
        self._data_dir.mkdir(parents=True, exist_ok=True)
        fresh_ports = self._client_port is None
        attempts = 3 if fresh_ports else 1
        for attempt in range(attempts):
            if fresh_ports:
                self._client_port, self._peer_port = free_ports(2)
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(executable)
            try:
                self._wait_healthy()
                return
            except RuntimeError:
                taken = "address already in use" in self._log_since(log_offset)
                self._kill_and_reap()
                if not (taken and attempt + 1 < attempts):
                    raise

    def stop(self) -> None:
        """
        Stop etcd gracefully and reap it; blocks until it has exited.

        Sends SIGTERM (and SIGCONT, so a paused etcd can act on it), waits up to ``stop_timeout``,
        then sends SIGKILL. A no-op if etcd is not running. Keeps the ports and the data directory
        for a later :meth:`start`.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill_and_reap()
        self._reap()

    def kill(self) -> None:
        """Kill etcd with SIGKILL (a crash: no clean shutdown) and reap it; blocks until it is gone."""
        self._kill_and_reap()

    def restart(self) -> None:
        """Stop etcd, then start it again on the same ports and data directory (blocks for both)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """
        Freeze etcd with SIGSTOP; blocks until the kernel reports it stopped (at most 5 s).

        Its sockets stay open: clients connect (the kernel accepts) but get no answer.
        """
        process = self._running_process()
        process.send_signal(signal.SIGSTOP)
        self._wait_state(process.pid, stopped=True)

    def resume(self) -> None:
        """Let a paused etcd run again with SIGCONT; blocks until it is no longer stopped (at most 5 s)."""
        process = self._running_process()
        process.send_signal(signal.SIGCONT)
        self._wait_state(process.pid, stopped=False)

    def close(self) -> None:
        """Stop etcd (see :meth:`stop`) and remove the data directory if this object made it."""
        try:
            self.stop()
        finally:
            if not self._closed:
                self._closed = True
                if not self._given_dir:
                    shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        """Start etcd (if it is not running) and return this server."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the server: see :meth:`close`."""
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        port = self._client_port if self._client_port is not None else "-"
        return f"<EtcdServer {state} port={port} data_dir={str(self._data_dir)!r}>"

    # -- inside -----------------------------------------------------------------------------------

    def _command(self, executable: str) -> list[str]:
        """The etcd command line for the current ports and data directory."""
        command = [
            executable,
            "--name",
            self._name,
            "--data-dir",
            str(self._data_dir),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            f"{self._name}={self.peer_url}",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        if not (self._data_dir / "member").exists():
            command += ["--initial-cluster-state", "new"]
        return command

    def _spawn(self, executable: str) -> None:
        """Start the etcd process with its output appended to the log file (does not wait)."""
        # etcd reads every ETCD_* variable as a flag: one left in the environment would change it.
        env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD")}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(executable),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._data_dir,
            )

    def _wait_healthy(self) -> None:
        """Block until ``/health`` says true; RuntimeError with the log's tail on exit or timeout."""
        process = self._running_process()
        deadline = time.monotonic() + self._start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with status {process.returncode} before it was healthy; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            if self._healthy():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"etcd was not healthy at {self.url}/health after {self._start_timeout:g} s; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _healthy(self) -> bool:
        """One ``GET /health``: whether it answered ``"health": "true"`` (blocks up to 1 s)."""
        try:
            with _DIRECT.open(f"{self.url}/health", timeout=1.0) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError):  # refused, reset, timed out, HTTP 503, not JSON
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def _running_process(self) -> subprocess.Popen[bytes]:
        """The live process, or RuntimeError."""
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("etcd is not running")
        return process

    def _kill_and_reap(self) -> None:
        """SIGKILL the process if it runs, then reap it (blocks until it is gone)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.wait()
        self._process = None

    def _reap(self) -> None:
        """Forget an exited process, reaping it (blocks only for one that has already exited)."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def _log_since(self, offset: int) -> str:
        """The log written after byte *offset* (empty if there is no log)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        """The last *lines* lines of the log (at most the last 64 KiB read)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 65536))
                text = log.read().decode("utf-8", "replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _wait_state(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
        """Block until ``/proc/PID/stat`` shows the process stopped (or not); RuntimeError at *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError as error:
                raise RuntimeError(f"etcd (pid {pid}) is gone") from error
            state = stat[stat.rindex(")") + 2]
            if (state in "Tt") == stopped:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"etcd (pid {pid}) is in state {state!r} after {timeout:g} s")
            time.sleep(0.01)
