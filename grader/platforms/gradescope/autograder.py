"""Grade one submission inside Gradescope's container: read the unpacked
bundle in ``/autograder/source``, grade the notebook in
``/autograder/submission`` and write ``/autograder/results/results.json``."""

from __future__ import annotations

import json
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from grader.errors import SolutionError
from grader.execution import sandbox
from grader.execution.base import Executor
from grader.grading.references import read_entry
from grader.grading.results_dir import write_atomic
from grader.model.assignment import Assignment, load_assignment
from grader.model.environment import require
from grader.model.result import Result, Versions
from grader.model.versions import current_versions
from grader.platforms.gradescope.bundle import CONFIG_FILE, REFERENCES_DIR, BundleConfig, BundleError, sha256_file

DEFAULT_ROOT = Path("/autograder")
PACKAGE = Path(__file__).resolve().parents[2]  # the grader package grading here
IGNORED_IN_SUBMISSION = ("__MACOSX",)  # plus anything whose name starts with "." (.ipynb_checkpoints)
AUTOGRADER_FAILED = (
    "the autograder failed, so no results.json is written: Gradescope shows the autograder as failed and records "
    "no score for this submission"
)
# Gradescope's formats for the output strings: "text" renders nothing (no HTML, Markdown or ANSI), so what
# students' code printed (`<KerasTensor ...>`) shows as it is; its default for the top-level output is HTML.
OUTPUT_FORMAT = "text"
CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


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
    require(assignment.name, assignment.requirements)  # setup.sh installs them; an image without them must not grade
    changed = [
        rel
        for rel, digest in config.inputs.items()
        if not (assignment.folder / rel).is_file() or sha256_file(assignment.folder / rel) != digest
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


def run_autograder(root: Path = DEFAULT_ROOT, executor: Executor | None = None) -> dict | None:
    """Grade the one notebook in ``root/submission/`` with the bundle in
    ``root/source/`` and write ``root/results/results.json``; return what was
    written.  Never raises because of the submission or the bundle.

    A submission that cannot be graded (no notebook, not a notebook) gets
    its 0 and the reason.  A failure of the autograder itself (an unusable
    bundle, an environment that lacks the course's packages, a bug of ours)
    is not the student's grade: then no results.json is left, which
    Gradescope documents as "The autograder failed to execute correctly"
    (no score is recorded, and the submission can be regraded once it is
    fixed); the reason is printed, into results/stdout, for instructors.
    Returns None then."""
    start = time.monotonic()
    root = Path(root)
    out = root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    try:
        results = _grade_with(load_bundle(root / "source"), root, executor, start)
    except Exception as exc:  # the bundle is unusable, or a bug of ours
        traceback.print_exc()
        results = None
        reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = "the grader failed on this submission (see above)"
    if results is None:
        print(f"{AUTOGRADER_FAILED}: {reason}")
        return None
    results["execution_time"] = round(time.monotonic() - start)
    write_atomic(out, json.dumps(results, indent=2, allow_nan=False) + "\n")
    return results


def _grade_with(bundle: Bundle, root: Path, executor: Executor | None, start: float) -> dict | None:
    from grader.execution.factory import make_executor
    from grader.grading.grade import grade, invalid_result

    submitters, submission = read_submission_metadata(root / "submission_metadata.json")
    print(
        f"grader {current_versions().grader} from {PACKAGE}; assignment "
        f"{bundle.assignment.name}, references {bundle.config.reference_key[:12]}"
    )
    print("submitted by " + (", ".join(f"{u.get('name')} <{u.get('email')}>" for u in submitters) or "(no metadata)"))
    for warning in bundle.warnings:
        print(f"warning: {warning}")
    key = bundle.config.reference_key
    executor = executor or make_executor()  # the sandboxed default, as everywhere: the submission is untrusted
    exposed = sandbox.preflight(executor.policy) if executor.policy else ()
    print(f"isolation: {sandbox.describe(executor.policy) if executor.policy else 'none'}")
    if exposed:  # only a uid switch here (no CAP_SYS_ADMIN), and the bundle is not yet root's alone
        raise BundleError(
            f"the students' uid could read {', '.join(exposed)}: run setup.sh, which makes the bundle root's alone"
        )
    notebook, problem = find_notebook(root / "submission", bundle.assignment.spec.template)
    if problem:
        result = invalid_result(
            root / "submission", bundle.assignment, problem, executor.name, time.monotonic() - start, key
        )
    else:
        assert notebook is not None  # find_notebook gives a notebook or a problem
        try:
            result = grade(
                notebook,
                bundle.assignment,
                executor=executor,
                references=bundle.references,
                references_key=key,
            )
        except Exception:  # a failure of ours (or the machine's) on this submission
            traceback.print_exc()
            return None
    print(f"{result.status}: {result.score:g} / {result.max_score:g}")
    if result.status == "error":  # the grader failed on it: not a grade
        for error in result.errors:
            print(f"error: {error}")
        return None
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
    assignment = data.get("assignment")
    if not isinstance(assignment, dict):
        assignment = {}
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
            "output": plain(t.output),
            "output_format": OUTPUT_FORMAT,
            "visibility": config.visibility_of(t.name),
        }
        for t in result.tests
    ]
    return {
        "score": result.score,
        "execution_time": 0,
        "output": plain(student_summary(result, config)),
        "output_format": OUTPUT_FORMAT,
        "test_output_format": OUTPUT_FORMAT,
        "test_name_format": OUTPUT_FORMAT,
        "visibility": config.visibility,
        "stdout_visibility": config.stdout_visibility,
        "tests": tests,
        "extra_data": {
            "submitters": submitters,
            "submission": submission,
            "grader": {
                "version": current_versions().grader,
                "package": str(PACKAGE),
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


def plain(text: str) -> str:
    """Text as Gradescope's ``text`` format shows it: terminal escapes and
    control characters (which students' code may print) removed, nothing else."""
    return CONTROL.sub("", text)


def check_bundle(root: Path, executor_name: str | None = None) -> str:
    """For setup.sh: load the unpacked bundle, grade its known-good notebook
    and its template, and raise :class:`BundleError` unless the known-good one
    gets full marks and the template runs: a broken image fails when it is
    built, rather than grading every student 0."""
    from grader.execution.factory import make_executor
    from grader.grading.grade import grade

    bundle = load_bundle(root / "source")
    known_good = root / "source" / bundle.config.known_good
    lines = [f"bundle: {bundle.assignment.name}, references {bundle.config.reference_key[:12]}"]
    with make_executor(executor_name or "kernel") as executor:
        exposed = sandbox.preflight(executor.policy) if executor.policy else ()
        if exposed:
            raise BundleError(f"the students' uid could read {', '.join(exposed)}: the bundle must be root's alone")
        lines.append(f"isolation: {sandbox.describe(executor.policy) if executor.policy else 'none'}")
        results = {}
        for label, notebook in (("known-good notebook", known_good), ("template", bundle.assignment.template_path)):
            results[label] = result = grade(
                notebook,
                bundle.assignment,
                executor=executor,
                references=bundle.references,
                references_key=bundle.config.reference_key,
            )
            lines.append(
                f"{label} {notebook.name}: {result.score:g} / {result.max_score:g} in {result.timings.total_s:.1f} s"
            )
    good, template = results["known-good notebook"], results["template"]
    if good.score != good.max_score:
        failed = "; ".join(f"{t.name}: {t.output}" for t in good.tests if t.status != "passed")
        raise BundleError(
            f"the known-good notebook got {good.score:g} / {good.max_score:g} in this image, so students would be "
            f"graded wrongly: {good.errors[0] if good.errors else failed}"
        )
    if template.status != "graded" or any(c.status == "died" for c in template.cells):
        raise BundleError(f"the template did not run in this image: {template.output}")
    return "\n".join([*lines, "bundle ok", *(f"warning: {w}" for w in bundle.warnings)])
