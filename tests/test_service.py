"""`grader serve` without grading (fast tier: a service with no worker queues
what it accepts and starts no TensorFlow): who may submit, what is refused
and how, that an accepted submission is on disk and in SQLite before the 202,
and that it is still there, in its place in the queue, after a kill -9."""

import http.client
import json
import sqlite3
import subprocess
import sys
import time
import urllib.parse

import pytest
from conftest import FIXTURES, ROOT
from result_factory import make_result
from serving import get, multipart, post_notebook, request, start_server

from grader.errors import GraderError, ServiceError
from grader.service.access import Role, check_binding, is_loopback, role
from grader.service.client import ServiceClient
from grader.service.store import Store, safe_file_name
from grader.settings import ServeSettings, load_settings

STUDENT, TEACHER = "student-token-1", "teacher-token-1"
TOKENS = {"GRADER_SERVE__TOKENS": json.dumps([STUDENT]), "GRADER_SERVE__INSTRUCTOR_TOKENS": json.dumps([TEACHER])}
CORRECT = FIXTURES / "correct.ipynb"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("service") / "data"
    env = {**TOKENS, "GRADER_SERVE__MAX_UPLOAD_MB": "0.5", "GRADER_SERVE__QUEUE_LIMIT": "50"}
    server = start_server(data, "--workers", "0", env=env)
    yield server
    server.stop()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


# --- who may submit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True)]
    + [("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("192.168.0.7", False), ("no-such-host.invalid", False)],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_anonymous_submissions_only_on_loopback():
    check_binding(ServeSettings(host="127.0.0.1"))
    with pytest.raises(ServiceError, match="refusing to serve 0.0.0.0:8000 without tokens"):
        check_binding(ServeSettings(host="0.0.0.0"))
    check_binding(ServeSettings(host="0.0.0.0", tokens=("s3cret",)))
    check_binding(ServeSettings(host="0.0.0.0", instructor_tokens=("s3cret",)))


def test_the_command_refuses_an_open_address_without_tokens(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "grader", "serve", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 3
    assert "refusing to serve 0.0.0.0:0 without tokens" in run.stderr and "GRADER_SERVE__TOKENS" in run.stderr


def test_tokens_give_roles():
    settings = ServeSettings(tokens=("a",), instructor_tokens=("b",))
    assert role(settings, "Bearer a") is Role.submitter and role(settings, "bearer b") is Role.instructor
    assert role(settings, "Bearer c") is Role.nobody and role(settings, None) is Role.nobody
    assert role(settings, "Basic a") is Role.nobody and role(settings, "Bearer ") is Role.nobody


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRADER_SERVE__PORT", "9001")
    monkeypatch.setenv("GRADER_SERVE__TOKENS", '["x", "y"]')
    monkeypatch.setenv("GRADER_SERVE__ASSIGNMENTS", '["conv2d"]')
    serve = load_settings().serve
    assert (serve.port, serve.assignments, [t.get_secret_value() for t in serve.tokens]) == (
        9001,
        ("conv2d",),
        ["x", "y"],
    )
    assert "'x'" not in repr(serve)
    monkeypatch.setenv("GRADER_SERVE__PROT", "80")  # a typo is an error, not ignored
    with pytest.raises(GraderError, match="GRADER_SERVE__PROT: Extra inputs are not permitted"):
        load_settings()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("alice.ipynb", "alice.ipynb"),
        ("../../etc/passwd", "passwd.ipynb"),
        ("C:\\Users\\bob\\my work.ipynb", "my_work.ipynb"),
        (".bashrc", "bashrc.ipynb"),
        ("<script>.ipynb", "script.ipynb"),
        ("", "submission.ipynb"),
        (None, "submission.ipynb"),
        ("..", "submission.ipynb"),
    ],
)
def test_file_names_from_clients_are_plain_names(given, stored):
    assert safe_file_name(given) == stored


def test_without_a_token_nothing_is_accepted(server):
    status, headers, _body = request(
        server, "POST", "assignments/conv2d/submissions", CORRECT.read_bytes(), {"Content-Type": "application/json"}
    )
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert post_notebook(server, "conv2d", CORRECT, token="wrong")[0] == 401


# --- accepted, and stored first ------------------------------------------------------------


def test_an_accepted_notebook_is_on_disk_and_in_sqlite(server):
    status, body = post_notebook(server, "conv2d", CORRECT, token=STUDENT, name="../alice.ipynb")
    assert status == 202, body
    assert body["status"] == "queued" and body["file"] == "alice.ipynb"
    assert body["url"] == f"{server.url}submissions/{body['id']}" and body["feedback_url"].endswith("/feedback")
    assert (server.data / "submissions" / body["id"] / "alice.ipynb").read_bytes() == CORRECT.read_bytes()
    db = sqlite3.connect(server.data / "queue.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT state, file_name FROM submissions WHERE id = ?", (body["id"],)).fetchone() == (
        "queued",
        "alice.ipynb",
    )
    status, pending = get(server, f"submissions/{body['id']}")
    assert status == 202 and pending["status"] == "queued" and pending["position"] >= 0


def test_multipart_upload(server):
    form, headers = multipart("notebook", "bob.ipynb", CORRECT.read_bytes())
    status, _, body = request(server, "POST", "assignments/conv2d/submissions", form, {**headers, **auth(STUDENT)})
    assert status == 202 and json.loads(body)["file"] == "bob.ipynb"
    form, headers = multipart("other", "x.ipynb", b"")
    form = form.replace(b'filename="x.ipynb"', b"")  # a plain field, no file
    status, _, body = request(server, "POST", "assignments/conv2d/submissions", form, {**headers, **auth(STUDENT)})
    assert status == 400 and "no file" in json.loads(body)["detail"]


def test_the_status_wait_returns_when_asked_to(server):
    sid = post_notebook(server, "conv2d", CORRECT, token=STUDENT)[1]["id"]
    status, body = get(server, f"submissions/{sid}?wait=0.2")  # no worker: still queued after the wait
    assert status == 202 and body["status"] == "queued"
    assert get(server, "submissions/no-such-id")[0] == 404


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [600_000, 4_000_000])
def test_too_large_is_413_declared_or_not(server, size):
    # Bodies larger than the socket buffers too: the client is still sending
    # when the service has its answer, and must still hear the 413.
    big = b'{"cells": [], "x": "' + b"x" * size + b'"}'
    status, _, body = request(
        server, "POST", "assignments/conv2d/submissions", big, {"Content-Type": "application/json", **auth(STUDENT)}
    )
    assert status == 413 and "0.5 MB" in json.loads(body)["detail"]
    # chunked, with no Content-Length to refuse it by
    address = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    connection.request(
        "POST",
        "/assignments/conv2d/submissions",
        body=chunks,
        headers={"Content-Type": "application/json", **auth(STUDENT)},
        encode_chunked=True,
    )
    answer = connection.getresponse()
    assert answer.status == 413 and "0.5 MB" in json.loads(answer.read())["detail"]
    connection.close()
    # and through the grader's own client, which says so in a sentence
    notebook = server.data.parent / f"big-{size}.ipynb"
    notebook.write_bytes(big)
    with pytest.raises(ServiceError, match="413 larger than the 0.5 MB"):
        ServiceClient(server.url, STUDENT).submit("conv2d", notebook)


