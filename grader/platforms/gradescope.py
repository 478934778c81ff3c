"""Gradescope: build the autograder zip, and grade one submission inside it.

What Gradescope documents, and this module relies on
(https://gradescope-autograders.readthedocs.io/en/latest/specs/,
.../submission_metadata/, .../troubleshooting/):

* The autograder is a zip with ``setup.sh`` and ``run_autograder`` at its top
  level (the files, not a folder holding them).  Gradescope unpacks it into
  ``/autograder/source``, runs ``setup.sh`` once while building the image
  (Ubuntu, so apt is available) and copies ``run_autograder`` to
  ``/autograder/run_autograder``, an executable script with a ``#!`` line.
* For each submission the student's files are in ``/autograder/submission/``
  and ``/autograder/submission_metadata.json`` holds the submission ``id``,
  ``created_at``, ``assignment`` and ``users[]`` (``name``, ``email``, ``id``).
  ``run_autograder`` runs with ``/autograder`` as working directory and must
  produce ``/autograder/results/results.json``; what it prints is kept in
  ``results/stdout``, shown to instructors only by default.
* ``results.json``: ``score`` (overrides the sum of the tests),
  ``execution_time`` (seconds), ``output``, ``visibility``,
  ``stdout_visibility``, ``extra_data`` ("extra data to be stored") and
  ``tests[]`` with ``name``, ``score``, ``max_score``, ``status``
  (``passed``/``failed``), ``output``, ``visibility``.  Visibility is
  ``visible`` (default), ``hidden``, ``after_due_date`` or ``after_published``;
  a test's own setting overrides the top level's, and when tests are hidden
  students do not see their total score.
* A container gets 768 MB of memory and half a CPU unless the assignment's
  Autograder Settings say more ("Killed" means the memory ran out), and 10
  minutes per submission (40 at most).

So results.json has only those documented keys at its top level and in its
tests; the grader's complete :class:`~grader.model.result.Result` and the student's
identity go in ``extra_data``.  Whatever goes wrong, a results.json is written
(score 0 and the reason): a Python failure becomes an error result here, and
``run_autograder`` writes one itself if Python did not.

The bundle ships the spec, the template and the data, never the solution: the
reference answers are built here once and stored in the references cache
format (``references/<name>/<key[:32]>/``), with the cache key and the sha256
of the spec and data files recorded in ``gradescope.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from grader.errors import GraderError, SolutionError
from grader.grading.references import PINNED_KEY_FILE, load_references, read_entry, reference_key, write_entry
from grader.grading.results_dir import atomic_file, write_atomic
from grader.model.assignment import Assignment, load_assignment
from grader.model.result import Result, Versions
from grader.model.versions import current_versions

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]

DEFAULT_ROOT = Path("/autograder")
CONFIG_FILE = "gradescope.json"
REFERENCES_DIR = "references"  # a GRADER_CACHE_DIR holding this assignment's entry only
EXECUTABLES = ("setup.sh", "run_autograder")
PROJECT = Path(__file__).resolve().parents[2]
PACKAGE_FILES = ("pyproject.toml", "README.md")  # what `pip install` of the bundle needs besides grader/
# What setup.sh installs, pinned to the versions installed here (the references were built with them).
PINNED = ("tensorflow-cpu", "keras", "numpy", "nbformat", "nbclient", "ipykernel", "pydantic", "rich", "matplotlib")
DISTRIBUTION_ALIASES = {"tensorflow-cpu": ("tensorflow-cpu", "tensorflow")}
IGNORED_IN_SUBMISSION = ("__MACOSX",)  # plus anything whose name starts with "." (.ipynb_checkpoints)
AUTOGRADER_FAULT = "This is a problem of the autograder, not of your notebook: please tell your instructor."


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

    def visibility_of(self, check: str) -> Visibility:
        return self.test_visibility.get(check, self.visibility)


# --------------------------------------------------------------------------- build


def build_bundle(
    assignment: Assignment | str,
    out_zip: Path,
    *,
    visibility: Visibility = "visible",
    stdout_visibility: Visibility = "hidden",
    test_visibility: Mapping[str, Visibility] | None = None,
) -> Path:
    """Write the Gradescope autograder zip for an assignment (a loaded one, a
    name or a folder) and return its path.  Builds the reference answers from
    the solution if they are not cached yet; ``test_visibility`` maps check
    names to Gradescope visibilities (``hidden``...)."""
    if not isinstance(assignment, Assignment):
        assignment = load_assignment(assignment)
    test_visibility = dict(test_visibility or {})
    unknown = sorted(set(test_visibility) - {c.name for c in assignment.spec.checks})
    if unknown:
        known = "; ".join(c.name for c in assignment.spec.checks)
        raise BundleError(f"no check named {', '.join(map(repr, unknown))} in {assignment.spec_path} (checks: {known})")
    key = reference_key(assignment)
    try:
        config = BundleConfig(
            assignment=assignment.name,
            reference_key=key,
            inputs=_input_digests(assignment),
            built_with=current_versions(),
            built_at=_now(),
            visibility=visibility,
            stdout_visibility=stdout_visibility,
            test_visibility=test_visibility,
        )
    except ValidationError as exc:
        raise BundleError(f"invalid Gradescope settings: {exc}") from None
    references = load_references(assignment)  # built from the solution unless cached
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
        (stage / "setup.sh").write_text(SETUP_SH, encoding="utf-8")
        (stage / "run_autograder").write_text(RUN_AUTOGRADER, encoding="utf-8")
        (stage / "README.txt").write_text(bundle_readme(assignment, config), encoding="utf-8")
        _zip_tree(stage, out_zip)
    return out_zip


def pinned_requirements() -> list[str]:
    """``name==version`` for each package setup.sh installs, as installed here."""
    lines = []
    for name in PINNED:
        for dist in DISTRIBUTION_ALIASES.get(name, (name,)):
            try:
                lines.append(f"{name}=={metadata.version(dist)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            raise BundleError(f"{name} is not installed here, so its version cannot be pinned")
    return lines


def _input_digests(assignment: Assignment) -> dict[str, str]:
    files = [assignment.spec_path, *assignment.data_files]
    return {f.relative_to(assignment.folder).as_posix(): _sha256(f) for f in files}


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


# --------------------------------------------------------------------------- run


@dataclass
class Bundle:
    """An unpacked bundle, checked and loaded."""

    source: Path
    config: BundleConfig
    assignment: Assignment
    references: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)


def load_bundle(source: Path) -> Bundle:
    """Read ``gradescope.json``, the assignment and the prebuilt references of
    an unpacked bundle; refuse a spec or data file changed since the build."""
    try:
        config = BundleConfig.model_validate_json((source / CONFIG_FILE).read_bytes())
    except (OSError, ValidationError) as exc:
        raise BundleError(f"{source / CONFIG_FILE}: not a usable bundle configuration: {exc}") from None
    assignment = load_assignment(config.assignment, root=source)
    changed = [
        rel
        for rel, digest in config.inputs.items()
        if not (assignment.folder / rel).is_file() or _sha256(assignment.folder / rel) != digest
    ]
    if changed:
        raise BundleError(
            f"{', '.join(changed)} in {assignment.folder} changed since the bundle was built, so its "
            "reference answers may be wrong: rebuild the bundle"
        )
    folder = source / REFERENCES_DIR / config.assignment / config.reference_key[:32]
    references = read_entry(folder, config.reference_key)
    if references is None:
        raise SolutionError(f"the bundle's reference answers in {folder} are missing or corrupt: rebuild the bundle")
    return Bundle(source, config, assignment, references, version_warnings(config.built_with, current_versions()))


def version_warnings(built: Versions, here: Versions) -> list[str]:
    """Differences between the versions that built the references and these
    (setup.sh pins them, so normally none)."""
    return [
        f"the reference answers were built with {name} {getattr(built, name)}, this machine has {getattr(here, name)}"
        for name in ("python", "numpy", "tensorflow", "keras")
        if getattr(built, name) != getattr(here, name)
    ]


def run_autograder(root: Path = DEFAULT_ROOT, executor=None) -> dict:
    """Grade the one notebook in ``root/submission/`` with the bundle in
    ``root/source/`` and write ``root/results/results.json``; return what was
    written.  Never raises because of the submission or the bundle: a failure
    is written as a result with score 0 and the reason."""
    start = time.monotonic()
    root = Path(root)
    try:
        with bundle_cache(root / "source"):
            results = _grade_with(load_bundle(root / "source"), root, executor, start)
    except Exception as exc:  # the bundle is unusable, or a bug of ours: still a results.json
        traceback.print_exc()
        results = failure_results(exc)
    results["execution_time"] = round(time.monotonic() - start)
    out = root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(results, indent=2, allow_nan=False) + "\n")
    return results


def _grade_with(bundle: Bundle, root: Path, executor, start: float) -> dict:
    from grader.execution.factory import make_executor
    from grader.grading.grade import failure_result, grade, invalid_result

    submitters, submission = read_submission_metadata(root / "submission_metadata.json")
    print(
        f"grader {current_versions().grader} from {Path(__file__).resolve().parents[1]}; assignment "
        f"{bundle.assignment.name}, references {bundle.config.reference_key[:12]}"
    )
    print("submitted by " + (", ".join(f"{u.get('name')} <{u.get('email')}>" for u in submitters) or "(no metadata)"))
    for warning in bundle.warnings:
        print(f"warning: {warning}")
    executor = executor or make_executor()  # the sandboxed default, as everywhere: the submission is untrusted
    notebook, problem = find_notebook(root / "submission", bundle.assignment.spec.template)
    if problem:
        result = invalid_result(
            root / "submission", bundle.assignment, problem, executor.name, time.monotonic() - start
        )
    else:
        try:
            result = grade(notebook, bundle.assignment, executor=executor, references=bundle.references)
        except Exception as exc:  # a failure of ours (or the machine's) on this submission
            traceback.print_exc()
            reason = f"the autograder failed on it ({type(exc).__name__}: {exc}). {AUTOGRADER_FAULT}"
            result = failure_result(notebook, bundle.assignment, reason, executor.name, time.monotonic() - start)
    print(f"{result.status}: {result.score:g} / {result.max_score:g}")
    return to_gradescope(result, bundle, submitters, submission)


def find_notebook(folder: Path, expected_name: str) -> tuple[Path | None, str | None]:
    """The submission's one notebook, or why there is none to grade.
    Checkpoints, hidden files and macOS zip debris are not submissions."""
    if not folder.is_dir():
        return None, "the submission folder is missing"
    found = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not _ignored(p.relative_to(folder)))
    if len(found) == 1:
        return found[0], None
    if found:
        names = ", ".join(p.relative_to(folder).as_posix() for p in found)
        return (
            None,
            f"your submission has {len(found)} notebooks ({names}); submit exactly one notebook, the one to grade",
        )
    others = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    seen = f" (it holds: {', '.join(others[:10])}{', ...' if len(others) > 10 else ''})" if others else " (it is empty)"
    return None, f"there is no Jupyter notebook (.ipynb file) in your submission{seen}; submit your {expected_name}"


def _ignored(relative: Path) -> bool:
    return any(part.startswith(".") or part in IGNORED_IN_SUBMISSION for part in relative.parts)


def read_submission_metadata(path: Path) -> tuple[list[dict], dict]:
    """The submitters (``name``, ``email``, ``id``) and the submission's
    ``id``, ``created_at`` and assignment, from Gradescope's
    submission_metadata.json; nothing when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], {}
    except (OSError, ValueError) as exc:
        print(f"warning: {path} is not readable JSON ({exc}); grading without it")
        return [], {}
    if not isinstance(data, dict):
        return [], {}
    users = [{k: u.get(k) for k in ("name", "email", "id")} for u in data.get("users") or [] if isinstance(u, dict)]
    assignment = data.get("assignment") if isinstance(data.get("assignment"), dict) else {}
    submission = {
        "id": data.get("id"),
        "created_at": data.get("created_at"),
        "assignment": {k: assignment.get(k) for k in ("id", "title", "due_date") if k in assignment},
    }
    return users, submission


