"""Running a planned notebook: the executor interface and the kernel executor.

An executor takes an :class:`~grader.notebook.ExecutionPlan` and a
:class:`Workdir` and returns an :class:`ExecutionRecord`.  It never judges
answers: the student's process writes them through :mod:`grader.capture` into
``workdir.answers`` and the grader reads them afterwards.

Timeout semantics (shared by every executor): a cell may run ``cell_timeout``
seconds and the whole notebook ``notebook_timeout``.  A timed-out cell is
interrupted and later cells still run if the kernel answers again; when it does
not, or the notebook's time is up, or the process dies, the remaining cells are
recorded as not run.  Answers captured before that point are still graded, and
what did not run fails: a hung or dead kernel never passes a check.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from . import sandbox
from .capture import call_source, loader_source
from .errors import ExecutorError
from .notebook import ExecutionPlan
from .sandbox import Policy, student_uid
from .untrusted import tail

CellStatus = Literal["ok", "error", "timeout", "died", "not_run"]
FINAL_POINT = "end"
TIMEOUT_ENAME = "GraderCellTimeout"
LOG_NAME = "kernel.log"  # the student's process's stdout and stderr, in the (root-owned) scratch root
KERNEL_DIR = "kernel"  # the kernel's connection file and sockets: the student's until the kernel is up
MAX_MESSAGE_BYTES = 32 * 2**20  # one message from a kernel (a large figure is a few MB)
MAX_NOTEBOOK_BYTES = 512 * 2**20  # all messages from one notebook's kernel


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
    name: str
    policy: Policy | None  # the sandbox for the student's process; None: no isolation

    def start(self) -> None:
        """Begin any slow preparation in the background (run() waits for it)."""

    def run(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord: ...


EXECUTOR_NAMES = ("warm", "kernel")


def make_executor(name: str, policy: Policy | None = None) -> Executor:
    """``warm``: forked from a parent that already imported TensorFlow (fast);
    ``kernel``: a fresh Jupyter kernel per notebook (the reference).  Without
    a policy, students' code is sandboxed with the defaults."""
    if policy is None:
        from .references import cache_root

        policy = Policy(hide=sandbox.hidden_paths(cache_root()))
    if name == "kernel":
        return KernelExecutor(policy=policy)
    if name == "warm":
        from .warm import WarmExecutor

        return WarmExecutor(policy=policy)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTOR_NAMES)}")


# Inherited from the grader's environment, by exact name: how to find programs
# and the Python package, locale, and numeric-library tuning.  Nothing else:
# the grader's environment may hold tokens (GRADER_LTI_TOKEN, Terraform's
# TF_TOKEN_*) and paths students must not see.
INHERITED = frozenset({
    "PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ",
    "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY", "LC_MESSAGES",
    "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE", "LC_MEASUREMENT", "LC_IDENTIFICATION",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_ENABLE_ONEDNN_OPTS",
})


