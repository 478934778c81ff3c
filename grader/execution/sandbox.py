"""Isolating the student's process: Linux namespaces, an unprivileged user,
cgroup and rlimit resource limits.  Used by both executors.

:func:`enter` turns the calling process (a fresh child that is about to run a
student's code) into an isolated one:

1. a memory and a pids cgroup for this submission (cgroup v1, where writable);
2. new network, IPC, UTS and PID namespaces: no network at all, its own
   process tree (it cannot see or signal the grader, the warm parent or
   other submissions);
3. a fork: the grandchild is PID 1 of the new PID namespace, so when it ends
   every process it started (background ``sleep``, double-forked daemons) is
   killed by the kernel.  The middle process waits, records what the cgroup
   saw (out-of-memory kills) in ``sandbox.json`` and exits with the same status;
4. in the grandchild, new mount and cgroup namespaces and a fresh root
   (``pivot_root`` onto an empty tmpfs): only the system folders, the Python
   environment, this package and the submission's scratch folder are bound
   in; a fresh ``/tmp``, ``/var/tmp`` and ``/dev/shm``; a ``/dev`` of its own
   with a private devpts instance; ``/sys`` without cgroups; ``/proc`` of
   the new PID namespace.  Nothing of the host's mount table is left, so
   other submissions' scratch folders and cgroups cannot even be named;
5. rlimits (file size, CPU time, open files, core dumps off, processes), a
   fresh session keyring and emptied user keyrings, then an unprivileged uid
   and gid, ``no_new_privs``, a seccomp filter that refuses the keyring
   system calls, and a parent-death signal.

The scratch folder's root stays root's: the student owns only the folders in
it (``work``, the answers folder...), so the grader's own files there
(``kernel.log``, ``sandbox.json``) cannot be replaced by links or FIFOs; the
grader touches them through :mod:`grader.execution.untrusted` all the same.

It returns in the grandchild only.  Where namespaces or cgroups are not
available, :func:`probe` says what is missing and :func:`enter` applies what
it can (rlimits, another user if root); the level in force is recorded in
every result (``isolation``) and ``grader doctor`` prints it.  Off Linux
(macOS, Windows: :mod:`grader.execution.host`) there is nothing to enter: the
launcher runs the command as it is, the level is ``none`` and says why, and
nothing Linux-only (the C library's calls, :mod:`resource`) is touched, not
even when this module is imported.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from grader.errors import ExecutorError
from grader.execution.host import detect
from grader.execution.uids import STUDENT_UID_BASE
from grader.execution.untrusted import chown_tree, open_dir, read_capped, write_replacing

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
# System calls glibc has no wrapper for, by architecture.
SYSCALLS = {
    "x86_64": {"pivot_root": 155, "add_key": 248, "request_key": 249, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "add_key": 217, "request_key": 218, "keyctl": 219},
}
# The seccomp filter's view of each: AUDIT_ARCH_* (a system call made through
# another ABI, as i386's int 0x80 from a 64-bit process, has another).
AUDIT_ARCHES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: the same calls under other numbers
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
KEYCTL_GET_KEYRING_ID, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR = 0, 1, 7
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5
# Devices of the student's /dev (bound from the host's); ptys come from a
# devpts instance of its own.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_PARENT = "grader"
RECORD_FILE = "sandbox.json"
FULL, PARTIAL, NONE = "full", "partial", "none"
# The folder holding the grader package this process imported: the
# sandbox's launcher imports that same copy, wherever it lives.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


@cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded at its first use: what the sandbox calls in it
    (unshare, mount, setns, prctl) is Linux's, and Windows has no such library."""
    return ctypes.CDLL(None, use_errno=True)


# Top-level folders the student's process sees as they are; every other one
# (/home, /root, /work, /opt, /srv, /mnt, /run, /var...) is covered by an empty
# folder, so copies of a solution anywhere else on the machine are invisible.
SYSTEM_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys", "tmp"})


