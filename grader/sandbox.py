"""Isolating the student's process: Linux namespaces, an unprivileged user,
cgroup and rlimit resource limits.  Used by both executors.

:func:`enter` turns the calling process (a fresh child that is about to run a
student's code) into an isolated one:

1. a memory and a pids cgroup for this submission (cgroup v1, where writable);
2. new mount, network, IPC, UTS and PID namespaces: no network at all, its
   own process tree (it cannot see or signal the grader, the warm parent or
   other submissions);
3. a private view of the filesystem: a fresh ``/tmp``, ``/var/tmp`` and
   ``/dev/shm`` (so other submissions' scratch folders are not visible), its
   own scratch folder bound back in, and an empty, read-only folder mounted
   over every path the grader asks to hide (solutions, cached references,
   assignment internals, results, other submissions, the grader's home);
4. a fork: the grandchild is PID 1 of the new PID namespace, so when it ends
   every process it started (background ``sleep``, double-forked daemons) is
   killed by the kernel.  The middle process waits, records what the cgroup
   saw (out-of-memory kills) in ``sandbox.json`` and exits with the same status;
5. in the grandchild: ``/proc`` of the new namespace, rlimits (file size,
   CPU time, open files, core dumps off, processes), then an unprivileged uid
   and gid, ``no_new_privs`` and a parent-death signal.

It returns in the grandchild only.  Where namespaces or cgroups are not
available, :func:`probe` says what is missing and :func:`enter` applies what
it can (rlimits, another user if root); the level in force is recorded in
every result (``isolation``) and ``grader doctor`` prints it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_PARENT = "grader"
REPORT_FILE = "sandbox.json"
STUDENT_UID_BASE = 61000  # uids 61000..64999 are used for students, one per concurrent submission
FULL, PARTIAL, NONE = "full", "partial", "none"

_libc = ctypes.CDLL(None, use_errno=True)
# Top-level folders the student's process sees as they are; every other one
# (/home, /root, /work, /opt, /srv, /mnt, /run, /var...) is covered by an empty
# folder, so copies of a solution anywhere else on the machine are invisible.
SYSTEM_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys", "tmp"})


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits."""

    memory_mb: int = 3072  # TensorFlow + a 512x512 exercise peaks near 1 GB; see README
    max_processes: int = 256  # processes and threads (TensorFlow starts a pool per core)
    cpu_seconds: int = 900
    file_size_mb: int = 256
    scratch_mb: int = 512
    open_files: int = 1024


@dataclass(frozen=True)
class Policy:
    """What the executor asks of the sandbox for one submission."""

    isolate: bool = True
    limits: Limits = field(default_factory=Limits)
    hide: tuple[str, ...] = ()  # paths to make invisible

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        raw = json.loads(text)
        return cls(isolate=raw["isolate"], limits=Limits(**raw["limits"]), hide=tuple(raw["hide"]))


@dataclass(frozen=True)
class Capabilities:
    root: bool
    namespaces: bool
    cgroup_memory: bool
    cgroup_pids: bool

    @property
    def level(self) -> str:
        if self.root and self.namespaces and self.cgroup_memory and self.cgroup_pids:
            return FULL
        return PARTIAL

    @property
    def missing(self) -> list[str]:
        wanted = {
            "running as root (needed to switch to an unprivileged user and to mount)": self.root,
            "Linux namespaces (unshare of mount, network, PID, IPC, UTS)": self.namespaces,
            "a writable cgroup v1 memory controller (per-submission memory limit)": self.cgroup_memory,
            "a writable cgroup v1 pids controller (per-submission process limit)": self.cgroup_pids,
        }
        return [what for what, ok in wanted.items() if not ok]

    def describe(self, isolate: bool) -> str:
        """The value recorded in results' ``isolation`` field."""
        if not isolate:
            return "none: isolation disabled (--no-isolation); rlimits only"
        if self.level == FULL:
            return "full: namespaces (mount, network, pid, ipc, uts), unprivileged uid, cgroup memory+pids, rlimits"
        return "partial: missing " + "; ".join(self.missing) + "; rlimits applied"


