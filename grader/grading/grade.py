"""``grade(submission, assignment) -> Result``: the one library call.

read -> execute -> extract -> check -> report, in that order, each step in its
own module.  Anything wrong with the submission becomes part of the result;
only problems of the grader or its configuration raise :class:`GraderError`.
"""

from __future__ import annotations

import sys
import time
import traceback
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grader.checking import feedback
from grader.checking.answers import answers_folder, load_answers
from grader.checking.check import run_checks, score
from grader.errors import InvalidSubmission
from grader.execution.base import ExecutionRecord, Executor, prepare_workdir
from grader.execution.factory import make_executor
from grader.execution.plan import ExecutionPlan, file_digest, plan_execution, read_submission
from grader.execution.sandbox import scratch_folder
from grader.grading.references import load_references, reference_key
from grader.grading.results_dir import KeptAnswersBudget, save_answers
from grader.model.assignment import Assignment, load_assignment
from grader.model.result import AssignmentInfo, CellReport, CheckResult, Result, SubmissionInfo, Timings
from grader.model.versions import current_versions

CELL_FAILED = {
    "error": "cell {cell} raised {ename}: {evalue}",
    "timeout": "cell {cell} timed out: {evalue}",
    "died": "cell {cell} crashed the kernel: {evalue}",
    "not_run": "cell {cell} did not run",
}


def grade(
    submission: Path | str,
    assignment: Assignment | str,
    *,
    executor: Executor | None = None,
    references: dict[str, np.ndarray] | None = None,
    references_key: str | None = None,
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
    keep_answers: Path | None = None,
    keep_budget: KeptAnswersBudget | None = None,
    keep_compressed: bool = True,
) -> Result:
    """Grade one notebook file against an assignment (a name, a folder, or a
    loaded :class:`Assignment`).  ``references_key``: the
    :func:`~grader.grading.references.reference_key` the ``references`` were loaded
    under (a batch computes it once; it is recorded in the result).
    ``keep_answers``: where to save the captured arrays as ``.npz`` (for
    reports), within ``keep_budget`` (a batch's, shared by its submissions),
    compressed unless ``keep_compressed`` is false."""
    start = time.monotonic()
    if not isinstance(assignment, Assignment):
        assignment = load_assignment(assignment)
    executor = executor or make_executor()  # the sandboxed default: submissions are untrusted
    if references is None or references_key is None:
        references_key = reference_key(assignment)
    if references is None:
        references = load_references(assignment, key=references_key)
    path = Path(submission)
    try:
        sub = read_submission(path, int(assignment.spec.limits.max_notebook_mb * 2**20))
    except InvalidSubmission as exc:
        return invalid_result(path, assignment, str(exc), executor.name, time.monotonic() - start, references_key)
    cell_count = len(sub.notebook.cells)
    if cell_count > assignment.spec.limits.max_cells:
        reason = (
            f"{path.name}: the notebook has {cell_count} cells, more than the {assignment.spec.limits.max_cells} allowed; "
            "remove the cells you added"
        )
        return invalid_result(path, assignment, reason, executor.name, time.monotonic() - start, references_key)
    plan = plan_execution(sub, assignment.spec, assignment.data_files, cell_timeout, notebook_timeout)
    with scratch_folder(executor.policy) as tmp:
        workdir = prepare_workdir(plan, tmp)
        with answers_folder(workdir.answers) as answers_fd:  # opened before the student's code runs
            record = executor.run(plan, workdir)
            answers = load_answers(plan, record, answers_fd)
    notices = (
        save_answers(Path(keep_answers), answers, keep_budget, compress=keep_compressed)
        if keep_answers is not None
        else []
    )
    executed = time.monotonic()
    tests = run_checks(assignment.spec, answers, references, answer_notes(plan, record), assignment.folder)
    checked = time.monotonic()
    cells = [
        CellReport(cell=c.cell_index + 1, status=c.status, ename=c.ename, evalue=c.evalue)
        for c in record.cells
        if c.status != "ok"
    ]
    errors = [
        CELL_FAILED[c.status].format(cell=c.cell, ename=c.ename, evalue=c.evalue)
        for c in cells
        if c.status != "not_run"
    ]
    if record.stopped:
        not_run = [c.cell for c in cells if c.status == "not_run"]
        errors.append(
            f"execution stopped: {record.stopped}" + (f"; cells {_joined(not_run)} did not run" if not_run else "")
        )
    errors.extend(record.capture_errors)
    return Result(
        score=score(tests),
        max_score=assignment.spec.max_score,
        output=summary_text(tests, errors),
        tests=tests,
        status="graded",
        submission=SubmissionInfo(file=path.name, sha256=sub.sha256, size=sub.size),
        assignment=assignment_info(assignment, references_key),
        executor=executor.name,
        isolation=record.isolation,
        errors=errors,
        notices=notices,
        cells=cells,
        timings=Timings(
            total_s=round(checked - start, 3), execute_s=round(record.seconds, 3), check_s=round(checked - executed, 3)
        ),
        versions=current_versions(),
        graded_at=now_iso(),
    )


