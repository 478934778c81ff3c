"""``grader release``: the student kit, what students need to check their work
without the solution.

The kit is built from an allow-list, never by copying the assignment folder
and removing things::

    KIT/
      README.md                      how to check, in Jupyter, Colab or a terminal
      kit.json                       the assignment, and the versions that built the references
      <template>.ipynb, <data>       the notebook students start from, beside the files it reads
      assignments/<name>/
        assignment.toml              the spec without the checks students do not see (Spec.for_students)
        <template>, <data>, ...      as the spec names them; the requirements file, if any
        .references/<name>/          the reference answers of the visible checks only, as a reference cache

What is derived from the solution is exactly the reference arrays the visible
checks read; they are keyed by their own digest, not by the solution's, so not
even a hash of the solution travels.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from pydantic import BaseModel, ConfigDict

from grader.errors import GraderError
from grader.grading.references import PINNED_KEY_FILE, load_references, write_entry
from grader.grading.results_dir import atomic_file, write_atomic
from grader.model.assignment import PREBUILT_REFERENCES, Assignment, load_assignment
from grader.model.result import Versions
from grader.model.spec import FILE_PREFIX, SPEC_FILE, Spec, computation_sources
from grader.model.versions import current_versions

KIT_FILE = "kit.json"


class ReleaseError(GraderError):
    """The student kit cannot be built."""


class KitInfo(BaseModel):
    """``kit.json``: what a kit is for and what built it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = "1"
    assignment: str
    title: str
    reference_key: str
    built_with: Versions
    checks: int
    withheld_checks: int
    withheld_points: float


def release(
    assignment: Assignment | str, out: Path | str, *, force: bool = False, zip_path: Path | None = None
) -> Path:
    """Write the student kit of ``assignment`` into the folder ``out`` (and, with
    ``zip_path``, as a zip too); the folder's path.  Builds the references
    from the solution if they are not cached.  Refuses a non-empty ``out``
    unless ``force``."""
    if not isinstance(assignment, Assignment):
        assignment = load_assignment(assignment)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ReleaseError(f"{out}: exists and is not empty; choose a new folder or pass --force")
    students = assignment.for_students()
    spec = students.spec
    references = load_references(assignment)  # from the whole solution, under its own key
    shown = {n: references[n] for n in sorted(spec.reference_answers()) if n in references}
    key = kit_key(spec, shown)
    with tempfile.TemporaryDirectory(prefix="grader-kit-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        stage = Path(tmp) / "kit"
        folder = stage / "assignments" / assignment.name
        folder.mkdir(parents=True)
        write_atomic(folder / SPEC_FILE, student_spec_text(assignment, spec))
        for relative in _files(assignment, spec):
            _copy(assignment.folder / relative, folder / relative)
        for relative in [spec.template, *spec.data]:
            _copy(assignment.folder / relative, stage / Path(relative).name)
        cache = folder / PREBUILT_REFERENCES / assignment.name
        write_entry(cache / key[:32], key, shown)
        write_atomic(cache / PINNED_KEY_FILE, key + "\n")
        info = KitInfo(
            assignment=assignment.name,
            title=spec.title,
            reference_key=key,
            built_with=current_versions(),
            checks=len(spec.checks),
            withheld_checks=spec.withheld.checks if spec.withheld else 0,
            withheld_points=spec.withheld.points if spec.withheld else 0.0,
        )
        write_atomic(stage / KIT_FILE, info.model_dump_json(indent=2) + "\n")
        write_atomic(stage / "README.md", kit_readme(assignment, spec, info))
        if out.exists():
            shutil.rmtree(out)
        shutil.move(stage, out)
    if zip_path is not None:
        zip_kit(out, Path(zip_path))
    return out


def kit_key(spec: Spec, references: dict[str, np.ndarray]) -> str:
    """The kit's reference key: a digest of its own spec and arrays."""
    h = hashlib.sha256(b"grader-kit-references-1\n")
    h.update(spec.model_dump_json().encode())
    for name, array in sorted(references.items()):
        h.update(name.encode() + b"\0" + str(array.dtype).encode() + str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def student_spec_text(assignment: Assignment, spec: Spec) -> str:
    data: dict[str, Any] = spec.model_dump(mode="json", exclude_none=True)
    header = (
        f"# The student's copy of {assignment.name}'s spec, written by `grader release`: the checks you can run\n"
        "# yourself. Your submission is graded by the full spec, which may have more checks.\n\n"
    )
    return header + tomli_w.dumps(data)


def _files(assignment: Assignment, spec: Spec) -> list[str]:
    """The assignment's files the kit needs: template, data, the visible checks'
    computation files and the requirements file."""
    files = [spec.template, *spec.data]
    files += sorted(
        {
            s[len(FILE_PREFIX) :]
            for c in spec.checks
            for s in computation_sources(c.compute)
            if isinstance(s, str) and s.startswith(FILE_PREFIX)
        }
    )
    requirements = assignment.requirements_file
    if requirements is not None and requirements.is_file():
        files.append(requirements.relative_to(assignment.folder).as_posix())
    solution = assignment.solution_path.resolve()
    for relative in files:
        path = (assignment.folder / relative).resolve()
        if path == solution or not path.is_relative_to(assignment.folder.resolve()):
            raise ReleaseError(f"{assignment.spec_path}: {relative!r} is the solution or outside the assignment folder")
    return list(dict.fromkeys(files))


def _copy(source: Path, dest: Path) -> None:
    if not source.is_file():
        raise ReleaseError(f"{source}: missing; the spec names it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)


def zip_kit(folder: Path, zip_path: Path) -> Path:
    """The kit folder as a zip whose entries sit under one top folder (the kit's name)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    top = folder.name
    with atomic_file(zip_path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return zip_path


def kit_readme(assignment: Assignment, spec: Spec, info: KitInfo) -> str:
    template = Path(spec.template).name
    withheld = (
        f"\n{info.withheld_checks} more check(s), worth {info.withheld_points:g} points, run only when your "
        "submission is graded: they are not in this kit.\n"
        if info.withheld_checks
        else ""
    )
    versions = info.built_with
    return f"""# {spec.title}: check your work

This kit lets you check `{template}` yourself before you submit it. It holds the
assignment's {info.checks} visible checks and their expected answers, never the solution.
{withheld}
## Inside the notebook (Jupyter, Colab)

Open `{template}` from this folder and add a cell:

```python
import grader
grader.check()                # every visible check
grader.check("same_output")   # the checks of one answer
```

The verdicts appear under the cell, with pictures of your values, the expected ones
and their difference. On Colab, upload this folder (or its zip) and call
`grader.use("path/to/the/kit")` once first. This is feedback only: your grade
always comes from running your submitted notebook from the top.

## In a terminal

```bash
grader check {template}
```

runs your saved notebook from the top, exactly as grading will, in a fresh
process, and prints what passed and why the rest failed.

## Installing

The grader needs Python 3.11 or later and TensorFlow 2.16 or later with Keras 3
(Colab has both). Install the grader your instructor gives you, e.g.
`pip install grader-*.whl`: it uses the TensorFlow you have and does not install another.
The expected answers were computed with TensorFlow {versions.tensorflow or "?"} and Keras
{versions.keras or "?"}; other versions may differ in the last digits, within the checks' tolerance.
"""


def kit_info(folder: Path) -> KitInfo | None:
    """``kit.json`` of a kit folder; None if it has none or it is unreadable."""
    try:
        return KitInfo.model_validate(json.loads((folder / KIT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
