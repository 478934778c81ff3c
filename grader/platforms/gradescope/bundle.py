"""Build the Gradescope autograder zip: the grader's source, the assignment
without its solution, the reference answers prebuilt, pinned requirements, and
the two entry points rendered from ``templates/``."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from grader.errors import GraderError
from grader.grading.references import PINNED_KEY_FILE, load_references, reference_key, write_entry
from grader.grading.results_dir import atomic_file
from grader.model.assignment import Assignment, load_assignment
from grader.model.result import Versions
from grader.model.spec import Visibility
from grader.model.versions import PROVIDERS, RUNTIME_EXTRAS, current_versions, runtime_closure

CONFIG_FILE = "gradescope.json"
REFERENCES_DIR = "references"  # a reference cache holding this assignment's entry only
EXECUTABLES = ("setup.sh", "run_autograder")
PROJECT = Path(__file__).resolve().parents[3]
KNOWN_GOOD = "self-check/known-good.ipynb"
COURSE_REQUIREMENTS = "course-requirements.txt"
PACKAGE_FILES = ("pyproject.toml", "README.md")  # what `pip install` of the bundle needs besides grader/


class BundleError(GraderError):
    """The autograder bundle cannot be built, or an unpacked one is not usable."""


class BundleConfig(BaseModel):
    """``gradescope.json`` at the top of the bundle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["1"] = "1"
    assignment: str
    reference_key: str
    inputs: dict[str, str]  # path in the assignment folder -> sha256 of the file the references were built from
    built_with: Versions  # versions that built the references
    built_at: str
    visibility: Visibility = "visible"
    stdout_visibility: Visibility = "hidden"
    test_visibility: dict[str, Visibility] = {}  # check name -> visibility, overriding ``visibility``
    known_good: str = KNOWN_GOOD  # the notebook setup.sh grades: it must get full marks

    def visibility_of(self, check: str) -> Visibility:
        return self.test_visibility.get(check, self.visibility)


