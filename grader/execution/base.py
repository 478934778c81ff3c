"""Running a planned notebook: what every executor shares.

An executor takes an :class:`~grader.execution.plan.ExecutionPlan` and a
:class:`Workdir` and returns an :class:`ExecutionRecord`.  It never judges
answers: the student's process writes them through :mod:`grader.execution.capture` into
``workdir.answers`` and the grader reads them afterwards.

Timeout semantics (shared by every executor): a cell may run ``cell_timeout``
seconds and the whole notebook ``notebook_timeout``.  A timed-out cell is
interrupted and later cells still run if the kernel answers again; when it does
not, or the notebook's time is up, or the process dies, the remaining cells are
recorded as not run.  Answers captured before that point are still graded, and
what did not run fails: a hung or dead kernel never passes a check.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from grader.execution import sandbox
from grader.execution.host import detect
from grader.execution.plan import ExecutionPlan
from grader.execution.sandbox import Policy

CellStatus = Literal["ok", "error", "timeout", "died", "not_run"]
UnitOutcome = tuple[CellStatus, str | None, str | None]  # (status, ename, evalue) of one unit run
Role = int | str  # a student cell's index, or a capture point's name
Unit = TypeVar("Unit")  # what an executor sends to run one unit (its own representation)
FINAL_POINT = "end"
LOG_NAME = "kernel.log"  # the student's process's stdout and stderr, in the (root-owned) scratch root


def point_name(cell_index: int) -> str:
    return f"cell{cell_index:04d}"


@dataclass(frozen=True)
class Workdir:
    """``root``: the scratch folder, which stays the grader's (the student
    owns only the folders in it); ``cwd``: where the student's code runs,
    holding copies of the data files only; ``answers``: a fresh, unguessable
    folder the captures are written to."""

    root: Path
    cwd: Path
    answers: Path


STUDENT_DIRS = ("work", "ipython", "matplotlib")  # plus the answers folder


def prepare_workdir(plan: ExecutionPlan, root: Path) -> Workdir:
    root.mkdir(parents=True, exist_ok=True)
    for name in STUDENT_DIRS:
        (root / name).mkdir()
    cwd = root / "work"
    answers = root / f"answers-{secrets.token_hex(8)}"
    answers.mkdir()
    for data in plan.data_files:
        shutil.copyfile(data, cwd / data.name)
    return Workdir(root=root, cwd=cwd, answers=answers)


@dataclass
class CellRun:
    cell_index: int  # position in the student's notebook (0-based)
    status: CellStatus
    seconds: float = 0.0
    ename: str | None = None
    evalue: str | None = None


@dataclass
class ExecutionRecord:
    executor: str
    isolation: str = "none"
    cells: list[CellRun] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why execution ended before the last cell, if it did
    capture_errors: list[str] = field(default_factory=list)


class Executor(Protocol):
    """What every executor does.  Use it as a context manager, or call
    :meth:`close`, to stop what it keeps running (the warm parent)."""

    name: str
    policy: Policy | None  # the sandbox for the student's process; None: no isolation

    def start(self) -> None:
        """Begin any slow preparation in the background (run() waits for it)."""

    def run(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord: ...

    def lanes(self, jobs: int) -> int:
        """Let at most ``jobs`` notebooks execute at a time; returns how many
        submissions a caller should grade at once to keep that many busy."""

    @property
    def warm_parent(self) -> int | None:
        """The process id of the parent kept between notebooks, while one runs
        (None for an executor that keeps none): a new id means the old parent
        died and was replaced."""

    def close(self) -> None:
        """Stop whatever the executor keeps between notebooks."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


# Inherited from the grader's environment, by exact name: how to find programs
# and the Python package, locale, and numeric-library tuning.  Nothing else:
# the grader's environment may hold tokens (GRADER_LTI_TOKEN, Terraform's
# TF_TOKEN_*) and paths students must not see.
INHERITED = frozenset(
    {
        "PATH",
        "PYTHONPATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "LC_ALL",
        "LC_CTYPE",
        "LC_NUMERIC",
        "LC_TIME",
        "LC_COLLATE",
        "LC_MONETARY",
        "LC_MESSAGES",
        "LC_PAPER",
        "LC_NAME",
        "LC_ADDRESS",
        "LC_TELEPHONE",
        "LC_MEASUREMENT",
        "LC_IDENTIFICATION",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_ENABLE_ONEDNN_OPTS",
    }
)
# And on Windows (no sandbox there: the student's code runs as this user) what
# any process needs: without SYSTEMROOT, Winsock cannot load, so a kernel
# fails at `import asyncio` (WinError 10106, python/cpython#118234).
WINDOWS_INHERITED = frozenset({"SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP"})


