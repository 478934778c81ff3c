"""The one way to make an executor: every entry point (grade, batch, check,
Gradescope, Dask workers) asks here, so all of them sandbox by default."""

from __future__ import annotations

from grader.execution import sandbox
from grader.execution.base import Executor
from grader.execution.sandbox import Policy
from grader.settings import cache_root

EXECUTOR_NAMES = ("warm", "kernel")


def make_executor(name: str = "kernel", policy: Policy | None = None) -> Executor:
    """``warm``: forked from a parent that already imported TensorFlow (fast);
    ``kernel``: a fresh Jupyter kernel per notebook (the reference).  Without
    a policy, students' code is sandboxed with the defaults."""
    if policy is None:
        policy = Policy(hide=sandbox.hidden_paths(cache_root()))
    sandbox.preflight(policy)  # where only a uid switch is possible: can it run Python at all?
    if name == "kernel":
        from grader.execution.kernel import KernelExecutor

        return KernelExecutor(policy=policy)
    if name == "warm":
        from grader.execution.warm import WarmExecutor

        return WarmExecutor(policy=policy)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTOR_NAMES)}")
