"""``grader.check()`` inside a running notebook: the visible checks, on the
values the student has now, with the code that grades.

The values are taken from the notebook's namespace by the same capture code
that runs after each answer cell when grading (:mod:`grader.execution.capture`),
read back by the same loader and judged by the same checks
(:func:`grader.checking.check.run_checks`) against the kit's reference answers.
No notebook is run, no sandbox or warm parent is needed.

It is feedback only, and says so: what is graded is the submitted notebook,
run from the top in a fresh process, with each answer taken right after its
own cell (a name reused later in the notebook does not change the grade, but
does change what this shows).
"""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.checking import feedback
from grader.checking.answers import CapturedAnswer, load_answers
from grader.checking.check import run_checks
from grader.errors import GraderError
from grader.execution import capture
from grader.execution.base import FINAL_POINT, ExecutionRecord
from grader.execution.plan import ExecutionPlan
from grader.grading.references import load_references
from grader.model.assignment import Assignment, available_assignments, load_assignment
from grader.model.result import CheckResult
from grader.model.spec import Spec, computation_sources
from grader.model.versions import current_versions
from grader.reports import html as report_html
from grader.settings import cache_root

FEEDBACK_ONLY = (
    "Feedback only: your grade comes from running your submitted notebook from the top, "
    "each answer taken right after its own cell."
)
MAX_KIT_BYTES = 512 * 2**20
MAX_KIT_MEMBERS = 10_000


@dataclass
class _Loaded:
    assignment: Assignment  # as students check it: the visible checks
    references: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    images: dict = field(default_factory=dict)  # the expected values' pictures, the same at every check


_current: dict[str, _Loaded] = {}


def use(where: str | Path | None = None, assignment: str | None = None) -> Assignment:
    """Choose the kit (or assignment folder) that :func:`check` checks against:
    a folder, a kit zip, or the URL of one (downloaded once into the cache).
    Default: the current folder, or the nearest one above it, holding
    ``assignments/``.  ``assignment``: which one, when the kit has several."""
    root = _root(where)
    names = available_assignments(root)
    if assignment is None:
        if len(names) != 1:
            raise GraderError(
                f"{root}: {'no assignment' if not names else 'several assignments: ' + ', '.join(names)}; "
                "say which: grader.use(..., assignment='name')"
            )
        assignment = names[0]
    full = load_assignment(assignment, root)
    loaded = _Loaded(full.for_students(), load_references(full))
    built = _built_with(root)
    here = current_versions()
    if built is not None and (built.tensorflow, built.keras) != (here.tensorflow, here.keras):
        loaded.notes.append(
            f"The expected answers were computed with TensorFlow {built.tensorflow} and Keras {built.keras}; "
            f"you have {here.tensorflow} and {here.keras}, so the last digits may differ (within tolerance)."
        )
    _current.clear()
    _current["kit"] = loaded
    return loaded.assignment


def check(*names: str, namespace: dict[str, Any] | None = None, display: bool = True) -> LiveReport:
    """Check the visible checks of the answers (or checks) named, all of them
    by default, on the values in the notebook's namespace now, and show the
    verdicts under the cell (HTML with pictures in Jupyter and Colab, text
    elsewhere).  Returns the report."""
    start = time.perf_counter()
    if "kit" not in _current:
        use()
    loaded = _current["kit"]
    spec = loaded.assignment.spec
    wanted, unknown = _select(spec, names)
    namespace = namespace if namespace is not None else _user_namespace()
    answers = live_answers(loaded.assignment, namespace)
    tests = [t for t in run_checks(spec, answers, loaded.references, {}, loaded.assignment.folder) if t.name in wanted]
    notes = [
        f"No check of {name!r} can be run here (the answers checked here are "
        f"{', '.join(sorted({c.answer for c in spec.checks}))}); the others run when your submission is graded."
        for name in unknown
    ]
    report = LiveReport(loaded, tests, answers, time.perf_counter() - start, notes)
    if display:
        report.show()
    return report