def test_unknown_assignment_wrong_type_and_empty_body(server):
    assert post_notebook(server, "nope", CORRECT, token=STUDENT)[0] == 404
    headers = {"Content-Type": "text/plain", **auth(STUDENT)}
    assert request(server, "POST", "assignments/conv2d/submissions", b"x", headers)[0] == 415
    headers = {"Content-Type": "application/json", **auth(STUDENT)}
    assert request(server, "POST", "assignments/conv2d/submissions", b"", headers)[0] == 400


def test_instructors_open_and_close_assignments(server):
    assert request(server, "POST", "assignments/conv2d/close", headers=auth(STUDENT))[0] == 403
    assert request(server, "POST", "assignments/conv2d/close", headers=auth(TEACHER))[0] == 200
    status, body = post_notebook(server, "conv2d", CORRECT, token=STUDENT)
    assert status == 403 and "closed" in body["detail"]
    listed = {a["name"]: a for a in get(server, "assignments")[1]["assignments"]}
    assert listed["conv2d"]["open"] is False and listed["edges"]["open"] is True
    assert request(server, "POST", "assignments/conv2d/open", headers=auth(TEACHER))[0] == 200
    assert post_notebook(server, "conv2d", CORRECT, token=STUDENT)[0] == 202


def test_a_full_queue_is_429_with_retry_after(tmp_path):
    server = start_server(tmp_path / "data", "--workers", "0", env={"GRADER_SERVE__QUEUE_LIMIT": "2"})
    try:
        assert [post_notebook(server, "conv2d", CORRECT)[0] for _ in range(2)] == [202, 202]  # anonymous: loopback
        status, headers, _body = request(
            server, "POST", "assignments/conv2d/submissions", CORRECT.read_bytes(), {"Content-Type": "application/json"}
        )
        assert status == 429 and int(headers["Retry-After"]) >= 1
        metrics = request(server, "GET", "metrics")[2].decode()
        assert 'grader_submissions_rejected_total{reason="queue_full"} 1.0' in metrics
    finally:
        server.stop()


