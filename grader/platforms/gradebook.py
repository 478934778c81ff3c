"""Gradebook CSV files that Canvas and Moodle import, one row per roster student.

**Canvas** (Grades > Import; the rules below are Canvas's ``GradebookImporter``,
``lib/gradebook_importer.rb``): the file has the layout of Canvas's own
gradebook export.  The header must start with ``Student`` and ``ID``, and its
student columns end at ``Section``: ``Student, ID, SIS User ID, SIS Login ID,
Section``.  Canvas finds each row's student by ``ID`` (the Canvas user id),
else by ``SIS User ID``, else by ``SIS Login ID``, else by the name, equal to
the student's name or sortable name (a namesake would do); a row it cannot
place becomes a "student not in the course".  Each other column is an
assignment: ``<title> (<id>)`` is the assignment with that id; without an id
(or with one Canvas does not have) Canvas takes the assignment whose title
is the whole header text, else offers to create one of that title.  The
``Points Possible`` row gives the assignments their points possible.  A cell
``""`` or ``-`` is "no score", which clears a score Canvas holds.  Our
choices: ``ID`` is the roster's ``user_id`` only when it is a number (an LTI
user id is an opaque string that Canvas would misread), ``SIS User ID`` is
``sis_id``, ``SIS Login ID`` is ``login_id``, ``Section`` is ``section``; a
student with none of the three is listed in ``unidentified`` (Canvas would
match by name alone).

**Moodle** (Grades > Import > CSV file): any CSV with a header row; on import
the teacher maps one column to the user ("Identify user by": ``Email
address``, ``Username``, ``ID number`` or ``User ID``, Moodle's own user id,
which is also the LTI user id Moodle sends), the grade column to a grade item
and the feedback column to that item's feedback.  We write all of these
identifier columns, then ``<assignment title>`` (the grade) and
``<assignment title> (feedback)`` (:func:`grader.platforms.matching.feedback`).
Moodle applies a row whose mapping cell is blank to the *previous* row's
student, so an identifier column is written only when every row has it
(``User ID`` always does), and the column the teacher will map by
(``map_by``) must be filled for every student: otherwise the export refuses,
naming them.

In both, the grade is the result's score in points, or rescaled to
``points_possible`` when the LMS column is worth another number of points; an
invalid submission (not a notebook) scores 0, as in its result.  An empty
grade cell would import as "no grade" and clear a grade the LMS holds (a
manual one too), so no row has one: a student without a readable result is
left out (or, with ``missing_as_zero``, given 0 and a comment saying so), and
one whose grading failed (``error``: ours, not theirs) is always left out.
Both are listed in ``ungraded``; result files that match no roster line are
listed in the matching, never exported silently.  Text cells that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...) are
written with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import RosterError
from grader.platforms.matching import Graded, Matching, feedback, match_results, points, write_export
from grader.platforms.roster import Roster, Student, load_roster

CANVAS_STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_ROW = "Points Possible"
MOODLE_STUDENT_COLUMNS = ["Full name", "Email address", "Username", "ID number", "User ID"]
MOODLE_MAPPING_COLUMNS = ("Email address", "Username", "ID number", "User ID")  # "Identify user by"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MISSING_AS_ZERO_COMMENT = "0 points: no graded submission was found."


@dataclass
class GradebookExport:
    text: str
    matching: Matching
    ungraded: list[Student] = field(default_factory=list)  # roster students without a row
    unidentified: list[Student] = field(default_factory=list)  # rows the LMS cannot match to a user
    out: Path | None = None

    def notes(self) -> list[str]:
        lines = self.matching.notes()
        failed = {g.student.key for g in self.matching.failed}
        lines += [
            f"{s.label}: no result, so not in the file (the LMS keeps what it has; --missing-as-zero writes 0)"
            for s in self.ungraded
            if s.key not in failed
        ]
        lines += [
            f"{s.label}: no numeric user_id, sis_id or login_id; Canvas can only match on the name"
            for s in self.unidentified
        ]
        return lines


def canvas_csv(
    roster: Roster,
    matching: Matching,
    *,
    title: str,
    assignment_id: str | None = None,
    points_possible: float | None = None,
    missing_as_zero: bool = False,
) -> GradebookExport:
    """The Canvas gradebook import file, one row per roster student with a
    grade, in roster order."""
    column = f"{title} ({assignment_id})" if assignment_id else title
    worth = points_possible if points_possible is not None else _most_common_max_score(matching)
    rows = [
        [*CANVAS_STUDENT_COLUMNS, column],
        [CANVAS_POINTS_ROW, "", "", "", "", "" if worth is None else points(worth)],
    ]
    ungraded, unidentified = [], []
    for student, graded in _rows(roster, matching):
        grade = _grade(graded, points_possible, missing_as_zero)
        if grade is None:
            ungraded.append(student)
            continue
        canvas_id = student.user_id if student.user_id.isdigit() else ""
        if not (canvas_id or student.sis_id or student.login_id):
            unidentified.append(student)
        rows.append(
            [
                _text(student.name or ""),
                canvas_id,
                student.sis_id or "",
                student.login_id or "",
                _text(student.section or ""),
                grade,
            ]
        )
    return GradebookExport(_csv(rows), matching, ungraded, unidentified)


def moodle_csv(
    roster: Roster,
    matching: Matching,
    *,
    title: str,
    points_possible: float | None = None,
    missing_as_zero: bool = False,
    map_by: str = "User ID",
) -> GradebookExport:
    """The Moodle "Import grades from CSV" file, one row per roster student
    with a grade, in roster order.  Raises :class:`RosterError` when a
    student to export has no ``map_by`` value (Moodle would give their grade
    to the student of the row above)."""
    if map_by not in MOODLE_MAPPING_COLUMNS:
        raise RosterError(f"Moodle maps users by one of {', '.join(MOODLE_MAPPING_COLUMNS)}, not {map_by!r}")
    exported, ungraded = [], []
    for student, graded in _rows(roster, matching):
        grade = _grade(graded, points_possible, missing_as_zero)
        if grade is None:
            ungraded.append(student)
        else:
            comment = feedback(graded.result) if graded is not None else MISSING_AS_ZERO_COMMENT
            exported.append((student, grade, comment))
    values = {
        "Email address": lambda st: st.email,
        "Username": lambda st: st.username,
        "ID number": lambda st: st.sis_id,
        "User ID": lambda st: st.user_id,
    }
    lacking = [st for st, _, _ in exported if not values[map_by](st)]
    if lacking:
        names = ", ".join(st.label for st in lacking[:10]) + (" ..." if len(lacking) > 10 else "")
        raise RosterError(
            f"Moodle would map these rows by {map_by!r}, which {len(lacking)} student(s) lack: {names}. Moodle applies "
            "a row with a blank mapping cell to the previous row's student; add the column to the roster, or map "
            "by 'User ID'"
        )
    # a column some row lacks is not written at all: it cannot be chosen for mapping by mistake
    columns = [c for c in MOODLE_MAPPING_COLUMNS if all(values[c](st) for st, _, _ in exported)]
    rows = [["Full name", *columns, title, f"{title} (feedback)"]]
    for student, grade, comment in exported:
        rows.append([_text(student.name or ""), *(str(values[c](student)) for c in columns), grade, _text(comment)])
    return GradebookExport(_csv(rows), matching, ungraded)


def export_canvas(
    results_dir: Path | str,
    roster: Roster | Path | str,
    out: Path | str,
    *,
    assignment_id: str | None = None,
    title: str | None = None,
    points_possible: float | None = None,
    missing_as_zero: bool = False,
) -> GradebookExport:
    """Write the Canvas gradebook import CSV of a results folder to ``out``.

    ``title``: the assignment column's name (default: the assignment title in
    the results); ``assignment_id``: the Canvas assignment to fill (default:
    none, Canvas creates an assignment).  Raises, all exit code 3:
    :class:`~grader.platforms.roster.RosterError`, :class:`~grader.errors.ResultsError`
    (no results folder, ``out`` not writable), :class:`~grader.errors.LmsError`
    (results of several assignments).  Missing, unreadable and unmatched
    results are in the returned report."""
    roster = roster if isinstance(roster, Roster) else load_roster(roster)
    matching = match_results(results_dir, roster)
    export = canvas_csv(
        roster,
        matching,
        title=title or _title(matching, results_dir),
        assignment_id=assignment_id,
        points_possible=points_possible,
        missing_as_zero=missing_as_zero,
    )
    export.out = write_export(out, export.text)
    return export


def export_moodle(
    results_dir: Path | str,
    roster: Roster | Path | str,
    out: Path | str,
    *,
    title: str | None = None,
    points_possible: float | None = None,
    missing_as_zero: bool = False,
    map_by: str = "User ID",
) -> GradebookExport:
    """Write the Moodle grade import CSV of a results folder to ``out``
    (arguments and errors as for :func:`export_canvas`; ``map_by``: the
    column the teacher will choose under "Identify user by")."""
    roster = roster if isinstance(roster, Roster) else load_roster(roster)
    matching = match_results(results_dir, roster)
    export = moodle_csv(
        roster,
        matching,
        title=title or _title(matching, results_dir),
        points_possible=points_possible,
        missing_as_zero=missing_as_zero,
        map_by=map_by,
    )
    export.out = write_export(out, export.text)
    return export


def _rows(roster: Roster, matching: Matching) -> list[tuple[Student, Graded | None]]:
    """(student, their result or None) for every roster student, in roster order."""
    graded = {g.student.key: g for g in matching.graded}
    return [(s, graded.get(s.key)) for s in roster.students]


def _grade(graded: Graded | None, points_possible: float | None, missing_as_zero: bool = False) -> str | None:
    """The grade cell, or None for no row: never an empty cell, which would clear the LMS's grade."""
    if graded is None:
        return "0" if missing_as_zero else None
    if graded.result.status == "error":
        return None  # ours, not the student's: not even --missing-as-zero
    result = graded.result
    if points_possible is None:
        return points(result.score)
    return points(result.score / result.max_score * points_possible if result.max_score else 0.0)


def _most_common_max_score(matching: Matching) -> float | None:
    maxima = Counter(g.result.max_score for g in matching.graded)
    return maxima.most_common(1)[0][0] if maxima else None


def _title(matching: Matching, results_dir: Path | str) -> str:
    return matching.assignment_title or Path(results_dir).name


def _text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()
