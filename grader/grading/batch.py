"""Grading a folder of submissions.

Each result is written atomically (temporary file, then rename) as soon as its
submission is graded, so an interrupted batch never leaves a half-written or
lost result.  The summary and the gradebook are rebuilt from the
per-submission files, so they cannot disagree with them.  One submission's
failure, even a bug of ours, becomes that submission's result; the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.errors import ResultsError
from grader.execution.base import Executor
from grader.execution.factory import make_executor
from grader.execution.plan import file_digest
from grader.grading.grade import grade_safely, single_threaded_blas
from grader.grading.references import load_references, reference_key
from grader.grading.results_dir import (
    ANSWERS_DIR,
    GRADEBOOK_FILE,
    SUMMARY_FILE,
    KeptAnswersBudget,
    natural_result_name,
    read_result,
    result_names,
    write_atomic,
)
from grader.grading.stats import class_stats
from grader.model.assignment import Assignment
from grader.model.environment import require
from grader.model.result import Result


def find_submissions(folder: Path) -> list[Path]:
    """The ``*.ipynb`` entries of a folder (not recursive), in name order."""
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder of submissions")
    return sorted(p for p in folder.iterdir() if p.name.endswith(".ipynb"))


def result_path(out: Path, submission: Path, names: dict[str, str] | None = None) -> Path:
    """Where a submission's result goes: by the batch's ``names``
    (:func:`~grader.grading.results_dir.result_names`), or alone in its folder."""
    names = names or result_names([submission.name])
    return out / names[submission.name]


def answers_path(out: Path, submission: Path, names: dict[str, str] | None = None) -> Path:
    """Where ``--keep-answers`` saves a submission's captured arrays."""
    return out / ANSWERS_DIR / (result_path(out, submission, names).stem + ".npz")