# --- operations and the page ----------------------------------------------------------------


def test_health_and_metrics(server):
    status, health = get(server, "healthz")
    assert status == 200 and health["ready"] is True and health["workers"] == 0 and health["queued"] >= 1
    status, headers, text = request(server, "GET", "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = text.decode()
    for name in (
        "grader_queue_depth",
        "grader_graded_total",
        "grader_grading_seconds_bucket",
        "grader_latency_seconds_bucket",
        "grader_pool_restarts_total",
        'grader_submissions_rejected_total{reason="unauthorized"}',
    ):
        assert name in text
    queued = next(line for line in text.splitlines() if line.startswith("grader_queue_depth "))
    assert float(queued.split()[1]) == health["queued"]


def test_the_page_and_its_files(server):
    status, headers, body = request(server, "GET", "")
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    page = body.decode()
    assert 'src="static/page.js"' in page and 'type="file"' in page and "<script>" not in page
    assert request(server, "GET", "static/page.js")[1]["Content-Type"].startswith("text/javascript")
    assert request(server, "GET", "static/page.css")[0] == 200
    listing = get(server, "assignments")[1]
    assert listing["auth"] == "token" and [a["name"] for a in listing["assignments"]] == ["conv2d", "edges"]


@pytest.mark.parametrize(
    "method, path, token, status",
    [
        ("GET", "", None, 200),
        ("GET", "healthz", None, 200),
        ("GET", "submissions/no-such-id", None, 404),
        ("POST", "assignments/conv2d/submissions", None, 401),
        ("POST", "assignments/conv2d/submissions", STUDENT, 202),
    ],
)
def test_every_answer_keeps_its_url_out_of_referers(server, method, path, token, status):
    """Submission ids in URLs are what let their holder read a result: every
    answer, refusals and errors included, says no-referrer (and nosniff)."""
    body = CORRECT.read_bytes() if method == "POST" else None
    headers = {"Content-Type": "application/json", **(auth(token) if token else {})}
    got, answer_headers, _ = request(server, method, path, body, headers)
    assert got == status
    assert answer_headers["Referrer-Policy"] == "no-referrer" and answer_headers["X-Content-Type-Options"] == "nosniff"


def test_accepted_submissions_survive_a_kill_in_their_order(tmp_path):
    data = tmp_path / "data"
    server = start_server(data, "--workers", "0")
    ids = [post_notebook(server, "conv2d", FIXTURES / f"{n}.ipynb")[1]["id"] for n in ("correct", "swapped_strides")]
    server.kill()
    again = start_server(data, "--workers", "0")
    try:
        states = [get(again, f"submissions/{sid}")[1] for sid in ids]
        assert [(s["status"], s["position"], s["file"]) for s in states] == [
            ("queued", 0, "correct.ipynb"),
            ("queued", 1, "swapped_strides.ipynb"),
        ]
    finally:
        again.stop()


def test_old_pictures_go_and_the_grade_of_record_stays(tmp_path):
    """keep_answers_days: a graded submission's kept answers and drawn pages
    go once it is past its time; its notebook, result and row stay, and a
    submission not graded yet keeps everything."""
    store = Store(tmp_path / "data")
    graded, waiting = (store.add("conv2d", "mine.ipynb", CORRECT.read_bytes()) for _ in range(2))
    store.finish(graded.id, make_result("mine.ipynb"))
    pictures = {}
    for sub in (graded, waiting):
        pictures[sub.id] = [store.answers_file(sub.id), store.feedback_file(sub.id), store.feedback_file(sub.id, True)]
        for path in pictures[sub.id]:
            path.write_bytes(b"x")
    assert store.remove_pictures(graded_before=time.time() - 3600) == 0  # graded just now: kept
    assert store.remove_pictures(graded_before=time.time() + 1) == 3
    assert not any(p.exists() for p in pictures[graded.id]) and all(p.exists() for p in pictures[waiting.id])
    assert store.result_file(graded.id).is_file() and store.submission_file(graded).read_bytes() == CORRECT.read_bytes()
    assert store.get(graded.id).state == "done" and store.get(graded.id).score == 10
    assert store.remove_pictures(graded_before=time.time() + 1) == 0  # nothing left to remove
    store.close()