def to_gradescope(result: Result, bundle: Bundle, submitters: list[dict], submission: dict) -> dict:
    """Gradescope's results.json for a result: documented keys only, with the
    full result, the submitters and the bundle's identity in ``extra_data``."""
    config = bundle.config
    tests = [
        {
            "name": t.name,
            "score": t.score,
            "max_score": t.max_score,
            "status": t.status,
            "output": t.output,
            "visibility": config.visibility_of(t.name),
        }
        for t in result.tests
    ]
    return {
        "score": result.score,
        "execution_time": 0,
        "output": student_summary(result, config),
        "visibility": config.visibility,
        "stdout_visibility": config.stdout_visibility,
        "tests": tests,
        "extra_data": {
            "submitters": submitters,
            "submission": submission,
            "grader": {
                "version": current_versions().grader,
                "package": str(Path(__file__).resolve().parents[1]),
                "reference_key": config.reference_key,
                "bundle_built_at": config.built_at,
            },
            "warnings": bundle.warnings,
            "result": result.model_dump(mode="json"),
        },
    }


def student_summary(result: Result, config: BundleConfig) -> str:
    """The result's summary, counting only the checks shown with it: checks
    whose visibility differs from the top level's are not revealed there."""
    from grader.grading.grade import summary_text

    shown = [t for t in result.tests if config.visibility_of(t.name) == config.visibility]
    if len(shown) == len(result.tests) or result.status != "graded":
        return result.output
    other = len(result.tests) - len(shown)
    return (
        f"{summary_text(shown, result.errors)}\n"
        f"({other} more check{'s are' if other > 1 else ' is'} graded but not shown here.)"
    )


