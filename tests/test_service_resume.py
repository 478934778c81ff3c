"""Nothing lost: a service killed with SIGKILL in the middle of its queue
resumes it when started again; every submission ends with exactly one
result, the one it would have had, and a result stored before the kill is
never graded again."""

import sqlite3
import time

import psutil
import pytest
from conftest import FIXTURES
from serving import get, post_notebook, start_server, wait_result

pytestmark = pytest.mark.slow
EXPECTED = {"correct": 10, "swapped_strides": 5, "no_same_padding": 7, "normalized_kernel": 6, "truncated_json": 0}


def zygotes():
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "grader.execution.zygote" in " ".join(p.info["cmdline"] or [])
    }


def test_a_killed_service_resumes_its_queue_without_loss_or_regrading(tmp_path, references):
    data = tmp_path / "data"
    before = zygotes()
    first = start_server(data, "--workers", "1")
    names = [*EXPECTED, *EXPECTED]  # ten submissions, graded one at a time
    ids = {}
    for i, name in enumerate(names):
        status, body = post_notebook(first, "conv2d", FIXTURES / f"{name}.ipynb", name=f"s{i}-{name}.ipynb")
        assert status == 202
        ids[body["id"]] = name
    deadline = time.monotonic() + 120
    while get(first, "healthz")[1]["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()  # kill -9, with one or two submissions most likely being graded
    done_before = {p.stem: p.read_bytes() for p in (data / "results").glob("*.json")}
    assert 2 <= len(done_before) < len(names)
    deadline = time.monotonic() + 30
    while zygotes() - before and time.monotonic() < deadline:  # its warm parent follows it
        time.sleep(0.1)
    assert not zygotes() - before

    second = start_server(data, "--workers", "1")
    try:
        results = {sid: wait_result(second, sid) for sid in ids}
    finally:
        second.stop()
    assert {sid: r["score"] for sid, r in results.items()} == {sid: EXPECTED[name] for sid, name in ids.items()}
    assert sorted(p.stem for p in (data / "results").glob("*.json")) == sorted(ids)
    for sid, stored in done_before.items():  # never graded again, never rewritten
        assert (data / "results" / f"{sid}.json").read_bytes() == stored
    rows = sqlite3.connect(data / "queue.sqlite").execute("SELECT id, state, attempts FROM submissions").fetchall()
    assert {state for _, state, _ in rows} == {"done"}
    attempts = {sid: n for sid, _, n in rows}
    assert all(attempts[sid] == 1 for sid in done_before)
    # graded again: only what the service had in hand (one executing, one forking its child meanwhile)
    assert all(n in (1, 2) for n in attempts.values()) and sum(n == 2 for n in attempts.values()) <= 2
