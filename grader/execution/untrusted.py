"""Touching files in a folder the student's process could have written.

The grader runs as root; the student's code may plant symbolic links, FIFOs
or devices wherever it can write.  Everything the grader reads from, or writes
to, such a folder goes through these functions: a descriptor of the folder,
opened before the student's code ran, and single-component names under it,
opened with ``O_NOFOLLOW | O_NONBLOCK``; only regular files are accepted, and
never more than a given number of bytes is read.  (For a single component,
``openat`` with ``O_NOFOLLOW`` is what ``openat2``'s ``RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS`` guarantees, and it works on every kernel.)

Where the ``os`` module has no folder descriptors (Windows:
:func:`~grader.execution.host.has_dir_fd`), :func:`held_folder` holds the
folder by its path instead, and a name under it is read by path: its entry is
examined first (``os.lstat``, never followed) and anything but a regular file
is refused, then it is opened (with ``O_NOFOLLOW`` where the platform has it)
and refused again unless the open file is a regular one within the limit.
That is not the descriptor's guarantee: between the check and the open, or by
replacing the folder itself with a link, the student's process could make the
grader read another file.  It need not be: such a platform has no sandbox
either (:mod:`grader.execution.host`), so the student's code runs as the
grader's own user and could read or write that file itself.  What still holds
is what keeps grading correct: no link or junction is followed, nothing that
is not a regular file is read, and reads are capped.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grader.execution import host


class UnsafeFile(ValueError):
    """A file that is not a regular file, too large, or cannot be opened; the
    message names it and says why (it is shown in the submission's result)."""


# Windows' os module lacks these flags: there they are 0 (and binary mode is a flag of its own).
O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC = (getattr(os, f, 0) for f in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"))
O_DIRECTORY, O_BINARY = getattr(os, "O_DIRECTORY", 0), getattr(os, "O_BINARY", 0)
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_BINARY
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY


@dataclass(frozen=True)
class Folder:
    """A folder the student's process could write, as the grader holds it
    (:func:`held_folder`): ``fd``, a descriptor of it opened before the
    student's code ran, where the platform has folder descriptors; None where
    it has not, and names under ``path`` are then read by path."""

    path: Path
    fd: int | None = None


# What the read helpers look a name up under: a held folder, a folder
# descriptor, or nothing (the name is then a path, whose last component is
# not followed).
Parent = Folder | int | None


def open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """A descriptor of the folder ``path`` (the last component must not be a link)."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


@contextmanager
def held_folder(path: Path | str) -> Iterator[Folder]:
    """The folder ``path`` held for reading names under it, for as long as
    the context lasts: through a descriptor opened now (so that the folder
    later swapped for a link changes nothing) where the platform has folder
    descriptors, else by its path (see the module's docstring)."""
    if not host.has_dir_fd():
        yield Folder(Path(path))
        return
    fd = open_dir(path)
    try:
        yield Folder(Path(path), fd)
    finally:
        os.close(fd)


def _single(name: str) -> str:
    # os.path.split: "/" everywhere, and on Windows "\\" and a drive ("C:x") too
    if not name or "/" in name or name in (".", "..") or os.path.split(name) != ("", name):
        raise UnsafeFile(f"{name!r} is not a plain file name")
    return name


def _locate(name: str, parent: Parent) -> tuple[str, int | None, bool]:
    """What ``os.open`` and ``os.stat`` take for ``name`` under ``parent``
    (the name, and the folder's descriptor or None), and whether the entry
    must be examined before it is opened (read by path without ``O_NOFOLLOW``,
    or under a folder held by its path)."""
    if isinstance(parent, Folder):
        if parent.fd is not None:
            return _single(name), parent.fd, False
        return os.path.join(parent.path, _single(name)), None, True
    if parent is not None:
        return _single(name), parent, False
    return name, None, not O_NOFOLLOW


def entry_stat(name: str, parent: Parent = None) -> os.stat_result:
    """The entry ``name`` itself (a link is not followed), under ``parent``."""
    target, dir_fd, _ = _locate(name, parent)
    return os.stat(target, dir_fd=dir_fd, follow_symlinks=False)


def open_regular(name: str, limit: int, parent: Parent = None) -> io.BufferedReader:
    """Open ``name`` for reading, refusing anything but a regular file of at
    most ``limit`` bytes.  With a ``parent`` folder, ``name`` is one component
    under it; without, a path whose last component is not followed."""
    label = Path(name).name
    target, dir_fd, examine = _locate(name, parent)
    try:
        if examine and not stat.S_ISREG(os.stat(target, follow_symlinks=False).st_mode):
            raise UnsafeFile(f"{label} is not a regular file")  # a link, a junction, a FIFO, a folder, a device
        fd = os.open(target, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFile(f"cannot open {label}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{label} is not a regular file")
    if info.st_size > limit:
        os.close(fd)
        raise UnsafeFile(f"{label} is {info.st_size} bytes, more than the {limit} allowed")
    return os.fdopen(fd, "rb")


def read_capped(name: str, limit: int, parent: Parent = None) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (read no further
    than ``limit``, even if the file grows meanwhile)."""
    with open_regular(name, limit, parent) as f:
        return f.read(limit)


def tail(name: str, limit: int, parent: Parent = None) -> str:
    """The last ``limit`` bytes of a regular file as text; "" if there is no
    such file (a log the student replaced by a FIFO, a link or a device is
    not read)."""
    try:
        f = open_regular(name, 2**63 - 1, parent)
    except UnsafeFile:
        return ""
    with f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - limit))
        return f.read(limit).decode("utf-8", "replace")


def write_replacing(name: str, data: bytes, dir_fd: int) -> None:
    """Write ``data`` as ``name`` under the folder ``dir_fd``: a new file
    (created exclusively, never through a link) renamed over whatever entry
    had that name, which is replaced, not followed."""
    tmp = f".{_single(name)}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, WRITE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def chown_tree(path: Path | str, uid: int, gid: int) -> None:
    """Give a folder and everything in it to ``uid``, never following a link."""
    for folder, dirs, files in os.walk(path):  # does not descend into links to folders
        os.chown(folder, uid, gid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
