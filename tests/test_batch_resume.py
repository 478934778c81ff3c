"""A batch is resumable and loss-free: re-running skips what is up to date,
and a batch killed half-way ends, once re-run, with exactly the results of a
clean run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES

from grader.grading.batch import grade_batch

NAMES = ["correct", "swapped_strides", "normalized_kernel", "truncated_json"]


@pytest.fixture
def submissions(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(FIXTURES / f"{name}.ipynb", folder / f"{name}.ipynb")
    return folder


def scores(out):
    return {
        p.stem: (r["score"], r["status"], [t["status"] for t in r["tests"]])
        for p in sorted(out.glob("*.json"))
        if p.name != "summary.json"
        for r in [json.loads(p.read_text())]
    }


def test_rerun_skips_up_to_date_results_and_regrades_changes(submissions, tmp_path, assignment, references):
    out = tmp_path / "out"
    first = grade_batch(submissions, assignment, out, jobs=2)
    assert (first.graded_now, first.skipped) == (4, 0)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}

    second = grade_batch(submissions, assignment, out, jobs=2)
    assert (second.graded_now, second.skipped) == (0, 4)
    assert {n: r.score for n, r in second.results.items()} == {n: r.score for n, r in first.results.items()}
    assert (out / "correct.json").stat().st_mtime_ns == before["correct.json"]

    shutil.copy(FIXTURES / "no_same_padding.ipynb", submissions / "correct.ipynb")  # the student resubmits
    third = grade_batch(submissions, assignment, out)
    assert (third.graded_now, third.skipped) == (1, 3)
    assert third.results["correct.ipynb"].score == 7

    forced = grade_batch(submissions, assignment, out, force=True)
    assert forced.graded_now == 4


def test_killed_batch_resumes_to_the_clean_result(submissions, tmp_path, references):
    env = dict(os.environ)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    command = [sys.executable, "-m", "grader", "batch", str(submissions), "--assignment", "conv2d", "--jobs", "1"]
    subprocess.run(command + ["--out", str(clean)], check=True, env=env, capture_output=True)

    proc = subprocess.Popen(
        command + ["--out", str(killed)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(killed.glob("*.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the grader and its kernel, mid-batch
    proc.wait()
    partial = scores(killed)
    assert 1 <= len(partial) < len(NAMES)

    rerun = subprocess.run(command + ["--out", str(killed)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(partial)} already up to date)" in rerun.stdout
    assert scores(killed) == scores(clean)
    assert not list(killed.glob(".tmp-*"))
    summary = json.loads((killed / "summary.json").read_text())
    assert [r["score"] for r in summary["results"]] == [
        json.loads((clean / r["result"]).read_text())["score"] for r in summary["results"]
    ]