_probed: Capabilities | None = None


def probe() -> Capabilities:
    """What this machine allows (cached).  Namespaces are tried in a short-lived
    child so the caller is not changed."""
    global _probed
    if _probed is None:
        root = os.geteuid() == 0
        _probed = Capabilities(root=root, namespaces=root and _can_unshare(),
                               cgroup_memory=root and _cgroup_writable("memory"),
                               cgroup_pids=root and _cgroup_writable("pids"))
    return _probed


def _can_unshare() -> bool:
    pid = os.fork()
    if pid == 0:
        ok = _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID) == 0
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
    package = Path(__file__).resolve().parent
    return tuple(sorted({package, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}))


def hidden_paths(*extra: Path | str | None) -> tuple[str, ...]:
    """Paths a student must not see: every entry of the project folder but the
    Python environment and this package, the grader's home (caches, and often
    the Python installation, bound back in), and whatever the caller adds
    (results and submissions folders, the reference cache)."""
    keep = visible_paths()
    project = Path(__file__).resolve().parent.parent
    hide = {Path(p).resolve() for p in extra if p}
    hide.add(Path.home().resolve())
    for entry in project.iterdir():
        entry = entry.resolve()
        if not any(k == entry or k.is_relative_to(entry) for k in keep):
            hide.add(entry)
    return tuple(sorted(str(h) for h in hide if h != Path("/")))


def student_uid(slot: int) -> int:
    return STUDENT_UID_BASE + slot % 4000


def enter(policy: Policy, workdir_root: Path, uid: int) -> str:
    """Isolate the calling process; returns (in the isolated grandchild only)
    the isolation level in force.  ``workdir_root`` is the submission's scratch
    root: it stays visible and writable (by ``uid``).

    A process born as PID 1 of its own PID namespace (the warm executor's
    zygote makes its children so, see :func:`pid_namespace_for_next_fork`)
    needs no grandchild: it isolates itself, and its parent calls
    :func:`release` once it has reaped it."""
    caps = probe()
    workdir_root = Path(workdir_root)
    born_in_namespace = os.getpid() == 1
    if policy.isolate and caps.root:
        _chown_tree(workdir_root, uid)
    cgroups = _make_cgroups(workdir_root.name, policy.limits) if policy.isolate else []
    namespaced = policy.isolate and caps.namespaces
    if namespaced:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc.unshare(flags if born_in_namespace else flags | CLONE_NEWPID), "unshare")
        _private_filesystem(workdir_root, policy)
    if (namespaced or cgroups) and not born_in_namespace:
        _supervise(workdir_root, cgroups)  # returns in the grandchild only
    if namespaced:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
    _set_rlimits(policy.limits)
    if not any(c.parent.parent.name == "memory" for c in cgroups):
        _limit_address_space(policy.limits)
    if policy.isolate and caps.root:
        _drop_privileges(uid, policy.limits)
    return caps.describe(policy.isolate)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _private_filesystem(workdir_root: Path, policy: Policy) -> None:
    """In the new mount namespace: fresh temporary folders, hidden paths
    covered by empty root-owned tmpfs, then what must stay visible bound back
    in from file descriptors opened before anything was covered."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = sorted({workdir_root.resolve(), *visible_paths()}, key=lambda p: len(p.parts))
    fds = {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for path in keep}
    covered = []
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(tmp):
            _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={policy.limits.scratch_mb}m,mode=1777")
            covered.append(Path(tmp))
    top_level = [p for p in Path("/").iterdir() if p.name not in SYSTEM_DIRS]
    for path in [*top_level, *map(Path, policy.hide)]:
        if any(path.is_relative_to(c) for c in covered):
            continue  # already invisible
        if path.is_dir():
            _mount("tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
            covered.append(path)
        elif path.is_file():
            _mount("/dev/null", str(path), None, MS_BIND)
    for path, fd in fds.items():
        if any(path.is_relative_to(c) for c in covered):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", str(path), None, MS_BIND | MS_REC)
        os.close(fd)


def _make_cgroups(name: str, limits: Limits) -> list[Path]:
    made = []
    settings = {"memory": {"memory.limit_in_bytes": limits.memory_mb * 2**20, "memory.swappiness": 0},
                "pids": {"pids.max": limits.max_processes}}
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
    record what the sandbox saw (:func:`read_report`) and remove its cgroups.
    Idempotent: the supervising process, the zygote and the grader may each
    call it (whoever is left: a killed supervisor releases nothing)."""
    workdir_root = Path(workdir_root)
    cgroups = [CGROUP_V1 / controller / CGROUP_PARENT / workdir_root.name for controller in ("memory", "pids")]
    cgroups = [folder for folder in cgroups if folder.is_dir()]
    report_file = workdir_root / REPORT_FILE
    if cgroups or not report_file.exists():
        try:
            report_file.write_text(json.dumps({"oom_kills": _oom_kills(cgroups), "exit_status": status}))
        except OSError:
            pass
    for folder in cgroups:
        _remove_cgroup(folder)


