"""Grading on a Dask cluster, for classes that outgrow one machine.

The batch process stays in charge of the files: it decides what needs grading,
sends each submission's *bytes* to the cluster, and writes every result (and
kept answers) atomically as it comes back, so the guarantees of a local batch
(resumable, loss-free, summary rebuilt from the files) hold unchanged.  Each
worker process keeps one executor (a warm parent, for ``warm``) for its whole
life and loads the references once.  Workers need the project installed with
the assignment at the same path (or ``GRADER_ROOT`` set to a copy of it).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import GraderError
from grader.grading.results_dir import KeptAnswersBudget
from grader.model.assignment import Assignment, load_assignment
from grader.model.result import Result

if TYPE_CHECKING:
    import numpy as np

    from grader.execution.base import Executor

    # A worker's assignment, executor, references and the references' key.
    _WorkerState = tuple[Assignment, Executor, dict[str, np.ndarray], str]

_local: dict[tuple[str, str], _WorkerState] = {}  # (assignment folder, executor name) -> its state
_lock = threading.Lock()


def grade_on_cluster(
    scheduler: str,
    todo: list[Path],
    assignment: Assignment,
    executor: str,
    options: dict[str, Any],
    kept_at: dict[Path, Path] | None,
    budget: KeptAnswersBudget,
) -> Iterator[tuple[Path, Result]]:
    from grader.grading.results_dir import write_atomic

    try:
        from distributed import Client, as_completed
    except ImportError:
        raise GraderError("--scheduler needs Dask: pip install 'dask[distributed]'") from None
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise GraderError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        futures = {
            client.submit(
                grade_bytes,
                s.name,
                s.read_bytes() if s.is_file() and not s.is_symlink() else None,
                str(assignment.folder),
                executor,
                options,
                kept_at is not None,
                pure=False,
            ): s
            for s in todo
        }
        for future in as_completed(futures):
            submission = futures[future]
            result_json, answers = future.result()
            result = Result.model_validate_json(result_json)
            if kept_at is not None and answers is not None:
                if budget.take(len(answers)):  # the worker kept at most a submission's share
                    kept_at[submission].parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(kept_at[submission], answers, cache=False)
                else:
                    result.notices.append(
                        f"answers not kept for the report: the batch's {budget.per_batch // 2**20} MB "
                        "for kept answers is used up"
                    )
            yield submission, result


def grade_bytes(
    name: str, data: bytes | None, assignment_folder: str, executor: str, options: dict[str, Any], keep_answers: bool
) -> tuple[str, bytes | None]:
    """Runs on a worker: grade one submission given as bytes; return the
    result JSON and, if asked, the kept answers (.npz bytes)."""
    from grader.grading.grade import grade_safely

    assignment, runner, references, key = _worker_state(assignment_folder, executor)
    with tempfile.TemporaryDirectory(prefix="grader-dask-") as tmp:
        path = Path(tmp) / name
        if data is not None:
            path.write_bytes(data)
        kept = Path(tmp) / "answers.npz" if keep_answers else None
        result = grade_safely(path, assignment, runner, references, references_key=key, keep_answers=kept, **options)
        answers = kept.read_bytes() if kept is not None and kept.exists() else None
    return result.model_dump_json(), answers


def _worker_state(assignment_folder: str, executor: str) -> _WorkerState:
    """One assignment, executor and reference set per worker process."""
    from grader.execution.factory import make_executor
    from grader.grading.grade import single_threaded_blas
    from grader.grading.references import load_references, reference_key

    key = (assignment_folder, executor)
    with _lock:
        if key not in _local:
            assignment = load_assignment(assignment_folder)
            single_threaded_blas()  # for the worker's life: it grades one submission per Dask thread
            references_key = reference_key(assignment)
            _local[key] = (
                assignment,
                make_executor(executor),
                load_references(assignment, key=references_key),
                references_key,
            )
        return _local[key]
