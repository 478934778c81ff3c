"""The HTML feedback report: a self-contained page per submission, a class page.

``write_report(results_dir, out, assignment)`` turns a batch's results folder
into ``out/<stem>.html`` per submission and ``out/index.html`` for the class;
``write_submission_report`` writes one student's page.  A page needs nothing
but itself: CSS inline, figures as base64 PNG data URIs, no script, and a
Content-Security-Policy that forbids loading anything else, so it looks the
same opened from a disk, an LMS or an e-mail.  Every text taken from a result
is escaped: file names, feedback and error messages may come from students.

Figures need the captured arrays, which ``grader batch --keep-answers`` saves
to ``RESULTS_DIR/answers/<stem>.npz``; without that file a page still has the
score and all feedback.  Student pages do not link to the class page, so one
can be handed to its student alone.
"""

from __future__ import annotations

import html
import re
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from grader.checking import feedback
from grader.checking.compare import describe_shape, is_real_numeric
from grader.checking.compute import ComputeError, Resolve, evaluate
from grader.errors import GraderError, ResultsError
from grader.grading.results_dir import ANSWERS_DIR, write_atomic
from grader.grading.stats import ClassStats, band, class_stats
from grader.model.assignment import Assignment
from grader.model.result import CheckResult, Result
from grader.model.spec import FILE_PREFIX
from grader.reports import figures

INDEX_FILE = "index.html"
VALUE_KINDS = ("reference", "compute")  # checks whose answers get the three images
MAX_NPZ_MEMBERS = 256
ZIP_MAGIC = b"PK\x03\x04"
SLOWEST = 10  # notebooks listed as the slowest on the class page
MISTAKES = 15  # most common mistakes listed
NAMED = 8  # students named per mistake
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
NO_ANSWERS = "No figures: the captured arrays were not saved (grade with `grader batch --keep-answers`)."
STALE = (
    "This submission was graded against other reference answers than the ones drawn here (the solution, "
    "the spec or a library version changed since); regrade it for figures that match the scores."
)
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:#1d232b;
 background:#f4f6f8;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .5em}h3{font-size:1em;margin:0}
