"""ChildSpec and SupervisorSpec: defaults, per-field validation, nested supervisors, pickling."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest

from supervisor import (
    AutoShutdown,
    BadCombinationError,
    ChildSpec,
    ChildType,
    Restart,
    Shutdown,
    StartMode,
    Strategy,
    SupervisorSpec,
)
from supervisor.specs import IGNORE, Ignore, InitCall

from .. import children


def spec(**overrides: Any) -> ChildSpec:
    fields: dict[str, Any] = {"id": "worker", "start": children.sleep_forever}
    fields.update(overrides)
    return ChildSpec(**fields)


class TestChildSpecDefaults:
    def test_worker_defaults_match_otp(self) -> None:
        """A worker defaults to permanent, 5 seconds of shutdown, immediate start and no timeout."""
        built = spec()

        assert built.args == ()
        assert built.kwargs == {}
        assert Restart.PERMANENT is built.restart
        assert built.shutdown == 5.0
        assert ChildType.WORKER is built.type
        assert StartMode.IMMEDIATE is built.start_mode
        assert built.start_timeout is None
        assert built.significant is False

    def test_supervisor_type_defaults_to_infinity_shutdown(self) -> None:
        """A child of type SUPERVISOR defaults to Shutdown.INFINITY."""
        assert Shutdown.INFINITY is spec(type=ChildType.SUPERVISOR).shutdown

    def test_explicit_shutdown_overrides_the_type_default(self) -> None:
        """An explicit shutdown is kept, whatever the child type."""
        assert Shutdown.BRUTAL_KILL is spec(type=ChildType.SUPERVISOR, shutdown=Shutdown.BRUTAL_KILL).shutdown
        assert spec(type=ChildType.SUPERVISOR, shutdown=1.5).shutdown == 1.5

    @pytest.mark.parametrize("seconds", [0, 3, 10**6])
    def test_int_shutdown_becomes_float(self, seconds: int) -> None:
        """Shutdown seconds given as an int are stored as a float."""
        built = spec(shutdown=seconds)

        assert float(seconds) == built.shutdown
        assert float is type(built.shutdown)

    def test_args_list_becomes_tuple(self) -> None:
        """Args given as a list are stored as a tuple."""
        assert spec(args=[1, "two"]).args == (1, "two")

    def test_kwargs_are_copied(self) -> None:
        """Kwargs are copied, so changing the caller's dict later does not change the spec."""
        given = {"a": 1}
        built = spec(kwargs=given)
        given["b"] = 2

        assert built.kwargs == {"a": 1}

    def test_spec_is_frozen(self) -> None:
        """Fields cannot be assigned after the spec is built."""
        built = spec()

        with pytest.raises(AttributeError):
            built.restart = Restart.TEMPORARY  # type: ignore[misc]


