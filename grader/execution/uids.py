"""Student uids, leased machine-wide.

Each submission runs as a uid of its own (:data:`STUDENT_UIDS`): the kernel
counts processes (``RLIMIT_NPROC``) and keeps keyrings per uid, so two
submissions sharing one could starve or read each other.  Several graders may
run on one machine at a time (two batches, a service and a student's check,
Dask workers), each with its own executors, so a counter in one process is not
enough.  A uid is leased by holding an exclusive ``flock`` on a file named
for it in a root-only folder; the kernel drops the lock when the holder closes
it or dies, so a killed grader leaks nothing.
"""

from __future__ import annotations

import itertools
import os
import random
import stat
from functools import cache
from pathlib import Path

from grader.errors import ExecutorError

STUDENT_UID_BASE = 61000
STUDENT_UIDS = 4000  # 61000..64999
# Where leases are kept, the first that can be made or trusted (root's, not a
# link, nobody else's to write): a tmpfs cleared at boot, then the temp folder.
LEASE_FOLDERS = (Path("/run/grader-uids"), Path("/tmp/grader-uids"))


class UidLease:
    """A uid no other submission on this machine holds until :meth:`release`
    (or the end of a ``with`` block)."""

    def __init__(self, uid: int, fd: int | None) -> None:
        self.uid, self._fd = uid, fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> UidLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_next = itertools.count(random.randrange(STUDENT_UIDS))  # processes start apart, then take turns (next() is atomic)


def lease_uid() -> UidLease:
    """Lease a student uid.  Where this process is not root no uid is
    switched to (the sandbox runs the student as the grader's own user), and
    the lease is a formality."""
    if os.name != "posix" or os.geteuid() != 0:
        return UidLease(STUDENT_UID_BASE, None)
    import fcntl  # POSIX only

    folder = _lease_folder()
    start = next(_next)
    for i in range(STUDENT_UIDS):
        uid = STUDENT_UID_BASE + (start + i) % STUDENT_UIDS
        fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return UidLease(uid, fd)
    raise ExecutorError(f"all {STUDENT_UIDS} student uids are in use on this machine; grade fewer at a time")


@cache
def _lease_folder() -> Path:
    """The leases' folder, made root's and 0700 if need be; a folder someone
    else made (or a link to one) is never used.  Only root can write in it,
    so its entries are ours."""
    for path in LEASE_FOLDERS:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022:
            return path
    folders = " or ".join(str(p) for p in LEASE_FOLDERS)
    raise ExecutorError(f"cannot keep student uid leases: neither {folders} is a folder only root can write")
