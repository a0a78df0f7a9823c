"""The command line on a node of a cluster: it lists every node's sessions and terminates another node's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import Application, SessionNotFoundError

from .etcd_server import EtcdServer
from .nodes import cluster, config
from .workers import Exclusive


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR for this test's named trees and its command-line runs."""
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", directory)
        yield Path(directory)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, timeout=60
    )


def test_sessions_list_shows_every_node_and_terminate_reaches_the_owner(
    runtime: Path, etcd: EtcdServer, tmp_path: Path
) -> None:
    with (
        cluster([etcd.url], ["b"]) as nodes,
        Application(name="node-a", cluster=config("a", [etcd.url], nodes.prefix)) as app,
    ):
        children = [Exclusive.child_spec("ex", str(tmp_path))]
        here = app.session_manager.create_session(children=children)
        there = app.session_manager.create_session(children=children, node="b")
        listed = json.loads(cli("sessions", "list", "--tree", "node-a", "--json").stdout)["sessions"]
        assert {(s["session_id"], s["node"], s["incarnation"]) for s in listed} == {
            (here, "a", 1),
            (there, "b", 1),
        }
        text = cli("sessions", "list", "--tree", "node-a").stdout
        assert "NODE" in text and there in text
        result = cli("sessions", "terminate", there, "--tree", "node-a")
        assert result.returncode == 0, result.stderr
        with pytest.raises(SessionNotFoundError):
            nodes["b"].get_session_info(there)
        assert app.session_manager.get_session_info(here).node == "a"
