"""Errors: the class hierarchy, and pickle round-trips that keep attributes, message and cause."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import supervisor
from supervisor import errors
from supervisor.errors import (
    AuthenticationError,
    BadCombinationError,
    CallingSelfError,
    CallTimeout,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRestartingError,
    ChildRunningError,
    ClusterUnavailableError,
    DuplicateChildError,
    HandleClosedError,
    MaxChildrenError,
    NameTakenError,
    NoCapacityError,
    NodeNotFoundError,
    NodeUnreachableError,
    NoProc,
    Overloaded,
    RegistryUnavailableError,
    RemoteSessionError,
    ServerDown,
    SessionNotFoundError,
    SimpleOneForOneError,
    StartError,
    SupervisorError,
    SupervisorGoneError,
    UnreadableRequestError,
)
from supervisor.reasons import ExitReason
from supervisor.specs import Restart

from .. import children


def crashed() -> ExitReason:
    try:
        children.crash("no database")
    except ValueError as exc:
        return ExitReason.from_exception(exc)
    raise AssertionError("crash() did not raise")


EXAMPLES: list[tuple[SupervisorError, dict[str, Any]]] = [
    (SupervisorError("something"), {}),
    (ChildNotFoundError("terminate_child: no child with id 'db'", "db"), {"child_id": "db"}),
    (ChildNotFoundError("terminate_child: no child with pid 4242", 4242), {"child_id": 4242}),
    (
        SimpleOneForOneError("restart_child: supervisor root is simple_one_for_one", "restart_child"),
        {"call": "restart_child"},
    ),
    (MaxChildrenError("start_child: root already has 2 children", 2), {"max_children": 2}),
    (DuplicateChildError("start_child: 'db' is running", "db", 4242), {"child_id": "db", "pid": 4242}),
    (DuplicateChildError("start_child: 'db' is present", "db", None), {"child_id": "db", "pid": None}),
    (ChildRunningError("delete_child: 'db' is running", "db"), {"child_id": "db"}),
    (ChildRestartingError("restart_child: 'db' is restarting", "db"), {"child_id": "db"}),
    (ChildNotRunningError("child_supervisor: 'sub' is not running", "sub"), {"child_id": "sub"}),
    (
        StartError("start_child: 'db' failed to start", "db", ExitReason.from_exitcode(3)),
        {"child_id": "db", "reason": ExitReason.from_exitcode(3)},
    ),
    (StartError("start_child: 'db' failed", "db", crashed()), {"child_id": "db", "reason": crashed()}),
    (HandleClosedError("supervisor root was stopped through this handle"), {}),
    (CallTimeout("which_children: supervisor root did not reply within 1.0 s"), {}),
    (AuthenticationError("supervisor root refused this handle's authkey"), {}),
    (SupervisorGoneError("supervisor root is gone"), {"reason": None}),
    (
        SupervisorGoneError("supervisor root is gone (killed)", ExitReason.killed()),
        {"reason": ExitReason.killed()},
    ),
    (RegistryUnavailableError("registry did not answer"), {}),
    (SessionNotFoundError("no session 's1'", "s1"), {"session_id": "s1"}),
    (ClusterUnavailableError("etcd did not answer"), {}),
    (NodeNotFoundError("no node 'b'", "b"), {"node": "b"}),
    (NodeUnreachableError("node 'b' did not answer", "b"), {"node": "b"}),
    (NoCapacityError("every node is full"), {}),
    (RemoteSessionError("session 's1' runs on 'b'", "s1", "b"), {"session_id": "s1", "node": "b"}),
    (
        BadCombinationError(
            "bad combination for child 'w'", (("restart", Restart.PERMANENT), ("significant", True)), "w"
        ),
        {"combination": (("restart", Restart.PERMANENT), ("significant", True)), "child_id": "w"},
    ),
    (
        UnreadableRequestError("start_child: could not read the request", "ModuleNotFoundError: late"),
        {"why": "ModuleNotFoundError: late"},
    ),
    (ServerDown("call: server root/conv died before replying", crashed()), {"reason": crashed()}),
    (ServerDown("call: server root/conv died before replying"), {"reason": None}),
    (NoProc("call: no server 'conv' is running"), {}),
    (Overloaded("call: the mailbox of server root/conv is full"), {}),
    (CallingSelfError("call: server root/conv called itself"), {}),
    (
        NameTakenError("server root/b: the name 'conv' is held", "conv", "root/a", 4242),
        {"name": "conv", "holder_path": "root/a", "holder_pid": 4242},
    ),
]


def example_id(example: tuple[SupervisorError, dict[str, Any]]) -> str:
    return type(example[0]).__name__


class TestPickling:
    def test_every_error_class_has_an_example(self) -> None:
        """Each class in supervisor.errors appears in EXAMPLES, so a new class cannot skip these tests."""
        assert {type(error).__name__ for error, _ in EXAMPLES} == set(errors.__all__)

    @pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
    def test_round_trip_keeps_class_message_and_attributes(
        self, example: tuple[SupervisorError, dict[str, Any]]
    ) -> None:
        """An error unpickles as the same class with the same message, args and attributes."""
        error, attributes = example

        copy = pickle.loads(pickle.dumps(error))

        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.message == error.message
        assert copy.args == error.args
        for name, value in attributes.items():
            assert getattr(copy, name) == value

    @pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
    def test_attributes_are_set_when_built(self, example: tuple[SupervisorError, dict[str, Any]]) -> None:
        """Each error carries its structured attributes, not only text."""
        error, attributes = example

        for name, value in attributes.items():
            assert getattr(error, name) == value

    def test_start_error_cause_is_the_childs_exception(self) -> None:
        """A StartError built from a crash has the child's exception, with its own cause, as __cause__."""
        error = StartError("start_child: 'db' failed", "db", crashed())

        assert isinstance(error.__cause__, ValueError)
        assert error.__cause__.args == ("no database",)
        assert isinstance(error.__cause__.__cause__, KeyError)

    def test_start_error_cause_is_restored_after_pickling(self) -> None:
        """__cause__ is rebuilt from the reason on unpickling, with the child's traceback."""
        error = StartError("start_child: 'db' failed", "db", crashed())

        copy = pickle.loads(pickle.dumps(error))

        assert isinstance(copy.__cause__, ValueError)
        assert copy.__cause__.args == ("no database",)
        assert isinstance(copy.__cause__.__cause__, KeyError)
        assert copy.__cause__.__traceback__ is not None

    def test_start_error_without_exception_has_no_cause(self) -> None:
        """A start that failed with an exit code gives no __cause__, before or after pickling."""
        error = StartError("start_child: 'db' failed", "db", ExitReason.from_exitcode(3))

        assert error.__cause__ is None
        assert pickle.loads(pickle.dumps(error)).__cause__ is None

    def test_round_trip_survives_a_second_pickling(self) -> None:
        """An unpickled error pickles again (it may be re-raised across two hops in a tree)."""
        error = DuplicateChildError("start_child: 'db' is running", "db", 7)

        twice = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(error))))

        assert (type(twice), str(twice), twice.child_id, twice.pid) == (
            DuplicateChildError,
            str(error),
            "db",
            7,
        )


