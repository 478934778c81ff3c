"""Reference answers: the solution notebook, executed once and cached.

The cache key is the content of everything the values depend on: solution,
spec, data files and the versions of Python, NumPy, TensorFlow and Keras.  Each
cached array is stored with its sha256 and verified on load, so a corrupt
entry is rebuilt, never trusted.  A fresh build is cross-checked against the
spec's independent NumPy computations, and every check of the spec must pass
on the solution, so a broken solution stops grading before it grades anyone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from grader.checking.answers import BadAnswerFile, load_answers, load_npy
from grader.errors import SolutionError
from grader.execution.base import Executor, prepare_workdir
from grader.execution.kernel import KernelExecutor
from grader.execution.plan import plan_execution, read_submission
from grader.model.assignment import Assignment
from grader.model.environment import environment_versions
from grader.model.versions import current_versions
from grader.settings import cache_root

CACHE_FORMAT = "1"
PINNED_KEY_FILE = "reference-key"  # in <cache>/<assignment>/: the key of shipped references (no solution present)


def reference_key(assignment: Assignment, cache_dir: Path | None = None) -> str:
    """Content key of the references.  Where the solution is not present (a
    Gradescope bundle ships prebuilt references instead), the key pinned next
    to the shipped references in ``cache_dir`` (default: the settings') is used."""
    h = hashlib.sha256(f"grader-references-{CACHE_FORMAT}\n".encode())
    if not assignment.solution_path.is_file():
        pinned = _cache_for(assignment, cache_dir) / assignment.name / PINNED_KEY_FILE
        if pinned.is_file():
            return pinned.read_text(encoding="utf-8").strip()
        raise SolutionError(f"reference solution not found: {assignment.solution_path}")
    for path in [assignment.solution_path, assignment.spec_path, *assignment.data_files, *assignment.computation_files]:
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    h.update(current_versions().model_dump_json(exclude={"grader"}).encode())
    if assignment.requirements:  # the course's packages, as installed here, may shape the solution's values
        h.update(json.dumps(environment_versions(list(assignment.requirements))).encode())
    return h.hexdigest()


def load_references(
    assignment: Assignment,
    executor: Executor | None = None,
    rebuild: bool = False,
    key: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """The solution's answers by name, from the cache (``cache_dir``, default:
    the settings') or freshly built (``key``: the :func:`reference_key` if the
    caller has it already).  A student kit's assignment reads the references it
    was given (:attr:`Assignment.prebuilt_references`)."""
    cache_dir = _cache_for(assignment, cache_dir)
    key = key or reference_key(assignment, cache_dir)
    folder = cache_dir / assignment.name / key[:32]
    if not rebuild:
        cached = read_entry(folder, key)
        if cached is not None:
            return cached
    if not assignment.solution_path.is_file():
        raise SolutionError(
            f"the reference answers in {folder} are missing or corrupt and the solution is not "
            "here to rebuild them (rebuild the bundle they came with)"
        )
    arrays = build_references(assignment, executor or KernelExecutor())
    write_entry(folder, key, arrays)
    return arrays


def _cache_for(assignment: Assignment, cache_dir: Path | None) -> Path:
    return assignment.prebuilt_references or cache_dir or cache_root()


def build_references(assignment: Assignment, executor: Executor) -> dict[str, np.ndarray]:
    from grader.checking.check import run_checks  # late: check imports compute, which the cache path never needs

    spec = assignment.spec
    submission = read_submission(assignment.solution_path, int(spec.limits.max_notebook_mb * 2**20))
    plan = plan_execution(submission, spec, assignment.data_files)
    with tempfile.TemporaryDirectory(prefix="grader-solution-") as tmp:
        workdir = prepare_workdir(plan, Path(tmp))
        record = executor.run(plan, workdir)
        answers = load_answers(plan, record, workdir.answers)
    problems = [
        f"cell {c.cell_index + 1}: {c.status} {c.ename or ''}: {c.evalue or ''}".strip()
        for c in record.cells
        if c.status != "ok"
    ]
    problems += [f"{name}: {a.status}: {a.detail}" for name, a in answers.items() if not a.ok]
    if problems:
        raise SolutionError(
            f"the reference solution {assignment.solution_path} did not run cleanly:\n  " + "\n  ".join(problems)
        )
    arrays = {name: a.value for name, a in answers.items() if a.value is not None}  # all of them: every answer is ok
    # Cross-check: the solution must agree with the spec's NumPy computations
    # (reference checks with a [compute] table) and pass every check.
    crosscheck = assignment.spec.model_copy(
        update={
            "checks": [
                c.model_copy(update={"kind": "compute", "rtol": max(c.rtol or 0, 1e-4), "atol": max(c.atol or 0, 1e-2)})
                if c.kind == "reference" and c.compute is not None
                else c
                for c in spec.checks
            ]
        }
    )
    failed = [
        t for t in run_checks(crosscheck, answers, arrays, {}, assignment.folder, strict=True) if t.status != "passed"
    ]
    if failed:
        raise SolutionError(
            f"the reference solution {assignment.solution_path} fails its own checks (is the solution or the spec wrong?):\n  "
            + "\n  ".join(f"{t.name}: {t.output}" for t in failed)
        )
    return arrays


def read_entry(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("key") != key:
            return None
        arrays = {}
        for name, entry in manifest["answers"].items():
            path = folder / entry["file"]
            if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                return None
            arrays[name] = load_npy(path, 1 << 34)
        return arrays
    except (OSError, ValueError, KeyError, TypeError, AttributeError, BadAnswerFile):
        return None  # missing or corrupt: rebuild


def write_entry(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the whole entry to a temporary folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        entries = {}
        for name, value in arrays.items():
            np.save(tmp / f"{name}.npy", value, allow_pickle=False)
            entries[name] = {
                "file": f"{name}.npy",
                "sha256": hashlib.sha256((tmp / f"{name}.npy").read_bytes()).hexdigest(),
            }
        (tmp / "manifest.json").write_text(json.dumps({"key": key, "answers": entries}, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            pass  # another process wrote the same entry first: theirs is as good
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