def live_answers(assignment: Assignment, namespace: dict[str, Any]) -> dict[str, CapturedAnswer]:
    """Every answer of the spec as it is in ``namespace`` now, captured and read
    back exactly as grading does at the end of a notebook."""
    spec = assignment.spec
    plan = ExecutionPlan(
        answer_names=list(spec.answers),
        steps=[],
        final_captures={
            n: spec.expression(n) for n, a in spec.answers.items() if a.model_weight is None or a.expression
        },
        final_weights={n: a.model_weight for n, a in spec.answers.items() if a.model_weight is not None},
        notices={},
        data_files=[],
        cell_timeout=spec.limits.cell_timeout,
        notebook_timeout=spec.limits.notebook_timeout,
        max_answer_bytes=int(spec.limits.max_answer_mb * 2**20),
    )
    with tempfile.TemporaryDirectory(prefix="grader-live-") as folder:
        capture.capture(namespace, plan.final_captures, folder, FINAL_POINT, plan.max_answer_bytes, plan.final_weights)
        answers = load_answers(plan, ExecutionRecord(executor="live"), Path(folder))
    return {name: a if a.ok else _explained(a) for name, a in answers.items()}


@dataclass
class LiveReport:
    loaded: _Loaded
    tests: list[CheckResult]
    answers: dict[str, CapturedAnswer]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def summary(self) -> str:
        spec = self.loaded.assignment.spec
        passed = sum(t.status == "passed" for t in self.tests)
        line = f"{passed} of {len(self.tests)} checks passed ({self.score:g} / {self.max_score:g} points)."
        if spec.withheld:
            line += (
                f" {spec.withheld.points:g} points ({spec.withheld.checks} checks) are not checked here: "
                "they run when your submission is graded."
            )
        return line

    def text(self) -> str:
        lines = [f"{self.loaded.assignment.spec.title}: {self.summary()}", ""]
        for test in self.tests:
            mark = "✓" if test.status == "passed" else "✗"
            lines.append(f"{mark} {test.name}  [{test.score:g}/{test.max_score:g}]")
            if test.status == "failed":
                lines += [
                    "    " + (p.text if p.kind == "verdict" else f"{p.label}: {p.text}") for p in feedback.parts(test)
                ]
        lines += ["", *self.notes, *self.loaded.notes, FEEDBACK_ONLY]
        return "\n".join(line for line in lines if line is not None)

    def html(self) -> str:
        arrays = {n: a.value for n, a in self.answers.items() if a.value is not None}
        heading = (
            f"<h3>{html.escape(self.loaded.assignment.spec.title)}</h3><p>{html.escape(self.summary())}</p>"
            + "".join(
                f'<p class="muted">{html.escape(n)}</p>' for n in [*self.notes, *self.loaded.notes, FEEDBACK_ONLY]
            )
        )
        body = report_html.answers_html(
            self.tests, arrays, self.loaded.references, self.loaded.assignment, self.loaded.images
        )
        return report_html.fragment(heading, body)

    def show(self) -> None:
        shell = _shell()
        if shell is None:
            print(self.text())
            return
        from IPython.display import display

        display({"text/plain": self.text(), "text/html": self.html()}, raw=True)

    def __repr__(self) -> str:
        return f"<grader check: {self.summary()}>"


def moment_notes(spec: Spec) -> dict[str, list[str]]:
    """For the answers grading takes right after their own cell through an
    expression (``model.get_weights()[0]``): a later cell may have changed what
    it reads, so a failed check says when to check it."""
    notes: dict[str, list[str]] = {}
    for check in spec.checks:
        inputs = [check.answer, *(s for s in computation_sources(check.compute) if isinstance(s, str))]
        for name in inputs:
            answer = spec.answers.get(name)
            if answer is None or answer.expression is None:
                continue
            cell = spec.capture_cell(name)
            notes.setdefault(check.answer, []).append(
                f"{name} is {answer.expression} as your notebook holds it now, while grading takes it right after "
                f"the cell tagged answer:{cell}; if a later cell changed it, run grader.check({check.answer!r}) "
                "right after that cell"
            )
    return {name: list(dict.fromkeys(lines)) for name, lines in notes.items()}


