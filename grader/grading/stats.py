"""Class statistics: one set of rules for the summary, the terminal and the
class page.

A score band is judged against the assignment's maximum (not each result's
own ``max_score``, which an old result may state differently): full marks at
or above it, zero at or below 0, partial in between.  A check's pass rate
counts the results that contain that check.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from grader.model.result import Result

EPSILON = 1e-9  # scores are sums of floats


def band(score: float, max_score: float) -> str:
    """``full``, ``partial`` or ``zero``."""
    if max_score > 0 and score >= max_score - EPSILON:
        return "full"
    return "zero" if score <= EPSILON else "partial"


@dataclass(frozen=True)
class CheckRate:
    passed: int
    of: int

    @property
    def rate(self) -> float | None:
        return self.passed / self.of if self.of else None


@dataclass(frozen=True)
class ClassStats:
    results: int
    full_marks: int
    partial: int
    zero: int
    graded: int
    invalid: int
    errors: int
    mean: float | None
    median: float | None
    checks: dict[str, CheckRate] = field(default_factory=dict)  # spec's checks first, then any others seen

    @property
    def not_gradable(self) -> int:
        return self.results - self.graded


def class_stats(results: Iterable[Result], max_score: float, check_names: Iterable[str] = ()) -> ClassStats:
    results = list(results)
    scores = [r.score for r in results]
    bands = [band(s, max_score) for s in scores]
    names = list(check_names)
    names += sorted({t.name for r in results for t in r.tests} - set(names))
    checks = {}
    for name in names:
        outcomes = [t.status == "passed" for r in results for t in r.tests if t.name == name]
        checks[name] = CheckRate(sum(outcomes), len(outcomes))
    return ClassStats(
        results=len(results),
        full_marks=bands.count("full"),
        partial=bands.count("partial"),
        zero=bands.count("zero"),
        graded=sum(r.status == "graded" for r in results),
        invalid=sum(r.status == "invalid_submission" for r in results),
        errors=sum(r.status == "error" for r in results),
        mean=statistics.mean(scores) if scores else None,
        median=statistics.median(scores) if scores else None,
        checks=checks,
    )
