"""A batch's results matched to a roster: what every LMS export starts from.

:func:`match_results` reads each result of ``RESULTS_DIR`` (as written by
:func:`grader.grade_batch`) and pairs it with the roster line whose
``submission`` names the file the result records (``alice`` or ``alice.ipynb``).  Nothing is dropped silently: a roster student
without a result file, a result file that cannot be read or validated, and a
result that no roster line claims are each listed in the :class:`Matching`,
so the exports can show them.  A bad result file never stops an export.

The exports built on it: :mod:`grader.platforms.lti.scores` (LTI 1.3 Assignment and Grade
Services scores) and :mod:`grader.platforms.gradebook` (Canvas and Moodle CSV).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import LmsError, ResultsError
from grader.grading.results_dir import GRADEBOOK_FILE, SUMMARY_FILE, read_result, result_files, write_atomic
from grader.model.result import Result
from grader.platforms.roster import Roster, Student, load_roster, submission_key

FEEDBACK_FAILED_CHECKS = 3  # how many failed checks a short feedback names
FEEDBACK_MAX_CHARS = 1000


@dataclass(frozen=True)
class Graded:
    """A roster student and the result of their submission."""

    student: Student
    result: Result
    file: Path


@dataclass(frozen=True)
class Unreadable:
    """A result file that is not a valid result; ``student`` if the roster names it."""

    file: Path
    reason: str
    student: Student | None = None


@dataclass
class Matching:
    graded: list[Graded] = field(default_factory=list)  # in roster order
    missing: list[Student] = field(default_factory=list)  # on the roster, no result file
    unreadable: list[Unreadable] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)  # valid results no roster line claims

    @property
    def assignment_title(self) -> str | None:
        titles = Counter(g.result.assignment.title for g in self.graded)
        return titles.most_common(1)[0][0] if titles else None

    @property
    def failed(self) -> list[Graded]:
        """Students whose grading failed (ours, not theirs): no grade is sent for them."""
        return [g for g in self.graded if g.result.status == "error"]

    @property
    def without_result(self) -> list[Student]:
        """Roster students the LMS gets no grade for: no result file, or an unreadable one."""
        return self.missing + [u.student for u in self.unreadable if u.student]

    def notes(self) -> list[str]:
        """One line per thing an instructor should know about, for the terminal."""
        lines = [
            f"no result for {s.label}: submission {s.submission!r} not in the results folder" for s in self.missing
        ]
        lines += [
            f"unreadable result {u.file.name}" + (f" ({u.student.label})" if u.student else "") + f": {u.reason}"
            for u in self.unreadable
        ]
        lines += [f"result {p.name} matches no roster line; not exported" for p in self.unmatched]
        lines += [
            f"{g.student.label}: the grader failed on this submission, so no grade is sent and the LMS keeps "
            f"what it has; fix the cause ({g.result.errors[0] if g.result.errors else 'see the result'}), "
            "regrade with `grader batch --force`, then export or publish again"
            for g in self.failed
        ]
        return lines


def match_results(results_dir: Path | str, roster: Roster | Path | str) -> Matching:
    """Pair every result file of ``results_dir`` with its roster line
    (``roster``: loaded, or the path of its CSV).

    Raises :class:`ResultsError` when ``results_dir`` is not a folder, and
    :class:`LmsError` when the results are of more than one assignment (one
    gradebook column cannot hold them)."""
    results_dir = Path(results_dir)
    roster = roster if isinstance(roster, Roster) else load_roster(roster)
    students = roster.by_key()
    matching = Matching()
    found: dict[str, Graded] = {}
    for path in result_files(results_dir):
        result = read_result(path)
        if isinstance(result, str):  # the file's name is all there is to say whose it was
            matching.unreadable.append(Unreadable(path, result, students.get(submission_key(path.name[:-5]))))
            continue
        # the submission's own name, which the result records: a renamed result (alice.ipynb.json) still matches
        key = submission_key(Path(result.submission.file).name)
        student = students.get(key)
        if student is None:
            matching.unmatched.append(path)
        else:
            found[key] = Graded(student, result, path)
    unreadable = {u.student.key for u in matching.unreadable if u.student}
    matching.graded = [found[s.key] for s in roster.students if s.key in found]
    matching.missing = [s for s in roster.students if s.key not in found and s.key not in unreadable]
    assignments = sorted({g.result.assignment.name for g in matching.graded})
    if len(assignments) > 1:
        raise LmsError(
            f"{results_dir}: results of several assignments ({', '.join(assignments)}); "
            "export one assignment's results folder at a time"
        )
    return matching


def points(value: float) -> str:
    """A score as a gradebook wants it: ``7.5``, ``10``, never ``1e+01``."""
    text = f"{round(value, 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def feedback(result: Result) -> str:
    """Short feedback for the LMS: the score, then why points were lost."""
    head = f"{points(result.score)} / {points(result.max_score)} points."
    reason = result.errors[0] if result.errors else result.output
    if result.status == "error":
        return _cap(f"The grader failed on this submission, so it is not graded yet: {reason}")
    if result.status == "invalid_submission":
        return _cap(f"{head} The submission could not be graded: {reason}")
    failed = [t.name for t in result.tests if t.status == "failed"]
    if not failed:
        return f"{head} All {len(result.tests)} checks passed."
    shown = "; ".join(failed[:FEEDBACK_FAILED_CHECKS])
    more = f" (and {len(failed) - FEEDBACK_FAILED_CHECKS} more)" if len(failed) > FEEDBACK_FAILED_CHECKS else ""
    return _cap(f"{head} {len(failed)} of {len(result.tests)} checks failed: {shown}{more}.")


def _cap(text: str) -> str:
    return text if len(text) <= FEEDBACK_MAX_CHARS else text[: FEEDBACK_MAX_CHARS - 1] + "…"


def write_export(out: Path | str, text: str) -> Path:
    """Write an export file atomically; :class:`ResultsError` if it cannot be written."""
    out = Path(out)
    if out.name in (SUMMARY_FILE, GRADEBOOK_FILE) and out.parent.is_dir() and any(result_files(out.parent)):
        raise ResultsError(f"{out}: would overwrite the batch's own {out.name}; choose another file name")
    try:
        write_atomic(out, text)
    except OSError as exc:
        raise ResultsError(f"{out}: cannot write the export: {exc.strerror or exc}") from None
    return out