def failure_results(exc: BaseException) -> dict:
    """results.json when the bundle itself is unusable: score 0 and the reason."""
    reason = f"{type(exc).__name__}: {exc}"
    return {
        "score": 0.0,
        "execution_time": 0,
        "output": f"The autograder could not grade this submission ({reason}). {AUTOGRADER_FAULT}",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
        "extra_data": {"error": "".join(traceback.format_exception(exc))},
    }


@contextmanager
def bundle_cache(source: Path) -> Iterator[None]:
    """While grading with a bundle, the library's reference cache is the
    bundle's (it finds the shipped references and their pinned key there)."""
    old = os.environ.get("GRADER_CACHE_DIR")
    os.environ["GRADER_CACHE_DIR"] = str(source / REFERENCES_DIR)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GRADER_CACHE_DIR", None)
        else:
            os.environ["GRADER_CACHE_DIR"] = old


def check_bundle(root: Path, executor_name: str | None = None) -> str:
    """For setup.sh: load the unpacked bundle and grade its own template, so a
    broken image fails when it is built rather than at the first submission."""
    from grader.execution.factory import make_executor
    from grader.grading.grade import grade

    with make_executor(executor_name or "kernel") as executor, bundle_cache(root / "source"):
        bundle = load_bundle(root / "source")
        result = grade(
            bundle.assignment.template_path, bundle.assignment, executor=executor, references=bundle.references
        )
    if result.status != "graded" or any(c.status == "died" for c in result.cells):
        raise BundleError(f"the template did not run in this image: {result.output}")
    lines = [
        f"bundle ok: {bundle.assignment.name}, references {bundle.config.reference_key[:12]}, "
        f"template graded {result.score:g} / {result.max_score:g} in {result.timings.total_s:.1f} s"
    ]
    return "\n".join(lines + [f"warning: {w}" for w in bundle.warnings])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grader.platforms.gradescope",
        description="Grade the submission in ROOT/submission with the autograder bundle unpacked in ROOT/source "
        "and write ROOT/results/results.json (what Gradescope's run_autograder runs).",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("AUTOGRADER_ROOT") or DEFAULT_ROOT),
        help="Gradescope's /autograder (default: $AUTOGRADER_ROOT, else /autograder)",
    )
    parser.add_argument(
        "--executor",
        choices=("kernel", "warm"),
        default="kernel",
        help="how the notebook runs (default: kernel, a fresh Jupyter kernel)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the bundle instead: load it and grade its template (setup.sh runs this)",
    )
    args = parser.parse_args(argv)
    if args.check:
        try:
            print(check_bundle(args.root, args.executor))
            return 0
        except GraderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    from grader.execution.factory import make_executor

    with make_executor(args.executor) as executor:
        try:
            run_autograder(args.root, executor)
        except OSError as exc:
            print(f"error: cannot write {args.root / 'results' / 'results.json'}: {exc}", file=sys.stderr)
            return 1
    return 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- bundle files

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# It installs Python 3.11 if the image lacks it, creates /autograder/venv with
# the pinned requirements and this bundle's grader, then grades the bundled
# template once so that a broken image fails now, not at the first submission.
set -euxo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$SOURCE")"
VENV="$ROOT/venv"
export DEBIAN_FRONTEND=noninteractive

