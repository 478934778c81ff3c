"""The kernel executor: each notebook in a fresh Jupyter kernel, through nbclient.

The reference executor, with full notebook semantics; the timeout and stop
rules are :func:`grader.execution.base.run_units`'s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from grader.errors import ExecutorError
from grader.execution import sandbox
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
    whole_seconds,
)
from grader.execution.capture import call_source, loader_source
from grader.execution.host import detect
from grader.execution.plan import ExecutionPlan
from grader.execution.sandbox import Policy
from grader.execution.uids import lease_uid
from grader.execution.untrusted import WRITE_FLAGS

if TYPE_CHECKING:
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbformat import NotebookNode

TIMEOUT_ENAME = "GraderCellTimeout"
KERNEL_DIR = "kernel"  # the kernel's connection file and sockets: the student's until the kernel is up
MAX_MESSAGE_BYTES = 32 * 2**20  # one message from a kernel (a large figure is a few MB)
MAX_NOTEBOOK_BYTES = 512 * 2**20  # all messages from one notebook's kernel


class KernelExecutor:
    """Runs each notebook in a fresh Jupyter kernel through nbclient: the
    reference executor, with full notebook semantics.  The kernel runs the
    Python the grader runs in (no kernelspec set-up).  With a sandbox policy
    the kernel is started through ``python -m grader.execution.sandbox`` (isolated, then
    exec'd) and talks to the grader over unix sockets in its scratch folder,
    since it has no network."""

    name = "kernel"

    def __init__(
        self,
        policy: Policy | None = None,
        startup_timeout: float = 60.0,
        probe_timeout: float = 10.0,
        max_output_bytes: int = 4 * 2**20,
    ) -> None:
        self.policy = policy
        self.startup_timeout = startup_timeout
        self.probe_timeout = probe_timeout
        self.max_output_bytes = max_output_bytes

    def start(self) -> None:
        pass  # each kernel starts with its notebook

    def close(self) -> None:
        pass  # nothing outlives a notebook

    def __enter__(self) -> KernelExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lanes(self, jobs: int) -> int:
        return jobs  # a kernel's start-up is most of its cost, and it needs the cores: nothing to overlap

    @property
    def warm_parent(self) -> int | None:
        return None  # a fresh kernel per notebook

    def run(self, plan: ExecutionPlan, workdir: Workdir) -> ExecutionRecord:
        with lease_uid() as uid:  # held until every process of the submission is gone
            return self._run(plan, workdir, uid.uid)

    def _run(self, plan: ExecutionPlan, workdir: Workdir, uid: int) -> ExecutionRecord:
        import nbformat
        from nbclient.exceptions import DeadKernelError

        cells, roles = self._execution_notebook(plan, workdir)
        nb = nbformat.v4.new_notebook(cells=cells)
        record = ExecutionRecord(executor=self.name, isolation=isolation_label(self.policy))
        replies: list[dict[str, Any]] = []
        client = _capped_client_class()(
            nb,
            max_output_bytes=self.max_output_bytes,
            km=_kernel_manager(workdir, self.policy, uid),
            timeout=whole_seconds(plan.cell_timeout),
            startup_timeout=whole_seconds(self.startup_timeout),
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
                ctx = client.setup_kernel(
                    cwd=str(workdir.cwd), env=student_environment(workdir), stdout=log, stderr=log, cleanup_kc=True
                )  # we pass our own km, so nbclient would not stop the kernel
                ctx.__enter__()
            except Exception as exc:
                raise ExecutorError(f"the Jupyter kernel did not start: {type(exc).__name__}: {exc}") from exc
            try:
                if self.policy is not None and self.policy.isolate and sandbox.probe().root:
                    # The kernel has bound its sockets: from now on the student
                    # cannot swap them for links the grader would connect through.
                    sandbox.take_back(workdir.root / KERNEL_DIR)

                def run_cell(unit: tuple[int, NotebookNode, bool], timeout: int) -> UnitOutcome:
                    index, cell, store = unit
                    client.timeout = timeout
                    replies.clear()
                    try:
                        client.execute_cell(cell, index, store_history=store)
                    except DeadKernelError:
                        return DIED
                    except Exception as exc:  # what the student's process sent cannot be accepted (too much, malformed)
                        return (
                            "died",
                            type(exc).__name__,
                            f"the kernel sent what the grader does not accept: {clean_text(exc)}",
                        )
                    return _outcome(replies, timeout)

                units = [(role, (i, cell, isinstance(role, int))) for i, (cell, role) in enumerate(zip(cells, roles))]
                run_units(record, units, plan, start, run_cell, lambda: self._responds(client, replies))
            finally:
                try:
                    ctx.__exit__(None, None, None)
                except Exception:
                    pass  # a dead or wedged kernel is killed; nothing more to do
        record.seconds = time.monotonic() - start
        finish_record(record, plan, workdir, self.policy)
        return record

    @staticmethod
    def _execution_notebook(plan: ExecutionPlan, workdir: Workdir) -> tuple[list[NotebookNode], list[Role]]:
        """The notebook actually executed: a loader cell, each student cell
        followed by a capture cell where answers are captured, a final capture.
        ``roles`` says what each cell is: a student cell index, or a label."""
        import nbformat

        new = nbformat.v4.new_code_cell
        cells: list[NotebookNode] = [new(loader_source())]
        roles: list[Role] = ["loader"]
        for step in plan.steps:
            cells.append(new(step.source))
            roles.append(step.cell_index)
            if step.captures or step.weights:
                point = point_name(step.cell_index)
                cells.append(
                    new(call_source(step.captures, workdir.answers, point, plan.max_answer_bytes, step.weights))
                )
                roles.append(point)
        cells.append(
            new(
                call_source(
                    plan.final_captures, workdir.answers, FINAL_POINT, plan.max_answer_bytes, plan.final_weights
                )
            )
        )
        roles.append(FINAL_POINT)
        return cells, roles

    def _responds(self, client: NotebookClient, replies: list[dict[str, Any]]) -> bool:
        """After an interrupted cell: does the kernel run a trivial cell again?
        (A loop that ignores SIGINT keeps it busy for good.)"""
        import nbformat
        from nbclient.exceptions import DeadKernelError

        probe = nbformat.v4.new_code_cell("pass")
        client.nb.cells.append(probe)
        client.timeout = whole_seconds(self.probe_timeout)
        replies.clear()
        try:
            client.execute_cell(probe, len(client.nb.cells) - 1, store_history=False)
        except DeadKernelError:
            return False
        return _outcome(replies, client.timeout)[0] == "ok"


def _capped_client_class() -> type[NotebookClient]:
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most ``max_output_bytes`` of cell outputs in memory (an
        output flood must not grow the grader), then one truncation marker."""

        def __init__(self, nb: NotebookNode, max_output_bytes: int, **kw: Any) -> None:
            super().__init__(nb, **kw)
            self.max_output_bytes = max_output_bytes
            self.output_bytes = 0

        def output(
            self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, cell_index: int
        ) -> NotebookNode | None:
            if self.output_bytes > self.max_output_bytes:
                return None
            self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
            if self.output_bytes > self.max_output_bytes:
                marker = nbformat_stream(f"[grader: output truncated after {self.max_output_bytes} bytes]\n")
                outs.append(marker)
                return marker
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def nbformat_stream(text: str) -> NotebookNode:
    import nbformat

    return nbformat.v4.new_output("stream", name="stderr", text=text)


def _outcome(replies: list[dict[str, Any]], timeout: int) -> UnitOutcome:
    """Status of a cell from its execute_reply."""
    content = replies[-1].get("content", {}) if replies else {}
    if content.get("status", "ok") == "ok":
        return "ok", None, None
    if content.get("ename") == TIMEOUT_ENAME:
        return "timeout", "TimeoutError", f"the cell ran longer than {timeout} s and was interrupted"
    return "error", clean_text(content.get("ename", "")), clean_text(content.get("evalue", ""))


class MessageLimitExceeded(Exception):
    """The student's kernel sent more than the grader accepts from one notebook."""


def open_log(workdir: Workdir) -> BinaryIO:
    """The student's process's log, created by the grader (before any of the
    student's code runs) in the scratch root, which the student cannot write."""
    fd = os.open(workdir.root / LOG_NAME, WRITE_FLAGS, 0o600)
    return os.fdopen(fd, "wb")


def _kernel_manager(workdir: Workdir, policy: Policy | None, uid: int) -> AsyncKernelManager:
    """A kernel manager that starts ipykernel with this very Python, whatever
    kernelspecs the machine has installed; through the sandbox when there is
    a policy, with its connection file and sockets in the scratch folder.
    Its client accepts at most ``MAX_MESSAGE_BYTES`` per message (ZeroMQ
    drops a larger one before it is read) and ``MAX_NOTEBOOK_BYTES`` in all."""
    import zmq.asyncio
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    argv = [
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        "--HistoryManager.hist_file=:memory:",
    ]
    if policy is not None:
        argv = sandbox.launcher(policy, workdir.root, uid, argv)

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=argv, display_name="grader: this Python", language="python")

    class CappedManager(AsyncKernelManager):
        # jupyter_client's own AsyncKernelManager.client narrows KernelManager.client the same way (and ignores it)
        def client(self, **kwargs: Any) -> AsyncKernelClient:  # type: ignore[override]
            context = zmq.asyncio.Context()
            context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            kc = super().client(context=context, **kwargs)
            kc._created_context = True  # the client destroys it when it is done
            deserialize, budget = kc.session.deserialize, [MAX_NOTEBOOK_BYTES]

            def counted(msg_list: list[bytes], *args: Any, **kw: Any) -> dict[str, Any]:
                budget[0] -= sum(len(part) for part in msg_list)
                if budget[0] < 0:
                    raise MessageLimitExceeded(f"more than {MAX_NOTEBOOK_BYTES // 2**20} MB of messages in all")
                return deserialize(msg_list, *args, **kw)

            kc.session.deserialize = counted
            return kc

    kernel_dir = workdir.root / KERNEL_DIR
    # Unix sockets: the sandboxed kernel has no network at all; Windows has
    # none of them (and no sandbox), so its kernel listens on loopback.
    ipc = detect().unix_sockets
    return CappedManager(
        kernel_name="grader-python",
        kernel_spec_manager=ThisPython(),
        transport="ipc" if ipc else "tcp",
        ip=str(kernel_dir / "zmq") if ipc else "127.0.0.1",
        connection_file=str(kernel_dir / "kernel.json"),
    )
