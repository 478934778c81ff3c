"""Checking answers and computing the score: the one place scores come from.

Runs in the grader's process only, on arrays loaded from files; nothing the
student's code did to numpy, builtins or this package can reach it.  Each check
earns all of its points or none; the submission's score is their sum.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.checking import feedback
from grader.checking.answers import CapturedAnswer
from grader.checking.compare import compare_values, describe_shape, is_real_numeric, scale_factor
from grader.checking.compute import ComputeError, Resolve, evaluate, fit_conv2d_kernel
from grader.model.result import CheckResult
from grader.model.spec import FILE_PREFIX, Check, Computation, Conv2D, Spec, computation_sources

NOT_CAPTURED = "{answer} was not computed ({where}: {detail})."
NEVER_ASSIGNED = "{answer} was never assigned: write its exercise's code in the answer cell, run it, and keep the variable name exactly `{answer}`."
SHAPE_WRONG = "expected shape {expected}, found {found}."
CANNOT_COMPARE = "cannot compare values: {answer} has shape {found}, the expected shape is {expected}."
NOT_NUMERIC = "{answer} is not a real-valued numeric array (dtype {dtype})."
NONFINITE = "{answer} contains {count} NaN or infinite values."
VALUES_DIFFER = "{fraction} of the values differ from the expected ones (largest difference {error})."
SCALED = "Your values are {factor:.6g} times the expected ones."
DTYPE_WRONG = "expected a {expected} array, found dtype {found}."
UNVERIFIABLE = "{answer}'s values cannot be verified: {reason}."
UNVERIFIABLE_CAUSE = (
    "The grader recomputes this output from your own model's weights; keep the model that produced it "
    "(and its weights unchanged) until the answer cell has run."
)
DTYPE_KINDS = {"float": "f", "integer": "iu", "bool": "b"}


class MissingInput(LookupError):
    pass


def _shape_diagnosis(check: Check, shape: tuple[int, ...]) -> str | None:
    """The spec's explanation of this wrong shape, if it names one."""
    return next(
        (
            d.message
            for d in check.diagnoses
            if d.when == "shape" and d.shape is not None and list(d.shape) == list(shape)  # validated: it has one
        ),
        None,
    )


@dataclass(frozen=True)
class Outcome:
    passed: bool
    message: str
    expected: str | None = None
    found: str | None = None
    diagnosis: str | None = None
    max_abs_error: float | None = None
    mismatch_fraction: float | None = None


def score(tests: list[CheckResult]) -> float:
    return float(sum(t.score for t in tests))


def run_checks(
    spec: Spec,
    answers: dict[str, CapturedAnswer],
    references: dict[str, np.ndarray],
    notes: dict[str, list[str]],
    assignment_folder: Path,
    strict: bool = False,
) -> list[CheckResult]:
    """One CheckResult per check of the spec, in the spec's order.

    ``notes`` are per-answer facts from reading and running the notebook (a
    cell's error, a markdown answer cell) shown with failed checks.  A
    computation whose inputs were not captured fails (it never passes on
    what could not be verified); ``strict`` (used on the reference solution)
    says so without the advice meant for students."""
    checker = _Checker(spec, answers, references, assignment_folder, strict, notes)
    tests = []
    for check in spec.checks:
        outcome = checker.run(check)
        answer = answers[check.answer]
        shown_notes = (
            [] if outcome.passed else [n for n in notes.get(check.answer, []) if n not in (outcome.diagnosis or "")]
        )
        hint = None if outcome.passed or not check.hint else check.hint
        parts = feedback.compose(outcome.passed, outcome.message, outcome.diagnosis, shown_notes, hint)
        tests.append(
            CheckResult(
                name=check.name,
                score=float(check.points) if outcome.passed else 0.0,
                max_score=float(check.points),
                status="passed" if outcome.passed else "failed",
                output=feedback.as_text(outcome.passed, parts),
                message=outcome.message,
                notes=shown_notes,
                hint=hint,
                answer=check.answer,
                kind=check.kind,
                expected=outcome.expected,
                found=outcome.found,
                diagnosis=outcome.diagnosis,
                captured=answer.where or None,
                max_abs_error=outcome.max_abs_error,
                mismatch_fraction=outcome.mismatch_fraction,
            )
        )
    return tests


