"""`grader batch --scheduler`: the same batch on a Dask cluster (here a
LocalCluster of 2 worker processes), results in the same files with the same
guarantees."""

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from grader.cli import main

distributed = pytest.importorskip("distributed")

NAMES = {"correct": 10, "swapped_strides": 5, "lesson_literal_random_kernel": 8, "truncated_json": 0}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_batch_on_a_dask_cluster_writes_the_same_results(cluster, tmp_path, references, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in NAMES:
        shutil.copy(FIXTURES / f"{name}.ipynb", subs / f"{name}.ipynb")
    out = tmp_path / "out"
    args = [
        "batch",
        str(subs),
        "--assignment",
        "conv2d",
        "--out",
        str(out),
        "--scheduler",
        cluster.scheduler_address,
        "--executor",
        "warm",
        "--keep-answers",
    ]
    assert main(args) == 0
    scores = {name: json.loads((out / f"{name}.json").read_text())["score"] for name in NAMES}
    assert scores == NAMES
    assert json.loads((out / "correct.json").read_text())["executor"] == "warm"
    summary = json.loads((out / "summary.json").read_text())
    assert [r["score"] for r in summary["results"]] == [NAMES[n] for n in sorted(NAMES)]
    with np.load(out / "answers" / "correct.npz", allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["average_output"], references["average_output"])

    # the cluster path is resumable like the local one
    capsys.readouterr()
    assert main(args) == 0
    assert "(4 already up to date)" in capsys.readouterr().out


def test_unreachable_scheduler_is_an_operator_error(tmp_path, capsys, references):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(FIXTURES / "correct.ipynb", subs)
    code = main(
        [
            "batch",
            str(subs),
            "--assignment",
            "conv2d",
            "--out",
            str(tmp_path / "out"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    assert code == 3
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