class TestChildSpecValidation:
    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("id", 3, TypeError),
            ("id", None, TypeError),
            ("id", b"worker", TypeError),
            ("id", "", ValueError),
            ("start", "tests.children.sleep_forever", TypeError),
            ("start", None, TypeError),
            ("args", "abc", TypeError),
            ("args", None, TypeError),
            ("args", {"a": 1}, TypeError),
            ("kwargs", [("a", 1)], TypeError),
            ("kwargs", {1: "a"}, TypeError),
            ("restart", "permanent", TypeError),
            ("restart", ChildType.WORKER, TypeError),
            ("shutdown", "infinity", TypeError),
            ("shutdown", True, TypeError),
            ("shutdown", -1, ValueError),
            ("shutdown", -0.5, ValueError),
            ("shutdown", math.nan, ValueError),
            ("shutdown", math.inf, ValueError),
            ("type", "worker", TypeError),
            ("type", Restart.PERMANENT, TypeError),
            ("significant", 1, TypeError),
            ("significant", "true", TypeError),
            ("start_mode", "notify", TypeError),
            ("start_mode", None, TypeError),
            ("start_timeout", "1", TypeError),
            ("start_timeout", False, TypeError),
            ("start_timeout", 0, ValueError),
            ("start_timeout", -1.0, ValueError),
            ("start_timeout", math.inf, ValueError),
        ],
    )
    def test_child_specs_map_invalid_field_raises_naming_the_field(
        self, field: str, value: Any, error: type[Exception]
    ) -> None:
        """A bad field raises TypeError (wrong type) or ValueError (bad value) whose message names it."""
        with pytest.raises(error) as info:
            spec(**{field: value})

        assert type(info.value) is error
        assert f"'{field}'" in str(info.value)

    def test_child_specs_map_missing_or_unknown_key_is_a_type_error_naming_it(self) -> None:
        """
        OTP's ``missing_id``/``missing_start`` are TypeErrors naming the missing argument. OTP ignores an
        unknown key of a spec map; Python keyword arguments cannot ignore one: a TypeError names it.
        """
        for kwargs, name in (
            ({"start": children.sleep_forever}, "'id'"),
            ({"id": "x"}, "'start'"),
            ({"id": "x", "start": children.sleep_forever, "modules": ["m"]}, "'modules'"),
        ):
            with pytest.raises(TypeError, match=name):
                ChildSpec(**kwargs)

    def test_type_error_message_says_what_was_received(self) -> None:
        """A TypeError's message gives the bad value and its type, as attrs messages do."""
        with pytest.raises(TypeError) as info:
            spec(shutdown="soon")

        assert "'soon'" in str(info.value)
        assert "str" in str(info.value)

    def test_value_error_message_gives_the_bad_value(self) -> None:
        """The documented message for a negative shutdown names the field, the choices and the value."""
        with pytest.raises(ValueError) as info:
            spec(shutdown=-1)

        assert (
            str(info.value)
            == "'shutdown' must be seconds >= 0, Shutdown.BRUTAL_KILL or Shutdown.INFINITY (got -1)"
        )

    def test_id_and_start_are_required(self) -> None:
        """ChildSpec has no default for id or start."""
        with pytest.raises(TypeError):
            ChildSpec(id="x")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ChildSpec(start=children.sleep_forever)  # type: ignore[call-arg]


class TestSupervisorSpec:
    def test_defaults_are_elixirs(self) -> None:
        """Flags default to ONE_FOR_ONE, 3 restarts in 5 seconds, as Elixir's Supervisor."""
        built = SupervisorSpec(children=[])

        assert built.children == ()
        assert Strategy.ONE_FOR_ONE is built.strategy
        assert built.max_restarts == 3
        assert built.max_seconds == 5.0
        assert AutoShutdown.NEVER is built.auto_shutdown

    def test_children_list_becomes_tuple_in_order(self) -> None:
        """Children keep their order and are stored as a tuple."""
        a, b = spec(id="a"), spec(id="b")

        assert (a, b) == SupervisorSpec(children=[a, b]).children

    def test_duplicate_ids_are_rejected(self) -> None:
        """Two children with one id raise ValueError naming 'children' and the id."""
        with pytest.raises(ValueError) as info:
            SupervisorSpec(children=[spec(id="db"), spec(id="web"), spec(id="db", restart=Restart.TEMPORARY)])

        assert "'children'" in str(info.value)
        assert "'db'" in str(info.value)

    @pytest.mark.parametrize("children_value", [None, "abc", spec(), {"a": spec()}])
    def test_children_must_be_a_list(self, children_value: Any) -> None:
        """A children value that is not a list or tuple raises TypeError naming 'children'."""
        with pytest.raises(TypeError) as info:
            SupervisorSpec(children=children_value)

        assert "'children'" in str(info.value)

    def test_children_must_be_child_specs(self) -> None:
        """A child that is not a ChildSpec raises TypeError naming 'children'."""
        with pytest.raises(TypeError) as info:
            SupervisorSpec(children=[spec(), {"id": "x"}])

        assert "'children'" in str(info.value)

    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("strategy", "one_for_one", TypeError),
            ("strategy", Restart.PERMANENT, TypeError),
            ("max_restarts", 1.0, TypeError),
            ("max_restarts", True, TypeError),
            ("max_restarts", None, TypeError),
            ("max_restarts", math.inf, TypeError),
            ("max_restarts", -1, ValueError),
            ("max_seconds", "5", TypeError),
            ("max_seconds", True, TypeError),
            ("max_seconds", 0, ValueError),
            ("max_seconds", -1.0, ValueError),
            ("max_seconds", math.inf, ValueError),
            ("max_seconds", math.nan, ValueError),
            ("auto_shutdown", "never", TypeError),
            ("auto_shutdown", Strategy.ONE_FOR_ONE, TypeError),
        ],
    )
    def test_sup_flags_invalid_flag_raises_naming_the_flag(
        self, field: str, value: Any, error: type[Exception]
    ) -> None:
        """A bad flag raises TypeError or ValueError whose message names it."""
        with pytest.raises(error) as info:
            SupervisorSpec(children=[], **{field: value})

        assert type(info.value) is error
        assert f"'{field}'" in str(info.value)

    def test_sup_flags_unknown_flag_is_a_type_error_naming_it(self) -> None:
        """OTP ignores an unknown flag in a flags map; Python keywords cannot: a TypeError names it."""
        with pytest.raises(TypeError, match="'intensity'"):
            SupervisorSpec(children=[], intensity=1)  # type: ignore[call-arg]

    def test_zero_max_restarts_is_valid(self) -> None:
        """max_restarts=0 is allowed: the supervisor gives up at the first restart."""
        assert SupervisorSpec(children=[], max_restarts=0).max_restarts == 0


