"""The assignment spec: a TOML file validated by pydantic.

A new exercise is a folder of data (template, solution, data files, this spec);
no Python.  Unknown keys are rejected, and errors name the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grader.errors import SpecError
from grader.model.environment import Environment

SPEC_FILE = "assignment.toml"
FILE_PREFIX = "file:"

# Gradescope's vocabulary.  Students check only ``visible`` checks on their own machines; the others run when the
# submission is graded (on Gradescope, ``after_due_date``/``after_published`` are shown to them then).
Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Execution limits; the CLI can override the timeouts."""

    cell_timeout: float = Field(60.0, gt=0, description="seconds one cell may run")
    notebook_timeout: float = Field(300.0, gt=0, description="seconds the whole notebook may run")
    max_answer_mb: float = Field(64.0, gt=0, description="largest captured answer accepted, in MiB")
    max_notebook_mb: float = Field(50.0, gt=0, description="largest submission file accepted, in MiB")
    max_cells: int = Field(1000, gt=0, description="most cells a submission may have")


class Tolerance(_Strict):
    """Defaults for value comparisons: |actual - expected| <= atol + rtol * |expected|."""

    rtol: float = Field(1e-5, ge=0)
    atol: float = Field(1e-3, ge=0)


class Answer(_Strict):
    """One value captured from the student's process.

    It is captured right after the code cell tagged ``answer:<cell>`` runs (so a
    name reused later in the notebook does not change what is graded), and again
    at the end of the notebook as a fallback when that cell is missing or did not
    define it.
    """

    cell: str | None = Field(
        None, description="tag (without 'answer:') of the cell after which to capture; default: the answer's name"
    )
    expression: str | None = Field(
        None, description="Python expression evaluated in the student's namespace; default: the answer's name"
    )
    model_weight: int | None = Field(
        None,
        ge=0,
        description=(
            "this answer is a model's weight: get_weights()[model_weight] of every Keras model or layer in the namespace "
            "is captured too, and a check computed from it passes if any model's weights explain the output (the student "
            "may have named the model anything)"
        ),
    )
    description: str = ""


# A source of an array in a NumPy computation: an answer name, a number, or
# "file:<path relative to the assignment folder>".
Source = Union[str, float]


class Conv2D(_Strict):
    """Cross-correlation as Keras' Conv2D computes it (NHWC input, HWIO kernel)."""

    op: Literal["conv2d"]
    input: str
    kernel: Source = Field(description="answer name, or a number that fills a kernel of kernel_size")
    kernel_size: tuple[int, int] = (3, 3)
    bias: Source = 0.0
    strides: tuple[int, int] = (1, 1)
    padding: Literal["valid", "same"] = "valid"


class Reshape(_Strict):
    op: Literal["reshape"]
    input: str
    shape: list[int]


class MaxPool2D(_Strict):
    op: Literal["maxpool2d"]
    input: str
    pool_size: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None
    padding: Literal["valid", "same"] = "valid"


Computation = Annotated[Conv2D | Reshape | MaxPool2D, Field(discriminator="op")]


class Diagnosis(_Strict):
    """A known mistake: when its condition holds for a failed check, its message
    is given as the likely cause."""

    when: Literal["shape", "scaled", "other_kernel", "missing"]
    shape: list[int] | None = Field(None, description="when='shape': the student's shape equals this")
    factor: float | None = Field(None, description="when='scaled': student = factor * expected")
    message: str

    @model_validator(mode="after")
    def _condition_complete(self) -> Diagnosis:
        if self.when == "shape" and self.shape is None:
            raise ValueError("when='shape' needs 'shape'")
        if self.when == "scaled" and self.factor is None:
            raise ValueError("when='scaled' needs 'factor'")
        return self


class Check(_Strict):
    """One graded check of one answer.

    kinds: ``shape`` (exact shape), ``finite`` (a real-valued array with no NaN
    or inf), ``reference`` (values match the reference solution's), ``compute``
    (values match a NumPy computation from the student's own answers, e.g. the
    output of their random kernel; when its inputs were not captured it falls
    back to ``finite`` and says so).
    """

    name: str
    answer: str
    points: float = Field(ge=0)
    kind: Literal["shape", "finite", "reference", "compute"]
    shape: list[int] | None = None
    dtype: Literal["float", "integer", "bool"] | None = Field(
        None, description="kinds 'finite'/'compute': required dtype family"
    )
    rtol: float | None = Field(None, ge=0)
    atol: float | None = Field(None, ge=0)
    compute: Computation | None = Field(
        None, description="kind='compute': what to compute; kind='reference': how the solution's value is cross-checked"
    )
    hint: str = Field("", description="shown when the check fails")
    diagnoses: list[Diagnosis] = []
    visibility: Visibility = Field(
        "visible",
        description="who sees this check: 'visible' (students check it themselves, with the student kit or "
        "`grader check`), 'hidden' (never shown to students), 'after_due_date' or 'after_published' (Gradescope "
        "shows it then); all but 'visible' are left out of the student kit and of `grader check`",
    )

    @model_validator(mode="after")
    def _kind_complete(self) -> Check:
        if self.kind == "shape" and self.shape is None:
            raise ValueError("kind='shape' needs 'shape'")
        if self.kind == "compute" and self.compute is None:
            raise ValueError("kind='compute' needs a [checks.compute] table")
        return self


