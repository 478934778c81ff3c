"""Real student notebooks (tests/files/conv2d/, named for what they show),
graded end to end with a fresh kernel: the score, which checks fail, and the
feedback that matters."""

import json
import math

import pytest

ALL_CHECKS = [
    "Exercise 1: img_tensor has shape (1, 512, 512, 1)",
    "Exercise 1: img_tensor holds the image's pixels",
    "Exercise 2: random_output has shape (1, 255, 510, 1)",
    "Exercise 2: random_output is what your random kernel computes",
    "Exercise 3: average_output has shape (1, 255, 510, 1)",
    "Exercise 3: average_output is the all-ones (box blur) convolution",
    "Exercise 4: same_output has shape (1, 512, 512, 1)",
    "Exercise 4: same_output is the zero-padded box blur",
]
EX1, EX1V, EX2, EX2V, EX3, EX3V, EX4, EX4V = ALL_CHECKS

# fixture, score, failed checks, text that must appear in the failed checks' feedback
CASES = [
    ("correct", 10, [], []),
    ("tf_tensor_outputs", 10, [], []),
    ("deleted_tags", 10, [], []),
    ("cells_inserted_deleted_reordered", 10, [], []),
    ("name_reused_later", 10, [], []),
    ("magics_and_plots", 10, [], []),
    ("error_in_unrelated_cell", 10, [], []),
    ("scipy_box_blur", 10, [], []),  # SciPy is allowed by assignments/conv2d/requirements.txt
    ("untagged_with_block_reused", 10, [], []),  # the with block's value, not the 'done' after it
    ("untagged_tuple_unpacking", 10, [], []),
    ("untagged_magics", 10, [], []),
    (
        "untagged_syntax_error",
        7,
        [EX4, EX4V],
        ["cell 10, which mentions same_output, could not be parsed (SyntaxError: '(' was never closed, line 2)"],
    ),
    ("swapped_strides", 5, [EX2, EX2V, EX3, EX3V], ["The strides are swapped", "found (1, 510, 255, 1)"]),
    ("no_same_padding", 7, [EX4, EX4V], ["padding='same' is missing", "found (1, 510, 510, 1)"]),
    ("normalized_kernel", 6, [EX3V, EX4V], ["exactly 1/9 of the expected ones"]),
    ("lesson_literal_random_kernel", 8, [EX4V], ["follow the lesson literally", "set_weights(weights)"]),
    ("channels_first_reshape", 0, ALL_CHECKS, ["channels-first layout", "raised ValueError"]),
    ("pixels_scaled", 5, [EX1V, EX3V, EX4V], ["divided by 255"]),
    ("answer_cell_turned_markdown", 7, [EX4, EX4V], ["is a markdown cell, so it never ran"]),
    ("kernel_dies_midway", 4, [EX3, EX3V, EX4, EX4V], ["the kernel died"]),
    ("empty_template", 0, ALL_CHECKS, ["was never assigned"]),
]


@pytest.mark.parametrize("name, score, failed, feedback", CASES, ids=[c[0] for c in CASES])
def test_fixture_score_and_feedback(graded, name, score, failed, feedback):
    result = graded(name)
    assert result.status == "graded"
    assert result.score == score, result.output
    assert [t.name for t in result.tests if t.status == "failed"] == failed
    text = "\n".join(t.output for t in result.tests if t.status == "failed")
    for expected in feedback:
        assert expected in text
    for test in result.tests:
        assert test.score == (test.max_score if test.status == "passed" else 0)
    assert result.max_score == 10


def test_error_in_unrelated_cell_is_reported_but_costs_nothing(graded):
    result = graded("error_in_unrelated_cell")
    assert [(c.cell, c.status, c.ename) for c in result.cells] == [(7, "error", "NameError")]
    assert any("cell 7 raised NameError" in e for e in result.errors)


def test_untagged_answers_are_found_by_their_assignment(graded):
    result = graded("deleted_tags")
    # captured right after the cell that assigns it, not at the end of the
    # notebook where `model` is the second model
    assert {t.captured for t in result.tests} == {"after cell 4", "after cell 6", "after cell 8", "after cell 10"}


