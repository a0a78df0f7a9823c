"""``python -m supervisor``: the ``otp-supervisor`` command line (:mod:`supervisor.cli`), the demo too."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