def prepare_out(out: Path) -> None:
    """Create the results folder, prove it writable, and drop temporary files
    a killed run left behind (results themselves are only ever renamed in)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
        for stale in out.glob(".tmp-*.part"):
            stale.unlink()
    except OSError as exc:
        raise ResultsError(f"{out}: results folder is not writable: {exc.strerror or exc}") from None


@dataclass
class BatchSummary:
    assignment: str
    results: dict[str, Result | None] = field(default_factory=dict)  # submission file -> result (None: unreadable)
    seconds: float = 0.0
    graded_now: int = 0  # graded in this run (the others were up to date)
    skipped: int = 0
    result_files: dict[str, str] = field(default_factory=dict)  # submission file -> result file name

    @property
    def missing(self) -> list[str]:
        return [name for name, r in self.results.items() if r is None]


def grade_batch(
    folder: Path,
    assignment: Assignment,
    out: Path,
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    force: bool = False,
    keep_answers: bool = False,
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
    scheduler: str | None = None,
    on_result: Callable[[Path, Result], None] | None = None,
) -> BatchSummary:
    """Grade what is not graded yet (all of it with ``force``), ``jobs`` at a
    time (or on the Dask cluster at ``scheduler``), writing each result as soon
    as it is ready; then rebuild the summary.

    A result is up to date when it was made from the same submission bytes
    against the same references (solution, spec, data, library versions), so
    re-running a batch that was killed half-way grades only what is missing."""
    start = time.monotonic()
    require(assignment.name, assignment.requirements, assignment.requirements_file)  # before anything is written
    submissions = find_submissions(folder)
    prepare_out(out)
    names = result_names([s.name for s in submissions])
    executor = executor or make_executor()  # the sandboxed default: submissions are untrusted
    key = reference_key(assignment)
    todo = pending(submissions, out, names, key, force=force, keep_answers=keep_answers)
    options = dict(cell_timeout=cell_timeout, notebook_timeout=notebook_timeout)
    budget = KeptAnswersBudget()
    if scheduler:
        from grader.grading.distributed import grade_on_cluster

        finished = grade_on_cluster(
            scheduler,
            todo,
            assignment,
            executor.name,
            options,
            {s: answers_path(out, s, names) for s in todo} if keep_answers else None,
            budget,
        )
    elif todo:
        executor.start()  # the warm executor's imports overlap with loading the references
        references = load_references(assignment, key=key)  # once: every grade() gets them and their key
        finished = _grade_locally(
            todo,
            assignment,
            executor,
            references,
            max(1, jobs),
            dict(options, references_key=key, keep_budget=budget),
            (lambda s: answers_path(out, s, names)) if keep_answers else (lambda s: None),
        )
    else:
        finished = iter(())  # everything is up to date
    with single_threaded_blas():
        for submission, result in finished:
            store_result(out, submission, names, result, on_result)
    return batch_summary(submissions, assignment, out, len(todo), start)


def pending(
    submissions: list[Path], out: Path, names: dict[str, str], key: str, *, force: bool, keep_answers: bool
) -> list[Path]:
    """The submissions to grade: all with ``force``, else those without an up-to-date result."""
    return [
        s
        for s in submissions
        if force
        or not is_up_to_date(s, result_path(out, s, names), key, answers_path(out, s, names) if keep_answers else None)
    ]


def store_result(
    out: Path,
    submission: Path,
    names: dict[str, str],
    result: Result,
    on_result: Callable[[Path, Result], None] | None = None,
) -> None:
    """Write one submission's result where the results folder keeps it (saying so when its
    natural name was taken), then tell ``on_result``."""
    if names[submission.name] != natural_result_name(submission.name):
        result.notices.append(
            f"the result is {names[submission.name]}, as {natural_result_name(submission.name)} "
            "is reserved or taken by another submission's result"
        )
    write_atomic(result_path(out, submission, names), result.model_dump_json(indent=2))
    if on_result:
        on_result(submission, result)


def batch_summary(
    submissions: list[Path], assignment: Assignment, out: Path, graded_now: int, start: float
) -> BatchSummary:
    """The summary rebuilt from the results folder, with what this run did."""
    summary = rebuild_summary(submissions, assignment, out)
    summary.graded_now, summary.skipped = graded_now, len(submissions) - graded_now
    summary.seconds = time.monotonic() - start
    return summary


def _grade_locally(
    todo: list[Path],
    assignment: Assignment,
    executor: Executor,
    references: dict[str, np.ndarray],
    jobs: int,
    options: dict[str, Any],
    kept_at: Callable[[Path], Path | None],
) -> Iterator[tuple[Path, Result]]:
    with ThreadPoolExecutor(max_workers=executor.lanes(jobs), thread_name_prefix="grade") as pool:
        futures = {
            pool.submit(grade_safely, s, assignment, executor, references, keep_answers=kept_at(s), **options): s
            for s in todo
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


def is_up_to_date(submission: Path, result_file: Path, key: str, answers_file: Path | None = None) -> bool:
    """A result made from these exact bytes against these references (never
    for a grader failure, which is retried), with its kept answers if asked
    (a notebook that could not be read has none to keep)."""
    try:
        result = read_result(result_file)
        if isinstance(result, str) or result.status == "error" or result.assignment.reference_key != key:
            return False
        if answers_file and result.status == "graded" and not answers_file.exists():
            return False
        return (
            submission.is_file()
            and not submission.is_symlink()
            and file_digest(submission)[0] == result.submission.sha256
        )
    except OSError:
        return False


def rebuild_summary(submissions: list[Path], assignment: Assignment, out: Path) -> BatchSummary:
    """Read back every per-submission result and write summary.json and
    gradebook.csv from them."""
    summary = BatchSummary(assignment=assignment.name, result_files=result_names([s.name for s in submissions]))
    for submission in submissions:
        result = read_result(result_path(out, submission, summary.result_files))  # size-capped, never raises
        summary.results[submission.name] = result if isinstance(result, Result) else None
    write_atomic(out / SUMMARY_FILE, json.dumps(summary_json(summary, assignment, out), indent=2))
    write_atomic(out / GRADEBOOK_FILE, gradebook_csv(summary, assignment))
    return summary


def summary_json(summary: BatchSummary, assignment: Assignment, out: Path) -> dict:
    max_score = assignment.spec.max_score
    names = [c.name for c in assignment.spec.checks]
    stats = class_stats([r for r in summary.results.values() if r is not None], max_score, names)
    checks = {
        name: {
            "passed": stats.checks[name].passed,
            "of": stats.checks[name].of,
            "pass_rate": None if (rate := stats.checks[name].rate) is None else round(rate, 4),
        }
        for name in names
    }
    return {
        "assignment": assignment.name,
        "spec_version": assignment.spec.version,
        "max_score": max_score,
        "submissions": len(summary.results),
        "graded": stats.graded,
        "invalid": stats.invalid,
        "errors": stats.errors,
        "missing_results": summary.missing,
        "full_marks": stats.full_marks,
        "partial": stats.partial,
        "zero": stats.zero,
        "mean_score": None if stats.mean is None else round(stats.mean, 4),
        "checks": checks,
        "results": [
            {
                "submission": name,
                "result": summary.result_files[name],
                "score": r.score if r else None,
                "status": r.status if r else "missing",
            }
            for name, r in summary.results.items()
        ],
        "renamed": [
            {"submission": name, "result": file, "instead_of": natural_result_name(name)}
            for name, file in summary.result_files.items()
            if file != natural_result_name(name)
        ],
    }


def gradebook_csv(summary: BatchSummary, assignment: Assignment) -> str:
    names = [c.name for c in assignment.spec.checks]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "sha256", "status", "score", "max_score", *names, "errors"])
    for file, r in summary.results.items():
        if r is None:
            writer.writerow(
                [file, "", "missing", "", assignment.spec.max_score, *[""] * len(names), "result file unreadable"]
            )
            continue
        by_name = {t.name: t.score for t in r.tests}
        writer.writerow(
            [
                file,
                r.submission.sha256 or "",
                r.status,
                f"{r.score:g}",
                f"{r.max_score:g}",
                *[f"{by_name.get(n, 0):g}" for n in names],
                " | ".join(r.errors),
            ]
        )
    return buffer.getvalue()