.muted{color:#5b6673;font-size:.9em}.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:14px 18px;margin:10px 0}
.score{display:inline-block;font-size:1.5em;font-weight:700;padding:4px 14px;border-radius:8px;color:#fff}
.full{background:#1d7a3e}.partial{background:#b26b00}.zero{background:#b3261e}
.check{border-left:5px solid #b3261e}.check.passed{border-left-color:#1d7a3e}
.check header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.verdict{font-weight:700;text-transform:uppercase;font-size:.8em;letter-spacing:.04em;color:#b3261e}
.passed .verdict{color:#1d7a3e}.points{margin-left:auto;font-weight:600;white-space:nowrap}
.feedback p{margin:.35em 0}.feedback .cause{background:#fff4e0;padding:4px 8px;border-radius:4px}
.feedback .hint{background:#e8f1fb;padding:4px 8px;border-radius:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:.85em;color:#5b6673;margin:.5em 0 0}
dd{margin:0;font-family:ui-monospace,monospace}
.images{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.images figure{display:flex;flex-direction:column;margin:0;background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:6px;flex:0 1 352px;min-width:240px}
.images img{display:block;width:100%;max-width:352px;height:auto}
figcaption{font-size:.8em;color:#3f4954;margin-top:4px}
.nodiff{flex:1;display:flex;align-items:center;justify-content:center;text-align:center;min-height:200px;padding:12px;
 background:#fafbfc;color:#5b6673;font-size:.9em}
.warning{background:#fff4e0;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92em}
th,td{border-bottom:1px solid #e3e7ec;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{background:#e3e7ec;border-radius:3px;height:12px;width:160px;overflow:hidden}
.bar span{display:block;height:100%;background:#3b6ea8}
.hist{max-width:100%;height:auto}
"""


def write_report(
    results_dir: Path, out: Path, assignment: Assignment, references: dict[str, np.ndarray] | None = None
) -> Path:
    """Write a page per result in ``results_dir`` and the class page; returns
    the class page (``out/index.html``).  ``references`` default to the
    assignment's (built and cached on first use)."""
    from grader.grading.references import load_references, reference_key

    results, unreadable = load_results(results_dir)
    if references is None:
        references = load_references(assignment)
    try:
        key = reference_key(assignment)
    except GraderError:  # no solution file, but references were given: nothing to compare keys with
        key = None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"{out}: cannot create the report folder: {exc.strerror or exc}") from None
    max_bytes = int(assignment.spec.limits.max_answer_mb * 2**20)
    images: dict = {}  # expected-value images, the same for every student
    pages = {}
    for stem, result in results.items():
        npz = results_dir / ANSWERS_DIR / f"{stem}.npz"
        answers, notes = load_answer_arrays(npz, max_bytes, assignment.spec.answers)
        if not npz.is_file() and result.status == "graded":
            notes.append(NO_ANSWERS)
        if None not in (key, result.assignment.reference_key) and result.assignment.reference_key != key:
            notes.append(STALE)
        pages[stem] = page_name(stem)
        text = submission_page(result, answers, references, assignment, notes, images)
        _write(out / pages[stem], text)
    index = out / INDEX_FILE
    _write(index, class_page(results, pages, unreadable, assignment))
    return index


def write_submission_report(
    result: Result,
    answers: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    out_html: Path,
    *,
    assignment: Assignment | None = None,
    images: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """One student's page.  ``answers``: the captured arrays by answer name
    (any may be missing).  Without ``assignment``, answers checked by a
    ``compute`` check get no expected image (their computation is in the spec).
    ``images``: a cache of the expected-value images, to share between pages
    drawn from the same references.  ``notes``: said at the top of the page."""
    out_html.parent.mkdir(parents=True, exist_ok=True)
    page = submission_page(result, answers, references, assignment, notes or [], {} if images is None else images)
    _write(out_html, page)
    return out_html


# --- reading a results folder ---------------------------------------------------


def load_results(results_dir: Path) -> tuple[dict[str, Result], list[str]]:
    """The results of a batch by file stem, in name order, and the names of
    result files that could not be read (as the LMS exports read them: size-capped)."""
    from grader.grading.results_dir import read_result, result_files

    results, unreadable = {}, []
    for path in result_files(results_dir):
        result = read_result(path)
        if isinstance(result, str):
            unreadable.append(path.name)
        else:
            results[path.stem] = result
    return results, unreadable


def load_answer_arrays(
    path: Path, max_bytes: int, names: Collection[str] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The real-valued arrays of an answers file (``np.savez``), only those in
    ``names`` if given, each at most ``max_bytes`` once decompressed, never
    unpickled; and what was skipped, in words.  A missing file is no arrays
    and no problem."""
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    if not path.is_file():
        return arrays, skipped
    try:
        with path.open("rb") as f:
            if f.read(4) != ZIP_MAGIC:  # np.load would read anything else whole
                return arrays, [f"Not drawn: {path.name} is not an .npz file of answers."]
        with np.load(path, allow_pickle=False) as npz:
            wanted = [n for n in npz.files if names is None or n in names][:MAX_NPZ_MEMBERS]
            for name in wanted:
                value = _read_member(npz, name, max_bytes)
                if isinstance(value, str):
                    skipped.append(value)
                else:
                    arrays[name] = value
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return {}, [f"Not drawn: {path.name} could not be read ({exc})."]
    return arrays, [f"Not drawn: {s}." for s in skipped]


def _read_member(npz: np.lib.npyio.NpzFile, name: str, max_bytes: int) -> np.ndarray | str:
    """One array of an open .npz, or why it is not used."""
    archive = npz.zip
    assert archive is not None  # np.load keeps it open while the NpzFile is
    try:
        info = archive.getinfo(f"{name}.npy" if f"{name}.npy" in archive.namelist() else name)
        if info.file_size > max_bytes + 4096:  # the zip reader never inflates past this size
            return f"{name} is larger than {max_bytes / 2**20:g} MiB"
        value = npz[name]
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        return f"{name} could not be read ({exc})"
    if not is_real_numeric(value):
        return f"{name} is not a real-valued numeric array (dtype {value.dtype})"
    return value


def page_name(stem: str) -> str:
    """The page of a result file's stem; never the class page's name."""
    name = f"{stem}.html"
    return f"{stem}.ipynb.html" if name.lower() == INDEX_FILE else name


# --- what each answer is compared with ------------------------------------------


@dataclass(frozen=True)
class Drawing:
    """A student's array and what it should have been, for the images."""

    answer: str
    student: np.ndarray
    expected: np.ndarray | None
    expected_label: str = ""  # where the expected values come from, for the caption
    problem: str = ""  # why there is no expected array
    from_references: bool = False


class _NotSaved(LookupError):
    pass


def comparisons(
    tests: list[CheckResult],
    answers: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    assignment: Assignment | None,
) -> dict[str, Drawing]:
    """By answer name: every answer with a ``reference`` or ``compute`` check
    whose array is in ``answers``, with what that check compared it against."""
    checks = {c.name: c for c in assignment.spec.checks} if assignment else {}
    found: dict[str, Drawing] = {}
    for test in tests:
        student = answers.get(test.answer)
        if test.kind not in VALUE_KINDS or test.answer in found or student is None or not is_real_numeric(student):
            continue
        if test.kind == "reference":
            if test.answer in references:
                found[test.answer] = Drawing(
                    test.answer, student, references[test.answer], "the reference solution", from_references=True
                )
            else:
                found[test.answer] = Drawing(
                    test.answer, student, None, problem="There is no reference answer to compare with."
                )
            continue
        check = checks.get(test.name)
        if check is None or check.compute is None or assignment is None:  # (no assignment: no checks either)
            found[test.answer] = Drawing(
                test.answer,
                student,
                None,
                problem="The expected values are computed from "
                "your other answers; the assignment is needed to compute them.",
            )
            continue
        inputs = [
            s
            for s in (getattr(check.compute, k, None) for k in ("input", "kernel", "bias"))
            if isinstance(s, str) and not s.startswith(FILE_PREFIX)
        ]
        try:
            expected = evaluate(check.compute, _resolver(answers, assignment.folder))
        except (_NotSaved, ComputeError, OSError, ValueError) as exc:
            found[test.answer] = Drawing(
                test.answer,
                student,
                None,
                problem=f"The expected values could not be computed from your answers: {exc}.",
            )
            continue
        found[test.answer] = Drawing(test.answer, student, expected, "computed from your " + _and(inputs))
    return found


def _and(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _resolver(answers: dict[str, np.ndarray], folder: Path) -> Resolve:
    def resolve(source: str) -> np.ndarray:
        if source.startswith(FILE_PREFIX):
            return np.load(folder / source[len(FILE_PREFIX) :], allow_pickle=False)
        if source not in answers:
            raise _NotSaved(f"{source} was not captured")
        return answers[source]

    return resolve


# --- the student's page ---------------------------------------------------------


def submission_page(
    result: Result,
    answers: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    assignment: Assignment | None,
    notes: list[str],
    images: dict,
) -> str:
    """The HTML of one student's page.  ``notes``: remarks shown under the
    score; ``images``: a cache of expected-value images shared between pages."""
    body = [
        f'<p class="muted">{_e(result.assignment.title)} · {_e(result.assignment.name)} {_e(result.assignment.spec_version)}</p>',
        f"<h1>{_e(result.submission.file)}</h1>",
        f'<p><span class="score {_score_class(result)}">{result.score:g} / {result.max_score:g} points</span> '
        f'<span class="muted">{_e(result.status)} · graded {_e(result.graded_at)} · {result.timings.total_s:.1f} s</span></p>',
        f"<p>{_e(result.output)}</p>",
    ]
    if result.errors:
        body.append(
            '<div class="card"><h3>Problems while running the notebook</h3><ul>'
            + "".join(f"<li>{_e(e)}</li>" for e in result.errors)
            + "</ul></div>"
        )
    body += [f'<p class="warning">{_e(n)}</p>' for n in notes if n == STALE]
    body += [f'<p class="muted">{_e(n)}</p>' for n in notes if n != STALE]
    body += answers_html(result.tests, answers, references, assignment, images)
    return _page(f"{result.submission.file}: {result.score:g}/{result.max_score:g}", "\n".join(body))


def answers_html(
    tests: list[CheckResult],
    answers: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    assignment: Assignment | None,
    images: dict,
) -> list[str]:
    """Per answer: its checks' verdicts and feedback, then the pictures of the
    student's array, the expected one and their difference."""
    drawn = comparisons(tests, answers, references, assignment)
    descriptions = {n: a.description for n, a in assignment.spec.answers.items()} if assignment else {}
    groups: dict[str, list[CheckResult]] = {}
    for test in tests:
        groups.setdefault(test.answer, []).append(test)
    body = []
    for answer, group in groups.items():
        body.append(f"<h2>{_e(answer)}</h2>")
        if descriptions.get(answer):
            body.append(f'<p class="muted">{_e(descriptions[answer])}</p>')
        body += [_check_html(t) for t in group]
        if answer in drawn:
            metrics = next((t for t in group if t.kind in VALUE_KINDS), None)
            body.append(_images_html(drawn[answer], metrics, images))
    return body


def fragment(heading: str, body: list[str]) -> str:
    """HTML to show inside another page (a notebook's output): the report's
    styles scoped to one element, so the page around it keeps its own."""
    return f'<div class="{FRAGMENT}"><style>{SCOPED_CSS}</style>{heading}{"".join(body)}</div>'


def _scoped(css: str, scope: str) -> str:
    rules = []
    for rule in css.replace("\n", "").split("}"):
        if "{" not in rule:
            continue
        selectors, declarations = rule.split("{", 1)
        scoped = [
            scope if s.strip() in ("body", "main") else f"{scope} {s.strip()}"
            for s in selectors.split(",")
            if s.strip()
        ]
        rules.append(f"{','.join(scoped)}{{{declarations}}}")
    return "".join(rules)


def _check_html(test: CheckResult) -> str:
    passed = test.status == "passed"
    lines = []
    for part in feedback.parts(test):
        if part.kind == "verdict":
            lines.append(f"<p>{_e(part.text)}</p>")
        else:
            lines.append(f'<p class="{part.kind}"><strong>{_e(part.label)}:</strong> {_e(part.text)}</p>')
    details = [
        ("expected", test.expected),
        ("found", test.found),
        ("captured", test.captured),
        ("largest difference", None if test.max_abs_error is None else f"{test.max_abs_error:.4g}"),
        ("values outside tolerance", None if test.mismatch_fraction is None else f"{test.mismatch_fraction:.1%}"),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{_e(v)}</dd>" for k, v in details if v is not None)
    return (
        f'<section class="card check {"passed" if passed else "failed"}"><header>'
        f'<span class="verdict">{"✓ passed" if passed else "✗ failed"}</span><h3>{_e(test.name)}</h3>'
        f'<span class="points">{test.score:g} / {test.max_score:g} points</span></header>'
        f'<div class="feedback">{"".join(lines)}</div>{f"<dl>{dl}</dl>" if dl else ""}</section>'
    )


def _images_html(c: Drawing, metrics: CheckResult | None, images: dict) -> str:
    """The student's array, the expected one and their absolute difference."""
    if c.student.size == 0:
        return f'<p class="muted">{_e(c.answer)} is an empty array {_e(describe_shape(c.student.shape))}: nothing to draw.</p>'
    yours = figures.plane(c.student)
    if c.expected is None or c.expected.size == 0:
        low, high = figures.finite_range(yours.values)
        panel = figures.image_panel(yours.values, "yours", "value", low, high)
        return _figures(
            [(panel, _caption("Yours", c.answer, c.student, yours))], c.problem or "The expected array is empty."
        )
    expected = figures.plane(c.expected)
    low, high = figures.finite_range(expected.values)
    if c.from_references:  # the same for every student: drawn once per report
        key = (c.answer, expected.where)
        if key not in images:
            images[key] = figures.image_panel(expected.values, "expected", "value", low, high)
        expected_png = images[key]
    else:
        expected_png = figures.image_panel(expected.values, "expected", "value", low, high)
    panels = [
        (figures.image_panel(yours.values, "yours", "value", low, high), _caption("Yours", c.answer, c.student, yours)),
        (expected_png, _caption(f"Expected ({c.expected_label})", c.answer, c.expected, expected)),
    ]
    if c.student.shape != c.expected.shape:
        why = (
            f"The difference cannot be computed: your {c.answer} has shape {describe_shape(c.student.shape)}, "
            f"the expected one {describe_shape(c.expected.shape)}, so their elements do not correspond."
        )
        return _figures(panels, why, "Both images use the expected values' colour scale.")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(yours.values - expected.values)
    finite = diff[np.isfinite(diff)]
    top = float(finite.max()) if finite.size else 0.0
    title = "no difference" if top == 0 and finite.size == diff.size else "|yours − expected|"
    panel = figures.image_panel(
        diff, title, "|difference| (value units)", 0.0, top if top > 0 else 1.0, difference=True
    )
    caption = f"Largest difference in this slice: {top:.4g}"
    if finite.size < diff.size:
        caption += f"; {diff.size - finite.size} NaN/inf elements (in blue)"
    if metrics is not None and metrics.mismatch_fraction is not None:
        caption += f". Over the whole array, {metrics.mismatch_fraction:.1%} of the values are outside the tolerance"
    panels.append((panel, caption + ". Bright = large difference, black = equal."))
    return _figures(panels, None, "Yours and expected share one colour scale: equal colours mean equal values.")


def _caption(who: str, answer: str, array: np.ndarray, shown: figures.Plane) -> str:
    finite = shown.values[np.isfinite(shown.values)]
    span = f", values {finite.min():.4g} to {finite.max():.4g}" if finite.size else ", no finite values"
    return f"{who}: {answer}{shown.where} of shape {describe_shape(array.shape)}{span}."


def _figures(panels: list[tuple[str, str]], missing: str | None, note: str | None = None) -> str:
    items = [
        f'<figure><img src="{_e(uri)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'
        for uri, caption in panels
    ]
    if missing:
        items.append(f'<figure><div class="nodiff">{_e(missing)}</div></figure>')
    return f'<div class="images">{"".join(items)}</div>' + (f'<p class="muted">{_e(note)}</p>' if note else "")


# --- the class page -------------------------------------------------------------


@dataclass
class Mistake:
    text: str
    students: list[str] = field(default_factory=list)  # result stems
    checks: list[str] = field(default_factory=list)


def common_mistakes(results: dict[str, Result], assignment: Assignment | None = None) -> list[Mistake]:
    """Failed checks grouped by their diagnosis, most frequent first; each
    student counts once per mistake.  A failed check without a diagnosis takes
    that of another failed check of the same answer (a wrong shape also fails
    the values), else its own name.  A diagnosis that adds numbers to a spec
    message (a fitted kernel) is grouped under that message."""
    known = [d.message for c in assignment.spec.checks for d in c.diagnoses] if assignment else []
    found: dict[str, Mistake] = {}
    for stem, result in results.items():
        if result.status != "graded":
            key = text = "The notebook could not be graded (not a readable notebook, or a grader error)."
            _count(found, key, text, stem, "all checks")
            continue
        failed = [t for t in result.tests if t.status == "failed"]
        by_answer: dict[str, str] = {}
        for test in failed:
            if test.diagnosis:
                by_answer.setdefault(test.answer, test.diagnosis)
        for test in failed:
            diagnosis = test.diagnosis or by_answer.get(test.answer)
            if diagnosis:
                text = next((m for m in known if diagnosis.startswith(m)), diagnosis)
                key = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)
            else:
                key, text = f"check:{test.name}", f"Failed “{test.name}” (no known cause recognised)"
            _count(found, key, text, stem, test.name)
    return sorted(found.values(), key=lambda m: (-len(m.students), m.text))


def _count(found: dict[str, Mistake], key: str, text: str, stem: str, check: str) -> None:
    mistake = found.setdefault(key, Mistake(text))
    if stem not in mistake.students:
        mistake.students.append(stem)
    if check not in mistake.checks:
        mistake.checks.append(check)


def class_page(results: dict[str, Result], pages: dict[str, str], unreadable: list[str], assignment: Assignment) -> str:
    spec = assignment.spec
    scores = [r.score for r in results.values()]
    stats = class_stats(results.values(), spec.max_score, [c.name for c in spec.checks])
    link = {
        stem: f'<a href="{_e(quote(pages[stem], safe=""))}">{_e(r.submission.file)}</a>' for stem, r in results.items()
    }
    body = [
        f"<h1>{_e(spec.title)}</h1>",
        f'<p class="muted">{_e(assignment.name)} {_e(spec.version)} · {len(results)} result(s)</p>',
    ]
    if scores:
        body += [
            f'<p class="card">Mean {stats.mean:.2f}, median {stats.median:g} of '
            f"{spec.max_score:g} points · {stats.full_marks} full marks · {stats.partial} partial · "
            f"{stats.zero} zero · {stats.not_gradable} not gradable</p>",
            f'<img class="hist" src="{figures.score_histogram(scores, spec.max_score)}" '
            f'alt="Histogram of the scores of {len(scores)} submissions">',
        ]
    body += ["<h2>Pass rate per check</h2>", _pass_rates(stats, assignment)]
    mistakes = common_mistakes(results, assignment)[:MISTAKES]
    body.append("<h2>Most common mistakes</h2>")
    rows = []
    for m in mistakes:
        named = ", ".join(link[s] for s in m.students[:NAMED]) + (
            f" and {len(m.students) - NAMED} more" if len(m.students) > NAMED else ""
        )
        rows.append(
            f'<tr><td>{_e(m.text)}</td><td class="num">{len(m.students)}</td>'
            f"<td>{'<br>'.join(_e(c) for c in m.checks)}</td><td>{named}</td></tr>"
        )
    body.append(_table(["mistake", "students", "checks failed", "who"], rows) if rows else "<p>No failed checks.</p>")
    slowest = sorted(results, key=lambda s: -results[s].timings.total_s)[:SLOWEST]
    body += [
        "<h2>Slowest notebooks</h2>",
        _table(
            ["submission", "total s", "executing s", "status"],
            [
                f'<tr><td>{link[s]}</td><td class="num">{results[s].timings.total_s:.2f}</td>'
                f'<td class="num">{results[s].timings.execute_s:.2f}</td><td>{_e(results[s].status)}</td></tr>'
                for s in slowest
            ],
        ),
    ]
    body += [
        "<h2>All submissions</h2>",
        _table(
            ["submission", "score", "status", "failed checks", "first problem"],
            [
                f'<tr><td>{link[s]}</td><td class="num">{r.score:g} / {r.max_score:g}</td><td>{_e(r.status)}</td>'
                f'<td class="num">{sum(t.status == "failed" for t in r.tests)}</td><td>{_e(r.errors[0] if r.errors else "")}</td></tr>'
                for s, r in results.items()
            ],
        ),
    ]
    if unreadable:
        body += [
            "<h2>Unreadable result files</h2>",
            "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in unreadable) + "</ul>",
        ]
    return _page(f"{spec.title}: class report", "\n".join(body))


def _pass_rates(stats: ClassStats, assignment: Assignment) -> str:
    points = {c.name: c.points for c in assignment.spec.checks}
    rows = []
    for name, check in stats.checks.items():
        rate = check.rate or 0.0
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{points.get(name, 0):g}</td>'
            f'<td class="num">{check.passed} / {check.of}</td><td class="num">{rate:.0%}</td>'
            f'<td><div class="bar" title="{rate:.0%}"><span style="width:{rate * 100:.1f}%"></span></div></td></tr>'
        )
    return _table(["check", "points", "passed", "rate", ""], rows)


# --- HTML helpers ----------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _score_class(result: Result) -> str:
    return band(result.score, result.max_score)


FRAGMENT = "grader-feedback"
SCOPED_CSS = _scoped(CSS, f".{FRAGMENT}")


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
