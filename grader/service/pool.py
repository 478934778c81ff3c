"""The grading pool: ``workers`` threads around one executor kept for the
service's whole life, grading the queue in arrival order.

It grades exactly as ``grader batch`` does: :func:`~grader.grading.grade.grade_safely`
with the executor the CLI makes (:func:`~grader.execution.factory.make_executor`,
same sandbox policy), the references loaded once per assignment.  With the warm
executor all workers fork from one warm parent, as a batch's jobs do, so each
concurrent submission still gets a uid of its own.

Always warm: the parent is started and proven (a warm-up grading of a
template) before the pool reports ready, and a supervisor thread starts a new
one as soon as the old one died (counted in ``grader_pool_restarts``).  A
submission whose grading overlapped the loss of the parent is graded again,
so a dead parent never becomes a student's "the kernel died".

After a crash (:meth:`GradingPool.recover`): a submission whose result file
was written is done; one the service stopped on ``MAX_ATTEMPTS`` times is
given a grader-failure result instead of crashing it once more; the rest are
queued again, in their order.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.errors import ServiceError
from grader.execution.base import Executor
from grader.grading.grade import failure_result, grade_safely, single_threaded_blas
from grader.grading.references import load_references, reference_key
from grader.grading.results_dir import read_result
from grader.model.assignment import Assignment, available_assignments, load_assignment
from grader.model.environment import require
from grader.model.result import Result
from grader.service.metrics import Metrics
from grader.service.store import Store, Submission

MAX_ATTEMPTS = 3  # gradings a submission may be in the middle of when the service dies
REGRADES = 2  # gradings repeated when the warm parent was lost meanwhile, or the grader failed
SUPERVISE_EVERY = 0.5  # seconds between looks at the warm parent
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """An assignment the service grades, with its references loaded once."""

    assignment: Assignment
    references: dict[str, np.ndarray]
    key: str


def load_served(names: tuple[str, ...], grading: bool = True) -> dict[str, Served]:
    """The assignments to serve (every one of the project if ``names`` is
    empty), each checked against this environment and, if ``grading``, with
    its references (built now if not cached; a service that only queues needs
    none, nor TensorFlow)."""
    served = {}
    for name in names or tuple(available_assignments()):
        assignment = load_assignment(name)
        require(assignment.name, assignment.requirements, assignment.requirements_file)
        key = reference_key(assignment)
        served[assignment.name] = Served(assignment, load_references(assignment, key=key) if grading else {}, key)
    if not served:
        raise ServiceError("no assignment to serve: none found under the project root (see GRADER_ROOT)")
    return served


class GradingPool:
    def __init__(
        self,
        store: Store,
        served: dict[str, Served],
        executor: Executor,
        metrics: Metrics,
        *,
        workers: int,
        cell_timeout: float | None = None,
        notebook_timeout: float | None = None,
        on_done: Callable[[str], None] = lambda sid: None,
        when_idle: Callable[[Submission], None] = lambda sub: None,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_done(id)``: a result was stored; ``when_idle(submission)``:
        then, if nothing waits or runs (the feedback page is drawn ahead of its
        request); ``on_failure()``: the pool could not start (:attr:`failed` says why)."""
        self.store, self.served, self.executor, self.metrics = store, served, executor, metrics
        self.workers = workers
        self.options = dict(cell_timeout=cell_timeout, notebook_timeout=notebook_timeout)
        self.on_done, self.when_idle, self.on_failure = on_done, when_idle, on_failure
        self.ready = threading.Event()
        self.failed: str | None = None  # why the pool could not start
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._lock = threading.Lock()
        self._parent: int | None = None  # the warm parent last seen
        self._seconds_per_submission = 1.0  # moving average, for Retry-After
        metrics.workers.set(workers)

    # --- life -------------------------------------------------------------------------

    def recover(self) -> None:
        """Queue again what a previous run of the service left unfinished."""
        for sub in self.store.unfinished():
            if isinstance(existing := read_result(self.store.result_file(sub.id)), Result):
                self.store.mark_done(sub.id, existing)  # written just before the crash: never graded twice
                continue
            served = self.served.get(sub.assignment)
            if served is None:
                log.warning("submission %s is for %s, which is not served now: left queued", sub.id, sub.assignment)
                continue
            if sub.state == "running" and sub.attempts >= MAX_ATTEMPTS:
                reason = f"the service stopped {sub.attempts} times while grading this submission; it was not graded"
                path = self.store.submission_file(sub)
                self.store.finish(sub.id, failure_result(path, served.assignment, reason, self.executor.name, 0.0))
                continue
            self.store.requeue(sub.id)
            self._queue.put(sub.id)

    def start(self) -> None:
        """Start the warm parent, prove it on a template, then grade; in the background."""
        threading.Thread(target=self._start, name="grader-pool-start", daemon=True).start()

    def _start(self) -> None:
        if self.workers == 0:  # accepts and queues only (maintenance)
            self.ready.set()
            return
        try:
            self.executor.start()
            self._parent = self.executor.warm_parent
            self._warm_up()
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            self.on_failure()
            return
        for i in range(self.executor.lanes(self.workers)):  # a few more threads than notebooks executing at once
            thread = threading.Thread(target=self._work, name=f"grader-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self._supervise, name="grader-supervisor", daemon=True).start()
        self.metrics.ready.set(1)
        self.ready.set()

    def _warm_up(self) -> None:
        served = next(iter(self.served.values()))
        result = grade_safely(
            served.assignment.template_path,
            served.assignment,
            self.executor,
            served.references,
            **self._options(served),
        )
        if result.status != "graded":
            raise ServiceError(f"the warm-up grading of {served.assignment.template_path} failed: {result.output}")

    def close(self, grace: float = 10.0) -> None:
        """Stop taking work; what is being graded and not finished within
        ``grace`` seconds stays ``running`` and is graded again at the next start."""
        self._closing.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- the queue ----------------------------------------------------------------------

    def put(self, sid: str) -> None:
        self._queue.put(sid)

    @property
    def running(self) -> int:
        return self._running

    def retry_after(self, waiting: int) -> int:
        """Seconds a refused client should wait: about the time to grade what waits."""
        per = self._seconds_per_submission / max(1, self.workers)
        return max(1, min(600, math.ceil(waiting * per)))

    def _work(self) -> None:
        with single_threaded_blas():  # the grader's own arithmetic: the cores are for the students' processes
            while not self._closing.is_set():
                sid = self._queue.get()
                if sid is None or self._closing.is_set():
                    return
                try:
                    self._grade_one(sid)
                except Exception:  # a full disk, say: left running, so the next start grades it
                    log.exception("grader serve: could not grade or store submission %s", sid)

    def _grade_one(self, sid: str) -> None:
        sub = self.store.get(sid)
        if sub is None or sub.state == "done":
            return
        served = self.served[sub.assignment]
        sub = self.store.start(sid)
        start = time.monotonic()
        with self._counted():
            result = self._grade(sub, served)
        if result is None:  # shutting down: graded again at the next start
            self.store.requeue(sid, not_an_attempt=True)
            return
        seconds = time.monotonic() - start
        self.store.finish(sid, result)
        self._seconds_per_submission += 0.2 * (seconds - self._seconds_per_submission)
        self.metrics.grading_seconds.observe(seconds)
        self.metrics.latency_seconds.observe(max(0.0, time.time() - sub.submitted_at))
        self.metrics.graded.labels(sub.assignment, result.status).inc()
        self.on_done(sid)
        if self._queue.empty() and self._running == 0:  # spare CPU: nothing waits, nothing else runs
            self.when_idle(sub)

    def _grade(self, sub: Submission, served: Served) -> Result | None:
        path = self.store.submission_file(sub)
        for attempt in range(1 + REGRADES):
            parent = self.executor.warm_parent
            result = grade_safely(
                path, served.assignment, self.executor, served.references, **self._options(served, sub)
            )
            if self._closing.is_set():
                return None
            lost = parent is not None and self.executor.warm_parent != parent
            if not lost and result.status != "error":
                break
            if attempt < REGRADES:
                self.metrics.regraded.inc()
                log.warning("grader serve: grading %s again (%s)", sub.id, "warm parent lost" if lost else "error")
        return result

    def _options(self, served: Served, sub: Submission | None = None) -> dict[str, Any]:
        """grade()'s keyword arguments: the batch's, and the answers kept for the feedback page's pictures."""
        options: dict[str, Any] = dict(self.options, references_key=served.key)
        if sub is not None:
            # uncompressed: deflating them cost more CPU than the grader's own work (see save_answers)
            options.update(keep_answers=self.store.answers_file(sub.id), keep_compressed=False)
        return options

    @contextmanager
    def _counted(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    # --- always warm ----------------------------------------------------------------------

    def _supervise(self) -> None:
        """Start a new warm parent as soon as the old one is gone, and count it."""
        while not self._closing.wait(SUPERVISE_EVERY):
            try:
                self.executor.start()  # replaces a parent that died; does nothing to a live one
            except Exception:
                log.exception("grader serve: the warm parent could not be started again")
                continue
            pid = self.executor.warm_parent
            if pid is not None and self._parent is not None and pid != self._parent:
                self.metrics.pool_restarts.inc()
                log.warning("grader serve: the warm parent %s died; %s started", self._parent, pid)
            if pid is not None:
                self._parent = pid
