"""The one way to make an executor: every entry point (grade, batch, check,
Gradescope, Dask workers) asks here, so all of them sandbox by default, and
all of them fall back alike where this platform cannot run the warm executor
(macOS, Windows: :mod:`grader.execution.host`)."""

from __future__ import annotations

import logging

from grader.errors import CourseEnvironmentError
from grader.execution import sandbox
from grader.execution.base import Executor
from grader.execution.host import warm_unavailable
from grader.execution.sandbox import Policy
from grader.model.versions import framework_problem
from grader.settings import cache_root

EXECUTOR_NAMES = ("warm", "kernel")
log = logging.getLogger(__name__)


def make_executor(name: str = "kernel", policy: Policy | None = None) -> Executor:
    """``warm``: forked from a parent that already imported TensorFlow (fast);
    ``kernel``: a fresh Jupyter kernel per notebook (the reference).  Without
    a policy, students' code is sandboxed with the defaults.  ``warm`` where
    it cannot run is ``kernel``, with a warning (on stderr, unless logging is
    configured otherwise); results name the executor that ran.  Refuses
    (:class:`~grader.errors.CourseEnvironmentError`) where TensorFlow or Keras
    is missing or too old: every notebook would fail at its imports."""
    if name not in EXECUTOR_NAMES:
        raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTOR_NAMES)}")
    problem = framework_problem()
    if problem:
        raise CourseEnvironmentError(problem)
    if policy is None:
        policy = Policy(hide=sandbox.hidden_paths(cache_root()))
    sandbox.preflight(policy)  # where only a uid switch is possible: can it run Python at all?
    if name == "warm" and (reason := warm_unavailable()):
        log.warning("grader: %s", reason)
        name = "kernel"
    if name == "kernel":
        from grader.execution.kernel import KernelExecutor

        return KernelExecutor(policy=policy)
    from grader.execution.warm import WarmExecutor

    return WarmExecutor(policy=policy)
