"""ExitReason: exit statuses, exceptions with their tracebacks, the RemoteError fallback, describe()."""

from __future__ import annotations

import pickle
import signal
import traceback

import pytest

from supervisor import ExitKind, ExitReason, RemoteError, ShutdownExit

from .. import children


def reason_for(function: object, *args: object) -> ExitReason:
    """The reason for the exception *function* raises when called with *args*."""
    try:
        function(*args)  # type: ignore[operator]
    except BaseException as exc:
        return ExitReason.from_exception(exc)
    raise AssertionError(f"{function!r} did not raise")


class NeedsTwoArgs(Exception):
    """A custom __init__ whose args do not match BaseException.args; still comes back whole."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(first)
        self.second = second


class BadReduce(Exception):
    """Pickles, but cannot be unpickled: its __reduce__ leaves out the argument __init__ needs."""

    def __init__(self, needed: str) -> None:
        super().__init__(needed)

    def __reduce__(self) -> tuple[type[BadReduce], tuple[()]]:
        return (BadReduce, ())


def raise_needs_two_args() -> None:
    raise NeedsTwoArgs("first", "second")


def raise_bad_reduce() -> None:
    raise BadReduce("needed")


class TestFromExitcode:
    @pytest.mark.parametrize(
        ("exitcode", "expected"),
        [
            (0, ExitReason(ExitKind.NORMAL)),
            (-9, ExitReason(ExitKind.KILLED, signal=9)),
            (-15, ExitReason(ExitKind.SHUTDOWN)),
            (-11, ExitReason(ExitKind.SIGNALED, signal=11)),
            (-6, ExitReason(ExitKind.SIGNALED, signal=6)),
            (3, ExitReason(ExitKind.EXIT_CODE, code=3)),
            (1, ExitReason(ExitKind.EXIT_CODE, code=1)),
            (255, ExitReason(ExitKind.EXIT_CODE, code=255)),
        ],
    )
    def test_exit_status_maps_to_reason(self, exitcode: int, expected: ExitReason) -> None:
        """Process.exitcode maps to the reason the module's table gives."""
        assert expected == ExitReason.from_exitcode(exitcode)

    def test_named_constructors_agree_with_exit_statuses(self) -> None:
        """normal(), killed() and shutdown() are the reasons of statuses 0, -SIGKILL and -SIGTERM."""
        assert ExitReason.normal() == ExitReason.from_exitcode(0)
        assert ExitReason.killed() == ExitReason.from_exitcode(-signal.SIGKILL)
        assert ExitReason.shutdown() == ExitReason.from_exitcode(-signal.SIGTERM)


class TestNormality:
    @pytest.mark.parametrize(
        ("reason", "normal"),
        [
            (ExitReason.normal(), True),
            (ExitReason.shutdown(), True),
            (ExitReason.shutdown("maintenance"), True),
            (ExitReason.killed(), False),
            (ExitReason.from_exitcode(-11), False),
            (ExitReason.from_exitcode(3), False),
            (reason_for(children.crash), False),
        ],
    )
    def test_only_normal_and_shutdown_are_normal(self, reason: ExitReason, normal: bool) -> None:
        """is_normal holds for normal and shutdown (any term) only; is_abnormal is its negation."""
        assert normal == reason.is_normal
        assert (not normal) == reason.is_abnormal

    def test_shutdown_keeps_its_term(self) -> None:
        """shutdown(term) keeps the term, as OTP's {shutdown, Term}."""
        assert ExitReason.shutdown(("db", 1)).term == ("db", 1)


class TestFromException:
    def test_keeps_type_message_and_traceback_text(self) -> None:
        """The reason names the exception's class, keeps its message and the whole chain as text."""
        reason = reason_for(children.crash, "it broke")

        assert ExitKind.EXCEPTION is reason.kind
        assert reason.type_name == "builtins.ValueError"
        assert reason.message == "it broke"
        assert reason.traceback_text is not None
        assert "ValueError: it broke" in reason.traceback_text
        assert "KeyError: 'inner cause'" in reason.traceback_text
        assert "direct cause" in reason.traceback_text
        assert "in crash" in reason.traceback_text

    def test_exception_comes_back_with_cause_context_and_traceback(self) -> None:
        """exception() rebuilds the exception with its __cause__, __context__ and a traceback."""
        exc = reason_for(children.crash, "it broke").exception()

        assert isinstance(exc, ValueError)
        assert exc.args == ("it broke",)
        assert isinstance(exc.__cause__, KeyError)
        assert exc.__cause__.args == ("inner cause",)
        assert exc.__context__ is exc.__cause__
        assert exc.__traceback__ is not None
        assert "crash" in [frame.name for frame in traceback.extract_tb(exc.__traceback__)]

    def test_implicit_context_is_kept(self) -> None:
        """An exception raised while handling another keeps it as __context__, with no __cause__."""

        def fail_with_context() -> None:
            try:
                {}["missing"]
            except KeyError:
                raise RuntimeError("while handling")  # noqa: B904

        exc = reason_for(fail_with_context).exception()

        assert isinstance(exc, RuntimeError)
        assert exc.__cause__ is None
        assert isinstance(exc.__context__, KeyError)

    def test_reason_pickles_and_still_gives_the_exception(self) -> None:
        """A reason crosses processes by pickle and rebuilds the same exception on the other side."""
        reason = reason_for(children.crash, "remote")

        copy = pickle.loads(pickle.dumps(reason))

        assert reason == copy
        exc = copy.exception()
        assert isinstance(exc, ValueError)
        assert isinstance(exc.__cause__, KeyError)

    def test_custom_init_without_reduce_comes_back_with_its_attributes(self) -> None:
        """An exception whose __init__ takes other arguments than its args is rebuilt with its attributes."""
        exc = reason_for(raise_needs_two_args).exception()

        assert isinstance(exc, NeedsTwoArgs)
        assert exc.args == ("first",)
        assert exc.second == "second"

    def test_base_exceptions_are_kept(self) -> None:
        """ShutdownExit and other BaseExceptions come back as themselves."""
        exc = reason_for(children.exit_shutdown, "term").exception()

        assert isinstance(exc, ShutdownExit)
        assert exc.term == "term"

    def test_other_kinds_have_no_exception(self) -> None:
        """exception() is None for every kind but EXCEPTION."""
        for reason in (
            ExitReason.normal(),
            ExitReason.shutdown(),
            ExitReason.killed(),
            ExitReason.from_exitcode(2),
        ):
            assert reason.exception() is None


