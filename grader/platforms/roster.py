"""The class roster: which student handed in which notebook.

A roster is a CSV file with a header row.  Two columns are required:

``submission``
    the notebook's file name as graded (``alice.ipynb``) or its stem (``alice``);
    the batch writes its result as ``RESULTS_DIR/<stem>.json``.
``user_id``
    the student's id in the learning platform: the LTI ``userId`` (the ``sub``
    of the launch) for LTI, the numeric Canvas user ID for a Canvas CSV.

Optional columns: ``name``, ``email``, ``sis_id`` (Canvas *SIS User ID*,
Moodle *ID number*), ``login_id`` (Canvas *SIS Login ID*), ``username``
(Moodle), ``section`` (Canvas *Section*), ``submitted_at`` (when the student
handed the notebook in, ISO 8601; ``grader import`` writes it from the LMS's
download) and ``late`` (``true``/``false``, as the LMS marked it).  Column names are matched without
regard to case or surrounding spaces.  An unknown column, an empty required
cell, or a submission or user id listed twice is an error naming the file, the
line and the column, raised when the roster is loaded rather than discovered
in the gradebook.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import ErrorDetails

from grader.errors import RosterError
from grader.grading.results_dir import submission_stem, write_atomic

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # what csv.reader() returns (named _csv.reader at run time)

MAX_ROSTER_BYTES = 16 * 2**20


class Student(BaseModel):
    """One roster line.  Empty optional cells are ``None``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    submission: str
    user_id: str
    name: str | None = None
    email: str | None = None
    sis_id: str | None = None
    login_id: str | None = None
    username: str | None = None
    section: str | None = None
    submitted_at: datetime | None = None
    late: bool | None = None

    @field_validator("submission", "user_id")
    @classmethod
    def _required(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("submission")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if "/" in value or "\\" in value:
            raise ValueError(f"{value!r} is a path; give the notebook's file name (alice.ipynb) or its stem (alice)")
        if submission_key(value) in ("", ".", ".."):
            raise ValueError(f"{value!r} is not a notebook file name")
        return value

    @field_validator("submitted_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone; write it as 2026-11-28T19:30:00+00:00")
        return value

    @field_validator(
        "name", "email", "sis_id", "login_id", "username", "section", "submitted_at", "late", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    @property
    def key(self) -> str:
        """The submission's stem: what a result file is matched on."""
        return submission_key(self.submission)

    @property
    def label(self) -> str:
        """How messages name this student."""
        return f"{self.name} ({self.user_id})" if self.name else self.user_id


COLUMNS = tuple(Student.model_fields)
REQUIRED = ("submission", "user_id")


@dataclass(frozen=True)
class Roster:
    path: Path
    students: list[Student]

    def by_key(self) -> dict[str, Student]:
        return {s.key: s for s in self.students}


def submission_key(name: str) -> str:
    """``alice.ipynb`` and ``alice`` both name the submission ``alice``."""
    return submission_stem(name)


def load_roster(path: Path | str) -> Roster:
    """Read and validate a roster CSV (UTF-8, with or without a BOM).

    Raises :class:`RosterError` for an unreadable file, an unknown or missing
    column, an invalid line, a duplicate submission or user id, or a roster
    without students."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_ROSTER_BYTES:
            raise RosterError(f"{path}: larger than {MAX_ROSTER_BYTES // 2**20} MB; not a roster")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RosterError(f"{path}: not UTF-8 text (byte {exc.start}); save the roster as CSV UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = _header(path, next(reader, None))
        students = _students(path, reader, columns)
    except csv.Error as exc:
        raise RosterError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None
    if not students:
        raise RosterError(f"{path}: no students (only a header line)")
    return Roster(path=path, students=students)


def write_roster(path: Path | str, students: list[Student]) -> Path:
    """Write a roster CSV atomically (UTF-8, the columns any student fills,
    in :data:`COLUMNS` order), readable back with :func:`load_roster`.

    Raises :class:`RosterError` when it cannot be written."""
    path = Path(path)
    used = [c for c in COLUMNS if c in REQUIRED or any(getattr(s, c) is not None for s in students)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(used)
    for student in students:
        writer.writerow([_cell(getattr(student, c)) for c in used])
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise RosterError(f"{path}: cannot write the roster: {exc.strerror or exc}") from None
    return path


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _header(path: Path, row: list[str] | None) -> list[str]:
    if not row or not any(cell.strip() for cell in row):
        raise RosterError(f"{path}: empty file; the first line must name the columns ({', '.join(REQUIRED)}, ...)")
    columns = [cell.strip().lower() for cell in row]
    for position, column in enumerate(columns, 1):
        if not column:
            raise RosterError(f"{path}: line 1: column {position} has no name")
        if column not in COLUMNS:
            raise RosterError(
                f"{path}: line 1: unknown column {row[position - 1].strip()!r} (known: {', '.join(COLUMNS)})"
            )
        if columns.index(column) != position - 1:
            raise RosterError(f"{path}: line 1: column {column!r} appears twice")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise RosterError(f"{path}: line 1: missing column {', '.join(map(repr, missing))}")
    return columns


def _students(path: Path, reader: CsvReader, columns: list[str]) -> list[Student]:
    students: list[Student] = []
    first_line: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines (and trailing ones spreadsheets write) are not students
        if len(row) > len(columns):
            raise RosterError(f"{path}: line {line}: {len(row)} fields but the header names {len(columns)}")
        try:
            student = Student.model_validate(dict(zip(columns, row)) | {c: "" for c in columns[len(row) :]})
        except ValidationError as exc:
            error = exc.errors()[0]
            raise RosterError(f"{path}: line {line}: column {error['loc'][0]!r}: {_message(error)}") from None
        for column, value in (("submission", student.key), ("user_id", student.user_id)):
            first = first_line.setdefault((column, value), line)
            if first != line:
                raise RosterError(f"{path}: line {line}: duplicate {column} {value!r} (first on line {first})")
        students.append(student)
    return students


def _message(error: ErrorDetails) -> str:
    return error["msg"].removeprefix("Value error, ")