@dataclass(frozen=True)
class ResourceLimits:
    """Per-submission resource limits."""

    memory_mb: int = 3072  # TensorFlow + a 512x512 exercise peaks near 1 GB; see README
    max_processes: int = 256  # processes and threads (TensorFlow starts a pool per core)
    cpu_seconds: int = 900
    file_size_mb: int = 256
    scratch_mb: int = 512
    scratch_files: int = 16384  # inodes of each writable tmpfs (scratch, /tmp, /var/tmp, /dev/shm)
    open_files: int = 1024
    ptys: int = 16  # terminals (IPython's `!cmd` uses one at a time)


@dataclass(frozen=True)
class Policy:
    """What the executor asks of the sandbox for one submission."""

    isolate: bool = True
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    hide: tuple[str, ...] = ()  # paths to make invisible

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        raw = json.loads(text)
        return cls(isolate=raw["isolate"], limits=ResourceLimits(**raw["limits"]), hide=tuple(raw["hide"]))


@dataclass(frozen=True)
class Capabilities:
    root: bool
    namespaces: bool
    cgroup_memory: bool
    cgroup_pids: bool
    system: str = "linux"  # sys.platform; off Linux there is no sandbox at all

    @property
    def linux(self) -> bool:
        return self.system.startswith("linux")

    @property
    def level(self) -> str:
        if not self.linux:
            return NONE
        if self.root and self.namespaces and self.cgroup_memory and self.cgroup_pids:
            return FULL
        return PARTIAL

    @property
    def missing(self) -> list[str]:
        if not self.linux:
            return [f"Linux namespaces, cgroups and uid switching (this platform is {self.system})"]
        wanted = {
            "running as root (needed to switch to an unprivileged user and to mount)": self.root,
            "Linux namespaces (unshare of mount, network, PID, IPC, UTS)": self.namespaces,
            "a writable cgroup v1 memory controller (per-submission memory limit)": self.cgroup_memory,
            "a writable cgroup v1 pids controller (per-submission process limit)": self.cgroup_pids,
        }
        return [what for what, ok in wanted.items() if not ok]

    @property
    def uid_only(self) -> bool:
        """Root without namespaces (root in a default Docker container, which
        lacks CAP_SYS_ADMIN): the student's code still runs as an unprivileged
        uid, but sees the host's files, protected by their permissions only."""
        return self.root and not self.namespaces

    def describe(self, isolate: bool, exposed: tuple[str, ...] = ()) -> str:
        """The value recorded in results' ``isolation`` field."""
        if not self.linux:  # whatever was asked: nothing of the sandbox exists here
            return (
                f"none: this platform ({self.system}) has no Linux namespaces, cgroups or uid switching; "
                "students' code runs as this user, without resource limits (the cell and notebook timeouts apply)"
            )
        if not isolate:
            return "none: isolation disabled (--no-isolation); rlimits only"
        if self.level == FULL:
            return (
                "full: namespaces (mount, network, pid, ipc, uts, cgroup), fresh root, unprivileged uid, "
                "cgroup memory+pids, rlimits"
            )
        if self.uid_only:
            applied = ["unprivileged uid"]
            applied += ["cgroup memory"] if self.cgroup_memory else []
            applied += ["cgroup pids"] if self.cgroup_pids else []
            seen = f"; readable by the student's uid: {', '.join(exposed)}" if exposed else ""
            return (
                "partial: missing " + "; ".join(self.missing) + "; " + ", ".join(applied) + ", rlimits applied; "
                "the host's files are protected by their permissions only" + seen
            )
        return "partial: missing " + "; ".join(self.missing) + "; rlimits applied"


_probed: Capabilities | None = None


def probe() -> Capabilities:
    """What this machine allows (cached on Linux).  Namespaces are tried in a
    short-lived child so the caller is not changed.  Off Linux, nothing is
    tried: nothing of the sandbox is there."""
    host = detect()
    if not host.sandbox:
        return Capabilities(root=False, namespaces=False, cgroup_memory=False, cgroup_pids=False, system=host.system)
    global _probed
    if _probed is None:
        _libc()  # loaded once, before any fork: children inherit it
        root = os.geteuid() == 0
        _probed = Capabilities(
            root=root,
            namespaces=root and _can_unshare(),
            cgroup_memory=root and _cgroup_writable("memory"),
            cgroup_pids=root and _cgroup_writable("pids"),
        )
    return _probed


