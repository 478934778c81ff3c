"""Class statistics follow one rule wherever they are shown (summary.json,
the terminal's totals, the class page).  Needs no TensorFlow."""

import pytest

from grader.grading.stats import band, class_stats
from grader.model.result import AssignmentInfo, CheckResult, Result, SubmissionInfo, Timings, Versions


def result(score: float, status: str = "graded", max_score: float = 10.0, passed=("a",)) -> Result:
    tests = [
        CheckResult(
            name=n,
            score=1.0 if n in passed else 0.0,
            max_score=1.0,
            status="passed" if n in passed else "failed",
            output="",
            answer="x",
            kind="shape",
        )
        for n in ("a", "b")
    ]
    return Result(
        score=score,
        max_score=max_score,
        output="",
        tests=tests,
        status=status,
        submission=SubmissionInfo(file="s.ipynb"),
        executor="kernel",
        timings=Timings(total_s=1.0),
        assignment=AssignmentInfo(name="x", title="x", spec_version="1", spec_sha256="0"),
        versions=Versions(grader="0", python="3", numpy="2"),
        graded_at="2026-01-01T00:00:00Z",
    )


@pytest.mark.parametrize(
    "score, max_score, expected",
    [
        (10, 10, "full"),
        (10.000000000001, 10, "full"),
        (0.1 + 0.2 + 9.7, 10, "full"),
        (9.5, 10, "partial"),
        (0, 10, "zero"),
        (0, 0, "zero"),
        (12, 10, "full"),
    ],
)
def test_score_bands(score, max_score, expected):
    assert band(score, max_score) == expected


def test_bands_use_the_assignment_maximum_and_rates_count_the_results_with_the_check():
    results = [result(10), result(10, max_score=12), result(5, passed=()), result(0, "invalid_submission", passed=())]
    results[3].tests = results[3].tests[:1]  # an older result without check "b"
    stats = class_stats(results, 10, ["b", "a"])
    assert (stats.full_marks, stats.partial, stats.zero, stats.not_gradable) == (2, 1, 1, 1)
    assert list(stats.checks) == ["b", "a"]
    assert (stats.checks["a"].passed, stats.checks["a"].of) == (2, 4)
    assert (stats.checks["b"].passed, stats.checks["b"].of) == (0, 3)
    assert stats.mean == 6.25 and stats.median == 7.5