def _remove_cgroup(folder: Path, timeout: float = 2.0) -> None:
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
        _check(_libc.setns(_own_pid_namespace, CLONE_NEWPID), "setns")
        if new and probe().namespaces:
            _check(_libc.unshare(CLONE_NEWPID), "unshare")
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


def _set_rlimits(limits: Limits) -> None:
    mb = 2**20
    for which, value in {
        resource.RLIMIT_FSIZE: limits.file_size_mb * mb,
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
    }.items():
        _lower_limit(which, value)


def _limit_address_space(limits: Limits) -> None:
    """Where no memory cgroup is available: RLIMIT_AS at what is mapped now
    plus the memory budget.  TensorFlow maps far more than it touches (this
    lesson: 2.0 GB of address space for 0.56 GB resident, measured), so the
    budget is on top of the current mappings, and a forked warm child, which
    inherits the parent's, still gets all of it."""
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
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _drop_privileges(uid: int, limits: Limits) -> None:
    # RLIMIT_NPROC counts the user's processes machine-wide; each concurrent
    # submission has its own uid, so this bounds a fork bomb even without cgroups
    _lower_limit(resource.RLIMIT_NPROC, limits.max_processes * 2)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # set after setuid, which clears it
    os.environ["HOME"] = os.getcwd()


def _chown_tree(root: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(root):
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, uid)


@contextmanager
def scratch_folder(policy: Policy | None):
    """A fresh scratch folder for one submission: a size-limited tmpfs where
    the sandbox is in force (filling it cannot fill the grader's disk), else a
    plain temporary folder.  Removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="grader-"))
    mounted = False
    if policy is not None and policy.isolate and probe().root:
        try:
            _mount("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV, f"size={policy.limits.scratch_mb}m,mode=0755")
            mounted = True
        except OSError:
            pass
    try:
        yield folder
    finally:
        if mounted:
            _libc.umount2(str(folder).encode(), MNT_DETACH)
        shutil.rmtree(folder, ignore_errors=True)


def read_report(workdir_root: Path) -> dict:
    """What the supervising process recorded (out-of-memory kills...)."""
    try:
        return json.loads((Path(workdir_root) / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> None:
    """``python -m grader.sandbox POLICY_JSON WORKDIR UID -- COMMAND...``:
    isolate, then exec COMMAND (the kernel executor's kernel)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--")
    policy_json, workdir_root, uid = argv[:split]
    command = argv[split + 1:]
    enter(Policy.from_json(policy_json), Path(workdir_root), int(uid))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
