"""Where the grader keeps things, from the environment: one place to read it.

``GRADER_CACHE_DIR``: the reference cache (default ``~/.cache/grader``).
(``GRADER_ROOT`` is read by :func:`grader.model.assignment.project_root`.)
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("GRADER_CACHE_DIR") or Path.home() / ".cache" / "grader")
