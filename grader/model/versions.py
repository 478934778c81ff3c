"""Versions of what grading depends on, read without importing TensorFlow."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

from grader.model.result import Versions


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def current_versions() -> Versions:
    return Versions(
        grader=_version("grader") or "unknown",
        python=platform.python_version(),
        numpy=_version("numpy") or "unknown",
        tensorflow=_version("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
        keras=_version("keras"),
    )
