"""Feedback is structured until it is rendered: a check's result keeps its
parts as fields, and the one renderer (grader.checking.feedback) words every
medium from them.  Needs no TensorFlow."""

import numpy as np
import pytest

from grader.checking import feedback
from grader.checking.answers import CapturedAnswer
from grader.checking.check import run_checks
from grader.model.result import CheckResult
from grader.model.spec import Spec

SPEC = Spec.model_validate(
    {
        "title": "t",
        "version": "1",
        "template": "t.ipynb",
        "solution": "s.ipynb",
        "answers": {"x": {}},
        "checks": [
            {
                "name": "x has shape (2,)",
                "answer": "x",
                "points": 1,
                "kind": "shape",
                "shape": [2],
                "hint": "Make it two long.",
                "diagnoses": [{"when": "shape", "shape": [3], "message": "One too many."}],
            }
        ],
    }
)


@pytest.mark.parametrize("value, passed", [(np.zeros(2), True), (np.zeros(3), False)])
def test_a_check_result_keeps_its_parts_and_its_output_is_rendered_from_them(tmp_path, value, passed):
    answers = {"x": CapturedAnswer("x", "ok", value=value, where="after cell 2")}
    [test] = run_checks(SPEC, answers, {}, {"x": ["cell 2 raised ValueError: no"]}, tmp_path)
    assert (test.status == "passed") == passed
    if passed:
        assert (test.message, test.notes, test.hint) == ("x has shape (2,).", [], None)
        assert test.output == "PASSED: x has shape (2,)."
    else:
        assert test.message == "expected shape (2,), found (3,)."
        assert (test.diagnosis, test.notes, test.hint) == (
            "One too many.",
            ["cell 2 raised ValueError: no"],
            "Make it two long.",
        )
        assert test.output == (
            "FAILED: expected shape (2,), found (3,).\nLikely cause: One too many.\n"
            "Note: cell 2 raised ValueError: no\nHint: Make it two long."
        )
    assert [p.kind for p in feedback.parts(test)] == (["verdict"] if passed else ["verdict", "cause", "note", "hint"])


def test_a_result_from_before_the_fields_renders_its_output_as_it_is():
    old = CheckResult(
        name="n",
        score=0,
        max_score=1,
        status="failed",
        answer="x",
        kind="shape",
        output="FAILED: something\nHint: do it",
        diagnosis="a cause",
    )
    assert feedback.parts(old) == [feedback.Part("verdict", "FAILED: something\nHint: do it")]
    assert feedback.first_problem(old) == "a cause"