class TestRemoteErrorFallback:
    def test_local_class_falls_back_to_remote_error_with_the_text(self) -> None:
        """An exception of a class defined in a function cannot be pickled: a RemoteError carries its text."""

        class LocalError(Exception):
            pass

        def fail() -> None:
            raise LocalError("local trouble")

        reason = reason_for(fail)
        exc = reason.exception()

        assert reason.exc_pickle is None
        assert isinstance(exc, RemoteError)
        assert reason.type_name == exc.type_name
        assert exc.type_name.endswith("<locals>.LocalError")
        assert exc.message == "local trouble"
        assert reason.traceback_text == exc.traceback_text
        assert "local trouble" in str(exc)
        assert "Remote traceback" in str(exc)
        assert "in fail" in str(exc)

    def test_class_that_cannot_be_unpickled_falls_back(self) -> None:
        """An exception that pickles but fails to unpickle is detected at once and falls back."""
        reason = reason_for(raise_bad_reduce)
        exc = reason.exception()

        assert reason.exc_pickle is None
        assert isinstance(exc, RemoteError)
        assert f"{__name__}.BadReduce" == exc.type_name
        assert exc.message == "needed"

    def test_pickle_unloadable_here_falls_back(self) -> None:
        """A pickle that cannot be loaded where exception() runs (class not importable) falls back."""
        reason = ExitReason(
            ExitKind.EXCEPTION,
            type_name="elsewhere.Gone",
            message="gone",
            traceback_text="Traceback (most recent call last):\nelsewhere.Gone: gone\n",
            exc_pickle=b"\x80\x04not a pickle",
        )

        exc = reason.exception()

        assert isinstance(exc, RemoteError)
        assert (exc.type_name, exc.message) == ("elsewhere.Gone", "gone")
        assert "elsewhere.Gone: gone" in str(exc)

    def test_remote_error_pickles(self) -> None:
        """A RemoteError can itself cross processes, keeping its fields."""
        exc = RemoteError("pkg.Error", "message", "text")

        copy = pickle.loads(pickle.dumps(exc))

        assert (copy.type_name, copy.message, copy.traceback_text) == ("pkg.Error", "message", "text")

    def test_unprintable_exception_still_gives_a_reason(self) -> None:
        """An exception whose str() raises gets a placeholder message rather than breaking the report."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no str")

        def fail() -> None:
            raise Unprintable()

        reason = reason_for(fail)

        assert reason.message == "<unprintable Unprintable>"
        assert isinstance(reason.exception(), RemoteError)


class TestDescribe:
    @pytest.mark.parametrize(
        ("reason", "text"),
        [
            (ExitReason.normal(), "normal"),
            (ExitReason.shutdown(), "shutdown"),
            (ExitReason.shutdown("upgrade"), "shutdown('upgrade')"),
            (ExitReason.killed(), "killed (SIGKILL)"),
            (ExitReason.start_timeout(2), "start timeout (2.0 s) passed: killed (SIGKILL)"),
            (ExitReason.from_exitcode(-11), "signal SIGSEGV"),
            (ExitReason(ExitKind.SIGNALED, signal=99), "signal 99"),
            (ExitReason.from_exitcode(3), "exit code 3"),
        ],
    )
    def test_describes_each_kind_on_one_line(self, reason: ExitReason, text: str) -> None:
        """describe() gives one short line per kind."""
        assert text == reason.describe()

    def test_describes_an_exception_by_class_and_message(self) -> None:
        """An exception is described by its qualified class name and message, without the traceback."""
        assert reason_for(children.crash).describe() == "exception builtins.ValueError: boom"
