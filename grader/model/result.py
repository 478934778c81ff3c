"""The result of grading one submission: pydantic models, JSON Schema from them.

The top level is a superset of Gradescope's ``results.json`` (``score``,
``max_score``, ``output``, ``tests[]`` with ``name``, ``score``, ``max_score``,
``status``, ``output``); the other fields are ours.  NaN and infinity are
rejected, so the JSON is always standard JSON.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CheckResult(_Model):
    """One check (a Gradescope test case)."""

    name: str
    score: float = Field(description="points earned: max_score if passed, else 0")
    max_score: float
    status: Literal["passed", "failed"]
    output: str = Field(
        description="feedback for the student: what was expected, what was found, the likely cause "
        "(rendered from message, diagnosis, notes and hint)"
    )
    answer: str = Field(description="the answer (variable) checked")
    kind: Literal["shape", "finite", "reference", "compute"]
    expected: str | None = None
    found: str | None = None
    diagnosis: str | None = Field(None, description="the likely cause when the mistake is a known one")
    captured: str | None = Field(None, description="where the answer was captured, e.g. 'after cell 4'")
    max_abs_error: float | None = None
    mismatch_fraction: float | None = Field(None, description="fraction of elements outside the tolerance")
    message: str | None = Field(
        None, description="the verdict in one sentence (output's first line, without PASSED/FAILED)"
    )
    notes: list[str] = Field([], description="failed check: what the student should know about the answer's cell")
    hint: str | None = Field(None, description="failed check: the spec's hint")


class CellReport(_Model):
    """A student cell that did not run cleanly."""

    cell: int = Field(description="1-based position in the submitted notebook")
    status: Literal["error", "timeout", "died", "not_run"]
    ename: str | None = None
    evalue: str | None = None


class SubmissionInfo(_Model):
    file: str
    sha256: str | None = Field(None, description="of the submitted file's bytes")
    size: int | None = None


class AssignmentInfo(_Model):
    name: str
    title: str
    spec_version: str
    spec_sha256: str
    reference_key: str | None = Field(
        None, description="identifies the reference answers (solution, spec, data, library versions) graded against"
    )


class Timings(_Model):
    total_s: float
    execute_s: float = 0.0
    check_s: float = 0.0


class Versions(_Model):
    grader: str
    python: str
    numpy: str
    tensorflow: str | None = None
    keras: str | None = None


class Result(_Model):
    score: float
    max_score: float
    output: str = Field(description="summary for the student")
    tests: list[CheckResult]
    status: Literal["graded", "invalid_submission", "error"] = Field(
        description="graded: the notebook ran (even partly) and was checked; invalid_submission: the file "
        "could not be read as a notebook; error: the grader failed on this submission"
    )
    schema_version: str = SCHEMA_VERSION
    submission: SubmissionInfo
    assignment: AssignmentInfo
    executor: str
    isolation: str = Field("none", description="isolation in force while the student's code ran")
    errors: list[str] = Field([], description="problems with this submission, in words")
    notices: list[str] = Field(
        [],
        description="for the instructor, about this result rather than the submission "
        "(answers not kept for the report, a result file renamed to avoid a collision)",
    )
    cells: list[CellReport] = []
    timings: Timings
    versions: Versions
    graded_at: str = Field(description="ISO 8601 time, UTC")
