"""The warm executor: notebooks forked from a parent that already imported TensorFlow.

Importing TensorFlow takes seconds; running this course's notebooks takes a few
hundred milliseconds.  So a long-lived parent process, the *zygote*, imports
numpy, TensorFlow, Keras, matplotlib (Agg), IPython and matplotlib-inline once,
runs no TensorFlow op (a forked child must not inherit an initialized runtime),
and forks one fresh child per submission.  The child runs the cells through an
IPython ``InteractiveShell``, so magics, shell escapes, ``display()`` and
errors behave as in a notebook, and writes answers with :mod:`grader.execution.capture`.

Three processes, two kinds of channel, JSON messages only (no pickle):

* grader <-> zygote: a ``SOCK_SEQPACKET`` socket.  The zygote is started with
  this very Python (``python -m grader.execution.zygote FD``) so the grader itself never
  imports TensorFlow.  Requests: fork (carrying, as ``SCM_RIGHTS``, the
  socket the child will use) and sweep (kill and reap whatever a finished
  submission left behind; the zygote is a child subreaper, so orphans of the
  student's processes end up as its children).
* grader <-> child: a stream socket, one JSON object per line, lock-step: the
  grader sends one unit (a cell, or a capture point), the child answers with its
  outcome.  Each outcome reaches the grader as it happens, so results survive a
  crash; the grader watches the child with a pidfd, which tells a death even
  when the student's own processes keep the socket open.

Timeouts, interrupts and what "stopped" means follow
:class:`grader.execution.kernel.KernelExecutor`, the reference executor.  Several
submissions may run at a time (one child each); a sweep only touches the
finished submission's session and orphans of no running submission.  With a
sandbox policy the zygote forks the child as PID 1 of a new PID namespace,
the child isolates itself with :func:`grader.execution.sandbox.enter` right after the
fork, and the zygote releases the sandbox (cgroups, the out-of-memory
report) when it reaps the child.  Where the zygote cannot make the namespace,
``enter`` forks once more: the notebook runs in an isolated grandchild (same
session and process group, so interrupts and kills still reach it), and the
pidfd watches the sandbox's supervising process, which exits when the
grandchild does.

This module is the grader's side; what runs in the zygote and in its
children is :mod:`grader.execution.zygote`.

Known differences from a kernel: the student's stdout goes to the log (a kernel
sends it to the notebook); ``%matplotlib <gui>`` is accepted and shows nothing;
there is no ipykernel object (``get_ipython().kernel``, comms, widgets).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from grader.errors import ExecutorError
from grader.execution.base import (
    DIED,
    FINAL_POINT,
    LOG_NAME,
    ExecutionRecord,
    Role,
    UnitOutcome,
    Workdir,
    clean_text,
    finish_record,
    isolation_label,
    point_name,
    run_units,
    student_environment,
)
from grader.execution.plan import ExecutionPlan
from grader.execution.sandbox import Policy
from grader.execution.uids import lease_uid
from grader.execution.untrusted import tail
from grader.execution.zygote import PACKAGE_PARENT, _Channel, _Closed, _readable, _Refused


class _ZygoteLost(Exception):
    """The zygote died or stopped answering: start a new one and retry."""


# --------------------------------------------------------------------------- grader side


class WarmExecutor:
    """Runs each notebook in a fresh child forked from a preloaded zygote.

    Same contract as :class:`~grader.execution.kernel.KernelExecutor`, sandbox
    included: with a ``policy`` each child enters :func:`grader.execution.sandbox.enter`
    right after the fork.  The zygote is started on the first :meth:`run`,
    shared by every later run (several may run at a time, from threads) and
    restarted when it died; the submission is then retried once
    (:meth:`start` begins its imports early, without waiting).  Call
    :meth:`close`, or use the executor as a context manager, to stop it."""

    name = "warm"

    def __init__(
        self, policy: Policy | None = None, start_timeout: float = 120.0, interrupt_grace: float = 5.0
    ) -> None:
        self.policy = policy  # the sandbox for the student's process; None: no isolation
        self.start_timeout = start_timeout  # seconds the zygote may take to import everything
        self.interrupt_grace = interrupt_grace  # seconds an interrupted cell has to answer
        self._zygote: _Zygote | None = None
        self._lock = threading.Lock()  # guards starting and replacing the zygote
        self._executing: threading.BoundedSemaphore | None = None  # see lanes()

    def __enter__(self) -> WarmExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()

    @property
    def warm_parent(self) -> int | None:
        """The zygote's process id, if one is running."""
        zygote = self._zygote
        return zygote.process.pid if zygote else None

    def lanes(self, jobs: int) -> int:
        """At most ``jobs`` children execute cells at a time, and the caller
        grades a few more submissions at once: while ``jobs`` children run,
        the others fork and set up the next child, or sweep the last one and
        check its answers, so no core waits for the grader between notebooks.
        The time limits count from the moment a child may execute."""
        jobs = max(1, jobs)
        self._executing = threading.BoundedSemaphore(jobs)
        return jobs + max(1, jobs // 2)

    def run(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord:
        try:
            return self._run_once(plan, workdir)
        except _ZygoteLost:
            for stale in workdir.answers.iterdir():  # the retry starts from scratch
                stale.unlink()
        try:
            return self._run_once(plan, workdir)
        except _ZygoteLost as exc:
            raise ExecutorError(f"the warm executor failed twice on this submission: {exc}") from None

    def _run_once(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord:
        zygote = self._current_zygote()
        with lease_uid() as uid:  # held until every process of the submission is gone
            record = self._run_child(zygote, plan, workdir, uid.uid)
            finish_record(record, plan, workdir, self.policy)
        return record

    def _run_child(self, zygote: _Zygote, plan: ExecutionPlan, workdir: Workdir, uid: int) -> ExecutionRecord:
        log_path = workdir.root / LOG_NAME
        try:
            child = _Child.fork(zygote, workdir.root if self.policy is not None and self.policy.isolate else None)
        except _ZygoteLost:
            self._forget(zygote)
            raise
        sandboxed = None if self.policy is None else {"policy": self.policy.to_json(), "uid": uid}
        try:
            child.set_up(workdir, log_path, sandboxed, self.start_timeout)
            with self._executing or contextlib.nullcontext():
                start = time.monotonic()
                try:
                    record = self._drive(child, plan, workdir, start)
                finally:
                    child.kill()
                record.seconds = time.monotonic() - start
        finally:
            child.kill()
            try:
                zygote.sweep(child.pid)
            except _ZygoteLost:
                self._forget(zygote)  # the record stands; the next run starts a new zygote
        return record

    def _drive(self, child: _Child, plan: ExecutionPlan, workdir: Workdir, start: float) -> ExecutionRecord:
        """Run the units one by one with the kernel executor's timeout rules."""
        record = ExecutionRecord(executor=self.name, isolation=isolation_label(self.policy))
        run_units(record, _units(plan, workdir), plan, start, child.run, lambda: child.recovers(self.interrupt_grace))
        return record

    def start(self) -> None:
        """Start the zygote's imports now, without waiting for them, so they
        overlap with the caller's own preparations (a batch loading its
        references); :meth:`run` waits for it."""
        with self._lock:
            self._spawn()

    def _current_zygote(self) -> _Zygote:
        """The running zygote, started (or restarted) if need be."""
        with self._lock:
            zygote = self._spawn()
            try:
                zygote.wait_ready()
            except ExecutorError:
                self._zygote = None  # the next run tries a new one
                raise
            return zygote

    def _spawn(self) -> _Zygote:
        if self._zygote is not None and not self._zygote.alive():
            self._zygote.close()
            self._zygote = None
        if self._zygote is None:
            self._zygote = _Zygote(self.start_timeout)
        return self._zygote

    def _forget(self, zygote: _Zygote) -> None:
        """Stop using a zygote that failed (unless another run replaced it already)."""
        with self._lock:
            if self._zygote is zygote:
                self._zygote = None
        zygote.close()


def _units(plan: ExecutionPlan, workdir: Workdir) -> Iterator[tuple[Role, dict[str, Any]]]:
    """(role, message) in the order the kernel executor runs its cells: a
    student cell (role: its index) followed, where answers are captured, by a
    capture (role: the point's name); a final capture at the end."""

    def capture(answers: dict[str, str], weights: dict[str, int], point: str) -> dict[str, Any]:
        return {
            "capture": dict(answers),
            "weights": dict(weights),
            "folder": str(workdir.answers),
            "point": point,
            "max_bytes": int(plan.max_answer_bytes),
        }

    for step in plan.steps:
        yield step.cell_index, {"cell": step.source}
        if step.captures or step.weights:
            yield point_name(step.cell_index), capture(step.captures, step.weights, point_name(step.cell_index))
    yield FINAL_POINT, capture(plan.final_captures, plan.final_weights, FINAL_POINT)


class _Zygote:
    """The preloaded parent, seen from the grader: its process and the control
    socket used to ask it to fork and to sweep."""

    def __init__(self, start_timeout: float) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="grader-warm-"))
        self.output = self.scratch / "zygote.log"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        self.lock = threading.Lock()
        env = student_environment(Workdir(self.scratch, self.scratch, self.scratch))
        env["MPLBACKEND"] = "Agg"
        try:
            with open(self.output, "wb") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "grader.execution.zygote", str(theirs.fileno()), str(self.scratch)],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=PACKAGE_PARENT,
                    env=env,
                    start_new_session=True,
                )  # a Ctrl-C at the grader's terminal is not for it
        except OSError as exc:
            self._cleanup()
            raise ExecutorError(f"the warm executor's parent process could not be started: {exc}") from None
        finally:
            theirs.close()
        self._finalizer = weakref.finalize(self, _stop_zygote, self.process, self.control, self.scratch)
        self.start_timeout = start_timeout
        self.ready = False

    def wait_ready(self) -> None:
        """Wait until the zygote has imported everything (the first caller
        reads its greeting; callers hold the executor's lock)."""
        if self.ready:
            return
        try:
            reply = self._receive(self.start_timeout)
        except _ZygoteLost as exc:
            reply = {"error": str(exc)}
        if "ready" not in reply:
            output = tail(str(self.output), 1500).strip()
            self.close()
            raise ExecutorError(
                f"the warm executor's parent process did not start: {reply.get('error')}"
                + (f"; its output ends with:\n{output}" if output else "")
            )
        self.ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, channel: socket.socket, isolate_root: Path | None) -> int:
        """Ask for a child that will talk on ``channel`` (sandboxed in the
        scratch root ``isolate_root``, if given); its process id."""
        request = {"fork": True, "isolate_root": str(isolate_root) if isolate_root else None}
        return int(self._request(request, [channel.fileno()])["pid"])

    def sweep(self, pid: int) -> None:
        """Kill and reap every process the submission of child ``pid`` left."""
        self._request({"sweep": pid})

    def _request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self.lock:  # one request at a time: the replies come in order
            try:
                socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
            except OSError as exc:
                raise _ZygoteLost(f"cannot reach the parent process ({exc})") from None
            return self._receive(30.0)

    def _receive(self, timeout: float) -> dict[str, Any]:
        if not _readable([self.control.fileno()], timeout):
            raise _ZygoteLost(f"the parent process did not answer within {timeout:g} s")
        try:
            return json.loads(self.control.recv(1 << 16))  # b"" (end of file) is not JSON either
        except (OSError, ValueError):
            raise _ZygoteLost(f"the parent process exited (status {self.process.poll()})") from None

    def close(self) -> None:
        if not self.ready and self.process.poll() is None:
            self.process.kill()  # still importing (nothing forked yet): do not wait seconds for it to notice
        self._finalizer()

    def _cleanup(self) -> None:
        self.control.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _stop_zygote(process: subprocess.Popen[bytes], control: socket.socket, scratch: Path) -> None:
    """Closing the control socket tells the zygote to sweep and exit; kill it if it does not."""
    control.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(scratch, ignore_errors=True)


