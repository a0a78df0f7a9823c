"""
The cluster's trust: TLS on the node-to-node endpoint, the secret that authenticates nodes and seals
entries, and a key refused in the handshake.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from supervisor import Application, EtcdCluster, NodeNotFoundError, NodeUnreachableError, SessionStatus
from supervisor._transport import KeyRefused
from supervisor.sessions.cluster import TlsFiles, peer

from .etcd_server import EtcdServer
from .nodes import TTL, cluster, config
from .workers import Exclusive


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls(directory: Path, names: tuple[str, ...]) -> dict[str, TlsFiles]:
    """A CA and a certificate per node signed by it (openssl; EC keys, one day)."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-subj",
        "/CN=test-ca",
        "-days",
        "1",
        "-out",
        str(ca_cert),
    )
    files = {}
    for name in names:
        key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-out", str(cert),
        )  # fmt: skip
        files[name] = TlsFiles(certfile=str(cert), keyfile=str(key), cafile=str(ca_cert))
    return files


def exclusive(directory: Path) -> dict[str, object]:
    return {"children": [Exclusive.child_spec("ex", str(directory))]}


def test_nodes_talk_over_tls_and_a_plain_node_cannot_reach_them(etcd: EtcdServer, tmp_path: Path) -> None:
    tls = make_tls(tmp_path, ("a", "b"))
    with cluster({}) as nodes:
        nodes.start("a", [etcd.url], tls=tls["a"])
        nodes.start("b", [etcd.url], tls=tls["b"])
        nodes.start("plain", [etcd.url], node_timeout=1.0)
        sid = nodes["a"].create_session(node="b", **exclusive(tmp_path))
        assert nodes["a"].call(sid, "ex", "whoami")[0] == sid
        started = time.monotonic()
        with pytest.raises(NodeUnreachableError):
            nodes["plain"].call(sid, "ex", "whoami")
        assert time.monotonic() - started < 3.0 + peer.HANDSHAKE_TIMEOUT
        nodes["a"].terminate_session(sid)


def test_a_node_with_another_secret_sees_nothing_of_the_cluster(etcd: EtcdServer, tmp_path: Path) -> None:
    with cluster([etcd.url], ["a"]) as nodes:
        sid = nodes["a"].create_session(node="a", **exclusive(tmp_path))
        stranger = Application(
            cluster=EtcdCluster(
                endpoints=[etcd.url], node="stranger", secret=b"not the cluster's secret, 32 B..",
                prefix=nodes.prefix, lease_ttl=TTL,
            )
        )  # fmt: skip
        with stranger:
            handle = stranger.session_manager
            assert handle.list_sessions() == []  # the entries' seals do not open with its secret
            with pytest.raises(NodeNotFoundError):
                handle.create_session(node="a", **exclusive(tmp_path))
        assert [info.session_id for info in nodes["a"].list_sessions()] == [sid]


def test_the_node_to_node_endpoint_refuses_a_wrong_secret(etcd: EtcdServer, tmp_path: Path) -> None:
    with cluster([etcd.url], ["a"]) as nodes:
        sid = nodes["a"].create_session(node="a", **exclusive(tmp_path))
        from supervisor.sessions.cluster.records import ClusterKeys, Sealer
        from supervisor.sessions.cluster.store import Store

        key = ClusterKeys(nodes.prefix).node("a")
        found = Store([etcd.url], 2.0).get(key)
        assert found is not None
        record = Sealer(config("a", [etcd.url], nodes.prefix).secret).open(key, found.value)
        wrong = EtcdCluster(endpoints=[etcd.url], node="x", secret=b"w" * 32).secret.derive(
            "otp-supervisor node-to-node"
        )
        deadline = time.monotonic() + 2.0
        with pytest.raises(KeyRefused):
            peer.request(
                (record.host, record.port), wrong, "terminate", (sid, 1.0),
                connect_deadline=deadline, deadline=deadline,
            )  # fmt: skip
        info = nodes["a"].get_session_info(sid)  # nothing was done
        assert (info.node, info.status) == ("a", SessionStatus.ACTIVE)


def test_only_the_agent_and_the_root_hold_the_cluster_secret(etcd: EtcdServer, tmp_path: Path) -> None:
    from tests.process.memory import holds

    from .nodes import SECRET

    with cluster([etcd.url], ["a"]) as nodes:
        sid = nodes["a"].create_session(node="a", **exclusive(tmp_path))
        tree = nodes.apps["a"].supervisor
        agent = tree.which_child("registry").pid
        manager = tree.which_child("session_manager").pid
        session = nodes["a"].get_session_pid(sid)
        _, server = nodes["a"].call(sid, "ex", "whoami")
        assert agent is not None and manager is not None
        assert holds(agent, SECRET)  # it authenticates nodes and seals entries
        for pid in (manager, session, server):
            assert not holds(pid, SECRET), f"process {pid} holds the cluster's secret"


def test_sessions_do_not_carry_etcd_s_client(etcd: EtcdServer, tmp_path: Path) -> None:
    """Only the agent imports it: the SessionManager and its sessions are forked without it."""
    with cluster([etcd.url], ["a"]) as nodes:
        sid = nodes["a"].create_session(node="a", **exclusive(tmp_path))
        assert nodes["a"].call(sid, "ex", "imported") == []