class TestChildIds:
    def test_an_id_with_a_slash_is_rejected_by_name(self) -> None:
        """'a/b' would share a tree path (a socket) with child 'b' of a nested 'a': rejected, naming 'id'."""
        with pytest.raises(ValueError, match="'id' must not contain '/'"):
            spec(id="a/b")
        with pytest.raises(ValueError, match="'id' must not contain '/'"):
            ChildSpec.supervisor("x/", [])


class TestNestedSupervisorSpec:
    def test_builds_a_supervisor_child_with_its_nested_spec(self) -> None:
        """ChildSpec.supervisor gives a SUPERVISOR child, ready on notify, carrying its SupervisorSpec."""
        kids = [spec(id="a"), spec(id="b")]

        built = ChildSpec.supervisor("sub", kids, Strategy.REST_FOR_ONE, max_restarts=7, max_seconds=2.5)

        assert built.id == "sub"
        assert ChildType.SUPERVISOR is built.type
        assert StartMode.NOTIFY is built.start_mode
        assert Restart.PERMANENT is built.restart
        assert Shutdown.INFINITY is built.shutdown
        assert (
            SupervisorSpec(
                children=tuple(kids), strategy=Strategy.REST_FOR_ONE, max_restarts=7, max_seconds=2.5
            )
            == built.nested
        )

    def test_keeps_restart_and_shutdown(self) -> None:
        """The nested supervisor's own restart type and shutdown are those given."""
        built = ChildSpec.supervisor("sub", [], restart=Restart.TRANSIENT, shutdown=10)

        assert Restart.TRANSIENT is built.restart
        assert built.shutdown == 10.0

    def test_nests_further(self) -> None:
        """A nested supervisor may itself hold a nested supervisor."""
        inner = ChildSpec.supervisor("inner", [spec(id="leaf")])
        outer = ChildSpec.supervisor("outer", [inner])

        assert outer.nested is not None
        assert inner == outer.nested.children[0]
        assert inner.nested is not None
        assert inner.nested.children[0].id == "leaf"

    def test_validates_its_children_and_flags(self) -> None:
        """Bad nested children or flags are rejected when the spec is built."""
        with pytest.raises(ValueError, match="'children'"):
            ChildSpec.supervisor("sub", [spec(id="a"), spec(id="a")])
        with pytest.raises(ValueError, match="'max_restarts'"):
            ChildSpec.supervisor("sub", [], max_restarts=-1)
        with pytest.raises(ValueError, match="'id'"):
            ChildSpec.supervisor("", [])

    def test_worker_has_no_nested_spec(self) -> None:
        """nested is None for a worker, and for a SUPERVISOR child built by hand."""
        assert spec().nested is None
        assert spec(type=ChildType.SUPERVISOR).nested is None


class TestPickling:
    def test_child_spec_round_trips(self) -> None:
        """A spec with every field set pickles to an equal spec."""
        built = spec(
            args=(1, [2]),
            kwargs={"k": "v"},
            restart=Restart.TRANSIENT,
            shutdown=Shutdown.BRUTAL_KILL,
            start_mode=StartMode.NOTIFY,
            start_timeout=2.5,
            significant=True,
        )

        assert built == pickle.loads(pickle.dumps(built))

    def test_nested_supervisor_spec_round_trips(self) -> None:
        """A nested supervisor's spec pickles with its children."""
        built = ChildSpec.supervisor("sub", [spec(id="a"), ChildSpec.supervisor("inner", [spec(id="b")])])

        copy = pickle.loads(pickle.dumps(built))

        assert built == copy
        assert built.nested == copy.nested


