"""
Child specs and supervisor flags: frozen values, validated when built.

A bad field raises ``TypeError`` (wrong type) or ``ValueError`` (right type, bad value) naming the
field, what it must be, and what it got. Differences from OTP: durations are float seconds (OTP: ms),
ids are non-empty strings without ``/`` (it joins ids into tree paths), and a child may declare a
start mode and a start timeout (OTP has neither: its children are ready when ``init/1`` returns, and
the supervisor waits for ever).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._entrypoint import EntryPoint
from .errors import BadCombinationError

__all__ = [
    "IGNORE",
    "NESTED_SUPERVISOR_FROM",
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "ChildType",
    "DynamicSupervisorSpec",
    "Ignore",
    "InitCall",
    "Restart",
    "Shutdown",
    "StartMode",
    "Strategy",
    "SupervisorSpec",
]


class Restart(enum.Enum):
    """When a child is restarted after it exits."""

    PERMANENT = "permanent"
    """Always, whatever the exit reason."""
    TRANSIENT = "transient"
    """Only after an abnormal exit: not after *normal* or *shutdown*."""
    TEMPORARY = "temporary"
    """Never, not even as a bystander; its spec is forgotten when it ends."""


class Shutdown(enum.Enum):
    """The symbolic shutdown values; a number of seconds is the third kind."""

    BRUTAL_KILL = "brutal_kill"
    """SIGKILL at once."""
    INFINITY = "infinity"
    """SIGTERM, then wait as long as it takes (the default for supervisors)."""


class ChildType(enum.Enum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Strategy(enum.Enum):
    """Which children restart when one exits and is to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"
    """One child spec, the template; ``start_child(*extra_args)`` starts children from it (OTP's)."""


class AutoShutdown(enum.Enum):
    """
    Whether a supervisor stops itself when its significant children end (OTP 24's ``auto_shutdown``).

    Only a significant child's own exit that is not restarted counts: a transient one exiting with
    reason *normal* or *shutdown*, or a temporary one exiting in any way. A ``terminate_child``, a
    sibling stopped by a one_for_all or rest_for_one restart, or the supervisor's own stop do not.
    """

    NEVER = "never"
    """Never (the default); no child may be significant."""
    ANY_SIGNIFICANT = "any_significant"
    """Stop, with reason *shutdown*, when any significant child ends."""
    ALL_SIGNIFICANT = "all_significant"
    """Stop, with reason *shutdown*, once no significant child has a process (a restarting one has)."""


class StartMode(enum.Enum):
    """When a started child counts as ready, so the supervisor goes on."""

    IMMEDIATE = "immediate"
    """As soon as the start function begins."""
    NOTIFY = "notify"
    """When the start function calls :func:`supervisor.notify_ready` (like a gen_server's ``init``)."""


DEFAULT_WORKER_SHUTDOWN = 5.0

NESTED_SUPERVISOR = EntryPoint("supervisor._engine.entry", "run_nested_supervisor")
"""The start of a child built with :meth:`ChildSpec.supervisor`: the engine's nested supervisor."""

NESTED_SUPERVISOR_FROM = EntryPoint("supervisor._engine.entry", "run_nested_supervisor_from")
"""The start of a child built with :meth:`ChildSpec.supervisor_from`: its init function, then a supervisor."""


class Ignore(enum.Enum):
    """The type of :data:`IGNORE`, the one value an init function returns to start no supervisor."""

    IGNORE = "ignore"


IGNORE = Ignore.IGNORE
"""What an init function returns instead of a :class:`SupervisorSpec` to decline (OTP's ``ignore``).

At the root, :meth:`Supervisor.start_from` then returns None and nothing is left running; for a nested
supervisor (:meth:`ChildSpec.supervisor_from`) the child is ignored, as a child that calls
:func:`supervisor.ignore_start`: kept with no process (a temporary one is forgotten)."""

_RESERVED_SUPERVISOR_FROM = ("start", "args", "kwargs", "type", "start_mode")