def build_bundle(
    assignment: Assignment | str,
    out_zip: Path,
    *,
    visibility: Visibility = "visible",
    stdout_visibility: Visibility = "hidden",
    test_visibility: Mapping[str, Visibility] | None = None,
    known_good: Path | None = None,
) -> Path:
    """Write the Gradescope autograder zip for an assignment (a loaded one, a
    name or a folder) and return its path.  Builds the reference answers from
    the solution if they are not cached yet; each check has the visibility
    its spec gives it, and ``test_visibility`` maps check names to
    Gradescope visibilities (``hidden``...) that override the spec's.  ``known_good``: the
    notebook setup.sh must grade full marks (default: the solution, which
    the bundle then holds for root's eyes only)."""
    if not isinstance(assignment, Assignment):
        assignment = load_assignment(assignment)
    test_visibility = check_visibilities(assignment, visibility, test_visibility or {})
    key = reference_key(assignment)
    try:
        config = BundleConfig(
            assignment=assignment.name,
            reference_key=key,
            inputs=_input_digests(assignment),
            built_with=current_versions(),
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            visibility=visibility,
            stdout_visibility=stdout_visibility,
            test_visibility=test_visibility,
        )
    except ValidationError as exc:
        raise BundleError(f"invalid Gradescope settings: {exc}") from None
    references = load_references(assignment)  # built from the solution unless cached
    known_good = Path(known_good) if known_good is not None else assignment.solution_path
    if not known_good.is_file():
        raise BundleError(f"the known-good notebook {known_good} does not exist")
    out_zip = Path(out_zip)
    with tempfile.TemporaryDirectory(prefix="grader-bundle-") as tmp:
        stage = Path(tmp)
        _copy_package(stage)
        _copy_assignment(assignment, stage / "assignments" / assignment.name)
        entry = stage / REFERENCES_DIR / assignment.name
        write_entry(entry / key[:32], key, references)
        (entry / PINNED_KEY_FILE).write_text(key + "\n", encoding="utf-8")
        (stage / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (stage / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n", encoding="utf-8")
        (stage / COURSE_REQUIREMENTS).write_text("".join(f"{r}\n" for r in assignment.requirements), encoding="utf-8")
        (stage / KNOWN_GOOD).parent.mkdir()
        shutil.copyfile(known_good, stage / KNOWN_GOOD)
        for name in EXECUTABLES:
            (stage / name).write_text(template(name), encoding="utf-8")
        (stage / "README.txt").write_text(bundle_readme(assignment, config), encoding="utf-8")
        _zip_tree(stage, out_zip)
    return out_zip


def check_visibilities(
    assignment: Assignment, visibility: Visibility, overrides: Mapping[str, Visibility]
) -> dict[str, Visibility]:
    """Each check's visibility where it differs from the top level's: the
    spec's, unless ``overrides`` (``--hide``) says otherwise."""
    unknown = sorted(set(overrides) - {c.name for c in assignment.spec.checks})
    if unknown:
        known = "; ".join(c.name for c in assignment.spec.checks)
        raise BundleError(f"no check named {', '.join(map(repr, unknown))} in {assignment.spec_path} (checks: {known})")
    return {c.name: c.visibility for c in assignment.spec.checks if c.visibility != visibility} | dict(overrides)


def template(name: str) -> str:
    """A file of ``templates/``, shipped inside the package."""
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def pinned_requirements() -> list[str]:
    """``name==version`` for every distribution the grader needs at run time,
    directly or not, TensorFlow included (an extra, whichever distribution of
    it is installed), as installed here (the references were built with them)."""
    closure = runtime_closure("grader", extras=RUNTIME_EXTRAS)
    if not closure:
        raise BundleError("the grader's installed distribution lists no requirements: install it (pip install -e .)")
    if not set(PROVIDERS["tensorflow"]) & set(closure):
        raise BundleError("no TensorFlow is installed here to pin for Gradescope: pip install -e '.[cpu]'")
    return [f"{name}=={version}" for name, version in closure.items()]


def bundle_readme(assignment: Assignment, config: BundleConfig) -> str:
    spec = assignment.spec
    overrides = "".join(f"\n    {name}: {v}" for name, v in sorted(config.test_visibility.items()))
    v = config.built_with
    return template("README.txt").format(
        title=spec.title,
        name=assignment.name,
        spec_version=spec.version,
        built_at=config.built_at,
        grader=v.grader,
        python=v.python,
        tensorflow=v.tensorflow,
        keras=v.keras,
        numpy=v.numpy,
        notebook_timeout=spec.limits.notebook_timeout,
        cell_timeout=spec.limits.cell_timeout,
        visibility=config.visibility,
        stdout_visibility=config.stdout_visibility,
        test_visibility=f"\n  Checks with their own visibility:{overrides}" if overrides else "",
        course_requirements=", ".join(assignment.requirements) or "nothing beyond the grader's own packages",
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _input_digests(assignment: Assignment) -> dict[str, str]:
    files = [assignment.spec_path, *assignment.data_files]
    if assignment.requirements_file is not None:
        files.append(assignment.requirements_file)
    return {f.relative_to(assignment.folder).as_posix(): sha256_file(f) for f in files}


def _copy_package(stage: Path) -> None:
    """The grader source as a pip-installable project: grader/, pyproject.toml, README.md."""
    missing = [name for name in PACKAGE_FILES if not (PROJECT / name).is_file()]
    if missing:
        raise BundleError(
            f"{PROJECT} is not a source checkout of grader (missing {', '.join(missing)}): build the bundle from one"
        )
    for name in PACKAGE_FILES:
        shutil.copyfile(PROJECT / name, stage / name)
    shutil.copytree(PROJECT / "grader", stage / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _copy_assignment(assignment: Assignment, dest: Path) -> None:
    """The assignment folder without its examples (finished notebooks) and
    without the solution, should it live there."""
    solution = assignment.solution_path.resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        skip = {"examples", "__pycache__", ".ipynb_checkpoints"}
        return [n for n in names if n in skip or (Path(folder) / n).resolve() == solution]

    shutil.copytree(assignment.folder, dest, ignore=ignore)


def _zip_tree(stage: Path, out_zip: Path) -> None:
    """Zip the staged tree, files at the top level, Unix modes recorded (the
    two scripts executable); written whole or not at all."""
    try:
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out_zip) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                name = path.relative_to(stage).as_posix()
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3  # Unix, so unzip applies the modes below
                info.external_attr = (0o100755 if name in EXECUTABLES else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    except OSError as exc:
        raise BundleError(f"{out_zip}: cannot write the bundle: {exc.strerror or exc}") from None
