"""Versions of what grading depends on, read from the installed
distributions (importlib.metadata), without importing TensorFlow."""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from grader.model.result import Versions

# Distributions that install the same import package: a requirement on one is
# met by any of them, and the version of TensorFlow is whichever is installed.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
    "tensorflow-cpu": ("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
}
# pyproject.toml's extra holding TensorFlow (tensorflow-cpu): grading needs it,
# but it is no core requirement, so that the grader installs beside a
# student's own tensorflow (Colab, macOS) without pulling a second one.
RUNTIME_EXTRAS = ("cpu",)
# What the notebooks run on, wherever it came from (tensorflow or tensorflow-cpu).
TENSORFLOW_MINIMUM, KERAS_MINIMUM = Version("2.16"), Version("3")


def installed(name: str) -> tuple[str, str] | None:
    """``(distribution, version)`` of what provides ``name`` here, or None."""
    for dist in PROVIDERS.get(canonicalize_name(name), (name,)):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_version(name: str) -> str | None:
    found = installed(name)
    return found[1] if found else None


def runtime_closure(distribution: str = "grader", extras: Iterable[str] = ()) -> dict[str, str]:
    """Every distribution ``distribution`` with ``extras`` needs at run time,
    directly or through another (with the extras each requirement names), as
    installed here: canonical name -> version.  Other extras, and requirements
    whose markers do not hold on this machine, are left out."""
    pinned: dict[str, str] = {}
    pending = _requires(distribution, frozenset(extras))
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, wanted = pending.pop()
        found = installed(name)
        if found is None:
            continue
        dist, version = found
        key = canonicalize_name(dist)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        pinned[key] = version
        pending.extend(_requires(dist, wanted))
    return dict(sorted(pinned.items()))


def _requires(distribution: str, extras: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
    """(name, extras) of what ``distribution`` with ``extras`` requires on this machine."""
    try:
        lines = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    found: list[tuple[str, frozenset[str]]] = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *sorted(extras))):
            found.append((req.name, frozenset(canonicalize_name(e) for e in req.extras)))
    return found


def framework_problem() -> str | None:
    """Why this Python cannot run the notebooks, in words, or None: they need
    TensorFlow 2.16 or later with Keras 3 (read from the installed metadata,
    without importing them)."""
    tensorflow, keras = installed("tensorflow"), installed("keras")
    if tensorflow and keras and _at_least(tensorflow[1], TENSORFLOW_MINIMUM) and _at_least(keras[1], KERAS_MINIMUM):
        return None
    if tensorflow is None:
        has = "no TensorFlow"
    else:
        has = " ".join(tensorflow) + (f" with {' '.join(keras)}" if keras else " and no Keras")
    return (
        f"the notebooks need TensorFlow {TENSORFLOW_MINIMUM} or later with Keras {KERAS_MINIMUM}, and this Python "
        f"({sys.executable}) has {has}: install them into it (pip install 'tensorflow>=2.16', or the grader's "
        "CPU build on Linux and Windows: pip install 'grader[cpu]')"
    )


def _at_least(version: str, minimum: Version) -> bool:
    try:
        return Version(version) >= minimum
    except InvalidVersion:
        return False


@lru_cache(maxsize=1)
def current_versions() -> Versions:
    return Versions(
        grader=installed_version("grader") or "unknown",
        python=platform.python_version(),
        numpy=installed_version("numpy") or "unknown",
        tensorflow=installed_version("tensorflow"),
        keras=installed_version("keras"),
    )
