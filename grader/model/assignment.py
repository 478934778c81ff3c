"""Locating an assignment: its folder, spec, template, data files and solution.

Layout (relative to a project root)::

    assignments/<name>/assignment.toml   the spec
    assignments/<name>/<template>        the student template
    assignments/<name>/<data...>         files the notebook reads
    solutions/<name>/<solution>          the reference solution (never shown to students)

The root is, in order: the ``root`` argument, ``$GRADER_ROOT``, the current
directory if it has an ``assignments/`` folder, else the folder this package
was installed from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from grader.errors import AssignmentNotFound, SpecError
from grader.model.environment import requirements_of, requirements_path
from grader.model.spec import SPEC_FILE, Spec, load_spec
from grader.settings import load_settings

PREBUILT_REFERENCES = ".references"  # in a student kit's assignment folder: references built by `grader release`


@dataclass(frozen=True)
class Assignment:
    name: str
    folder: Path
    spec_path: Path
    spec: Spec
    solution_path: Path
    requirements: tuple[str, ...] = ()  # the course's environment: [environment] and its requirements file

    @property
    def template_path(self) -> Path:
        return self.folder / self.spec.template

    @property
    def data_files(self) -> list[Path]:
        return [self.folder / d for d in self.spec.data]

    @property
    def requirements_file(self) -> Path | None:
        """The requirements file beside the spec, if the assignment has one."""
        return requirements_path(self.spec.environment, self.folder)

    @property
    def computation_files(self) -> list[Path]:
        return [self.folder / f for f in self.spec.computation_files()]

    @property
    def prebuilt_references(self) -> Path | None:
        """Where a copy without its solution (a student kit) keeps the reference
        answers it was given, laid out as a reference cache; None elsewhere."""
        folder = self.folder / PREBUILT_REFERENCES
        return folder if not self.solution_path.is_file() and folder.is_dir() else None

    def for_students(self) -> Assignment:
        """The assignment as students check it themselves: the visible checks only."""
        return replace(self, spec=self.spec.for_students())

    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec_path.read_bytes()).hexdigest()


def project_root(root: Path | str | None = None) -> Path:
    if root is not None:
        return Path(root)
    configured = load_settings().root
    if configured is not None:
        return configured
    if (Path.cwd() / "assignments").is_dir():
        return Path.cwd()
    return Path(__file__).resolve().parents[2]


def available_assignments(root: Path | str | None = None) -> list[str]:
    folder = project_root(root) / "assignments"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / SPEC_FILE).is_file())


def load_assignment(name_or_path: str | Path, root: Path | str | None = None) -> Assignment:
    """Find and validate an assignment by name (``conv2d``) or by folder path."""
    candidate = Path(name_or_path)
    if (candidate / SPEC_FILE).is_file():
        folder = candidate.resolve()
        solutions = folder.parent.parent / "solutions"
    else:
        base = project_root(root)
        folder = base / "assignments" / str(name_or_path)
        solutions = base / "solutions"
        if not (folder / SPEC_FILE).is_file():
            known = ", ".join(available_assignments(root)) or "none"
            raise AssignmentNotFound(
                f"unknown assignment {str(name_or_path)!r}: no {folder / SPEC_FILE} (known assignments: {known})"
            )
    spec_path = folder / SPEC_FILE
    spec = load_spec(spec_path)
    assignment = Assignment(
        name=folder.name,
        folder=folder,
        spec_path=spec_path,
        spec=spec,
        solution_path=solutions / folder.name / spec.solution,
        requirements=tuple(requirements_of(spec.environment, folder)),
    )
    for path in [assignment.template_path, *assignment.data_files, *assignment.computation_files]:
        if not path.is_file():
            raise SpecError(f"{spec_path}: file named in the spec is missing: {path}")
    return assignment