def _fail_type(name: str, expected: str, value: object) -> TypeError:
    return TypeError(f"'{name}' must be {expected} (got {value!r} that is a {type(value).__name__})")


def _check_enum(name: str, cls: type[enum.Enum], value: object) -> None:
    if not isinstance(value, cls):
        members = ", ".join(f"{cls.__name__}.{m.name}" for m in cls)
        raise _fail_type(name, f"one of {members}", value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_seconds(value: Any) -> Any:
    """Durations are float seconds: an int becomes a float; anything else is left to the validator."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _validate_id(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail_type(attribute.name, "a str", value)
    if not value:
        raise ValueError(f"'{attribute.name}' must be a non-empty str (got {value!r})")
    if "/" in value:
        # '/' joins ids into a tree path, which names each supervisor's socket: 'a/b' would be the
        # same place as the child 'b' of a nested supervisor 'a'.
        raise ValueError(
            f"'{attribute.name}' must not contain '/', which joins ids in tree paths (got {value!r})"
        )


def _validate_name(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail_type(attribute.name, "a str or None", value)
    if not value or "\0" in value:
        raise ValueError(f"'{attribute.name}' must be a non-empty str without NUL (got {value!r})")


def _validate_start(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        raise _fail_type(attribute.name, "a callable", value)


def _to_args(value: object) -> tuple[Any, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(value)
    raise _fail_type("args", "a tuple or list", value)


def _to_kwargs(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail_type("kwargs", "a mapping of str to values", value)
    for key in value:
        if not isinstance(key, str):
            raise _fail_type("kwargs", "a mapping with str keys", key)
    return dict(value)


def _validate_enum(cls: type[enum.Enum]) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        _check_enum(attribute.name, cls, value)

    return check


def _validate_shutdown(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, Shutdown):
        return
    expected = "seconds >= 0, Shutdown.BRUTAL_KILL or Shutdown.INFINITY"
    if not _is_number(value):
        raise _fail_type(attribute.name, expected, value)
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{attribute.name}' must be {expected} (got {value!r})")


def _validate_significant(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise _fail_type(attribute.name, "a bool", value)


def _validate_start_timeout(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not _is_number(value):
        raise _fail_type(attribute.name, "seconds > 0 or None", value)
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be seconds > 0 or None (got {value!r})")


def _seconds_validator(
    expected: str, minimum: float, inclusive: bool = True, maximum: float | None = None
) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    """A validator of finite float seconds (or a ratio) in a range, naming the field when it fails."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if not _is_number(value):
            raise _fail_type(attribute.name, expected, value)
        assert isinstance(value, (int, float))
        below = value < minimum if inclusive else value <= minimum
        if not math.isfinite(value) or below or (maximum is not None and value > maximum):
            raise ValueError(f"'{attribute.name}' must be {expected} (got {value!r})")

    return check


@attrs.frozen
class Backoff:
    """
    How long an automatic restart of a child waits, growing while the child keeps crashing.

    The first restart after a healthy period waits *initial* seconds (0, the default, restarts at
    once, as without a backoff); the n-th consecutive one (n >= 2) waits
    ``min(max, base * factor ** (n - 2))``; each delay is spread at random by ``± jitter`` times
    itself. A child that ran *reset_after* seconds before it exited starts the sequence again. A
    failed restart's retry is the next restart of the sequence. The restart intensity still counts
    every exit when it happens, before the delay, so a backoff cannot hide a crash storm.

    Args:
        initial: seconds >= 0 before the first restart after a healthy period.
        base: seconds >= 0 before the second consecutive restart.
        factor: >= 1, how much each later delay grows.
        max: seconds >= 0, the longest delay (before jitter).
        jitter: from 0 to 1, the random spread of each delay, as a fraction of it.
        reset_after: seconds > 0 a child must run for its next crash to count as the first again.

    Raises:
        TypeError, ValueError: a field is invalid; the message names it.
    """

    initial: float = attrs.field(
        default=0.0, converter=_to_seconds, validator=_seconds_validator("seconds >= 0", 0.0)
    )
    base: float = attrs.field(
        default=0.1, converter=_to_seconds, validator=_seconds_validator("seconds >= 0", 0.0)
    )
    factor: float = attrs.field(
        default=2.0, converter=_to_seconds, validator=_seconds_validator("a number >= 1", 1.0)
    )
    max: float = attrs.field(
        default=30.0, converter=_to_seconds, validator=_seconds_validator("seconds >= 0", 0.0)
    )
    jitter: float = attrs.field(
        default=0.2,
        converter=_to_seconds,
        validator=_seconds_validator("a fraction from 0 to 1", 0.0, maximum=1.0),
    )
    reset_after: float = attrs.field(
        default=60.0,
        converter=_to_seconds,
        validator=_seconds_validator("seconds > 0", 0.0, inclusive=False),
    )


def _validate_backoff(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Backoff):
        raise _fail_type(attribute.name, "a Backoff or None", value)


@attrs.frozen
class ChildSpec:
    """
    How to start, restart and stop one child process.

    Args:
        id: the child's name, unique within its supervisor.
        start: called in the child process as ``start(*args, **kwargs)``; its return is a *normal* exit.
        args, kwargs: the arguments for *start* (a temporary child's are dropped when it ends).
        restart: when the child is restarted; see :class:`Restart`.
        shutdown: seconds between SIGTERM and SIGKILL, or a :class:`Shutdown` value. ``None`` (the
            default) becomes 5.0 for a worker and ``Shutdown.INFINITY`` for a supervisor.
        type: :class:`ChildType`; a supervisor child is usually built with :meth:`supervisor`.
        start_mode: when the child counts as ready; see :class:`StartMode`.
        start_timeout: with ``StartMode.NOTIFY``, seconds to wait for readiness before the child is
            killed and the start fails; ``None`` waits for ever, as OTP does.
        significant: the child's own end may stop its supervisor, as the supervisor's
            :class:`AutoShutdown` says. Only for a TRANSIENT or TEMPORARY child, and only under a
            supervisor whose ``auto_shutdown`` is not NEVER.
        backoff: how long an automatic restart waits (see :class:`Backoff`); ``None`` (the
            default) restarts at once, as OTP does. Ignored for a temporary child (never restarted).
        name: the name a server child (a :class:`~supervisor.GenServer`'s spec) registers, unique in
            the tree (an Application: across its sessions); ``None`` (the default) registers none.
            Its supervisor removes it when it forgets the child.

    Raises:
        TypeError, ValueError: a field is invalid; the message names it.
        BadCombinationError: *significant* with ``Restart.PERMANENT`` (a ``ValueError``).
    """

    id: str = attrs.field(validator=_validate_id)
    start: Callable[..., Any] = attrs.field(validator=_validate_start)
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_args)
    kwargs: dict[str, Any] = attrs.field(factory=dict, converter=_to_kwargs)
    restart: Restart = attrs.field(default=Restart.PERMANENT, validator=_validate_enum(Restart))
    shutdown: float | Shutdown = attrs.field(default=None, validator=_validate_shutdown)
    type: ChildType = attrs.field(default=ChildType.WORKER, validator=_validate_enum(ChildType))
    start_mode: StartMode = attrs.field(default=StartMode.IMMEDIATE, validator=_validate_enum(StartMode))
    start_timeout: float | None = attrs.field(
        default=None, converter=_to_seconds, validator=_validate_start_timeout
    )
    significant: bool = attrs.field(default=False, validator=_validate_significant)
    backoff: Backoff | None = attrs.field(default=None, validator=_validate_backoff)
    name: str | None = attrs.field(default=None, validator=attrs.validators.optional(_validate_name))

    def __attrs_post_init__(self) -> None:
        if self.significant and self.restart is Restart.PERMANENT:
            raise BadCombinationError(
                f"bad combination for child {self.id!r}: restart=Restart.PERMANENT with significant=True "
                "(a significant child must be TRANSIENT or TEMPORARY: a permanent one never ends on its own)",
                (("restart", Restart.PERMANENT), ("significant", True)),
                self.id,
            )
        if self.shutdown is None:
            default = Shutdown.INFINITY if self.type is ChildType.SUPERVISOR else DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", default)
        elif not isinstance(self.shutdown, Shutdown):
            object.__setattr__(self, "shutdown", float(self.shutdown))

    @classmethod
    def supervisor(
        cls,
        id: str,
        children: Sequence[ChildSpec],
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown: float | Shutdown = Shutdown.INFINITY,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        significant: bool = False,
        backoff: Backoff | None = None,
    ) -> ChildSpec:
        """
        The spec of a nested supervisor with its own children, strategy and restart intensity.

        It is restarted like any child (after *backoff*, if given: see :class:`Backoff`); it is ready
        once all its children are. The spec carries the nested :class:`SupervisorSpec` as its only
        argument; the engine runs it. *auto_shutdown* is the nested supervisor's own (see
        :class:`AutoShutdown`); *significant* is this child's in its parent: a significant nested
        supervisor that stops itself (with reason *shutdown*) may stop its parent in turn, if it is
        TRANSIENT or TEMPORARY.

        Raises:
            TypeError, ValueError: a bad argument, named (the nested flags and children included).
            BadCombinationError: a significant child under ``AutoShutdown.NEVER``, or *significant*
                with ``Restart.PERMANENT``.
        """
        nested = SupervisorSpec(
            children=tuple(children),
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            auto_shutdown=auto_shutdown,
        )
        return cls(
            id=id,
            start=NESTED_SUPERVISOR,
            args=(nested,),
            restart=restart,
            shutdown=shutdown,
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
            significant=significant,
            backoff=backoff,
        )

    @classmethod
    def dynamic_supervisor(
        cls,
        id: str,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        max_children: int | None = None,
        extra_arguments: Sequence[Any] = (),
        **spec_options: Any,
    ) -> ChildSpec:
        """
        The spec of a nested DynamicSupervisor (Elixir's): no children at start, ``start_child(spec)`` later.

        *spec_options* are this child's own ChildSpec fields (``restart``, ``shutdown``...; shutdown
        defaults to ``Shutdown.INFINITY``); ``start``, ``args``, ``kwargs``, ``type`` and
        ``start_mode`` are set here. Does not block.

        Raises:
            TypeError, ValueError: a bad argument or option, named; ``start`` and the other fields
                set here are refused as options.
        """
        fixed = sorted({"start", "args", "kwargs", "type", "start_mode"} & set(spec_options))
        if fixed:
            raise TypeError(
                f"dynamic_supervisor: {', '.join(map(repr, fixed))} cannot be given: a nested "
                "DynamicSupervisor sets them itself"
            )
        nested = DynamicSupervisorSpec(
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            max_children=max_children,
            extra_arguments=extra_arguments,
        )
        options = {"shutdown": Shutdown.INFINITY, **spec_options}
        return cls(
            id=id,
            start=NESTED_SUPERVISOR,
            args=(nested,),
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
            **options,
        )

    @classmethod
    def supervisor_from(
        cls, id: str, init: Callable[..., SupervisorSpec | Ignore], *args: Any, **spec_options: Any
    ) -> ChildSpec:
        """
        The spec of a nested supervisor whose children come from *init*, as OTP's ``init/1`` does.

        ``init(*args)`` runs in the nested supervisor's own process each time it is started or
        restarted (so a restart reads its children again), and returns a :class:`SupervisorSpec` or
        :data:`IGNORE`. Raising, returning anything else (OTP's ``bad_return``) or leaving threads
        running in the supervisor's process is a start failure of this child, whose
        :class:`~supervisor.StartError` carries the exception as ``__cause__``. :data:`IGNORE` makes
        the child ignored: kept with pid None, as a child that calls ``ignore_start()``.

        *init* and *args* must be picklable (a module-level function, or one ``dill`` can send). The
        spec's ``start`` is the engine's entry point and its ``args`` are ``(init, *args)``.

        Args:
            spec_options: the other :class:`ChildSpec` fields, such as ``restart``, ``shutdown`` or
                ``start_timeout`` (``shutdown`` defaults to ``Shutdown.INFINITY``, as for any
                supervisor); ``start``, ``args``, ``kwargs``, ``type`` and ``start_mode`` are set here.

        Raises:
            TypeError, ValueError: *init* is not callable, a reserved field is given, or a field is
                invalid; the message names it.
        """
        if not callable(init):
            raise _fail_type("init", "a callable returning a SupervisorSpec or IGNORE", init)
        for name in _RESERVED_SUPERVISOR_FROM:
            if name in spec_options:
                raise TypeError(
                    f"supervisor_from: '{name}' is set by supervisor_from itself and cannot be given "
                    f"(got {name}={spec_options[name]!r})"
                )
        return cls(
            id,
            NESTED_SUPERVISOR_FROM,
            (init, *args),
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
            **spec_options,
        )

    @property
    def nested(self) -> SupervisorSpec | DynamicSupervisorSpec | None:
        """
        The nested supervisor's spec, for a child built with :meth:`supervisor` or
        :meth:`dynamic_supervisor`; else None.
        """
        if (
            self.type is ChildType.SUPERVISOR
            and self.args
            and isinstance(self.args[0], (SupervisorSpec, DynamicSupervisorSpec))
        ):
            return self.args[0]
        return None


