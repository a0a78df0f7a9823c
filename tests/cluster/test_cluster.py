"""
Three nodes on one etcd: placement, the API across nodes, a node's death, a partitioned node's
fencing, etcd's restart and absence. Every node is an Application with its own process tree; etcd is
the test's own (``conftest.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from supervisor import (
    ChildSpec,
    ClusterUnavailableError,
    NoCapacityError,
    NodeNotFoundError,
    NodeUnreachableError,
    RemoteSessionError,
    Restart,
    SessionNotFoundError,
    SessionStatus,
    UnreadableRequestError,
)

from .etcd_server import EtcdServer
from .nodes import TTL, alive, by_node, cluster, eventually
from .tcp_proxy import TcpProxy
from .workers import Exclusive, log_lines


def exclusive(directory: Path, restart: Restart = Restart.TEMPORARY, **options: object) -> dict[str, object]:
    return {"children": [Exclusive.child_spec("ex", str(directory))], "restart": restart, **options}


def never_twice(directory: Path) -> None:
    twice = [line for line in log_lines(str(directory)) if line.startswith("TWICE")]
    assert not twice, f"a session ran twice at once: {twice}"


def test_placement_goes_to_the_lowest_load_over_capacity(etcd: EtcdServer, tmp_path: Path) -> None:
    with cluster([etcd.url], ["a"], capacity=2) as nodes:
        nodes.start("b", [etcd.url], capacity=4)
        nodes.start("c", [etcd.url], capacity=6)
        created = [nodes["a"].create_session(**exclusive(tmp_path)) for _ in range(12)]
        owners = by_node(nodes["b"].list_sessions())
        assert {node: len(ids) for node, ids in owners.items()} == {"a": 2, "b": 4, "c": 6}
        assert set().union(*owners.values()) == set(created)
        with pytest.raises(NoCapacityError):
            nodes["c"].create_session(**exclusive(tmp_path))
        with pytest.raises(NoCapacityError):
            nodes["c"].create_session(node="b", **exclusive(tmp_path))
        assert len(nodes["a"].list_sessions()) == 12  # the refused creates left nothing behind
        never_twice(tmp_path)


def test_list_get_terminate_call_and_cast_work_from_every_node(etcd: EtcdServer, tmp_path: Path) -> None:
    with cluster([etcd.url], ["a", "b", "c"]) as nodes:
        placed = {name: nodes["a"].create_session(node=name, **exclusive(tmp_path)) for name in "abc"}
        for asking in "abc":
            handle = nodes[asking]
            assert {info.session_id: info.node for info in handle.list_sessions()} == {
                sid: name for name, sid in placed.items()
            }
            for name, sid in placed.items():
                info = handle.get_session_info(sid)
                assert (info.node, info.status, info.incarnation, info.restarts) == (
                    name,
                    SessionStatus.ACTIVE,
                    1,
                    0,
                )
                assert handle.call(sid, "ex", "whoami")[0] == sid
                assert handle.call(sid, "ex", ("hello", asking)) == ("echo", ("hello", asking))
                handle.cast(sid, "ex", "ignored")
        own = placed["a"]
        assert nodes["a"].whereis(own, "ex") is not None
        with pytest.raises(RemoteSessionError) as remote:
            nodes["a"].whereis(placed["b"], "ex")
        assert remote.value.node == "b"
        with pytest.raises(RemoteSessionError):
            nodes["a"].session_supervisor(placed["c"])
        _, pid = nodes["b"].call(placed["c"], "ex", "whoami")
        nodes["b"].terminate_session(placed["c"])  # from a node that is not the owner
        assert not alive(pid)
        for asking in "abc":
            with pytest.raises(SessionNotFoundError):
                nodes[asking].get_session_info(placed["c"])
            with pytest.raises(SessionNotFoundError):
                nodes[asking].terminate_session(placed["c"])
        with pytest.raises(NodeNotFoundError):
            nodes["a"].create_session(node="nowhere", **exclusive(tmp_path))
        never_twice(tmp_path)


def test_a_killed_node_s_sessions_go_and_the_restartable_ones_come_back_once_elsewhere(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b", "c"]) as nodes:
        kinds = {
            "permanent": Restart.PERMANENT,
            "transient": Restart.TRANSIENT,
            "temporary": Restart.TEMPORARY,
        }
        on_b = {
            nodes["a"].create_session(node="b", metadata=kind, **exclusive(tmp_path, restart)): kind
            for kind, restart in list(kinds.items()) * 2
        }
        survivors = [nodes["a"].create_session(node=name, **exclusive(tmp_path)) for name in ("a", "c")]
        pids = nodes.kill("b")
        killed_at = time.monotonic()

        def b_gone() -> bool:
            return all("b" not in by_node(nodes[n].list_sessions()) for n in "ac")

        eventually(b_gone, timeout=TTL + 5)
        assert time.monotonic() - killed_at < TTL + 1.0 + 1.0  # TTL + 1 s, and the polling's slack
        restartable = {sid for sid, kind in on_b.items() if kind != "temporary"}

        def replaced() -> dict[str, object] | None:
            infos = {info.session_id: info for info in nodes["c"].list_sessions()}
            back = {sid: infos[sid] for sid in restartable if sid in infos}
            if len(back) < len(restartable) or any(
                i.status is not SessionStatus.ACTIVE for i in back.values()
            ):
                return None
            return dict(back)

        back = eventually(replaced, timeout=15)
        for sid, info in back.items():
            assert info.node in ("a", "c")
            assert (info.incarnation, info.restarts, info.metadata) == (2, 1, on_b[sid])
            assert nodes[info.node].call(sid, "ex", "whoami")[0] == sid
        listed = [info.session_id for info in nodes["a"].list_sessions()]
        assert sorted(listed) == sorted([*restartable, *survivors])  # temporaries gone, nothing twice
        starts = [line.split()[1] for line in log_lines(str(tmp_path)) if line.startswith("start")]
        for sid in restartable:
            assert starts.count(sid) == 2, f"{sid} started {starts.count(sid)} times, not once more"
        assert not [pid for pid in pids if alive(pid)], "a process of the killed node survived it"
        never_twice(tmp_path)


def test_a_node_cut_off_from_etcd_fences_itself_and_rejoins_empty(
    etcd: EtcdServer, etcd_proxy: TcpProxy, tmp_path: Path
) -> None:
    endpoints = {"a": [etcd.url], "b": [etcd_proxy.url], "c": [etcd.url]}
    with cluster(endpoints) as nodes:
        on_b = [
            nodes["a"].create_session(node="b", **exclusive(tmp_path, Restart.PERMANENT)) for _ in range(3)
        ]
        pids = {sid: nodes["b"].call(sid, "ex", "whoami")[1] for sid in on_b}
        etcd_proxy.cut("blackhole")
        cut_at = time.monotonic()
        # Fenced: b's sessions stop by 0.8 TTL after its last renewal, before its lease can expire.
        eventually(lambda: not any(alive(pid) for pid in pids.values()), timeout=TTL + 2)
        stopped_after = time.monotonic() - cut_at
        assert stopped_after < TTL, f"b's sessions ran {stopped_after:.2f} s after the cut"
        started = time.monotonic()
        with pytest.raises(ClusterUnavailableError):
            nodes["b"].create_session(**exclusive(tmp_path))
        assert time.monotonic() - started < 5.0

        def moved() -> bool:
            infos = {info.session_id: info for info in nodes["a"].list_sessions()}
            return all(
                sid in infos and infos[sid].node != "b" and infos[sid].status is SessionStatus.ACTIVE
                for sid in on_b
            )

        eventually(moved, timeout=15)
        etcd_proxy.heal()
        eventually(lambda: "b" in _live_nodes(nodes["a"], tmp_path), timeout=15)
        assert "b" not in by_node(nodes["a"].list_sessions())  # rejoined with no sessions
        assert nodes["b"].list_sessions() == nodes["a"].list_sessions()
        sid = nodes["b"].create_session(node="b", **exclusive(tmp_path))
        assert nodes["c"].get_session_info(sid).node == "b"
        never_twice(tmp_path)


def _live_nodes(handle: object, directory: Path) -> set[str]:
    """The nodes a create can be placed on now, found by placing a session on each (and ending it)."""
    live: set[str] = set()
    for name in "abc":
        try:
            sid = handle.create_session(node=name, **exclusive(directory))  # type: ignore[attr-defined]
        except (NodeNotFoundError, ClusterUnavailableError, NodeUnreachableError):
            continue
        handle.terminate_session(sid)  # type: ignore[attr-defined]
        live.add(name)
    return live


def test_sessions_keep_running_through_an_etcd_restart(etcd: EtcdServer, tmp_path: Path) -> None:
    with cluster([etcd.url], ["a", "b"], lease_ttl=6) as nodes:
        placed = {name: nodes["a"].create_session(node=name, **exclusive(tmp_path)) for name in "ab"}
        pids = {sid: nodes["a"].call(sid, "ex", "whoami")[1] for sid in placed.values()}
        etcd.restart()
        assert all(alive(pid) for pid in pids.values())
        infos = eventually(lambda: _listed(nodes["b"]), timeout=10)
        assert {info.session_id for info in infos} == set(placed.values())
        sid = nodes["b"].create_session(node="a", **exclusive(tmp_path))
        assert nodes["a"].call(sid, "ex", "whoami")[0] == sid
        assert all(alive(pid) for pid in pids.values())
        never_twice(tmp_path)


def _listed(handle: object) -> list[object] | None:
    try:
        return handle.list_sessions()  # type: ignore[attr-defined,no-any-return]
    except ClusterUnavailableError:
        return None


def test_with_etcd_stopped_cluster_requests_fail_within_their_bound_and_local_sessions_run(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"], lease_ttl=10, etcd_timeout=0.5) as nodes:
        own = nodes["a"].create_session(node="a", **exclusive(tmp_path))
        other = nodes["a"].create_session(node="b", **exclusive(tmp_path))
        etcd.pause()
        try:
            for attempt in (
                lambda: nodes["a"].create_session(**exclusive(tmp_path)),
                lambda: nodes["a"].list_sessions(),
                lambda: nodes["a"].get_session_info(other),
                lambda: nodes["a"].call(other, "ex", "whoami"),
                lambda: nodes["a"].terminate_session(other),
            ):
                started = time.monotonic()
                with pytest.raises(ClusterUnavailableError):
                    attempt()
                assert time.monotonic() - started < 3.0
            assert nodes["a"].call(own, "ex", "whoami")[0] == own  # its own sessions run on
            assert nodes["a"].get_session_info(own).node == "a"
        finally:
            etcd.resume()
        assert nodes["b"].call(other, "ex", "whoami")[0] == other
        never_twice(tmp_path)


def test_an_owner_that_does_not_answer_fails_requests_within_the_node_bound(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"], lease_ttl=10, node_timeout=1.0) as nodes:
        sid = nodes["a"].create_session(node="b", **exclusive(tmp_path))
        agent = nodes.apps["b"].supervisor.which_child("registry").pid
        assert agent is not None
        os.kill(agent, signal.SIGSTOP)
        try:
            for attempt in (
                lambda: nodes["a"].call(sid, "ex", "whoami", timeout=5.0),
                lambda: nodes["a"].terminate_session(sid, timeout=5.0),
            ):
                started = time.monotonic()
                with pytest.raises(NodeUnreachableError) as unreachable:
                    attempt()
                assert unreachable.value.node == "b"
                assert time.monotonic() - started < 3.0
        finally:
            os.kill(agent, signal.SIGCONT)
        assert nodes["a"].call(sid, "ex", "whoami")[0] == sid


def test_a_node_restarted_under_its_name_joins_once_its_old_lease_is_gone(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"]) as nodes:
        kept = nodes["a"].create_session(node="b", **exclusive(tmp_path, Restart.PERMANENT))
        nodes.kill("b")
        killed_at = time.monotonic()
        nodes.start("b", [etcd.url])  # at once: the old b's lease still holds the name

        def joined() -> bool:
            return "b" in _live_nodes(nodes["a"], tmp_path)

        eventually(joined, timeout=TTL + 10)
        assert time.monotonic() - killed_at > TTL * 0.5  # not before the old lease could expire

        def back() -> bool:
            try:
                info = nodes["a"].get_session_info(kept)
            except SessionNotFoundError:
                return False
            return info.incarnation == 2 and info.status is SessionStatus.ACTIVE

        eventually(back, timeout=15)
        owner = nodes["a"].get_session_info(kept).node
        assert nodes[owner].call(kept, "ex", "whoami")[0] == kept
        never_twice(tmp_path)


def test_an_agent_that_dies_takes_its_node_s_sessions_with_it_and_they_come_back_elsewhere(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"]) as nodes:
        kept = [
            nodes["a"].create_session(node="b", **exclusive(tmp_path, Restart.PERMANENT)) for _ in range(3)
        ]
        pids = [nodes["b"].call(sid, "ex", "whoami")[1] for sid in kept]
        agent = nodes.apps["b"].supervisor.which_child("registry").pid
        assert agent is not None
        os.kill(agent, signal.SIGKILL)
        # rest_for_one: the SessionManager, and every session, stop before a new agent starts.
        eventually(lambda: not any(alive(pid) for pid in pids), timeout=TTL)

        def back() -> bool:
            infos = {info.session_id: info for info in nodes["a"].list_sessions()}
            return all(
                sid in infos and infos[sid].incarnation == 2 and infos[sid].status is SessionStatus.ACTIVE
                for sid in kept
            )

        eventually(back, timeout=TTL + 15)
        for sid in kept:
            owner = nodes["a"].get_session_info(sid).node
            assert nodes[owner].call(sid, "ex", "whoami")[0] == sid
        never_twice(tmp_path)


def test_a_session_manager_that_dies_has_its_restartable_sessions_re_placed(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"]) as nodes:
        kept = [
            nodes["a"].create_session(node="b", **exclusive(tmp_path, Restart.PERMANENT)) for _ in range(4)
        ]
        gone = nodes["a"].create_session(node="b", **exclusive(tmp_path))
        manager = nodes.apps["b"].supervisor.which_child("session_manager").pid
        assert manager is not None
        os.kill(manager, signal.SIGKILL)

        def back() -> bool:
            infos = {info.session_id: info for info in nodes["a"].list_sessions()}
            return gone not in infos and all(
                sid in infos and infos[sid].incarnation == 2 and infos[sid].status is SessionStatus.ACTIVE
                for sid in kept
            )

        eventually(back, timeout=15)
        assert len(nodes["b"].list_sessions()) == len(kept)
        never_twice(tmp_path)


def test_a_create_another_node_cannot_read_is_refused_as_unreadable_not_a_timeout(
    etcd: EtcdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "only_on_a.py"
    module.write_text("import time\n\ndef run():\n    time.sleep(3600)\n")
    with cluster([etcd.url], ["b"]) as nodes:
        monkeypatch.syspath_prepend(str(tmp_path))  # node a (started now) can import it, b cannot
        import only_on_a  # type: ignore[import-not-found]

        nodes.start("a", [etcd.url])
        started = time.monotonic()
        with pytest.raises(UnreadableRequestError):
            nodes["a"].create_session(node="b", children=[ChildSpec("w", only_on_a.run)])
        assert time.monotonic() - started < 5.0
        assert nodes["a"].list_sessions() == []
        sid = nodes["a"].create_session(node="a", children=[ChildSpec("w", only_on_a.run)])
        assert nodes["b"].get_session_info(sid).node == "a"


def test_a_frozen_agent_s_sessions_are_stopped_by_their_session_manager_before_its_lease_expires(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    with cluster([etcd.url], ["a", "b"]) as nodes:
        kept = [
            nodes["a"].create_session(node="b", **exclusive(tmp_path, Restart.PERMANENT)) for _ in range(2)
        ]
        pids = [nodes["b"].call(sid, "ex", "whoami")[1] for sid in kept]
        agent = nodes.apps["b"].supervisor.which_child("registry").pid
        assert agent is not None
        os.kill(agent, signal.SIGSTOP)  # b's agent can neither renew nor fence
        frozen_at = time.monotonic()
        try:
            eventually(lambda: not any(alive(pid) for pid in pids), timeout=TTL + 2)
            assert time.monotonic() - frozen_at < TTL, "b's sessions outlived its lease"

            def moved() -> bool:
                infos = {info.session_id: info for info in nodes["a"].list_sessions()}
                return all(sid in infos and infos[sid].node == "a" for sid in kept)

            eventually(moved, timeout=15)
        finally:
            os.kill(agent, signal.SIGCONT)
        for sid in kept:
            assert nodes["a"].call(sid, "ex", "whoami")[0] == sid
        never_twice(tmp_path)


@pytest.mark.parametrize("restart", [Restart.TEMPORARY, Restart.PERMANENT])
def test_a_create_in_flight_when_its_node_fences_fails_and_leaves_nothing_anywhere(
    etcd: EtcdServer, tmp_path: Path, restart: Restart
) -> None:
    from supervisor.sessions.cluster.records import ClusterKeys
    from supervisor.sessions.cluster.store import Store

    with cluster([etcd.url], ["a", "b"]) as nodes:
        store, keys = Store([etcd.url], 2.0), ClusterKeys(nodes.prefix)
        manager = nodes.apps["a"].supervisor.which_child("session_manager").pid
        assert manager is not None
        os.kill(manager, signal.SIGSTOP)  # the claim is made, the start waits
        outcome: dict[str, BaseException | str] = {}

        def create() -> None:
            try:
                outcome["created"] = nodes["a"].create_session(
                    node="a", timeout=30, **exclusive(tmp_path, restart)
                )
            except BaseException as error:
                outcome["error"] = error

        creating = threading.Thread(target=create)
        creating.start()
        try:
            claimed = eventually(lambda: store.range(keys.sessions)[0], timeout=10)
            sid = ClusterKeys.last_part(claimed[0].key)
            node = store.get(keys.node("a"))
            assert node is not None
            store.revoke(node.lease)  # a's next renewal learns it has no lease: it fences
            creating.join(30)
        finally:
            if alive(manager):
                os.kill(manager, signal.SIGCONT)
        assert "error" in outcome, outcome  # the fence stopped the start: the create failed
        eventually(lambda: (n := store.get(keys.node("a"))) is not None and n.lease != node.lease, timeout=15)
        time.sleep(TTL)  # a replacer that wrongly took the id would have started it by now
        for name in "ab":
            assert sid not in {info.session_id for info in nodes[name].list_sessions()}
        assert store.get(keys.session(sid)) is None and store.get(keys.spec(sid)) is None
        assert not [line for line in log_lines(str(tmp_path)) if sid in line], "it ran somewhere"


def test_two_nodes_in_one_tree_each_have_their_own_switch(
    etcd: EtcdServer, tmp_path: Path, start_tree: object
) -> None:
    from supervisor import Application

    from .nodes import config

    prefix = f"/test-{os.getpid()}-{time.monotonic_ns()}/"
    tree = start_tree(  # type: ignore[operator]
        [
            Application.child_spec("x", cluster=config("x", [etcd.url], prefix)),
            Application.child_spec("y", cluster=config("y", [etcd.url], prefix)),
        ]
    )
    x, y = Application.session_manager_in(tree, "x"), Application.session_manager_in(tree, "y")
    sid = x.create_session(node="x", **exclusive(tmp_path, Restart.PERMANENT))
    pid = x.call(sid, "ex", "whoami")[1]
    agent = tree.child_supervisor("x").which_child("registry").pid
    os.kill(agent, signal.SIGSTOP)  # y's agent renews on: x's switch must not read y's clock
    frozen_at = time.monotonic()
    try:
        eventually(lambda: not alive(pid), timeout=TTL + 2)
        assert time.monotonic() - frozen_at < TTL
        eventually(lambda: any(i.session_id == sid and i.node == "y" for i in y.list_sessions()), timeout=20)
    finally:
        os.kill(agent, signal.SIGCONT)
    never_twice(tmp_path)