has_python311() { command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1; }

if ! has_python311; then
    apt-get update
    if ! apt-get install -y --no-install-recommends python3.11 python3.11-venv; then
        # Ubuntu releases whose archive has no Python 3.11 (24.04): the deadsnakes PPA has it
        apt-get install -y --no-install-recommends software-properties-common gpg-agent
        add-apt-repository -y ppa:deadsnakes/ppa
        apt-get update
        apt-get install -y --no-install-recommends python3.11 python3.11-venv
    fi
fi

python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -r "$SOURCE/requirements.txt"
"$VENV/bin/python" -m pip install --no-deps "$SOURCE"
cd "$SOURCE"
"$VENV/bin/python" -m grader.platforms.gradescope --check --root "$ROOT"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope copies this to /autograder/run_autograder and runs it, in
# /autograder, once per submission.  It grades /autograder/submission/ with the
# grader in /autograder/source and writes /autograder/results/results.json;
# should Python fail before writing it, it writes a score-0 result itself.
# AUTOGRADER_ROOT and GRADER_PYTHON replace /autograder and its venv's Python
# (to try the bundle elsewhere).
set -u
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${GRADER_PYTHON:-$ROOT/venv/bin/python}"
RESULTS="$ROOT/results/results.json"
export GRADER_CACHE_DIR="$ROOT/source/references"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
status=0
# from the source folder, `-m grader.platforms.gradescope` imports this bundle's grader
(cd "$ROOT/source" && exec "$PYTHON" -m grader.platforms.gradescope --root "$ROOT") || status=$?
if [ ! -s "$RESULTS" ]; then
    echo "run_autograder: the grader exited with status $status without writing $RESULTS"
    printf '{"score": 0.0, "execution_time": 0, "output": "%s", "stdout_visibility": "hidden", "tests": []}\n' \
        "The autograder could not grade this submission (the grader exited with status $status). This is a problem of the autograder, not of your notebook: please tell your instructor." \
        > "$RESULTS"
