"""Versions of what grading depends on, read from the installed
distributions (importlib.metadata), without importing TensorFlow."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from grader.model.result import Versions

# Distributions that install the same import package: a requirement on one is
# met by any of them, and the version of TensorFlow is whichever is installed.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
    "tensorflow-cpu": ("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
}


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


def runtime_closure(distribution: str = "grader") -> dict[str, str]:
    """Every distribution ``distribution`` needs at run time, directly or
    through another, as installed here: canonical name -> version.  Extras
    and requirements whose markers do not hold on this machine are left out."""
    pinned: dict[str, str] = {}
    pending = list(_requires(distribution))
    while pending:
        found = installed(pending.pop())
        if found is None:
            continue
        dist, version = found
        key = canonicalize_name(dist)
        if key in pinned:
            continue
        pinned[key] = version
        pending.extend(_requires(dist))
    return dict(sorted(pinned.items()))


def _requires(distribution: str) -> list[str]:
    try:
        lines = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


@lru_cache(maxsize=1)
def current_versions() -> Versions:
    return Versions(
        grader=installed_version("grader") or "unknown",
        python=platform.python_version(),
        numpy=installed_version("numpy") or "unknown",
        tensorflow=installed_version("tensorflow"),
        keras=installed_version("keras"),
    )