def _can_unshare() -> bool:
    pid = os.fork()
    if pid == 0:
        ok = _libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID) == 0
        os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0


def _cgroup_writable(controller: str) -> bool:
    base = CGROUP_V1 / controller
    try:
        (base / CGROUP_PARENT).mkdir(exist_ok=True)
        probe_dir = base / CGROUP_PARENT / f"probe-{os.getpid()}"
        probe_dir.mkdir(exist_ok=True)
        probe_dir.rmdir()
        return True
    except OSError:
        return False


def visible_paths() -> tuple[Path, ...]:
    """What the student's process needs to see inside hidden folders: this
    package (its capture module) and the Python it runs (venv and base)."""
    package = PACKAGE_PARENT / "grader"  # the whole grader package
    return tuple(sorted({package, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}))


def hidden_paths(*extra: Path | str | None) -> tuple[str, ...]:
    """Paths a student must not see: every entry of the project folder (when
    this package runs from a source checkout) but the Python environment and
    this package, the grader's home (caches, and often the Python
    installation, bound back in), and whatever the caller adds (results and
    submissions folders, the reference cache, a Gradescope bundle)."""
    keep = visible_paths()
    hide = {Path(p).resolve() for p in extra if p}
    hide.add(Path.home().resolve())
    project = PACKAGE_PARENT
    installed = any(project.is_relative_to(k) for k in keep if k != PACKAGE_PARENT / "grader")
    if not installed:  # site-packages is the environment, not a project: its entries stay
        for entry in project.iterdir():
            entry = entry.resolve()
            if not any(k == entry or k.is_relative_to(entry) for k in keep):
                hide.add(entry)
    return tuple(sorted(str(h) for h in hide if h != Path("/")))