fi
exit 0
"""

README = """\
Gradescope autograder for "{title}" (assignment {name}, spec {spec_version})
Built {built_at} with grader {grader}, Python {python}, TensorFlow {tensorflow}, Keras {keras}, NumPy {numpy}.

Upload this zip as the autograder of a Gradescope programming assignment.
Students submit one notebook (.ipynb).

AUTOGRADER SETTINGS (assignment > Settings > Autograder Settings)

  Memory: 2 GB (1.5 GB at the very least).  Gradescope's default, 768 MB
    (732 MiB), leaves TensorFlow almost no room, and a run past the limit is
    "Killed" and scores nothing.  Grading one notebook of this assignment
    peaked at {rss_mib} MiB resident memory, summed over the grader (about
    {grader_mib} MiB) and the notebook's Jupyter kernel (about {kernel_mib} MiB,
    mostly TensorFlow), measured with psutil over the process tree every
    10 ms.  The container is also charged for page cache, and a student's
    notebook may build bigger arrays or models than the solution does.
  CPU: 1 CPU (the default is 0.5): importing TensorFlow in the student's
    kernel is most of the grading time.
  Timeout: the default 10 minutes is enough; a notebook may run
    {notebook_timeout:g} s in all and each cell {cell_timeout:g} s.
  Base image: Ubuntu 22.04.  setup.sh installs Python 3.11 with apt (from the
    deadsnakes PPA where the archive lacks it), then the pinned packages of
    requirements.txt into /autograder/venv, then grades the bundled template
    once: if the image is broken, building it fails with the reason.