@pytest.mark.parametrize(
    "name, captured",
    [
        ("untagged_with_block_reused", {"same_output": "after cell 10"}),  # not cell 11's same_output = 'done'
        ("untagged_tuple_unpacking", {"random_output": "after cell 6", "same_output": "after cell 10"}),
        ("untagged_magics", {"random_output": "after cell 7", "average_output": "after cell 9"}),  # freed in cell 10
    ],
)
def test_untagged_answers_are_found_as_the_student_meant_them(graded, name, captured):
    result = graded(name)
    assert {t.answer: t.captured for t in result.tests if t.answer in captured} == captured


def test_untagged_answer_after_a_cell_that_does_not_parse_is_taken_at_the_end(graded):
    result = graded("untagged_syntax_error")
    assert any("cell 10 raised SyntaxError" in e for e in result.errors)
    # cell 10 mentions img_tensor too: which cell last assigns it is unknown as well
    assert {t.answer: t.captured for t in result.tests} == {
        "img_tensor": "at the end of the notebook",
        "random_output": "after cell 6",
        "average_output": "after cell 8",
        "same_output": "at the end of the notebook",
    }
    assert result.score == 7  # what the end of the notebook holds: no same_output, img_tensor unchanged


def test_reused_name_grades_value_from_answer_cell(graded):
    result = graded("name_reused_later")
    assert result.tests[5].captured == "after cell 8"
    assert result.tests[5].status == "passed"


def test_lesson_literal_feedback_shows_the_kernel_that_fits(graded):
    test = graded("lesson_literal_random_kernel").tests[7]
    assert test.diagnosis.startswith("Your output is a 3x3 convolution of the image with a different kernel")
    assert "The kernel that fits your output" in test.diagnosis
    assert test.mismatch_fraction > 0.9 and test.max_abs_error > 100


def test_timeout_costs_only_the_cell_that_timed_out(graded):
    result = graded("infinite_loop_in_extra_cell", cell_timeout=10)
    assert result.score == 10
    assert [(c.cell, c.status) for c in result.cells] == [(7, "timeout")]
    assert "cell 7 timed out" in result.errors[0]
    assert result.timings.execute_s < 40  # one timeout, not one per later cell


def test_notebook_timeout_fails_closed_on_what_did_not_run(graded):
    result = graded("infinite_loop_in_extra_cell", cell_timeout=60, notebook_timeout=8)
    assert result.score == 4  # exercises 1 and 2 ran before the loop
    assert any(c.status == "not_run" for c in result.cells)
    assert "ran out of time" in result.output
    assert all(t.status == "failed" for t in result.tests[4:])


def test_dead_kernel_keeps_answers_captured_before(graded):
    result = graded("kernel_dies_midway")
    assert [(c.cell, c.status) for c in result.cells] == [(7, "died"), (9, "not_run"), (11, "not_run")]
    assert [t.status for t in result.tests[:4]] == ["passed"] * 4


@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated_json", "looks truncated"),
        ("not_a_notebook", "is not UTF-8 text"),
    ],
)
def test_unreadable_file_scores_zero_with_the_reason(graded, name, reason):
    result = graded(name)
    assert result.status == "invalid_submission"
    assert result.score == 0
    assert reason in result.output and reason in result.errors[0]
    assert all(t.status == "failed" and reason in t.output for t in result.tests)
    assert result.submission.sha256 and result.submission.size > 0


def test_results_are_standard_json_with_metadata(graded, assignment):
    from grader.grading.references import reference_key

    result = graded("correct")
    data = json.loads(result.model_dump_json())
    for key in ("score", "max_score", "output", "tests"):
        assert key in data  # Gradescope's results.json fields
    for test in data["tests"]:
        assert {"name", "score", "max_score", "status", "output"} <= set(test)
        assert test["status"] in ("passed", "failed")
    assert data["executor"] == "kernel"
    assert data["assignment"]["name"] == "conv2d" and data["assignment"]["spec_version"] == "2026.1"
    # what a re-run's resume compares: the references and the spec it was graded against
    assert data["assignment"]["reference_key"] == reference_key(assignment)
    assert data["assignment"]["spec_sha256"] == assignment.spec_sha256()
    assert len(data["submission"]["sha256"]) == 64
    assert data["versions"]["tensorflow"].startswith("2.")
    numbers = [v for t in data["tests"] for v in t.values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in numbers)
