"""Touching files in a folder the student's process could have written.

The grader runs as root; the student's code may plant symbolic links, FIFOs
or devices wherever it can write.  Everything the grader reads from, or writes
to, such a folder goes through these functions: a descriptor of the folder,
opened before the student's code ran, and single-component names under it,
opened with ``O_NOFOLLOW | O_NONBLOCK``; only regular files are accepted, and
never more than a given number of bytes is read.  (For a single component,
``openat`` with ``O_NOFOLLOW`` is what ``openat2``'s ``RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS`` guarantees, and it works on every kernel.)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class UnsafeFile(ValueError):
    """A file that is not a regular file, too large, or cannot be opened; the
    message names it and says why (it is shown in the submission's result)."""


# Windows' os module lacks these flags: there they are 0 (and binary mode is a flag of its own).
O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC = (getattr(os, f, 0) for f in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"))
O_DIRECTORY, O_BINARY = getattr(os, "O_DIRECTORY", 0), getattr(os, "O_BINARY", 0)
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_BINARY
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY


def open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """A descriptor of the folder ``path`` (the last component must not be a link)."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def _single(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise UnsafeFile(f"{name!r} is not a plain file name")
    return name


def open_regular(name: str, limit: int, dir_fd: int | None = None) -> BinaryIO:
    """Open ``name`` for reading, refusing anything but a regular file of at
    most ``limit`` bytes.  With ``dir_fd``, ``name`` is one component under
    that folder; without, a path whose last component is not followed."""
    label = Path(name).name
    try:
        fd = os.open(
            _single(name) if dir_fd is not None else name,
            READ_FLAGS,
            dir_fd=dir_fd,
        )
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


def read_capped(name: str, limit: int, dir_fd: int | None = None) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (read no further
    than ``limit``, even if the file grows meanwhile)."""
    with open_regular(name, limit, dir_fd) as f:
        return f.read(limit)


def tail(name: str, limit: int, dir_fd: int | None = None) -> str:
    """The last ``limit`` bytes of a regular file as text; "" if there is no
    such file (a log the student replaced by a FIFO, a link or a device is
    not read)."""
    try:
        f = open_regular(name, 2**63 - 1, dir_fd)
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
