"""Grading a folder: every submission gets a result, written as it finishes;
summary and gradebook agree with the per-submission files."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from grader.cli import main
from grader.grading import batch, results_dir
from grader.grading import grade as grade_module
from grader.model.result import Result

MIXED = ["correct", "swapped_strides", "truncated_json", "not_a_notebook"]


@pytest.fixture(scope="module")
def graded_folder(tmp_path_factory, references):
    root = tmp_path_factory.mktemp("batch")
    subs = root / "submissions"
    subs.mkdir()
    for name in MIXED:
        shutil.copy(FIXTURES / f"{name}.ipynb", subs / f"{name}.ipynb")
    shutil.copy(FIXTURES / "correct.ipynb", subs / "summary.ipynb")  # a name that collides with the summary
    (subs / "notes.txt").write_text("not a submission")
    code = main(["batch", str(subs), "--assignment", "conv2d", "--out", str(root / "results"), "--keep-answers"])
    return code, root / "results"


def test_every_submission_gets_a_result_and_exit_0(graded_folder):
    code, out = graded_folder
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"{n}.json" for n in MIXED] + ["summary.ipynb.json", "summary.json", "gradebook.csv", "answers"]
    )
    scores = {n: Result.model_validate_json((out / f"{n}.json").read_text()).score for n in MIXED}
    assert scores == {"correct": 10, "swapped_strides": 5, "truncated_json": 0, "not_a_notebook": 0}


def test_summary_and_gradebook_agree_with_result_files(graded_folder):
    _, out = graded_folder
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == 5
    assert (summary["graded"], summary["invalid"], summary["errors"]) == (3, 2, 0)
    assert (summary["full_marks"], summary["partial"], summary["zero"]) == (2, 1, 2)
    for entry in summary["results"]:
        result = json.loads((out / entry["result"]).read_text())
        assert entry["score"] == result["score"]
    rows = list(csv.DictReader((out / "gradebook.csv").open()))
    assert len(rows) == 5
    for row in rows:
        result = json.loads((out / batch.result_path(out, out / row["submission"]).name).read_text())
        assert float(row["score"]) == result["score"]
        assert row["status"] == result["status"]
    assert summary["checks"]["Exercise 2: random_output has shape (1, 255, 510, 1)"]["passed"] == 2


@pytest.mark.slow  # builds the references
def test_a_grader_crash_on_one_submission_does_not_stop_the_batch(tmp_path, assignment, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(FIXTURES / "truncated_json.ipynb", subs / f"{name}.ipynb")
    real_grade = grade_module.grade

    def flaky(path, *args, **kwargs):
        if path.name == "b.ipynb":
            raise RuntimeError("simulated bug")
        return real_grade(path, *args, **kwargs)

    monkeypatch.setattr(grade_module, "grade", flaky)
    summary = batch.grade_batch(subs, assignment, tmp_path / "out")
    statuses = {name: r.status for name, r in summary.results.items()}
    assert statuses == {"a.ipynb": "invalid_submission", "b.ipynb": "error", "c.ipynb": "invalid_submission"}
    b = Result.model_validate_json((tmp_path / "out" / "b.json").read_text())
    assert "simulated bug" in b.output and b.score == 0


def test_writes_are_atomic_and_leave_no_partial_files(tmp_path):
    target = tmp_path / "r.json"
    results_dir.write_atomic(target, "first")

    class Boom(Exception):
        pass

    def failing_write(*_):
        raise Boom

    with pytest.raises(Boom), pytest.MonkeyPatch.context() as mp:
        mp.setattr(results_dir.os, "fsync", failing_write)
        results_dir.write_atomic(target, "second")
    assert target.read_text() == "first"  # the old result survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_keep_answers_saves_the_captured_arrays(graded_folder, references):
    _, out = graded_folder
    kept = sorted(p.name for p in (out / "answers").iterdir())
    # unreadable files have no answers; the rest have one archive each
    assert kept == ["correct.npz", "summary.ipynb.npz", "swapped_strides.npz"]
    with np.load(out / "answers" / "correct.npz", allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["same_output"], references["same_output"])
        assert arrays["random_kernel"].shape == (3, 3, 1, 1)
    with np.load(out / "answers" / "swapped_strides.npz", allow_pickle=False) as arrays:
        assert arrays["random_output"].shape == (1, 510, 255, 1)