def student_environment(workdir: Workdir) -> dict[str, str]:
    """Environment of the student's process: an allow-list of the grader's,
    quiet TensorFlow, no GUI, no IPython profile of the machine's user, and a
    home in the scratch folder."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED}
    env.update(
        HOME=str(workdir.cwd),
        TMPDIR="/tmp",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONWARNINGS="ignore",
        IPYTHONDIR=str(workdir.root / "ipython"),
        MPLCONFIGDIR=str(workdir.root / "matplotlib"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


class KernelExecutor:
    """Runs each notebook in a fresh Jupyter kernel through nbclient: the
    reference executor, with full notebook semantics.  The kernel runs the
    Python the grader runs in (no kernelspec set-up).  With a sandbox policy
    the kernel is started through ``python -m grader.sandbox`` (isolated, then
    exec'd) and talks to the grader over unix sockets in its scratch folder,
    since it has no network."""

    name = "kernel"

    def __init__(self, policy: Policy | None = None, startup_timeout: float = 60.0, probe_timeout: float = 10.0,
                 max_output_bytes: int = 4 * 2**20):
        self.policy = policy
        self.startup_timeout = startup_timeout
        self.probe_timeout = probe_timeout
        self.max_output_bytes = max_output_bytes
        self._slots = itertools.count()

    def start(self) -> None:
        pass  # each kernel starts with its notebook

    def run(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord:
        import nbformat
        from nbclient.exceptions import DeadKernelError

        cells, roles = self._execution_notebook(plan, workdir)
        nb = nbformat.v4.new_notebook(cells=cells)
        record = ExecutionRecord(executor=self.name, isolation=isolation_label(self.policy))
        replies: list[dict] = []
        uid = student_uid(next(self._slots))
        client = _capped_client_class()(
            nb,
            max_output_bytes=self.max_output_bytes,
            km=_kernel_manager(workdir, self.policy, uid),
            timeout=_whole_seconds(plan.cell_timeout),
            startup_timeout=_whole_seconds(self.startup_timeout),
            allow_errors=True,
            # On timeout nbclient interrupts the kernel and answers with this
            # error reply; it also stops listening for the cell's output (a
            # raised CellTimeoutError would leave that listener stealing the
            # next cells' messages).
            interrupt_on_timeout=True,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "", "traceback": []},
            record_timing=False,
            shutdown_kernel="immediate",
            on_cell_executed=lambda **kw: replies.append(kw["execute_reply"]),
        )
        start = time.monotonic()
        (workdir.root / KERNEL_DIR).mkdir()
        with open_log(workdir) as log:
            try:
                ctx = client.setup_kernel(cwd=str(workdir.cwd), env=student_environment(workdir), stdout=log, stderr=log,
                                          cleanup_kc=True)  # we pass our own km, so nbclient would not stop the kernel
                ctx.__enter__()
            except Exception as exc:
                raise ExecutorError(f"the Jupyter kernel did not start: {type(exc).__name__}: {exc}") from exc
            try:
                if self.policy is not None and self.policy.isolate and sandbox.probe().root:
                    # The kernel has bound its sockets: from now on the student
                    # cannot swap them for links the grader would connect through.
                    sandbox.take_back(workdir.root / KERNEL_DIR)

                def run_cell(unit, timeout: int):
                    index, cell, store = unit
                    client.timeout = timeout
                    replies.clear()
                    try:
                        client.execute_cell(cell, index, store_history=store)
                    except DeadKernelError:
                        return DIED
                    except Exception as exc:  # what the student's process sent cannot be accepted (too much, malformed)
                        return "died", type(exc).__name__, f"the kernel sent what the grader does not accept: {clean_text(exc)}"
                    return _outcome(replies, timeout)

                units = [(role, (i, cell, isinstance(role, int))) for i, (cell, role) in enumerate(zip(cells, roles))]
                run_units(record, units, plan, start, run_cell, lambda: self._responds(client, replies))
            finally:
                try:
                    ctx.__exit__(None, None, None)
                except Exception:
                    pass  # a dead or wedged kernel is killed; nothing more to do
                if self.policy is not None and self.policy.isolate:
                    sandbox.clear_keyrings(uid)
        record.seconds = time.monotonic() - start
        finish_record(record, plan, workdir, self.policy)
        return record

    @staticmethod
    def _execution_notebook(plan: ExecutionPlan, workdir: Workdir):
        """The notebook actually executed: a loader cell, each student cell
        followed by a capture cell where answers are captured, a final capture.
        ``roles`` says what each cell is: a student cell index, or a label."""
        import nbformat

        new = nbformat.v4.new_code_cell
        cells, roles = [new(loader_source())], ["loader"]
        for step in plan.steps:
            cells.append(new(step.source))
            roles.append(step.cell_index)
            if step.captures or step.weights:
                point = point_name(step.cell_index)
                cells.append(new(call_source(step.captures, workdir.answers, point, plan.max_answer_bytes, step.weights)))
                roles.append(point)
        cells.append(new(call_source(plan.final_captures, workdir.answers, FINAL_POINT, plan.max_answer_bytes,
                                     plan.final_weights)))
        roles.append(FINAL_POINT)
        return cells, roles

    def _responds(self, client, replies: list[dict]) -> bool:
        """After an interrupted cell: does the kernel run a trivial cell again?
        (A loop that ignores SIGINT keeps it busy for good.)"""
        import nbformat
        from nbclient.exceptions import DeadKernelError

        probe = nbformat.v4.new_code_cell("pass")
        client.nb.cells.append(probe)
        client.timeout = _whole_seconds(self.probe_timeout)
        replies.clear()
        try:
            client.execute_cell(probe, len(client.nb.cells) - 1, store_history=False)
        except DeadKernelError:
            return False
        return _outcome(replies, client.timeout)[0] == "ok"


DIED = ("died", "DeadKernelError", "the kernel process died (crash, os._exit or killed)")


def run_units(record: ExecutionRecord, units, plan: ExecutionPlan, start: float, run_unit, recovers) -> None:
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
        outcome, ename, evalue = run_unit(unit, _whole_seconds(min(plan.cell_timeout, remaining)))
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
    return sandbox.probe().describe(policy.isolate)


def finish_record(record: ExecutionRecord, plan: ExecutionPlan, workdir: Workdir, policy: Policy | None) -> None:
    """Shared ending of every executor: cells that never ran, the log's tail,
    and what the sandbox saw (a memory limit hit)."""
    ran = {c.cell_index for c in record.cells}
    record.cells.extend(CellRun(s.cell_index, "not_run") for s in plan.steps if s.cell_index not in ran)
    if policy is not None and policy.isolate:
        sandbox.release(workdir.root)  # where nothing did (a kernel's supervisor killed with its kernel)
    report = sandbox.read_report(workdir.root)
    if report.get("oom_kills") and policy is not None:
        record.stopped = (f"the notebook used more than its {policy.limits.memory_mb} MB of memory "
                          "and was stopped" + (f" ({record.stopped})" if record.stopped else ""))


def _capped_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most ``max_output_bytes`` of cell outputs in memory (an
        output flood must not grow the grader), then one truncation marker."""

        def __init__(self, nb, max_output_bytes: int, **kw):
            super().__init__(nb, **kw)
            self.max_output_bytes = max_output_bytes
            self.output_bytes = 0

        def output(self, outs, msg, display_id, cell_index):
            if self.output_bytes > self.max_output_bytes:
                return None
            self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
            if self.output_bytes > self.max_output_bytes:
                marker = nbformat_stream(f"[grader: output truncated after {self.max_output_bytes} bytes]\n")
                outs.append(marker)
                return marker
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def nbformat_stream(text: str):
    import nbformat

    return nbformat.v4.new_output("stream", name="stderr", text=text)


def _outcome(replies: list[dict], timeout: int) -> tuple[CellStatus, str | None, str | None]:
    """Status of a cell from its execute_reply."""
    content = replies[-1].get("content", {}) if replies else {}
    if content.get("status", "ok") == "ok":
        return "ok", None, None
    if content.get("ename") == TIMEOUT_ENAME:
        return "timeout", "TimeoutError", f"the cell ran longer than {timeout} s and was interrupted"
    return "error", clean_text(content.get("ename", "")), clean_text(content.get("evalue", ""))


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean_text(text, limit: int = 400) -> str:
    """One line of plain text from an exception value: no ANSI colours, no
    line breaks, at most ``limit`` characters."""
    text = " ".join(ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class MessageLimitExceeded(Exception):
    """The student's kernel sent more than the grader accepts from one notebook."""


def open_log(workdir: Workdir):
    """The student's process's log, created by the grader (before any of the
    student's code runs) in the scratch root, which the student cannot write."""
    fd = os.open(workdir.root / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def _kernel_manager(workdir: Workdir, policy: Policy | None, uid: int):
    """A kernel manager that starts ipykernel with this very Python, whatever
    kernelspecs the machine has installed; through the sandbox when there is
    a policy, with its connection file and sockets in the scratch folder.
    Its client accepts at most ``MAX_MESSAGE_BYTES`` per message (ZeroMQ
    drops a larger one before it is read) and ``MAX_NOTEBOOK_BYTES`` in all."""
    import zmq.asyncio
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--HistoryManager.hist_file=:memory:"]
    if policy is not None:
        argv = [sys.executable, "-m", "grader.sandbox", policy.to_json(), str(workdir.root), str(uid), "--", *argv]

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=argv, display_name="grader: this Python", language="python")

    class CappedManager(AsyncKernelManager):
        def client(self, **kwargs):
            context = zmq.asyncio.Context()
            context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            kc = super().client(context=context, **kwargs)
            kc._created_context = True  # the client destroys it when it is done
            deserialize, budget = kc.session.deserialize, [MAX_NOTEBOOK_BYTES]

            def counted(msg_list, *args, **kw):
                budget[0] -= sum(len(part) for part in msg_list)
                if budget[0] < 0:
                    raise MessageLimitExceeded(f"more than {MAX_NOTEBOOK_BYTES // 2**20} MB of messages in all")
                return deserialize(msg_list, *args, **kw)

            kc.session.deserialize = counted
            return kc

    kernel_dir = workdir.root / KERNEL_DIR
    return CappedManager(kernel_name="grader-python", kernel_spec_manager=ThisPython(), transport="ipc",
                         ip=str(kernel_dir / "zmq"), connection_file=str(kernel_dir / "kernel.json"))
