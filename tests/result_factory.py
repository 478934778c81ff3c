"""Results as ``grader batch`` writes them, made without running a notebook: for the tests of what reads them."""

from grader.model.result import AssignmentInfo, CheckResult, Result, SubmissionInfo, Timings, Versions

CHECKS = ["Exercise 1: shape", "Exercise 1: values", "Exercise 2: shape", "Exercise 2: values", "Exercise 3: values"]


def make_result(
    file: str,
    passed: int = 5,
    status: str = "graded",
    error: str = "",
    assignment: str = "conv2d",
    graded_at: str = "2026-11-28T19:30:00.123+00:00",
) -> Result:
    """A result with ``passed`` of the five 2-point checks passed."""
    tests = [
        CheckResult(
            name=name,
            score=2.0 if i < passed else 0.0,
            max_score=2.0,
            status="passed" if i < passed else "failed",
            output="",
            answer="x",
            kind="shape",
        )
        for i, name in enumerate(CHECKS)
    ]
    return Result(
        score=2.0 * passed,
        max_score=10.0,
        output="",
        tests=tests,
        status=status,
        submission=SubmissionInfo(file=file),
        errors=[error] if error else [],
        assignment=AssignmentInfo(name=assignment, title="Conv2D filters", spec_version="1", spec_sha256="0"),
        executor="kernel",
        timings=Timings(total_s=1.0),
        versions=Versions(grader="0", python="3", numpy="1"),
        graded_at=graded_at,
    )


def write_results(folder, results: dict) -> None:
    """``{stem: Result | raw text}`` as ``folder/<stem>.json``."""
    folder.mkdir(exist_ok=True)
    for stem, result in results.items():
        text = result if isinstance(result, str) else result.model_dump_json(indent=2)
        (folder / f"{stem}.json").write_text(text, encoding="utf-8")
