"""What this operating system offers the executors, decided here and nowhere else.

The warm executor forks a preloaded parent and watches each child with a
pidfd over Unix sockets (Linux); the sandbox needs Linux's namespaces,
cgroups and uid switching.  macOS and Windows have neither: there
:func:`~grader.execution.factory.make_executor` gives the kernel executor and
the sandbox steps aside, saying so in every result's ``isolation``.
Windows' ``os`` module has no folder descriptors either (``dir_fd``, opening
a folder): there :mod:`grader.execution.untrusted` reads the answers folder by
path (:func:`has_dir_fd`).

Detection only reads what the ``os``, ``sys`` and ``socket`` modules offer; it
calls nothing, so it is safe at any time on any platform, and it is not
cached (tests simulate another platform by taking those attributes away).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    system: str  # sys.platform: "linux", "darwin", "win32"...
    fork: bool  # os.fork
    pidfd: bool  # os.pidfd_open (how the warm executor sees a child die)
    unix_sockets: bool  # socket.AF_UNIX (Windows' Python has none)
    linux: bool  # namespaces, cgroups, setresuid, prctl: what the sandbox is made of
    dir_fd: bool  # folder descriptors (has_dir_fd): how files in the student's folders are read

    @property
    def warm(self) -> bool:
        """Whether the warm executor can run here."""
        return not self.warm_missing

    @property
    def warm_missing(self) -> list[str]:
        wanted = {"os.fork": self.fork, "os.pidfd_open": self.pidfd, "Linux": self.linux}
        return [what for what, ok in wanted.items() if not ok]

    @property
    def sandbox(self) -> bool:
        """Whether the sandbox (:mod:`grader.execution.sandbox`) can be entered here at all."""
        return self.linux and self.fork


def detect() -> Host:
    return Host(
        system=sys.platform,
        fork=hasattr(os, "fork"),
        pidfd=hasattr(os, "pidfd_open"),
        unix_sockets=hasattr(socket, "AF_UNIX"),
        linux=sys.platform.startswith("linux"),
        dir_fd=has_dir_fd(),
    )


def has_dir_fd() -> bool:
    """Whether a folder can be opened as a descriptor (``O_DIRECTORY``) and
    names under it opened and examined relative to it (``os.open`` and
    ``os.stat`` with ``dir_fd``): Linux and macOS, not Windows."""
    return hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


def warm_unavailable() -> str | None:
    """Why the warm executor cannot run here, in words (None where it can)."""
    host = detect()
    if host.warm:
        return None
    return (
        f"the warm executor needs {', '.join(host.warm_missing)}, which this platform ({host.system}) lacks: "
        "using the kernel executor (a fresh Jupyter kernel per notebook: slower, same scores)"
    )
