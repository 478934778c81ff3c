"""What a reader of a submission is shown: the result, and its feedback page.

The service grades every check (the result is the grade of record, as
``grader batch`` writes it); a reader without an instructor token sees only the
checks the spec shows students (``visibility = "visible"``), with the score
they add up to, as Gradescope shows hidden tests to instructors only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import ServiceError
from grader.grading.results_dir import read_result
from grader.model.assignment import Assignment
from grader.model.result import Result
from grader.reports.html import load_answer_arrays, write_submission_report
from grader.service.store import Store, Submission, graded_before

if TYPE_CHECKING:
    from grader.service.pool import Served


def hidden_checks(assignment: Assignment) -> set[str]:
    return {c.name for c in assignment.spec.checks if c.visibility != "visible"}


def shown_result(result: Result, assignment: Assignment, instructor: bool) -> Result:
    """``result`` as this reader may see it."""
    hidden = hidden_checks(assignment)
    if instructor or not hidden:
        return result
    tests = [t for t in result.tests if t.name not in hidden]
    left_out = len(result.tests) - len(tests)
    return result.model_copy(
        update={
            "tests": tests,
            "score": sum(t.score for t in tests),
            "max_score": sum(t.max_score for t in tests),
            "output": f"{result.output}\n({left_out} more checks are graded but not shown here.)",
            "notices": [],  # for the instructor
        }
    )


def feedback_page(
    result: Result,
    assignment: Assignment,
    references: dict,
    answers_file: Path,
    out_html: Path,
    instructor: bool,
    images: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write the feedback page (pictures from the kept answers) that this
    reader may see; the same page ``grader check`` and ``grader report`` write.
    ``images``: expected-value images drawn for earlier pages of these references."""
    shown = shown_result(result, assignment, instructor)
    hidden = hidden_checks(assignment)
    if not instructor and hidden == {c.name for c in assignment.spec.checks}:  # nothing to draw
        return write_submission_report(shown, {}, references, out_html, notes=notes)
    seen = assignment.for_students() if hidden and not instructor else assignment
    answers, _ = load_answer_arrays(answers_file, int(assignment.spec.limits.max_answer_mb * 2**20), seen.spec.answers)
    return write_submission_report(shown, answers, references, out_html, assignment=seen, images=images, notes=notes)


def pictures_removed(days: float) -> str:
    return (
        f"The pictures of this submission were removed: this service keeps them for {days:g} days after grading. "
        "The score and the feedback are kept."
    )


class FeedbackPages:
    """Feedback pages drawn once per submission and reader kind, cached in the
    store; a request for a page being drawn waits for it instead of drawing it
    again.  Drawing is the slow part, so the pool draws a student's page as
    soon as the result is stored when it has nothing else to do
    (:meth:`prepare`), and the images of the expected values, the same on
    every page, are drawn once."""

    def __init__(self, store: Store, served: dict[str, Served], keep_answers_days: float | None = None) -> None:
        self.store, self.served, self.keep_answers_days = store, served, keep_answers_days
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()
        self._images: dict[str, dict] = {}  # references key -> expected-value images, the same on every page

    def get(self, sub: Submission, instructor: bool) -> Path:
        """The page (drawn now if need be); the submission must be done and its assignment served."""
        path = self.store.feedback_file(sub.id, instructor)
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            if not path.is_file():
                result = read_result(self.store.result_file(sub.id))
                if not isinstance(result, Result):
                    raise ServiceError(f"the result of {sub.id} cannot be read: {result}")
                served = self.served[sub.assignment]
                answers = self.store.answers_file(sub.id)
                feedback_page(
                    result,
                    served.assignment,
                    served.references,
                    answers,
                    path,
                    instructor,
                    self._images.setdefault(served.key, {}),
                    self._removed(sub, answers),
                )
        with self._guard:
            self._locks.pop(path, None)
        return path

    def _removed(self, sub: Submission, answers: Path) -> list[str]:
        """Why the page has no pictures, if they were removed after ``keep_answers_days``."""
        days = self.keep_answers_days
        if days is None or answers.is_file() or sub.finished_at is None or sub.finished_at >= graded_before(days):
            return []
        return [pictures_removed(days)]

    def prepare(self, sub: Submission) -> None:
        """Draw the student's page ahead of its request (errors wait for the request)."""
        try:
            self.get(sub, instructor=False)
        except Exception:
            pass