WHAT STUDENTS SEE

  Each check of assignment.toml is a test with its feedback; the top-level
  output summarizes them.  Visibility: results {visibility}, the autograder's
  stdout {stdout_visibility}.{test_visibility}
  Gradescope does not show students their total score while tests are hidden.
  A submission with no notebook, or several, scores 0 with a message saying
  so; if the autograder itself fails, the submission scores 0 with a message
  asking the student to tell you, and the reason is in the stdout.
  The submitters (from submission_metadata.json) and the grader's complete
  result are stored in results.json under extra_data.

WHAT IS IN THIS BUNDLE

  setup.sh, run_autograder   Gradescope's two entry points
  grader/, pyproject.toml    the grader, installed by setup.sh
  assignments/{name}/        spec, template and data (no examples)
  references/{name}/         the reference answers, prebuilt: the solution
                             notebook is not in this bundle
  gradescope.json            assignment, reference key, visibility settings,
                             sha256 of the spec and data the references match
  requirements.txt           the versions the references were built with

  Editing the spec or the data inside the bundle makes every submission fail
  ("changed since the bundle was built"): change them in the project and
  build a new bundle.

  The student's code runs in the same container as the grader, as root
  (isolation: none): it could read this bundle, including the reference
  answers.  Answers are checked in the grader's own process.

TRY IT WITHOUT GRADESCOPE (ag/ stands for /autograder)

  mkdir -p ag/submission && unzip autograder.zip -d ag/source
  python3.11 -m venv ag/venv && ag/venv/bin/pip install -r ag/source/requirements.txt ag/source
  cp notebook.ipynb ag/submission/
  AUTOGRADER_ROOT=$PWD/ag ag/source/run_autograder && cat ag/results/results.json
"""

# Peak resident memory of run_autograder grading the conv2d fixtures (correct,
# swapped_strides, magics_and_plots) with the kernel executor: psutil, RSS summed
# over the process tree, sampled every 10 ms (PSS sum: 529 MiB).
MEASURED_RSS_MIB = 657
MEASURED_GRADER_MIB = 87
MEASURED_KERNEL_MIB = 586


def bundle_readme(assignment: Assignment, config: BundleConfig) -> str:
    spec = assignment.spec
    overrides = "".join(f"\n    {name}: {v}" for name, v in sorted(config.test_visibility.items()))
    v = config.built_with
    return README.format(
        title=spec.title,
        name=assignment.name,
        spec_version=spec.version,
        built_at=config.built_at,
        grader=v.grader,
        python=v.python,
        tensorflow=v.tensorflow,
        keras=v.keras,
        numpy=v.numpy,
        rss_mib=MEASURED_RSS_MIB,
        grader_mib=MEASURED_GRADER_MIB,
        kernel_mib=MEASURED_KERNEL_MIB,
        notebook_timeout=spec.limits.notebook_timeout,
        cell_timeout=spec.limits.cell_timeout,
        visibility=config.visibility,
        stdout_visibility=config.stdout_visibility,
        test_visibility=f"\n  Checks with their own visibility:{overrides}" if overrides else "",
    )


if __name__ == "__main__":
    sys.exit(main())