class Withheld(_Strict):
    """What a student's copy of a spec leaves out: graded on submission, never checked locally."""

    checks: int = Field(ge=0)
    points: float = Field(ge=0)


class Spec(_Strict):
    title: str
    version: str = Field(description="version of this spec; recorded in every result")
    template: str = Field(description="student template, relative to the assignment folder")
    solution: str = Field(description="reference solution, relative to solutions/<name>/")
    data: list[str] = Field([], description="files copied into the student's working directory (by base name)")
    limits: Limits = Limits()
    tolerance: Tolerance = Tolerance()
    environment: Environment = Field(
        Environment(), description="packages students may import beyond the grader's own (the course's environment)"
    )
    answers: dict[str, Answer]
    checks: list[Check] = Field(min_length=1)
    withheld: Withheld | None = Field(
        None, description="set in a student kit's spec by `grader release`: the checks it leaves out"
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> Spec:
        names = set(self.answers)
        bad = sorted(n for n in names if not n.isidentifier())
        if bad:
            raise ValueError(f"answer names must be Python identifiers: {bad}")
        for i, check in enumerate(self.checks):
            if check.answer not in names:
                raise ValueError(
                    f"checks[{i}] ({check.name!r}): unknown answer {check.answer!r}; answers are {sorted(names)}"
                )
            for source in computation_sources(check.compute):
                if isinstance(source, str) and not source.startswith(FILE_PREFIX) and source not in names:
                    raise ValueError(f"checks[{i}] ({check.name!r}): compute refers to unknown answer {source!r}")
        seen = [c.name for c in self.checks]
        duplicates = sorted({n for n in seen if seen.count(n) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique; repeated: {duplicates}")
        return self

    def computation_files(self) -> list[str]:
        """Paths named as ``file:<path>`` in computations: grader-side data
        (not copied to the student unless also listed in ``data``)."""
        return sorted(
            {
                src[len(FILE_PREFIX) :]
                for c in self.checks
                for src in computation_sources(c.compute)
                if isinstance(src, str) and src.startswith(FILE_PREFIX)
            }
        )

    @property
    def max_score(self) -> float:
        return float(sum(c.points for c in self.checks))

    def for_students(self) -> Spec:
        """This spec as students may see it: the visible checks, the answers
        they read, and what was left out (:class:`Withheld`).  Raises
        :class:`SpecError` when no check is visible."""
        shown = [c for c in self.checks if c.visibility == "visible"]
        if not shown:
            raise SpecError(f"{self.title!r}: no check is visible to students, so there is nothing to check locally")
        left_out = [c for c in self.checks if c.visibility != "visible"]
        earlier = self.withheld or Withheld(checks=0, points=0)
        needed = {c.answer for c in shown} | {
            s for c in shown for s in computation_sources(c.compute) if isinstance(s, str) and s in self.answers
        }
        withheld = Withheld(
            checks=earlier.checks + len(left_out), points=earlier.points + sum(c.points for c in left_out)
        )
        return self.model_copy(
            update={
                "checks": shown,
                "answers": {n: a for n, a in self.answers.items() if n in needed},
                "withheld": withheld if withheld.checks else None,
            }
        )

    def reference_answers(self) -> set[str]:
        """The answers whose reference values the checks read: a ``reference``
        check's own, and a computation's inputs (used when the student's own
        input was not captured)."""
        names = {c.answer for c in self.checks if c.kind == "reference"}
        names |= {
            s for c in self.checks for s in computation_sources(c.compute) if isinstance(s, str) and s in self.answers
        }
        return names

    def capture_cell(self, answer: str) -> str:
        return self.answers[answer].cell or answer

    def expression(self, answer: str) -> str:
        return self.answers[answer].expression or answer


def computation_sources(computation: Computation | None) -> list[Source]:
    if computation is None:
        return []
    if isinstance(computation, Conv2D):
        return [computation.input, computation.kernel, computation.bias]
    return [computation.input]


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file; every problem is a :class:`SpecError`
    naming the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{path}: invalid spec:\n{format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