def _to_children(value: object) -> tuple[ChildSpec, ...]:
    if not isinstance(value, (tuple, list)):
        raise _fail_type("children", "a list of ChildSpec", value)
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, ChildSpec):
            raise _fail_type("children", "a list of ChildSpec", item)
        if item.id in seen:
            raise ValueError(f"'children' must have unique ids (got {item.id!r} twice)")
        seen.add(item.id)
    return tuple(value)


def _validate_max_restarts(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail_type(attribute.name, "an int >= 0", value)
    if value < 0:
        raise ValueError(f"'{attribute.name}' must be an int >= 0 (got {value!r})")


def _validate_max_seconds(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value):
        raise _fail_type(attribute.name, "seconds > 0", value)
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be seconds > 0 (got {value!r})")


@attrs.frozen
class SupervisorSpec:
    """
    A supervisor's children and flags.

    More than *max_restarts* restarts within *max_seconds* makes the supervisor stop all its children
    and exit with reason *shutdown* (OTP's restart intensity; Elixir's defaults). *auto_shutdown*
    says whether the end of its significant children stops it (see :class:`AutoShutdown`).

    Raises:
        TypeError, ValueError: a bad child list or flag, named.
        BadCombinationError: a significant child while *auto_shutdown* is ``AutoShutdown.NEVER``.
    """

    children: tuple[ChildSpec, ...] = attrs.field(converter=_to_children)
    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, validator=_validate_enum(Strategy))
    max_restarts: int = attrs.field(default=3, validator=_validate_max_restarts)
    max_seconds: float = attrs.field(default=5.0, converter=_to_seconds, validator=_validate_max_seconds)
    auto_shutdown: AutoShutdown = attrs.field(
        default=AutoShutdown.NEVER, validator=_validate_enum(AutoShutdown)
    )

    def __attrs_post_init__(self) -> None:
        if self.strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(self.children) != 1:
            ids = ", ".join(repr(c.id) for c in self.children) or "none"
            raise ValueError(
                "'children' must be exactly one ChildSpec, the template, with Strategy.SIMPLE_ONE_FOR_ONE "
                f"(OTP's bad_start_spec) (got {len(self.children)}: {ids})"
            )
        if self.strategy is Strategy.SIMPLE_ONE_FOR_ONE and self.auto_shutdown is not AutoShutdown.NEVER:
            # OTP's significant_simple: its children are anonymous and many, none can be significant.
            raise BadCombinationError(
                "bad combination: strategy=Strategy.SIMPLE_ONE_FOR_ONE with "
                f"auto_shutdown={self.auto_shutdown} (a simple_one_for_one supervisor takes only "
                "AutoShutdown.NEVER, and no significant child)",
                (("strategy", Strategy.SIMPLE_ONE_FOR_ONE), ("auto_shutdown", self.auto_shutdown)),
            )
        kind = "simple_one_for_one supervisor" if self.strategy is Strategy.SIMPLE_ONE_FOR_ONE else None
        for child in self.children:
            check_significant(child, self.auto_shutdown, kind)


