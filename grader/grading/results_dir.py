"""Writing into a results folder: every file lands whole or not at all.

A result, a summary, kept answers: each is written to a temporary file in
the same folder, flushed to disk and renamed into place, so a batch killed at
any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from pydantic import ValidationError

from grader.checking.answers import CapturedAnswer
from grader.errors import ResultsError
from grader.model.result import Result


@contextmanager
def atomic_file(path: Path, mode: int = 0o644, cache: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file in the same
    folder, flushed to disk and renamed into place when the block ends
    without an exception (else removed, and ``path`` is untouched).
    ``cache=False``: a big file written once and seldom read (kept answers):
    its pages leave the page cache once on disk, so that the next such file
    reuses them instead of growing the cache, which cost more CPU than the
    writing itself (the first touch of memory, in a VM above all)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if not cache and hasattr(os, "posix_fadvise"):  # not on macOS or Windows
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.chmod(tmp, mode)  # mkstemp made it private
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: Path, data: str | bytes, cache: bool = True) -> None:
    """Write ``data`` (text as UTF-8) whole or not at all (:func:`atomic_file`)."""
    with atomic_file(path, cache=cache) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


SUMMARY_FILE = "summary.json"
GRADEBOOK_FILE = "gradebook.csv"
ANSWERS_DIR = "answers"  # --keep-answers: <stem>.npz per submission
MAX_RESULT_BYTES = 16 * 2**20
RESERVED = frozenset({SUMMARY_FILE})


NOTEBOOK_SUFFIX = ".ipynb"


def submission_stem(name: str) -> str:
    """``alice.ipynb`` and ``alice`` both name the submission ``alice``: the
    one rule for result names and for matching results to a roster."""
    return name[: -len(NOTEBOOK_SUFFIX)] if name.endswith(NOTEBOOK_SUFFIX) else name


def natural_result_name(submission_name: str) -> str:
    """``<stem>.json`` for ``<stem>.ipynb``: what a result is called unless
    that name is reserved or taken (see :func:`result_names`)."""
    return f"{submission_stem(submission_name)}.json"


def result_names(submission_names: list[str]) -> dict[str, str]:
    """A result file name for each submission, never the same for two, nor a
    reserved one (``summary.json``): ``<stem>.json`` where that is free,
    else ``<file>.json``, else ``<file>~2.json``, ``~3``... (decided in name
    order, so a re-run of the same folder gives the same names)."""
    natural = {name: natural_result_name(name) for name in submission_names}
    wanted = set(natural.values())
    names, used = {}, set()
    for name in sorted(submission_names):
        candidate = natural[name]
        if candidate not in RESERVED and candidate != ".json" and list(natural.values()).count(candidate) == 1:
            names[name] = candidate
            used.add(candidate)
    for name in sorted(set(submission_names) - set(names)):
        candidate, n = f"{name}.json", 2
        while candidate in used or candidate in wanted or candidate in RESERVED:
            candidate, n = f"{name}~{n}.json", n + 1
        names[name] = candidate
        used.add(candidate)
    return names


def result_files(results_dir: Path) -> list[Path]:
    """The per-submission result files of a results folder, in name order."""
    if not results_dir.is_dir():
        raise ResultsError(f"{results_dir}: not a results folder")
    return sorted(
        p
        for p in results_dir.iterdir()
        if p.name.endswith(".json") and p.name != SUMMARY_FILE and not p.name.startswith(".")
    )


def read_result(path: Path) -> Result | str:
    """The result in ``path``, or why it cannot be used (never raises for a bad file)."""
    try:
        if not path.is_file():
            return "not a file"
        if path.stat().st_size > MAX_RESULT_BYTES:
            return f"larger than {MAX_RESULT_BYTES // 2**20} MB"
        return Result.model_validate_json(path.read_bytes())
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"not a grader result: {where + ': ' if where else ''}{error['msg']}" + (
            f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        )


# bytes of arrays --keep-answers stores for one submission (a lesson's answers are far smaller)
KEEP_PER_SUBMISSION = 16 * 2**20
KEEP_PER_BATCH = 2 * 2**30  # ... and for a whole batch


class KeptAnswersBudget:
    """What ``--keep-answers`` may still store in a batch (shared by its
    threads): a student's answers cannot fill the results folder's disk."""

    def __init__(self, per_batch: int = KEEP_PER_BATCH) -> None:
        self.per_batch = per_batch
        self.left = per_batch
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if nbytes > self.left:
                return False
            self.left -= nbytes
            return True

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self.left += nbytes


def save_answers(
    path: Path,
    answers: dict[str, CapturedAnswer],
    budget: KeptAnswersBudget | None = None,
    per_submission: int = KEEP_PER_SUBMISSION,
    compress: bool = True,
) -> list[str]:
    """Keep the captured arrays (for reports) as one ``.npz`` (compressed
    unless ``compress`` is false: deflating this lesson's float arrays took
    up to 190 ms of CPU to save a quarter of the bytes, measured, which a
    service grading as fast as it can does not spend), written to a temporary file, flushed and
    renamed into place; at most
    ``per_submission`` bytes of arrays (in the spec's order), and only while
    the batch's ``budget`` lasts.  Returns what was not kept, in words."""
    arrays: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    total = 0
    for name, answer in answers.items():
        value = answer.value
        if not answer.ok or value is None:  # (an answer that is ok has a value)
            continue
        if total + value.nbytes > per_submission:
            dropped.append(name)
            continue
        arrays[name] = value
        total += value.nbytes
    notices = []
    if dropped:
        notices.append(
            f"answers not kept for the report: {', '.join(dropped)} (more than the "
            f"{per_submission // 2**20} MB of arrays kept per submission)"
        )
    if budget is not None and not budget.take(total):
        notices.append(
            f"answers not kept for the report: the batch's {budget.per_batch // 2**20} MB for kept answers is used up"
        )
        arrays, total = {}, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, cache=False) as f:
        # cast: unpacked as a dict of arrays, mypy would match the names against allow_pickle (a bool)
        (np.savez_compressed if compress else np.savez)(f, **cast(dict[str, Any], arrays))
        written = f.tell()
    if budget is not None:
        budget.give_back(max(0, total - written))  # count what the file really takes
    return notices
