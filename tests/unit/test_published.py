"""Published descriptors without processes: names, the runtime directory's checks, log files, liveness."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

import pytest

from supervisor import _published
from supervisor.cli.commands import crash_reports


@pytest.mark.parametrize("name", ["shop", "a", "app-1.prod_2", "x" * 64])
def test_valid_names_are_accepted(name: str) -> None:
    """Letters, digits, '_', '.', '-', 1 to 64, starting with a letter or digit."""
    assert _published.check_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "x" * 65, "sp ace", "../up"])
def test_invalid_names_raise_value_error_naming_the_argument(name: str) -> None:
    """Anything else is a ValueError naming 'name'; a non-str a TypeError."""
    with pytest.raises(ValueError, match="'name'"):
        _published.check_name(name)
    with pytest.raises(TypeError, match="'name'"):
        _published.check_name(3)


def test_a_runtime_directory_others_may_enter_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XDG_RUNTIME_DIR with mode 0755 is refused, as is a symlink in its place."""
    base = tmp_path / "xdg"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    with pytest.raises(PermissionError, match="mode 0755"):
        _published.runtime_dir(create=True)
    os.chmod(base, 0o700)
    link = tmp_path / "link"
    link.symlink_to(base)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(link))
    with pytest.raises(PermissionError, match="not a directory"):
        _published.runtime_dir(create=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    assert _published.runtime_dir(create=True) == str(base / "otp-supervisor")


def test_a_descriptor_of_this_process_is_live_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published with this process as its root: read back equal, listed, then unpublished."""
    base = tmp_path / "xdg"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    ticks = _published.process_start_time(os.getpid())
    assert ticks is not None
    descriptor = _published.Descriptor(
        "unit",
        "tree",
        "/nowhere.sock",
        b"k" * 32,
        os.getpid(),
        ticks,
        datetime.datetime.now(datetime.timezone.utc),
    )
    published = _published.publish(descriptor)
    assert os.stat(published.file).st_mode & 0o777 == 0o600
    assert _published.read("unit") == published
    assert _published.running() == [published]
    with pytest.raises(ValueError, match="already published"):
        _published.publish(descriptor)
    _published.unpublish(published.file, os.getpid() + 1)  # another root's: left alone
    assert _published.read("unit") == published
    _published.unpublish(published.file, os.getpid(), ticks)
    assert _published.read("unit") is None


def test_a_descriptor_with_another_start_time_is_stale_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pid exists but started at another time (a reused pid): ignored, and the name is free."""
    base = tmp_path / "xdg"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    ticks = _published.process_start_time(os.getpid())
    assert ticks is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    _published.publish(_published.Descriptor("reused", "tree", "/a.sock", b"k", os.getpid(), ticks + 1, now))
    assert _published.read("reused") is None and _published.running() == []
    fresh = _published.publish(
        _published.Descriptor("reused", "tree", "/b.sock", b"k", os.getpid(), ticks, now)
    )
    assert _published.read("reused") == fresh


def test_log_files_are_the_handlers_filenames() -> None:
    """Each handler's filename, absolute; handlers without one are skipped."""
    config = {"handlers": {"f": {"filename": "x.log"}, "s": {"class": "logging.StreamHandler"}}}
    assert _published.log_files_of(config) == (os.path.abspath("x.log"),)
    assert _published.log_files_of(None) == ()


def test_crash_reports_keep_one_childs_records_with_their_tracebacks() -> None:
    """A report line about the child and the traceback lines under it; other children's are left out."""
    lines = [
        "ERROR supervisor root/api: child_terminated: child 'h' (permanent, worker) reason=exception E: x",
        "Traceback (most recent call last):",
        "E: x",
        "ERROR supervisor root: child_terminated: child 'h' (permanent, worker) reason=killed",
        '{"path": "root/api/h", "message": "json"}',
    ]
    assert crash_reports(lines, "root/api/h") == [lines[0], lines[1], lines[2], lines[4]]


def test_an_xdg_runtime_dir_that_does_not_exist_falls_back_to_the_temp_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    directory = _published.runtime_dir(create=True)

    assert directory == str(tmp_path / f"otp-supervisor-{os.geteuid()}")