def check_significant(spec: ChildSpec, auto_shutdown: AutoShutdown, kind: str | None = None) -> None:
    """
    Refuse *spec* as a child of a supervisor whose ``auto_shutdown`` is *auto_shutdown*, if it is
    significant there while that is NEVER (OTP's ``bad_combination``). *kind* names a supervisor
    that only takes NEVER (``"DynamicSupervisor"``), for the message. Does not block.

    Raises:
        BadCombinationError: naming the child and the two settings.
    """
    if not spec.significant or auto_shutdown is not AutoShutdown.NEVER:
        return
    if kind is None:
        why = "a significant child needs ANY_SIGNIFICANT or ALL_SIGNIFICANT"
    else:
        why = f"a {kind} takes no significant child: its auto_shutdown is always NEVER"
    raise BadCombinationError(
        f"bad combination for child {spec.id!r}: significant=True under a supervisor with "
        f"auto_shutdown=AutoShutdown.NEVER ({why})",
        (("auto_shutdown", AutoShutdown.NEVER), ("significant", True)),
        spec.id,
    )


def _validate_max_children(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail_type(attribute.name, "an int >= 0 or None (no limit)", value)
    if value < 0:
        raise ValueError(f"'{attribute.name}' must be an int >= 0 or None (no limit) (got {value!r})")


def _to_extra_arguments(value: object) -> tuple[Any, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(value)
    raise _fail_type("extra_arguments", "a tuple or list", value)


@attrs.frozen
class DynamicSupervisorSpec:
    """
    A DynamicSupervisor's flags (Elixir's): no children at start, one_for_one, children added by
    ``start_child(spec)`` and known by pid.

    Args:
        max_restarts, max_seconds: the restart intensity, as for :class:`SupervisorSpec`.
        max_children: how many children it may have at once (running, starting or restarting);
            None: no limit. A full supervisor refuses ``start_child`` with ``MaxChildrenError``.
        extra_arguments: prepended to every started child's ``args``.

    Raises:
        TypeError, ValueError: a field is invalid; the message names it.
    """

    max_restarts: int = attrs.field(default=3, validator=_validate_max_restarts)
    max_seconds: float = attrs.field(default=5.0, converter=_to_seconds, validator=_validate_max_seconds)
    max_children: int | None = attrs.field(default=None, validator=_validate_max_children)
    extra_arguments: tuple[Any, ...] = attrs.field(default=(), converter=_to_extra_arguments)

    @property
    def strategy(self) -> Strategy:
        """Always ``Strategy.ONE_FOR_ONE``, as Elixir's DynamicSupervisor."""
        return Strategy.ONE_FOR_ONE

    @property
    def children(self) -> tuple[ChildSpec, ...]:
        """Always empty: a DynamicSupervisor starts with no children."""
        return ()

    @property
    def auto_shutdown(self) -> AutoShutdown:
        """Always ``AutoShutdown.NEVER``, as Elixir's DynamicSupervisor: it takes no significant child."""
        return AutoShutdown.NEVER


def _validate_init(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        raise _fail_type(attribute.name, "a callable returning a SupervisorSpec or IGNORE", value)


@attrs.frozen
class InitCall:
    """
    A root supervisor whose children come from ``init(*args)``, run in the root's own process.

    What :meth:`Supervisor.start_from` sends to the root in place of a :class:`SupervisorSpec`.
    """

    init: Callable[..., SupervisorSpec | Ignore] = attrs.field(validator=_validate_init)
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_args)