class TestHierarchy:
    @pytest.mark.parametrize("name", errors.__all__)
    def test_every_error_is_a_supervisor_error(self, name: str) -> None:
        """Every class in supervisor.errors derives from SupervisorError, itself an Exception."""
        cls = getattr(errors, name)

        assert issubclass(cls, SupervisorError)
        assert issubclass(cls, Exception)

    @pytest.mark.parametrize(
        ("cls", "builtin"),
        [
            (ChildNotFoundError, LookupError),
            (SessionNotFoundError, LookupError),
            (DuplicateChildError, ValueError),
            (BadCombinationError, ValueError),
        ],
    )
    def test_refines_a_builtin(self, cls: type[SupervisorError], builtin: type[Exception]) -> None:
        """Errors that refine a builtin are caught by generic except clauses for it."""
        assert issubclass(cls, builtin)

    def test_not_found_is_caught_as_lookup_error(self) -> None:
        """`except LookupError` catches a ChildNotFoundError."""
        with pytest.raises(LookupError):
            raise ChildNotFoundError("no child 'x'", "x")

    @pytest.mark.parametrize("name", errors.__all__)
    def test_every_error_is_public(self, name: str) -> None:
        """Every error class is exported from the package itself."""
        assert name in supervisor.__all__
        assert getattr(supervisor, name) is getattr(errors, name)