class TestSignificant:
    @pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.TEMPORARY])
    @pytest.mark.parametrize("mode", [AutoShutdown.ANY_SIGNIFICANT, AutoShutdown.ALL_SIGNIFICANT])
    def test_a_significant_child_is_accepted_under_auto_shutdown(
        self, restart: Restart, mode: AutoShutdown
    ) -> None:
        """A transient or temporary significant child fits a supervisor with auto_shutdown."""
        child = spec(restart=restart, significant=True)

        built = SupervisorSpec(children=[child], auto_shutdown=mode)

        assert (built.children, built.auto_shutdown) == ((child,), mode)

    def test_the_permanent_combination_is_refused_before_the_never_one(self) -> None:
        """A permanent significant child is refused as it is built, whatever its supervisor."""
        with pytest.raises(BadCombinationError) as info:
            spec(significant=True)

        assert ("restart", Restart.PERMANENT) in info.value.combination

    def test_a_significant_child_under_never_is_refused_naming_it(self) -> None:
        """SupervisorSpec refuses a significant child when its auto_shutdown is NEVER; the error pickles."""
        with pytest.raises(BadCombinationError, match="child 'worker'") as info:
            SupervisorSpec(children=[spec(restart=Restart.TEMPORARY, significant=True)])

        copy = pickle.loads(pickle.dumps(info.value))
        assert (copy.child_id, copy.combination) == (
            "worker",
            (("auto_shutdown", AutoShutdown.NEVER), ("significant", True)),
        )

    def test_nested_supervisor_carries_both_settings(self) -> None:
        """ChildSpec.supervisor puts auto_shutdown in the nested spec and significant on the child."""
        built = ChildSpec.supervisor(
            "sub",
            [spec(restart=Restart.TRANSIENT, significant=True)],
            restart=Restart.TEMPORARY,
            auto_shutdown=AutoShutdown.ALL_SIGNIFICANT,
            significant=True,
        )

        assert built.significant is True
        assert built.nested is not None
        assert AutoShutdown.ALL_SIGNIFICANT is built.nested.auto_shutdown


def test_integer_durations_become_float_seconds() -> None:
    """start_timeout and max_seconds given as ints are stored as floats, as shutdown is."""
    from supervisor import StartMode, SupervisorSpec
    from tests.children import sleep_forever

    spec = ChildSpec("c", sleep_forever, start_mode=StartMode.NOTIFY, start_timeout=3)
    nested = SupervisorSpec(children=[spec], max_seconds=7)
    assert (3.0, float) == (spec.start_timeout, type(spec.start_timeout))
    assert (7.0, float) == (nested.max_seconds, type(nested.max_seconds))


def _init(*args: object) -> SupervisorSpec:
    return SupervisorSpec([])


class TestSupervisorFrom:
    def test_spec_carries_the_init_and_its_args(self) -> None:
        """``supervisor_from`` builds a NOTIFY supervisor child whose args are the init and its args."""
        spec = ChildSpec.supervisor_from("sub", _init, 1, "two", restart=Restart.TRANSIENT, shutdown=7)

        assert spec.args == (_init, 1, "two")
        assert (spec.type, spec.start_mode, spec.restart, spec.shutdown) == (
            ChildType.SUPERVISOR,
            StartMode.NOTIFY,
            Restart.TRANSIENT,
            7.0,
        )
        assert ChildSpec.supervisor_from("sub", _init).shutdown is Shutdown.INFINITY

    def test_ignore_is_one_enum_value(self) -> None:
        """``IGNORE`` is the single member of ``Ignore`` and is exported by the package."""
        import supervisor

        assert list(Ignore) == [IGNORE]
        assert supervisor.IGNORE is IGNORE

    def test_init_call_validates_its_init(self) -> None:
        """``InitCall`` names 'init' when it is not callable, and turns a list of args into a tuple."""
        with pytest.raises(TypeError, match="'init' must be a callable"):
            InitCall(3)  # type: ignore[arg-type]
        assert InitCall(_init, [1, 2]).args == (1, 2)