class _Checker:
    def __init__(
        self,
        spec: Spec,
        answers: dict[str, CapturedAnswer],
        references: dict[str, np.ndarray],
        folder: Path,
        strict: bool,
        notes: dict[str, list[str]],
    ) -> None:
        self.strict = strict
        self.notes = notes
        self.spec = spec
        self.answers = answers
        self.references = references
        self.folder = folder

    def run(self, check: Check) -> Outcome:
        answer = self.answers[check.answer]
        if not answer.ok:
            return self._not_captured(check, answer)
        value = answer.value
        assert value is not None  # answer.ok says so
        if check.kind == "shape":
            return self._shape(check, value)
        if not is_real_numeric(value):
            return Outcome(
                False, NOT_NUMERIC.format(answer=check.answer, dtype=value.dtype), found=f"dtype {value.dtype}"
            )
        if check.kind == "finite":
            return self._finite(check, value, note="")
        if check.kind == "reference":
            return self._against(check, value, self.references[check.answer], "the reference solution's values")
        return self._computed(check, value)

    def _not_captured(self, check: Check, answer: CapturedAnswer) -> Outcome:
        detail = answer.detail or answer.status
        if answer.type_name:
            detail = f"{answer.type_name} {detail}"
        diagnosis = next((d.message for d in check.diagnoses if d.when == "missing"), None)
        if diagnosis is None and self.notes.get(check.answer):
            diagnosis = "; ".join(self.notes[check.answer])  # its cell raised, timed out, never ran...
        if diagnosis is None and answer.status == "missing" and "is not defined" in answer.detail:
            diagnosis = NEVER_ASSIGNED.format(answer=check.answer)
        return Outcome(
            False,
            NOT_CAPTURED.format(answer=check.answer, where=answer.where or "never captured", detail=detail),
            expected="an array",
            found="nothing (" + answer.status + ")",
            diagnosis=diagnosis,
        )

    def _shape(self, check: Check, value: np.ndarray) -> Outcome:
        assert check.shape is not None  # validated: a shape check has one (Check._kind_complete)
        expected, found = describe_shape(check.shape), describe_shape(value.shape)
        if list(value.shape) == list(check.shape):
            return Outcome(True, f"{check.answer} has shape {found}.", expected, found)
        return Outcome(
            False,
            SHAPE_WRONG.format(expected=expected, found=found),
            expected,
            found,
            _shape_diagnosis(check, value.shape),
        )

    def _finite(self, check: Check, value: np.ndarray, note: str) -> Outcome:
        if check.dtype and value.dtype.kind not in DTYPE_KINDS[check.dtype]:
            return Outcome(
                False, DTYPE_WRONG.format(expected=check.dtype, found=value.dtype), check.dtype, str(value.dtype)
            )
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            return Outcome(False, NONFINITE.format(answer=check.answer, count=bad), "finite values", f"{bad} NaN/inf")
        return Outcome(True, f"{check.answer} is a finite {value.dtype} array{note}.", "finite values", "finite values")

    def _computed(self, check: Check, value: np.ndarray) -> Outcome:
        """Pass if the student's own inputs explain the output: the captured
        ones, else those of any Keras model in their namespace (the model may
        have any name); fail when there is nothing to verify against."""
        computation = check.compute
        assert computation is not None  # validated: a compute check has one (Check._kind_complete)
        what = "the values computed from your own answers"
        first: Outcome | None = None
        reason, missing = None, False
        for resolve in self._bindings(computation):
            try:
                expected = evaluate(computation, resolve)
            except (MissingInput, ComputeError) as exc:
                reason, missing = reason or str(exc), missing or isinstance(exc, MissingInput)
                continue
            outcome = self._against(check, value, expected, what)
            if outcome.passed:
                return outcome
            first = first or outcome
        if first is not None:
            return first
        message = UNVERIFIABLE.format(
            answer=check.answer, reason=(reason or "its inputs were not captured").rstrip(".")
        )
        return Outcome(
            False,
            message,
            what,
            "nothing to verify against",
            UNVERIFIABLE_CAUSE if missing and not self.strict else None,
        )

    def _bindings(self, computation: Computation) -> Iterator[Resolve]:
        """Ways to resolve a computation's sources: the captured answers
        first, then each model whose weights were captured for every answer
        that has candidates (kernel and bias of the same model together)."""
        yield self._student_source
        sources = [s for s in computation_sources(computation) if isinstance(s, str) and s in self.answers]
        with_candidates = [s for s in sources if self.answers[s].candidates]
        if not with_candidates:
            return
        common = set.intersection(*(set(self.answers[s].candidates) for s in with_candidates))
        for variable in sorted(common):

            def resolve(source: str, variable: str = variable) -> np.ndarray:
                if source in with_candidates:
                    return self.answers[source].candidates[variable]
                return self._student_source(source)

            yield resolve

    def _against(self, check: Check, value: np.ndarray, expected: np.ndarray, what: str) -> Outcome:
        exp_shape, found_shape = describe_shape(expected.shape), describe_shape(value.shape)
        if value.shape != expected.shape:
            return Outcome(
                False,
                CANNOT_COMPARE.format(answer=check.answer, found=found_shape, expected=exp_shape),
                f"shape {exp_shape}",
                f"shape {found_shape}",
                _shape_diagnosis(check, value.shape),
            )
        rtol = self.spec.tolerance.rtol if check.rtol is None else check.rtol
        atol = self.spec.tolerance.atol if check.atol is None else check.atol
        cmp = compare_values(value, expected, rtol, atol)
        if cmp.matches:
            return Outcome(
                True,
                f"{check.answer} matches {what} (largest difference {cmp.max_abs_error:.3g}).",
                what,
                "matching values",
                max_abs_error=cmp.max_abs_error,
                mismatch_fraction=cmp.mismatch_fraction,
            )
        if cmp.nonfinite:
            return Outcome(
                False,
                NONFINITE.format(answer=check.answer, count=cmp.nonfinite),
                what,
                f"{cmp.nonfinite} NaN/inf values",
                max_abs_error=cmp.max_abs_error,
                mismatch_fraction=cmp.mismatch_fraction,
            )
        error = "n/a" if cmp.max_abs_error is None else f"{cmp.max_abs_error:.4g}"
        message = VALUES_DIFFER.format(fraction=f"{cmp.mismatch_fraction:.1%}", error=error)
        return Outcome(
            False,
            message,
            what,
            f"{cmp.mismatch_fraction:.1%} of values differ",
            self._diagnose_values(check, value, expected),
            max_abs_error=cmp.max_abs_error,
            mismatch_fraction=cmp.mismatch_fraction,
        )

    def _diagnose_values(self, check: Check, value: np.ndarray, expected: np.ndarray) -> str | None:
        factor = scale_factor(value, expected)
        if factor is not None:
            for d in check.diagnoses:
                if d.when == "scaled" and d.factor is not None and abs(factor - d.factor) <= 1e-3 * abs(d.factor):
                    return d.message
            if abs(factor - 1.0) > 1e-3:
                return SCALED.format(factor=factor)
        other = next((d for d in check.diagnoses if d.when == "other_kernel"), None)
        if other is not None and isinstance(check.compute, Conv2D):
            fitted = self._fit_kernel(check.compute, value)
            if fitted is not None:
                kernel, bias = fitted
                kernel = np.round(kernel[..., 0] if kernel.shape[-1] == 1 else kernel, 3) + 0.0  # + 0.0: no "-0."
                weights = np.array2string(kernel, precision=3, suppress_small=True)
                return f"{other.message} (The kernel that fits your output: {' '.join(weights.split())}, bias {round(bias, 3) + 0.0:g}.)"
        return None

    def _fit_kernel(self, op: Conv2D, value: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The kernel fitted on the student's own input where it was captured
        with the reference's shape, else on the reference input."""
        reference = self.references.get(op.input)
        try:
            x = self._student_source(op.input)
        except MissingInput:
            x = None
        if x is None or (reference is not None and x.shape != reference.shape):
            x = reference
        return None if x is None else fit_conv2d_kernel(x, value, op.kernel_size, op.strides, op.padding)

    def _student_source(self, source: str) -> np.ndarray:
        if source.startswith(FILE_PREFIX):
            return np.load(self.folder / source[len(FILE_PREFIX) :], allow_pickle=False)
        answer = self.answers.get(source)
        if answer is None or not answer.ok:
            reason = answer.detail if answer is not None else "not captured"
            raise MissingInput(f"{source} was not captured: {reason}")
        value = answer.value
        assert value is not None  # answer.ok says so
        if not is_real_numeric(value):
            raise MissingInput(f"{source} is not numeric")
        return value
