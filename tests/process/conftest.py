"""Fixtures for the process-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from supervisor import Application

from .helpers import log_config


@attrs.frozen
class LogFile:
    """A file the supervisors log to: pass ``config`` as ``logging_config``, then ``read()`` it."""

    path: Path

    @property
    def config(self) -> dict[str, Any]:
        return log_config(self.path)

    def read(self) -> str:
        return self.path.read_text() if self.path.exists() else ""


@pytest.fixture
def app() -> Iterator[Application]:
    """A started Application, stopped when the test ends, pass or fail."""
    with Application() as application:
        yield application


@pytest.fixture
def log_file(tmp_path: Path) -> LogFile:
    """Where the tree under test logs, instead of the test's stderr."""
    return LogFile(tmp_path / "supervisor.log")
