"""grader: grade notebook exercises by executing them, extracting the answers
and checking them against a reference solution, outside the student's process.

The one library call is :func:`grade`; :func:`grade_batch` grades a folder.
Inside a student's notebook, :func:`check` runs the visible checks on the
values the notebook holds now (feedback only), against the kit :func:`use` chose.
Names are imported lazily so ``grader --help`` answers instantly.
"""

from importlib import import_module
from typing import Any

__all__ = [
    "AssignmentNotFound",
    "CheckResult",
    "ExecutorError",
    "GraderError",
    "InvalidSubmission",
    "KernelExecutor",
    "Result",
    "ResultsError",
    "SolutionError",
    "SpecError",
    "TestResult",
    "WarmExecutor",
    "check",
    "grade",
    "grade_batch",
    "load_assignment",
    "use",
]

_WHERE = {
    "grade": "grading.grade",
    "grade_batch": "grading.batch",
    "load_assignment": "model.assignment",
    "check": "kit.live",
    "use": "kit.live",
    "Result": "model.result",
    "CheckResult": "model.result",
    "KernelExecutor": "execution.kernel",
    "WarmExecutor": "execution.warm",
    **{
        name: "errors"
        for name in (
            "GraderError",
            "AssignmentNotFound",
            "SpecError",
            "SolutionError",
            "InvalidSubmission",
            "ExecutorError",
            "ResultsError",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name == "TestResult":  # the old name of CheckResult (pytest would collect a Test* class)
        name = "CheckResult"
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
