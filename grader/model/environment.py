"""The course's environment: the packages an assignment's students may
import, beyond the grader's own, and whether this machine has them.

An assignment declares them in ``assignment.toml`` (``[environment]
requirements = ["scipy>=1.11"]``), in a requirements file beside it
(``requirements.txt``, or the file ``[environment] requirements_file``
names), or both.  Only requirement specifiers are accepted (a name, extras,
a version range, a marker): pip options and URLs cannot be checked here, and
a grading machine should not fetch code from wherever a line points.
"""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, field_validator

from grader.errors import CourseEnvironmentError, SpecError
from grader.model.versions import installed

DEFAULT_REQUIREMENTS_FILE = "requirements.txt"


class Environment(BaseModel):
    """``[environment]`` of assignment.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requirements: list[str] = []
    requirements_file: str | None = None  # relative to the assignment folder; default requirements.txt if present

    @field_validator("requirements")
    @classmethod
    def _specifiers(cls, lines: list[str]) -> list[str]:
        for line in lines:
            try:
                parse_requirement(line)
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return lines


def parse_requirement(line: str) -> Requirement:
    """One requirement specifier, or a :class:`SpecError` saying what is wrong with it."""
    text = line.strip()
    if text.startswith("-"):
        raise SpecError(f"{text!r}: pip options cannot be checked; list packages, one specifier each")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(f"{text!r} is not a requirement specifier such as 'scipy>=1.11' ({exc})") from None
    if req.url:
        raise SpecError(f"{text!r}: a URL requirement cannot be checked here; name a package and a version range")
    return req


def read_requirements_file(path: Path) -> list[str]:
    """The specifiers of a requirements file (comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the requirements file: {exc}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        try:
            parse_requirement(line)
        except SpecError as exc:
            raise SpecError(f"{path}, line {number}: {exc}") from None
        lines.append(line)
    return lines


def requirements_path(environment: Environment, folder: Path) -> Path | None:
    """The assignment's requirements file: the one ``requirements_file``
    names (which must exist), else ``requirements.txt`` if present."""
    if environment.requirements_file is not None:
        path = folder / environment.requirements_file
        if not path.is_file():
            raise SpecError(f"[environment] requirements_file: {path} does not exist")
        return path
    default = folder / DEFAULT_REQUIREMENTS_FILE
    return default if default.is_file() else None


def requirements_of(environment: Environment, folder: Path) -> list[str]:
    """Everything the assignment in ``folder`` declares, inline first, then the file's."""
    path = requirements_path(environment, folder)
    from_file = read_requirements_file(path) if path is not None else []
    return [*environment.requirements, *(r for r in from_file if r not in environment.requirements)]


def unmet(requirements: list[str]) -> list[str]:
    """One sentence per requirement this Python environment does not satisfy
    (requirements whose marker does not hold here are not needed here)."""
    problems = []
    for line in requirements:
        req = parse_requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        found = installed(req.name)
        if found is None:
            problems.append(f"{req.name} is not installed (the assignment allows {line})")
            continue
        dist, version = found
        try:
            ok = req.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{dist} {version} is installed, but the assignment asks for {line}")
    return problems


def environment_versions(requirements: list[str]) -> dict[str, str]:
    """The installed version of each declared package (for the references' key)."""
    versions = {}
    for line in requirements:
        found = installed(parse_requirement(line).name)
        if found is not None:
            versions[found[0]] = found[1]
    return dict(sorted(versions.items()))


def require(name: str, requirements: list[str] | tuple[str, ...], source: Path | None = None) -> None:
    """Refuse (:class:`CourseEnvironmentError`) to grade assignment ``name``
    in an environment that does not satisfy its requirements."""
    problems = unmet(list(requirements))
    if problems:
        install = f" (pip install -r {source})" if source else ""
        raise CourseEnvironmentError(
            f"this Python environment lacks what {name}'s students may use: {'; '.join(problems)}. "
            f"Install it{install} before grading: students who use it would lose points here"
        )