def answer_notes(plan: ExecutionPlan, record: ExecutionRecord) -> dict[str, list[str]]:
    """What the student should know about each answer's cell: it raised, timed
    out, crashed, never ran, or is not a code cell any more."""
    notes = {name: list(msgs) for name, msgs in plan.notices.items()}
    runs = {c.cell_index: c for c in record.cells}
    for step in plan.steps:
        run = runs.get(step.cell_index)
        if run is None or run.status == "ok":
            continue
        text = CELL_FAILED[run.status].format(cell=step.cell_index + 1, ename=run.ename, evalue=run.evalue)
        if run.status == "not_run" and record.stopped:
            text += f" ({record.stopped})"
        for name in step.captures:
            notes.setdefault(name, []).append(text)
    return notes


def summary_text(tests: list[CheckResult], errors: list[str]) -> str:
    passed = sum(t.status == "passed" for t in tests)
    lines = [f"{passed} of {len(tests)} checks passed: {score(tests):g} / {sum(t.max_score for t in tests):g} points."]
    lines += [f"- {e}" for e in errors]
    return "\n".join(lines)


def invalid_result(
    path: Path, assignment: Assignment, reason: str, executor: str, seconds: float, references_key: str | None = None
) -> Result:
    """Score 0 with the reason, every check failed with it: the result a file
    that cannot be graded gets (status ``invalid_submission``)."""
    return _ungraded(path, assignment, reason, executor, seconds, references_key, "invalid_submission")


def failure_result(
    path: Path, assignment: Assignment, reason: str, executor: str, seconds: float, references_key: str | None = None
) -> Result:
    """The result of a submission the grader itself failed on (status
    ``error``): not a grade, and retried by the next batch."""
    return _ungraded(path, assignment, reason, executor, seconds, references_key, "error")


def _ungraded(
    path: Path,
    assignment: Assignment,
    reason: str,
    executor: str,
    seconds: float,
    references_key: str | None,
    status: Literal["invalid_submission", "error"],
) -> Result:
    try:
        # never follow a link: it may point at a file the student must not see
        sha256, size = (None, None) if path.is_symlink() else file_digest(path)
    except OSError:
        sha256, size = None, None
    message = f"the submission could not be graded: {reason}"
    tests = [
        CheckResult(
            name=c.name,
            score=0.0,
            max_score=float(c.points),
            status="failed",
            answer=c.answer,
            kind=c.kind,
            output=feedback.as_text(False, feedback.compose(False, message, None, [], None)),
            message=message,
        )
        for c in assignment.spec.checks
    ]
    return Result(
        score=0.0,
        max_score=assignment.spec.max_score,
        output=f"The submission could not be graded: {reason}",
        tests=tests,
        status=status,
        submission=SubmissionInfo(file=path.name, sha256=sha256, size=size),
        assignment=assignment_info(assignment, references_key),
        executor=executor,
        errors=[reason],
        timings=Timings(total_s=round(seconds, 3)),
        versions=current_versions(),
        graded_at=now_iso(),
    )


def assignment_info(assignment: Assignment, references_key: str | None = None) -> AssignmentInfo:
    return AssignmentInfo(
        name=assignment.name,
        title=assignment.spec.title,
        spec_version=assignment.spec.version,
        spec_sha256=assignment.spec_sha256(),
        reference_key=references_key or reference_key(assignment),
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _joined(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def grade_safely(
    submission: Path,
    assignment: Assignment,
    executor: Executor,
    references: dict[str, np.ndarray] | None,
    **options: Any,  # grade()'s other keyword arguments
) -> Result:
    """:func:`grade`, except that a failure of the grader itself on this
    submission becomes this submission's result (status ``error``)."""
    t0 = time.monotonic()
    try:
        return grade(submission, assignment, executor=executor, references=references, **options)
    except Exception as exc:  # a bug or machine problem on this submission must not stop the batch
        reason = f"the grader failed on this submission ({type(exc).__name__}: {exc}); it was not graded"
        result = failure_result(
            submission, assignment, reason, executor.name, time.monotonic() - t0, options.get("references_key")
        )
        result.errors.append("".join(traceback.format_exception_only(exc)).strip())
        return result


def single_threaded_blas() -> AbstractContextManager[object]:
    """The grader's own arithmetic (checks, diagnoses) with one BLAS thread,
    for as long as the context lasts, and freed memory kept for reuse
    (:func:`keep_freed_memory`).  A batch gets its parallelism from
    grading several submissions at once; an OpenBLAS pool that spins between
    our small matrix products took 100 ms of CPU per notebook from the
    students' processes on 2 cores (the students' own processes are not
    affected: they are other processes)."""
    from threadpoolctl import threadpool_limits

    keep_freed_memory()
    return threadpool_limits(limits=1, user_api="blas")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEPT_FREE_BYTES = 64 * 2**20


@cache
def keep_freed_memory() -> None:
    """Keep up to 64 MB of freed memory per malloc arena in this process,
    and allocate arrays up to that size from it, instead of handing each
    freed array back to the system (glibc's default beyond a few MB).  Every
    check makes megabyte-sized temporaries; handed back, each one's pages
    fault in anew at its next use, and those faults were most of a check's
    time.  Process-wide and permanent, so only the grader's own processes
    call it (through :func:`single_threaded_blas`); students' processes are
    other processes, started with glibc's defaults.  Once per process;
    elsewhere than glibc, nothing."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols, libc's among them (find_library runs ldconfig)
        libc.mallopt(M_MMAP_THRESHOLD, KEPT_FREE_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)
    except (OSError, AttributeError):  # musl and other C libraries: no mallopt
        pass
