"""``PYTHONPATH`` for the processes the benchmarks start (Ray's workers, load generators): the repository first."""

from __future__ import annotations

import os

from serve_app.config import REPO_ROOT


def with_pythonpath(current: str | None, root: str) -> str:
    """``PYTHONPATH`` with the repository root first, so Ray's workers import ``bench``."""
    parts = [p for p in (current or "").split(os.pathsep) if p and p != root]
    return os.pathsep.join([root, *parts])


def repo_pythonpath() -> str:
    """The current ``PYTHONPATH`` with the repository root first, for a process started from here."""
    return with_pythonpath(os.environ.get("PYTHONPATH"), str(REPO_ROOT))