class _Child:
    """One forked child, seen from the grader: its channel, its pid, a pidfd."""

    def __init__(self, pid: int, channel: _Channel) -> None:
        self.pid = pid
        self.channel = channel
        self.killed = False
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None  # no pidfds: a death is seen as the socket's end of file

    @classmethod
    def fork(cls, zygote: _Zygote, isolate_root: Path | None) -> _Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = zygote.fork(theirs, isolate_root)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(30.0)  # bounds a send to a child that stopped reading
        return cls(pid, _Channel(ours))

    def set_up(self, workdir: Workdir, log_path: Path, sandbox: dict[str, Any] | None, timeout: float) -> None:
        """Give the child its working directory, environment, log and sandbox;
        wait until its shell is ready for the first cell."""
        try:
            self.channel.send(
                {
                    "root": str(workdir.root),
                    "cwd": str(workdir.cwd),
                    "env": student_environment(workdir),
                    "log": str(log_path),
                    "sandbox": sandbox,
                }
            )
            reply = self.channel.receive(timeout, self.watch)
        except (_Closed, OSError):
            reply = None
        if not reply or "ready" not in reply:
            raise ExecutorError(
                f"the warm executor's child process could not be set up; {log_path.name} ends with: "
                f"{tail(str(log_path), 600).strip() or '(nothing)'}"
            )

    @property
    def watch(self) -> list[int]:
        return [self.pidfd] if self.pidfd is not None else []

    def run(self, message: dict[str, Any], limit: int) -> UnitOutcome:
        """Send one unit, wait up to ``limit`` seconds: (status, ename, evalue)."""
        try:
            self.channel.send(message)
            reply = self.channel.receive(limit, self.watch)
        except _Refused as exc:
            return "died", "ChannelError", f"the notebook's process sent the grader {exc}; it was stopped"
        except (_Closed, OSError):
            return DIED
        if reply is None:
            return "timeout", "TimeoutError", f"the cell ran longer than {limit} s and was interrupted"
        if reply.get("status") == "ok":
            return "ok", None, None
        return "error", clean_text(reply.get("ename", "")), clean_text(reply.get("evalue", ""))

    def recovers(self, grace: float) -> bool:
        """Interrupt the timed-out unit (SIGINT to the process group, as
        jupyter_client does): does the child answer within ``grace`` seconds?
        (A loop that ignores SIGINT keeps it busy for good.)"""
        try:
            os.killpg(self.pid, signal.SIGINT)
            return self.channel.receive(grace, self.watch) is not None
        except (_Closed, OSError):
            return False

    def kill(self) -> None:
        """Kill the child's whole process group and let go of it (once: the
        zygote may reap it and its pid be another's afterwards)."""
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass  # already gone
        self.channel.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