def student_environment(workdir: Workdir) -> dict[str, str]:
    """Environment of the student's process: an allow-list of the grader's,
    quiet TensorFlow, no GUI, no IPython profile of the machine's user, and a
    home in the scratch folder."""
    windows = detect().system == "win32"
    names = INHERITED | WINDOWS_INHERITED if windows else INHERITED
    env = {k: v for k, v in os.environ.items() if k in names}
    env.update(
        HOME=str(workdir.cwd),
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONWARNINGS="ignore",
        IPYTHONDIR=str(workdir.root / "ipython"),
        MPLCONFIGDIR=str(workdir.root / "matplotlib"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if windows:
        env["USERPROFILE"] = str(workdir.cwd)  # Windows' home; its own TEMP is kept
    else:
        env["TMPDIR"] = "/tmp"
    return env


DIED: UnitOutcome = ("died", "DeadKernelError", "the kernel process died (crash, os._exit or killed)")


def run_units(
    record: ExecutionRecord,
    units: Iterable[tuple[Role, Unit]],
    plan: ExecutionPlan,
    start: float,
    run_unit: Callable[[Unit, int], UnitOutcome],
    recovers: Callable[[], bool],
) -> None:
    """The rules every executor follows, in one place.  ``units`` are
    ``(role, unit)`` pairs, role being a student cell's index or a capture
    point's name; ``run_unit(unit, timeout)`` returns (status, ename, evalue);
    ``recovers()`` says whether the process answers again after a timeout.

    Each unit may run ``cell_timeout`` seconds, all of them together
    ``notebook_timeout``; execution stops when the process dies, stops
    answering after an interrupted cell, or the notebook's time is up."""
    deadline = start + plan.notebook_timeout
    for role, unit in units:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            record.stopped = f"the notebook ran out of time ({plan.notebook_timeout:g} s for the whole notebook)"
            break
        t0 = time.monotonic()
        outcome, ename, evalue = run_unit(unit, whole_seconds(min(plan.cell_timeout, remaining)))
        if isinstance(role, int):
            record.cells.append(CellRun(role, outcome, time.monotonic() - t0, ename, evalue))
        elif outcome != "ok":
            record.capture_errors.append(f"capturing answers ({role}) failed: {ename}: {evalue}")
        if outcome == "died":
            record.stopped = "the kernel died"
            break
        if outcome == "timeout" and not recovers():
            record.stopped = "the kernel stopped responding after a cell timed out"
            break


def isolation_label(policy: Policy | None) -> str:
    if policy is None:
        return "none: no sandbox configured"
    return sandbox.describe(policy)


def finish_record(record: ExecutionRecord, plan: ExecutionPlan, workdir: Workdir, policy: Policy | None) -> None:
    """Shared ending of every executor: cells that never ran, the log's tail,
    and what the sandbox saw (a memory limit hit)."""
    ran = {c.cell_index for c in record.cells}
    record.cells.extend(CellRun(s.cell_index, "not_run") for s in plan.steps if s.cell_index not in ran)
    if policy is not None and policy.isolate:
        sandbox.release(workdir.root)  # where nothing did (a kernel's supervisor killed with its kernel)
    report = sandbox.read_record(workdir.root)
    if report.get("oom_kills") and policy is not None:
        record.stopped = f"the notebook used more than its {policy.limits.memory_mb} MB of memory and was stopped" + (
            f" ({record.stopped})" if record.stopped else ""
        )


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean_text(text: object, limit: int = 400) -> str:
    """One line of plain text from an exception value: no ANSI colours, no
    line breaks, at most ``limit`` characters."""
    text = " ".join(ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