def runtime_files() -> list[str]:
    """What the student's process must be able to read to start: this
    Python, its standard library, the packages a kernel imports, the capture
    module."""
    import importlib.util

    files = [os.path.realpath(sys.executable), os.path.realpath(os.__file__)]
    for module in ("ipykernel", "numpy", "encodings"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            files.append(os.path.realpath(spec.origin))
    files.append(str(PACKAGE_PARENT / "grader" / "execution" / "capture.py"))
    return files


def readable_as(uid: int, paths: list[str]) -> list[bool]:
    """For each path, whether ``uid`` can open it for reading (a folder: list
    it), tested in a short-lived child that becomes ``uid``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            answers = []
            for path in paths:
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC))
                    answers.append(True)
                except OSError:
                    answers.append(False)
            os.write(write_end, json.dumps(answers).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    found = json.loads(data or b"null")
    if not isinstance(found, list) or len(found) != len(paths):
        raise OSError("the access check as the student's uid did not report")
    return [bool(x) for x in found]


_exposed: dict[tuple[str, ...], tuple[str, ...]] = {}


def preflight(policy: Policy) -> tuple[str, ...]:
    """Before anything runs, where the student's code will run as another uid
    without a mount namespace (:attr:`Capabilities.uid_only`): refuse
    (:class:`~grader.errors.ExecutorError`) if that uid cannot start this
    Python, since no namespace can bind it back in; and return the hidden
    paths it could read, which results then name in ``isolation``.  Nothing
    to check (and nothing returned) anywhere else."""
    caps = probe()
    if not (policy.isolate and caps.uid_only):
        return ()
    if policy.hide not in _exposed:
        needed = runtime_files()
        hidden = [p for p in policy.hide if os.path.lexists(p)]
        answers = readable_as(STUDENT_UID_BASE, needed + hidden)
        unreadable = [p for p, ok in zip(needed, answers, strict=False) if not ok]
        if unreadable:
            raise ExecutorError(
                f"the students' uid ({STUDENT_UID_BASE}) cannot read {', '.join(unreadable)}, so it cannot start "
                "this Python; without a mount namespace (this machine does not allow one: no CAP_SYS_ADMIN, as in "
                "a default Docker container) it cannot be bound back in. Grade with a Python that others may read "
                "and run, e.g. a venv made with /usr/bin/python3.11 outside a private home"
            )
        _exposed[policy.hide] = tuple(p for p, ok in zip(hidden, answers[len(needed) :], strict=True) if ok)
    return _exposed[policy.hide]


def describe(policy: Policy) -> str:
    """The isolation in force for ``policy`` on this machine, in words."""
    caps = probe()
    exposed = _exposed.get(policy.hide, ()) if policy.isolate and caps.uid_only else ()
    return caps.describe(policy.isolate, exposed)


def enter(policy: Policy, workdir_root: Path, uid: int) -> str:
    """Isolate the calling process; returns (in the isolated grandchild only)
    the isolation level in force.  ``workdir_root`` is the submission's scratch
    root: it stays visible, and the folders in it become ``uid``'s.

    A process born as PID 1 of its own PID namespace (the warm executor's
    zygote makes its children so, see :func:`pid_namespace_for_next_fork`)
    needs no grandchild: it isolates itself, and its parent calls
    :func:`release` once it has reaped it."""
    caps = probe()
    workdir_root = Path(workdir_root)
    born_in_namespace = os.getpid() == 1
    if policy.isolate and caps.root:
        hand_over(workdir_root, uid)
    cgroups = _make_cgroups(workdir_root.name, policy.limits) if policy.isolate else []
    namespaced = policy.isolate and caps.namespaces
    if namespaced:
        flags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc().unshare(flags if born_in_namespace else flags | CLONE_NEWPID), "unshare")
    if (namespaced or cgroups) and not born_in_namespace:
        _supervise(workdir_root, cgroups)  # returns in the grandchild only
    if namespaced:
        # The mount namespace is the grandchild's alone: the supervising
        # process keeps the host's view (it removes the cgroups).
        _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWCGROUP), "unshare")
        _fresh_root(workdir_root, policy)
    _set_rlimits(policy.limits)
    if not any(c.parent.parent.name == "memory" for c in cgroups):
        _limit_address_space(policy.limits)
    if policy.isolate and caps.root:
        _drop_privileges(uid, policy.limits)
    return caps.describe(policy.isolate)


def hand_over(workdir_root: Path, uid: int) -> None:
    """Give the student the folders of the scratch root (``work``, answers,
    IPython's and matplotlib's), not the root itself: it stays root's, so the
    grader's files in it cannot be replaced."""
    root_fd = open_dir(workdir_root)
    try:
        os.fchown(root_fd, 0, 0)
        os.fchmod(root_fd, 0o755)
        for entry in os.scandir(root_fd):
            if entry.is_dir(follow_symlinks=False):
                chown_tree(workdir_root / entry.name, uid, uid)
    finally:
        os.close(root_fd)


def take_back(folder: Path) -> None:
    """Make a folder handed to the student root's again, and its entries too
    (the kernel's sockets, once bound): the student can no longer replace
    what is in it."""
    fd = open_dir(folder)
    try:
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
        for entry in os.scandir(fd):
            os.chown(entry.name, 0, 0, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _syscall(name: str, *args: object) -> int:
    number = SYSCALLS.get(platform.machine(), {}).get(name)
    if number is None:
        ctypes.set_errno(errno.ENOSYS)
        return -1
    return _libc().syscall(number, *args)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc().mount(
            source and source.encode(),
            target.encode(),
            fstype and fstype.encode(),
            ctypes.c_ulong(flags),
            data and data.encode(),
        ),
        f"mount {target}",
    )


def _tmpfs(
    target: str, limits: ResourceLimits, mode: str, size_mb: int | None = None, flags: int = MS_NOSUID | MS_NODEV
) -> None:
    size = limits.scratch_mb if size_mb is None else size_mb
    _mount("tmpfs", target, "tmpfs", flags, f"size={size}m,nr_inodes={limits.scratch_files},mode={mode}")


def _fresh_root(workdir_root: Path, policy: Policy) -> None:
    """In the new mount namespace: an empty tmpfs becomes the root, with the
    system folders, what must stay visible (bound from descriptors opened
    first), fresh temporary folders, a /dev and /sys of its own; then the old
    root is detached, so no mount of the host, nor its list, remains."""
    limits = policy.limits
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = sorted({workdir_root.resolve(), *visible_paths()}, key=lambda p: len(p.parts))
    fds = {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for path in keep}
    cwd = os.getcwd()
    new = "/tmp"  # any folder will do as the mount point: the namespace is ours
    _tmpfs(new, limits, "0755", size_mb=1)
    for name in sorted(SYSTEM_DIRS - {"dev", "proc", "sys", "tmp"}):
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), f"{new}/{name}")  # /bin -> usr/bin on merged-/usr systems
        elif host.is_dir():
            os.mkdir(f"{new}/{name}")
            _mount(str(host), f"{new}/{name}", None, MS_BIND | MS_REC)
    for name in ("tmp", "var/tmp"):
        os.makedirs(f"{new}/{name}")
        _tmpfs(f"{new}/{name}", limits, "1777")
    _private_dev(f"{new}/dev", limits)
    os.mkdir(f"{new}/sys")  # without its submounts: no /sys/fs/cgroup
    _mount("/sys", f"{new}/sys", None, MS_BIND)
    _mount(None, f"{new}/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(f"{new}/proc")
    for path, fd in fds.items():
        target = f"{new}{path}"
        os.makedirs(target, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        os.close(fd)
    for hidden in map(Path, policy.hide):  # what the caller hides, where it is inside what is bound
        target = os.path.realpath(f"{new}{hidden}")
        if (
            any(k.is_relative_to(hidden) for k in keep)
            or not target.startswith(f"{new}/")
            or not os.path.lexists(target)
        ):
            continue  # (the folders above a bound one hold nothing but the way to it)
        if os.path.isdir(target):
            _tmpfs(target, limits, "0755", size_mb=1, flags=MS_NOSUID | MS_NODEV | MS_RDONLY)
        else:
            _mount("/dev/null", target, None, MS_BIND)
    os.mkdir(f"{new}/.old-root")
    _check(_syscall("pivot_root", new.encode(), f"{new}/.old-root".encode()), "pivot_root")
    os.chdir("/")
    _check(_libc().umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(cwd)


def _private_dev(dev: str, limits: ResourceLimits) -> None:
    """A /dev with the harmless devices, its own ptys (a devpts instance
    with ``limits.ptys`` of them: the host's cannot be exhausted) and a
    fresh /dev/shm."""
    os.mkdir(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID, "size=64k,nr_inodes=64,mode=0755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{dev}/{name}", "w").close()
            _mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    os.mkdir(f"{dev}/pts")
    _mount(
        "devpts",
        f"{dev}/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        f"newinstance,ptmxmode=0666,mode=0620,max={limits.ptys}",
    )
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm")
    _tmpfs(f"{dev}/shm", limits, "1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")


def _make_cgroups(name: str, limits: ResourceLimits) -> list[Path]:
    made = []
    settings = {
        "memory": {"memory.limit_in_bytes": limits.memory_mb * 2**20, "memory.swappiness": 0},
        "pids": {"pids.max": limits.max_processes},
    }
    for controller, values in settings.items():
        folder = CGROUP_V1 / controller / CGROUP_PARENT / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for key, value in values.items():
                try:
                    (folder / key).write_text(str(value))
                except OSError:
                    if key != "memory.swappiness":
                        raise
            (folder / "cgroup.procs").write_text(str(os.getpid()))
            made.append(folder)
        except OSError:
            continue
    return made


def _supervise(workdir_root: Path, cgroups: list[Path]) -> None:
    """Fork; the parent waits for the child, reports and exits with its status.
    Returns in the child only."""
    pid = os.fork()
    if pid == 0:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the student's process
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    for folder in cgroups:  # leave the cgroups, so that release() can remove them
        try:
            (folder.parent / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
    release(workdir_root, status)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def release(workdir_root: Path, status: int | None = None) -> None:
    """After the isolated process exited (with wait ``status``, if known):
    record what the sandbox saw (:func:`read_record`) and remove its cgroups.
    Idempotent: the supervising process, the zygote and the grader may each
    call it (whoever is left: a killed supervisor releases nothing)."""
    if not detect().sandbox:
        return  # no sandbox was entered: nothing to record or remove
    workdir_root = Path(workdir_root)
    cgroups = [CGROUP_V1 / controller / CGROUP_PARENT / workdir_root.name for controller in ("memory", "pids")]
    cgroups = [folder for folder in cgroups if folder.is_dir()]
    try:
        root_fd = open_dir(workdir_root)
    except OSError:
        root_fd = None  # the scratch folder is gone already
    if root_fd is not None:
        try:
            if cgroups or not os.path.lexists(workdir_root / RECORD_FILE):
                report = json.dumps({"oom_kills": _oom_kills(cgroups), "exit_status": status})
                write_replacing(RECORD_FILE, report.encode(), root_fd)
        except OSError:
            pass
        finally:
            os.close(root_fd)
    for folder in cgroups:
        _remove_cgroup(folder)


def _remove_cgroup(folder: Path, timeout: float = 10.0) -> None:
    """Remove a submission's cgroup, killing what is still in it (the
    submission is over: a kernel still dying, a straggler)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            folder.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return
        try:
            for pid in (folder / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        time.sleep(0.01)


_own_pid_namespace: int | None = None


def pid_namespace_for_next_fork(new: bool) -> bool:
    """Make the caller's next child PID 1 of a new PID namespace (``new``), or
    a plain process of the caller's own; True if the namespace was made.  A
    child born so isolates itself without forking again (:func:`enter`),
    which saves a fork and an exit of a copy of the whole warm parent per
    submission (15 ms of CPU).  Linux allows one new PID namespace per
    ``unshare``, so the caller's own is entered again first."""
    global _own_pid_namespace
    try:
        if _own_pid_namespace is None:
            _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        _check(_libc().setns(_own_pid_namespace, CLONE_NEWPID), "setns")
        if new and probe().namespaces:
            _check(_libc().unshare(CLONE_NEWPID), "unshare")
            return True
    except OSError:
        pass  # the child isolates itself the usual way (enter() forks)
    return False


def _oom_kills(cgroups: list[Path]) -> int:
    for folder in cgroups:
        control = folder / "memory.oom_control"
        if control.exists():
            for line in control.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
            failcnt = folder / "memory.failcnt"
            return 1 if failcnt.exists() and int(failcnt.read_text() or 0) > 0 else 0
    return 0


def _set_rlimits(limits: ResourceLimits) -> None:
    import resource  # here, not at the top: Windows has no such module

    mb = 2**20
    for which, value in {
        resource.RLIMIT_FSIZE: limits.file_size_mb * mb,
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
    }.items():
        _lower_limit(which, value)


def _limit_address_space(limits: ResourceLimits) -> None:
    """Where no memory cgroup is available: RLIMIT_AS at what is mapped now
    plus the memory budget.  TensorFlow maps far more than it touches (this
    lesson: 2.0 GB of address space for 0.56 GB resident, measured), so the
    budget is on top of the current mappings, and a forked warm child, which
    inherits the parent's, still gets all of it."""
    import resource

    mapped = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    _lower_limit(resource.RLIMIT_AS, mapped + limits.memory_mb * 2**20)


def _lower_limit(which: int, value: int) -> None:
    """Set soft and hard limit to ``value``, never above the current hard limit
    (raising it needs CAP_SYS_RESOURCE, which containers often lack)."""
    import resource

    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _drop_privileges(uid: int, limits: ResourceLimits) -> None:
    import resource

    # RLIMIT_NPROC counts the user's processes machine-wide; each concurrent
    # submission has its own uid (leased machine-wide: grader.execution.uids),
    # so this bounds a fork bomb even without cgroups
    _lower_limit(resource.RLIMIT_NPROC, limits.max_processes * 2)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # Keys are kept per uid, beyond the process: a session keyring of its
    # own, and nothing left by an earlier submission under this uid.
    _syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, None)
    _clear_own_keyrings()
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _deny_keyrings()
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # set after setuid, which clears it
    os.environ["HOME"] = os.getcwd()


@contextmanager
def scratch_folder(policy: Policy | None) -> Iterator[Path]:
    """A fresh scratch folder for one submission: a size-limited tmpfs where
    the sandbox is in force (filling it cannot fill the grader's disk), else a
    plain temporary folder.  Removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="grader-"))
    mounted = False
    if policy is not None and policy.isolate and probe().root:
        try:
            _tmpfs(str(folder), policy.limits, "0755")
            mounted = True
        except OSError:
            pass
    try:
        yield folder
    finally:
        if mounted:
            _libc().umount2(str(folder).encode(), MNT_DETACH)
        shutil.rmtree(folder, ignore_errors=True)


def read_record(workdir_root: Path) -> dict:
    """What the supervising process recorded (out-of-memory kills...)."""
    try:
        raw = json.loads(read_capped(str(Path(workdir_root) / RECORD_FILE), 4096))
    except (OSError, ValueError, RecursionError):
        return {}
    return raw if isinstance(raw, dict) else {}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def keyring_filter(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The seccomp program (classic BPF: code, jt, jf, k) that fails the
    keyring system calls (add_key, request_key, keyctl) with EPERM, and
    every call made through a foreign ABI (i386's, x32's), whose numbers
    differ; None on an architecture we have no numbers for."""
    numbers, arch = SYSCALLS.get(machine), AUDIT_ARCHES.get(machine)
    if numbers is None or arch is None:
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    calls = [numbers["add_key"], numbers["request_key"], numbers["keyctl"]]
    program = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny), (ld, 0, 0, 0)]  # seccomp_data: nr at 0, arch at 4
    tests = [X32_SYSCALL_BIT, *calls]
    for i, number in enumerate(tests):  # each jumps to the final deny when it matches
        program.append((jge if i == 0 else jeq, len(tests) - i, 0, number))
    return [*program, (ret, 0, 0, SECCOMP_RET_ALLOW), (ret, 0, 0, deny)]


def _deny_keyrings() -> None:
    """Keys are not namespaced: they outlive processes, and a submission can
    make its uid's user keyring one it cannot clear itself (keyctl setperm),
    so the next submission under that uid would read what it left.  So the
    student's process may not use keyrings at all (as Docker's default
    seccomp profile has it); no notebook needs them.  Needs no_new_privs."""
    program = keyring_filter(platform.machine())
    if program is None:
        return
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    fprog = _SockFprog(len(program), filters)
    _check(
        _libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        "prctl(PR_SET_SECCOMP) (denying the keyring system calls)",
    )


def _clear_own_keyrings() -> None:
    for keyring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        _syscall("keyctl", KEYCTL_CLEAR, ctypes.c_int(keyring))


def launcher(policy: Policy, workdir_root: Path, uid: int, command: list[str]) -> list[str]:
    """The command line that isolates, then execs ``command``.  Python runs
    isolated (``-I``: no current folder, no PYTHONPATH on its path; ``-B``: no
    bytecode written) and imports
    this very copy of the package, wherever it lives (a source folder, a
    Gradescope bundle, site-packages): what it binds into the student's root
    is then what the grader's capture module needs.  Off Linux, ``command``
    itself: there is no sandbox to enter (and :func:`describe` says so)."""
    if not detect().sandbox:
        return list(command)
    code = (
        f"import sys; sys.path.insert(0, {str(PACKAGE_PARENT)!r}); "
        "from grader.execution.sandbox import main; main(sys.argv[1:])"
    )
    # -B: never write bytecode into the package (-I ignores PYTHONDONTWRITEBYTECODE)
    return [sys.executable, "-I", "-B", "-c", code, policy.to_json(), str(workdir_root), str(uid), "--", *command]


def main(argv: list[str] | None = None) -> None:
    """``python -m grader.execution.sandbox POLICY_JSON WORKDIR UID -- COMMAND...``:
    isolate, then exec COMMAND (the kernel executor's kernel); see :func:`launcher`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--")
    policy_json, workdir_root, uid = argv[:split]
    command = argv[split + 1 :]
    enter(Policy.from_json(policy_json), Path(workdir_root), int(uid))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