def _select(spec: Spec, names: tuple[str, ...]) -> tuple[set[str], list[str]]:
    """The checks named (by answer or by check name), and the names no visible check has."""
    if not names:
        return {c.name for c in spec.checks}, []
    chosen: set[str] = set()
    unknown = []
    for name in names:
        found = {c.name for c in spec.checks if name in (c.answer, c.name)}
        if not found:
            unknown.append(name)
        chosen |= found
    return chosen, unknown


def _explained(answer: CapturedAnswer) -> CapturedAnswer:
    """A missing value, said the way a student in a notebook needs it."""
    if answer.status == "missing" and "is not defined" in answer.detail:
        detail = f"{answer.name} is not defined yet: run the cell that computes it, then check again"
        return CapturedAnswer(answer.name, answer.status, None, detail, "in your notebook now", answer.type_name)
    return answer


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _user_namespace() -> dict[str, Any]:
    shell = _shell()
    if shell is not None:
        return shell.user_ns
    return vars(sys.modules["__main__"])


def _built_with(root: Path) -> Any:
    from grader.kit.release import kit_info

    info = kit_info(root)
    return info.built_with if info else None


def _root(where: str | Path | None) -> Path:
    if where is None:
        here = Path.cwd().resolve()
        for folder in (here, *here.parents):
            if (folder / "assignments").is_dir():
                return folder
        raise GraderError(
            f"no kit found in {here} or above it (a folder with assignments/); "
            "open the notebook from the kit's folder, or call grader.use('path/or/URL/of/the/kit')"
        )
    text = str(where)
    if urllib.parse.urlsplit(text).scheme in ("http", "https"):
        return _unpacked(_download(text))
    path = Path(where).expanduser().resolve()
    if path.is_file() and zipfile.is_zipfile(path):
        return _unpacked(path)
    if not (path / "assignments").is_dir():
        raise GraderError(f"{path}: not a kit (no assignments/ folder in it)")
    return path


def _download(url: str) -> Path:
    target = cache_root() / "kits" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".zip")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            copied = 0
            while chunk := response.read(1 << 20):
                copied += len(chunk)
                if copied > MAX_KIT_BYTES:
                    raise GraderError(f"{url}: larger than {MAX_KIT_BYTES >> 20} MB; not a kit")
                out.write(chunk)
        partial.replace(target)
    except OSError as exc:
        raise GraderError(f"cannot download the kit from {url}: {getattr(exc, 'reason', exc)}") from None
    finally:
        partial.unlink(missing_ok=True)  # gone already once renamed into place
    return target


def _unpacked(zip_path: Path) -> Path:
    """The kit zip extracted (once) beside the cache; entries that would land
    outside it, links and oversized archives are refused."""
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:24]
    dest = cache_root() / "kits" / digest
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".kit-", dir=dest.parent))  # beside dest: renamed into place
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = zf.infolist()
                if len(members) > MAX_KIT_MEMBERS or sum(m.file_size for m in members) > MAX_KIT_BYTES:
                    raise GraderError(f"{zip_path}: too large to be a kit")
                for member in members:
                    name = Path(member.filename)
                    if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                        raise GraderError(f"{zip_path}: entry {member.filename!r} would land outside the kit")
                    if (member.external_attr >> 16) & 0o170000 == 0o120000:
                        raise GraderError(f"{zip_path}: entry {member.filename!r} is a link")
                zf.extractall(staging)
        except (zipfile.BadZipFile, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise GraderError(f"{zip_path}: not a readable kit zip: {exc}") from None
        except GraderError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if dest.exists():  # another process unpacked it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.replace(dest)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 and not (dest / "assignments").is_dir() else dest
