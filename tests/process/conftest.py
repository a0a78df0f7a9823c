"""Fixtures for the process-level tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

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
def log_file(tmp_path: Path) -> LogFile:
    """Where the tree under test logs, instead of the test's stderr."""
    return LogFile(tmp_path / "supervisor.log")
