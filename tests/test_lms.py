"""LMS integration: the roster, matching results to it, LTI 1.3 AGS Scores
(exported, and POSTed to a real HTTP server on 127.0.0.1), and the Canvas and
Moodle gradebook CSV files.  Results are built in tmp_path from the Result
models; nothing here executes a notebook or leaves this machine."""

import csv
import io
import json
import re
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from result_factory import make_result, write_results

from grader.errors import GraderError, ResultsError
from grader.platforms.gradebook import export_canvas, export_moodle
from grader.platforms.lti.scores import (
    SCORE_MEDIA_TYPE,
    RetryPolicy,
    Score,
    export_lti,
    publish_lti,
    publish_scores,
    retry_after_seconds,
    score_timestamp,
    scores_url,
)
from grader.platforms.matching import LmsError, feedback, match_results, points
from grader.platforms.roster import RosterError, load_roster

TOKEN = "s3cr3t.T0ken-_~+/=="
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(\+00:00)$")
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=5)


def write_roster(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# A class: alice full marks, bob 3/5 checks, carol not a notebook, dave's grading crashed,
# erin's result is truncated, frank never submitted, and mallory handed in without being on the roster.
ROSTER = """submission,user_id,name,email,sis_id,login_id,username,section
alice.ipynb,101,Alice Liddell,alice@example.org,S1,alice,aliddell,A
bob,u-bob,Bob,bob@example.org,,,bob,A
carol.ipynb,103,Carol,,S3,,,B
dave,104,Dave,dave@example.org,,,,B
erin.ipynb,105,Erin,,,,,
frank,106,Frank,frank@example.org,S6,,,
"""


@pytest.fixture
def klass(tmp_path):
    results = tmp_path / "results"
    write_results(
        results,
        {
            "alice": make_result("alice.ipynb"),
            "bob": make_result("bob.ipynb", passed=3),
            "carol": make_result(
                "carol.ipynb", passed=0, status="invalid_submission", error="not a notebook: truncated JSON"
            ),
            "dave": make_result("dave.ipynb", passed=0, status="error", error="the grader failed: MemoryError"),
            "erin": '{"score": 10, "max_score"',
            "mallory": make_result("mallory.ipynb"),
        },
    )
    (results / "summary.json").write_text("{}")
    (results / "gradebook.csv").write_text("submission\n")
    (results / ".tmp-1.part").write_text("half")
    return results, write_roster(tmp_path / "roster.csv", ROSTER)


# --- roster ----------------------------------------------------------------------------------------------------


def test_roster_reads_columns_in_any_case_and_order_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "r.csv"  # as Excel saves "CSV UTF-8"
    path.write_bytes("\ufeff User_ID ,Submission,Name\r\n101,alice.ipynb,Alice\r\n\r\n102,bob,  \r\n,,\r\n".encode())
    roster = load_roster(path)
    assert [(s.user_id, s.submission, s.key, s.name) for s in roster.students] == [
        ("101", "alice.ipynb", "alice", "Alice"),
        ("102", "bob", "bob", None),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("submission,user_id,nickname\na,1,x\n", "line 1: unknown column 'nickname'"),
        ("submission,name\na,x\n", "missing column 'user_id'"),
        ("submission,user_id,Name,name\na,1,x,y\n", "column 'name' appears twice"),
        ("submission,,user_id\na,,1\n", "line 1: column 2 has no name"),
        (
            "submission,user_id\nalice.ipynb,1\nbob,2\nalice,3\n",
            "line 4: duplicate submission 'alice' (first on line 2)",
        ),
        ("submission,user_id\na,1\nb,2\nc,1\n", "line 4: duplicate user_id '1' (first on line 2)"),
        ("submission,user_id\na,1\nb,  \n", "line 3: column 'user_id': must not be empty"),
        ("submission,user_id\na\n", "line 2: column 'user_id': must not be empty"),
        ("submission,user_id\nsubs/a.ipynb,1\n", "line 2: column 'submission': 'subs/a.ipynb' is a path"),
        ("submission,user_id\na,1,extra\n", "line 2: 3 fields but the header names 2"),
        ("submission,user_id\n", "no students"),
        ("", "empty file"),
    ],
)
def test_roster_errors_name_the_line_and_column(tmp_path, text, message):
    path = write_roster(tmp_path / "roster.csv", text)
    with pytest.raises(RosterError) as info:
        load_roster(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, GraderError) and info.value.exit_code == 3


def test_roster_that_is_not_utf8_or_missing_is_an_error(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("submission,user_id,name\na,1,Zoë\n".encode("latin-1"))
    with pytest.raises(RosterError, match="not UTF-8"):
        load_roster(tmp_path / "latin1.csv")
    with pytest.raises(RosterError, match="cannot read the roster"):
        load_roster(tmp_path / "absent.csv")


# --- matching results to the roster ----------------------------------------------------------------------------


def test_matching_lists_missing_unreadable_and_unmatched_results(klass):
    results, roster = klass
    matching = match_results(results, roster)
    assert [g.student.user_id for g in matching.graded] == ["101", "u-bob", "103", "104"]
    assert [s.user_id for s in matching.missing] == ["106"]
    assert [(u.file.name, u.student.user_id) for u in matching.unreadable] == [("erin.json", "105")]
    assert "not a grader result" in matching.unreadable[0].reason
    assert [p.name for p in matching.unmatched] == ["mallory.json"]
    assert [s.user_id for s in matching.without_result] == ["106", "105"]
    notes = "\n".join(matching.notes())
    assert (
        "Frank (106)" in notes and "erin.json (Erin (105))" in notes and "mallory.json matches no roster line" in notes
    )


def test_invalid_result_without_roster_line_and_collision_names(tmp_path):
    results = tmp_path / "results"
    write_results(results, {"summary.ipynb": make_result("summary.ipynb"), "stray": '{"not": "a result"}'})
    roster = write_roster(tmp_path / "r.csv", "submission,user_id\nsummary.ipynb,1\n")
    matching = match_results(results, roster)
    assert [g.file.name for g in matching.graded] == ["summary.ipynb.json"]
    assert [(u.file.name, u.student) for u in matching.unreadable] == [("stray.json", None)]
    assert "score: Field required" in matching.unreadable[0].reason


def test_renamed_results_match_by_the_submission_they_record(tmp_path):
    """A batch of ``alice.ipynb`` and ``alice`` (no suffix) writes ``alice.json``
    for one and ``alice.ipynb.json`` or ``alice~2.json`` for the other: each is
    matched by the file name inside the result, not by its own file name."""
    results = tmp_path / "results"
    write_results(results, {"alice~2": make_result("bob.ipynb", passed=3), "x": make_result("carol.ipynb", passed=1)})
    roster = write_roster(tmp_path / "r.csv", "submission,user_id\nbob,1\ncarol.ipynb,2\n")
    matching = match_results(results, roster)
    assert [(g.student.user_id, g.file.name, g.result.score) for g in matching.graded] == [
        ("1", "alice~2.json", 6.0),
        ("2", "x.json", 2.0),
    ]
    assert not matching.unmatched and not matching.missing


def test_matching_refuses_a_missing_folder_and_mixed_assignments(tmp_path):
    roster = write_roster(tmp_path / "r.csv", "submission,user_id\na,1\nb,2\n")
    with pytest.raises(ResultsError, match="not a results folder"):
        match_results(tmp_path / "nope", roster)
    write_results(tmp_path / "results", {"a": make_result("a.ipynb"), "b": make_result("b.ipynb", assignment="pool")})
    with pytest.raises(LmsError, match=r"several assignments \(conv2d, pool\)"):
        match_results(tmp_path / "results", roster)


@pytest.mark.parametrize(
    "value, text",
    [
        (10.0, "10"),
        (7.5, "7.5"),
        (0.0, "0"),
        (1 / 3, "0.3333"),
        (1234567.0, "1234567"),
        (2.00004, "2"),
        (-0.00001, "0"),
    ],
)
def test_points_are_plain_decimals(value, text):
    assert points(value) == text


@pytest.mark.parametrize(
    "result, expected",
    [
        (make_result("a.ipynb"), "10 / 10 points. All 5 checks passed."),
        (make_result("a.ipynb", passed=4), "8 / 10 points. 1 of 5 checks failed: Exercise 3: values."),
        (
            make_result("a.ipynb", passed=0),
            "0 / 10 points. 5 of 5 checks failed: Exercise 1: shape; Exercise 1: values; "
            "Exercise 2: shape (and 2 more).",
        ),
        (
            make_result("a.ipynb", 0, "invalid_submission", "not a notebook"),
            "0 / 10 points. The submission could not be graded: not a notebook",
        ),
        (
            make_result("a.ipynb", 0, "error", "MemoryError"),
            "The grader failed on this submission, so it is not graded yet: MemoryError",
        ),
    ],
)
def test_feedback_gives_the_score_and_the_first_failed_checks(result, expected):
    assert feedback(result) == expected


# --- LTI Scores ------------------------------------------------------------------------------------------------


def test_lti_export_writes_one_score_per_student_with_a_result(klass, tmp_path):
    results, roster = klass
    export = export_lti(results, roster, tmp_path / "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())
    by_user = {s["userId"]: s for s in scores}
    assert list(by_user) == ["101", "u-bob", "103"]  # roster order; dave (grader failed), frank, erin, mallory: none
    assert [g.student.user_id for g in export.matching.failed] == ["104"]
    assert "Dave (104): the grader failed on this submission, so no grade is sent" in "\n".join(export.matching.notes())
    assert [s.user_id for s in export.matching.without_result] == ["106", "105"]
    for score in scores:
        assert TIMESTAMP.match(score["timestamp"])
        assert Score.model_validate(score).wire() == score  # the wire format round-trips through the strict model
    assert by_user["101"] == {
        "userId": "101",
        "scoreGiven": 10.0,
        "scoreMaximum": 10.0,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "2026-11-28T19:30:00.123+00:00",
        "comment": "10 / 10 points. All 5 checks passed.",
        # the roster does not say when Alice handed in: Canvas must not make an attempt stamped now
        "https://canvas.instructure.com/lti/submission": {"new_submission": False},
    }


@pytest.mark.parametrize(
    "user, given, activity, grading, comment",
    [
        (
            "u-bob",
            6.0,
            "Completed",
            "FullyGraded",
            "6 / 10 points. 2 of 5 checks failed: Exercise 2: values; Exercise 3: values.",
        ),
        # an explicit 0 Moodle keeps (it drops scoreGiven unless FullyGraded), saying why
        ("103", 0.0, "Submitted", "FullyGraded", "could not be graded: not a notebook: truncated JSON"),
    ],
)
def test_score_fields_follow_the_result_status(klass, tmp_path, user, given, activity, grading, comment):
    results, roster = klass
    score = next(s for s in export_lti(results, roster, tmp_path / "s.json").scores if s.user_id == user)
    wire = score.wire()
    assert (wire.get("scoreGiven"), wire["activityProgress"], wire["gradingProgress"]) == (given, activity, grading)
    assert ("scoreMaximum" in wire) == (given is not None)
    assert comment in wire["comment"]


@pytest.mark.parametrize(
    "graded_at, expected",
    [
        ("2026-11-28T19:30:00.123+00:00", "2026-11-28T19:30:00.123+00:00"),
        ("2026-11-28T20:30:00.5+01:00", "2026-11-28T19:30:00.500+00:00"),
        ("2026-11-28T19:30:00Z", "2026-11-28T19:30:00.000+00:00"),
        ("2026-11-28T19:30:00.123456", "2026-11-28T19:30:00.123+00:00"),
    ],
)
def test_score_timestamp_is_utc_with_milliseconds(graded_at, expected):
    assert score_timestamp(graded_at) == expected


def test_unreadable_graded_at_becomes_now():
    stamp = score_timestamp("yesterday")
    assert TIMESTAMP.match(stamp)
    assert abs(datetime.fromisoformat(stamp) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "lineitem, expected",
    [
        (
            "https://lms.example/api/lti/courses/1/line_items/7",
            "https://lms.example/api/lti/courses/1/line_items/7/scores",
        ),
        ("https://lms.example/lineitems/7/", "https://lms.example/lineitems/7/scores"),
        (
            "https://lms.example/mod/lti/services.php/2/lineitems/9/lineitem?type_id=1",
            "https://lms.example/mod/lti/services.php/2/lineitems/9/lineitem/scores?type_id=1",
        ),
        ("https://lms.example:8443/li/7?a=1&b=2#frag", "https://lms.example:8443/li/7/scores?a=1&b=2"),
        ("http://127.0.0.1:8000/li/7", "http://127.0.0.1:8000/li/7/scores"),
        ("http://localhost/li/7", "http://localhost/li/7/scores"),
    ],
)
def test_scores_url_appends_to_the_path_and_keeps_the_query(lineitem, expected):
    assert scores_url(lineitem) == expected


@pytest.mark.parametrize(
    "lineitem, message",
    [
        ("ftp://lms.example/li/7", "not an http(s) URL"),
        ("lineitems/7", "not an http(s) URL"),
        ("http://lms.example/li/7", "clear text"),
        ("https://lms.example/li/7/scores", "without /scores"),
        ("https://lms.example:port/li/7", "Port could not be cast"),
    ],
)
def test_unusable_lineitem_urls_are_refused(lineitem, message):
    with pytest.raises(LmsError, match=re.escape(message)):
        scores_url(lineitem)


def test_plain_http_to_another_host_needs_allow_http_and_credentials_stay_out_of_messages():
    assert scores_url("http://lms.example/li/7", allow_http=True) == "http://lms.example/li/7/scores"
    with pytest.raises(LmsError) as info:
        scores_url("http://user:pw@lms.example/li/7")
    assert "pw" not in str(info.value) and "lms.example" in str(info.value)


@pytest.mark.parametrize("token", ["", "   ", "abc def", "abc\r\nX-Injected: 1", '"quoted"'])
def test_bad_tokens_are_refused_without_being_echoed(token):
    with pytest.raises(LmsError) as info:
        publish_scores([], "https://lms.example/li/7", token)
    assert not token.strip() or token not in str(info.value)


@pytest.mark.parametrize(
    "value, seconds",
    [("3", 3.0), ("0.5", 0.5), ("0", 0.0), ("-4", 0.0), (None, None), ("", None), ("soon", None), ("nan", None)],
)
def test_retry_after_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date():
    now = datetime(2026, 11, 28, 19, 30, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=12), usegmt=True), now) == 12.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=12), usegmt=True), now) == 0.0


@pytest.mark.parametrize(
    "attempt, retry_after, delay",
    [(1, None, 0.5), (2, None, 1.0), (4, None, 4.0), (8, None, 30.0), (1, 7.0, 7.0), (1, 90.0, 30.0)],
)
def test_backoff_doubles_and_retry_after_is_capped(attempt, retry_after, delay):
    assert RetryPolicy().delay(attempt, retry_after) == delay


# --- publishing to a real HTTP server on 127.0.0.1 -------------------------------------------------------------


class FakePlatform(BaseHTTPRequestHandler):
    """An AGS scores endpoint whose answer depends on the userId posted:
    ``status-<code>`` always answers that code, ``flaky-<code>`` answers it once
    and then 200, ``close`` drops the connection, ``slow`` answers late,
    ``redirect`` sends a 307 elsewhere; anyone else gets 200."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        problems = []
        if self.path != "/courses/1/line_items/7/scores?type=x":
            problems.append(f"path {self.path}")
        if self.headers.get("Content-Type") != SCORE_MEDIA_TYPE:
            problems.append(f"media type {self.headers.get('Content-Type')}")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            problems.append("bearer token")
        try:
            score = json.loads(body)
            Score.model_validate(score)
            user = score["userId"]
        except (ValueError, KeyError) as exc:
            problems.append(f"body {exc}")
            user = "?"
        with self.server.lock:
            self.server.requests.append(user)
            seen = self.server.requests.count(user)
            if not problems and getattr(self.server, "moodle", False):
                # Moodle's AGS scores endpoint: 409 when its stored timestamp is at or after the one sent
                stored = self.server.stamps.get(user)
                if stored is not None and stored >= score["timestamp"]:
                    return self.answer(409, "a newer or equal score is already stored")
                self.server.stamps[user] = score["timestamp"]
            if not problems and not user.startswith(("status", "flaky", "close", "redirect")):
                # what Canvas and Moodle store: Moodle keeps scoreGiven only when FullyGraded, and both store a
                # Failed Score, or one without scoreGiven, as no grade (erasing what was there)
                keeps = score.get("gradingProgress") == "FullyGraded" and "scoreGiven" in score
                self.server.gradebook[user] = score["scoreGiven"] if keeps else None
        if problems:
            return self.answer(422, "; ".join(problems))
        behaviour, _, code = user.partition("-")
        if behaviour == "status" or (behaviour == "flaky" and seen == 1):
            extra = {"Retry-After": "0"} if code in ("429", "503") else {}
            return self.answer(int(code), f"{user} refused; you sent Authorization: Bearer {TOKEN}", extra)
        if behaviour == "close":
            self.close_connection = True
            return
        if behaviour == "slow":
            time.sleep(1.0)
        if behaviour == "redirect":
            return self.answer(307, "moved", {"Location": f"http://127.0.0.1:{self.server.server_port}/elsewhere"})
        self.answer(200, json.dumps({"resultUrl": f"/results/{user}"}))

    def do_GET(self):
        """AGS results of the line item (``?user_id=``), from what was stored."""
        parts = urllib.parse.urlsplit(self.path)
        user = urllib.parse.parse_qs(parts.query).get("user_id", [None])[0]
        if not parts.path.endswith("/line_items/7/results") or self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(404, "no such results")
        held = self.server.gradebook.get(user)
        results = [] if held is None else [{"userId": user, "resultScore": held, "resultMaximum": 10.0}]
        self.answer(200, json.dumps(results))

    def answer(self, code: int, text: str, headers: dict | None = None):
        data = text.encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


GRADEBOOK: dict[str, float | None] = {}  # the platform's stored grades, user -> score (None: no grade)
SERVERS: dict[int, ThreadingHTTPServer] = {}  # id(request log) -> its server


def server_of(requests: list) -> ThreadingHTTPServer:
    return SERVERS[id(requests)]


@pytest.fixture
def platform(monkeypatch):
    """The line item URL of a FakePlatform on 127.0.0.1 (port 0), and its request log."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePlatform)
    server.daemon_threads, server.block_on_close = True, False
    server.requests, server.lock, server.gradebook = [], threading.Lock(), GRADEBOOK
    SERVERS[id(server.requests)] = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/courses/1/line_items/7?type=x", server.requests
    server.shutdown()
    server.server_close()


def test_republishing_to_moodle_is_idempotent(klass, platform):
    """Moodle answers 409 to a score whose timestamp is not newer than the one
    it holds: the same results published again (or a retry after a lost
    answer) were delivered, as the results service shows, and say so."""
    results, roster = klass
    lineitem, requests = platform
    server_of(requests).moodle, server_of(requests).stamps = True, {}
    GRADEBOOK.clear()
    first = publish_lti(results, roster, lineitem, TOKEN)
    again = publish_lti(results, roster, lineitem, TOKEN)
    assert first.ok and again.ok, again.notes()
    assert [(p.outcome, p.status) for p in again.posted] == [("accepted", 409)] * 3
    assert all(p.detail == "already held by the platform (409)" for p in again.posted)
    GRADEBOOK["101"] = 3.0  # a teacher changed Alice's grade in Moodle since: ours is not what it holds
    third = publish_lti(results, roster, lineitem, TOKEN)
    assert [p.outcome for p in third.posted] == ["rejected", "accepted", "accepted"]


def test_publishing_never_erases_a_grade_the_platform_holds(klass, platform):
    """Dave's grading failed and Carol's file is not a notebook: Dave's earlier
    grade stays (nothing is sent for him), Carol gets a 0 Moodle keeps."""
    results, roster = klass
    lineitem, requests = platform
    GRADEBOOK.clear()
    GRADEBOOK.update({"104": 9.0, "103": 7.0, "106": 5.0})
    report = publish_lti(results, roster, lineitem, TOKEN)
    assert report.ok and sorted(requests) == ["101", "103", "u-bob"]
    assert GRADEBOOK == {"101": 10.0, "u-bob": 6.0, "103": 0.0, "104": 9.0, "106": 5.0}
    assert any("Dave (104): the grader failed on this submission, so no grade is sent" in n for n in report.notes())


def score(user: str) -> Score:
    return Score(
        user_id=user,
        score_given=1.0,
        score_maximum=2.0,
        activity_progress="Completed",
        grading_progress="FullyGraded",
        timestamp="2026-11-28T19:30:00.123+00:00",
    )


def test_publish_retries_what_heals_and_reports_each_student(tmp_path, platform):
    lineitem, requests = platform
    results = tmp_path / "results"
    write_results(results, {name: make_result(f"{name}.ipynb") for name in ("a", "b", "c", "d", "e")})
    roster = write_roster(
        tmp_path / "r.csv", "submission,user_id\na,alice\nb,flaky-503\nc,status-400\nd,close\ne,eve\nf,frank\n"
    )
    start = time.monotonic()
    report = publish_lti(results, roster, lineitem, TOKEN, retry=FAST)
    assert time.monotonic() - start < 5
    outcomes = {p.user_id: (p.outcome, p.attempts, p.status) for p in report.posted}
    assert outcomes == {
        "alice": ("accepted", 1, 200),
        "flaky-503": ("accepted", 2, 200),
        "status-400": ("rejected", 1, 400),
        "close": ("failed", 3, None),
        "eve": ("accepted", 1, 200),
    }
    assert {u: requests.count(u) for u in outcomes} == {
        "alice": 1,
        "flaky-503": 2,
        "status-400": 1,
        "close": 3,
        "eve": 1,
    }
    assert not report.ok
    assert [p.user_id for p in report.with_outcome("accepted")] == ["alice", "flaky-503", "eve"]
    rejected = report.with_outcome("rejected")[0]
    assert "status-400 refused" in rejected.detail and "[token]" in rejected.detail
    assert "gave up after 3 attempts" in report.with_outcome("failed")[0].detail
    notes = "\n".join(report.notes())
    assert "frank" in notes and "status-400: rejected (HTTP 400)" in notes and "close: failed" in notes
    assert TOKEN not in notes + repr(report)


@pytest.mark.parametrize(
    "user, outcome, attempts",
    [
        ("ok", "accepted", 1),
        ("status-201", "accepted", 1),
        ("status-204", "accepted", 1),
        ("status-400", "rejected", 1),
        ("status-401", "rejected", 1),
        ("status-403", "rejected", 1),
        ("status-404", "rejected", 1),
        ("status-422", "rejected", 1),
        ("redirect", "rejected", 1),
        ("status-429", "failed", 3),
        ("status-500", "failed", 3),
        ("status-502", "failed", 3),
        ("status-503", "failed", 3),
        ("flaky-429", "accepted", 2),
        ("flaky-500", "accepted", 2),
    ],
)
def test_only_429_5xx_and_network_errors_are_retried(platform, user, outcome, attempts):
    lineitem, requests = platform
    waits = []
    report = publish_scores([score(user)], lineitem, TOKEN, retry=FAST, sleep=waits.append)
    assert (report.posted[0].outcome, report.posted[0].attempts) == (outcome, attempts)
    assert len(requests) == attempts and len(waits) == attempts - 1


def test_backoff_waits_grow_and_retry_after_is_honoured(platform):
    lineitem, _ = platform
    waits = []
    policy = RetryPolicy(attempts=4, base_delay=0.1, max_delay=1.0, timeout=5)
    publish_scores([score("status-500"), score("status-503")], lineitem, TOKEN, retry=policy, sleep=waits.append)
    assert waits == [0.1, 0.2, 0.4, 0.0, 0.0, 0.0]  # 503 answers Retry-After: 0


def test_redirects_are_not_followed(platform):
    lineitem, requests = platform
    posted = publish_scores([score("redirect")], lineitem, TOKEN, retry=FAST).posted[0]
    assert (posted.outcome, posted.status) == ("rejected", 307)
    assert "not followed" in posted.detail and requests == ["redirect"]


def test_timeouts_and_refused_connections_fail_after_bounded_retries(platform):
    lineitem, requests = platform
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01, timeout=0.2)
    start = time.monotonic()
    slow = publish_scores([score("slow")], lineitem, TOKEN, retry=policy).posted[0]
    assert (slow.outcome, slow.attempts, requests) == ("failed", 2, ["slow", "slow"])
    assert "timed out" in slow.detail
    assert time.monotonic() - start < 1.5
    with socket_port() as port:
        pass  # the port is free now: nothing listens there
    refused = publish_scores([score("ok")], f"http://127.0.0.1:{port}/li", TOKEN, retry=policy).posted[0]
    assert (refused.outcome, refused.attempts, refused.status) == ("failed", 2, None)
    assert "cannot connect" in refused.detail


def test_publishing_stops_when_the_platform_is_unreachable(platform):
    with socket_port() as port:
        pass
    policy = RetryPolicy(attempts=2, base_delay=0.0, timeout=1, give_up_after=2)
    report = publish_scores([score(f"u{i}") for i in range(5)], f"http://127.0.0.1:{port}/li", TOKEN, retry=policy)
    assert [(p.outcome, p.attempts) for p in report.posted] == [("failed", 2)] * 2 + [("failed", 0)] * 3
    assert "not sent: the previous 2 students could not be delivered" in report.posted[-1].detail


def test_one_failure_between_successes_does_not_stop_publishing(platform):
    lineitem, requests = platform
    users = ["close", "ok-1", "close-2", "ok-2", "close-3"]
    policy = RetryPolicy(attempts=1, give_up_after=2)
    report = publish_scores([score(u) for u in users], lineitem, TOKEN, retry=policy)
    assert [p.outcome for p in report.posted] == ["failed", "accepted", "failed", "accepted", "failed"]
    assert requests == users


class socket_port:
    """A free TCP port on 127.0.0.1, closed again on exit."""

    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


# --- Canvas and Moodle gradebook CSV ---------------------------------------------------------------------------


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_canvas_csv_has_the_gradebook_columns_and_every_roster_student(klass, tmp_path):
    results, roster = klass
    export = export_canvas(results, roster, tmp_path / "canvas.csv", assignment_id="4821")
    rows = read_csv((tmp_path / "canvas.csv").read_text())
    assert rows == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Conv2D filters (4821)"],
        ["Points Possible", "", "", "", "", "10"],
        ["Alice Liddell", "101", "S1", "alice", "A", "10"],
        ["Bob", "", "", "", "A", "6"],  # an LTI id is not a Canvas ID
        ["Carol", "103", "S3", "", "B", "0"],
    ]  # no empty grade cell: it would clear what Canvas holds for Dave, Erin and Frank
    assert [s.user_id for s in export.ungraded] == ["104", "105", "106"]
    assert [s.user_id for s in export.unidentified] == ["u-bob"]
    notes = "\n".join(export.notes())
    assert "Dave (104): the grader failed" in notes and "Bob (u-bob): no numeric user_id" in notes
    assert "mallory.json matches no roster line" in notes and "erin.json" in notes and "Frank (106)" in notes
    # only Dave's grading failed: Erin's result is unreadable and Frank has none
    assert "Erin (105): the grader failed" not in notes and "Frank (106): the grader failed" not in notes


def test_canvas_csv_rescales_to_the_column_points_and_takes_a_title(klass, tmp_path):
    results, roster = klass
    export = export_canvas(results, roster, tmp_path / "canvas.csv", title="Lab 3", points_possible=25)
    rows = read_csv(export.text)
    assert rows[0][-1] == "Lab 3" and rows[1][-1] == "25"
    assert [row[-1] for row in rows[2:]] == ["25", "15", "0"]


def test_moodle_csv_has_identifier_grade_and_feedback_columns(klass, tmp_path):
    results, roster = klass
    export = export_moodle(results, roster, tmp_path / "moodle.csv")
    rows = read_csv((tmp_path / "moodle.csv").read_text())
    # Carol has no email or username and Bob no ID number: those columns are not written, so none can be mapped by
    assert rows[0] == ["Full name", "User ID", "Conv2D filters", "Conv2D filters (feedback)"]
    assert [row[:3] for row in rows[1:]] == [
        ["Alice Liddell", "101", "10"],
        ["Bob", "u-bob", "6"],
        ["Carol", "103", "0"],
    ]
    feedbacks = [row[3] for row in rows[1:]]
    assert feedbacks[0] == "10 / 10 points. All 5 checks passed."
    assert feedbacks[1].startswith("6 / 10 points. 2 of 5 checks failed: Exercise 2: values")
    assert "could not be graded" in feedbacks[2]
    assert [s.user_id for s in export.ungraded] == ["104", "105", "106"]


def moodle_import(text: str, map_by: str) -> dict[str, str]:
    """What Moodle's grade import (grade/import/csv) does with a file, as the
    issue records it: rows are applied by the mapping column, a row whose
    mapping cell is blank goes to the previous row's student, an empty grade
    cell stores "no grade".  Returns user -> stored grade ("" for no grade)."""
    rows = read_csv(text)
    column = rows[0].index(map_by)
    grade_column = len(rows[0]) - 2
    stored, user = {}, None
    for row in rows[1:]:
        user = row[column] or user
        stored[user] = row[grade_column]
    return stored


@pytest.mark.parametrize("map_by", ["User ID", "Email address", "Username", "ID number"])
def test_moodle_import_puts_every_grade_on_its_student_and_erases_nothing(tmp_path, map_by):
    results = tmp_path / "results"
    write_results(
        results,
        {"a": make_result("a.ipynb"), "b": make_result("b.ipynb", passed=2), "c": make_result("c.ipynb", passed=4)},
    )
    roster = write_roster(
        tmp_path / "r.csv",
        "submission,user_id,name,email,username,sis_id\n"
        "a,1,Ann,ann@x.org,ann,S1\nb,2,Ben,ben@x.org,ben,S2\nc,3,Cy,cy@x.org,cy,S3\nd,4,Di,di@x.org,di,S4\n",
    )
    export = export_moodle(results, roster, tmp_path / "m.csv", map_by=map_by)
    stored = moodle_import(export.text, map_by)
    key = {"User ID": "{}", "Email address": "{}@x.org", "Username": "{}", "ID number": "S{}"}[map_by]
    names = {"1": "ann", "2": "ben", "3": "cy"}
    expected = {
        key.format(names[u] if map_by in ("Email address", "Username") else u): g
        for u, g in [("1", "10"), ("2", "4"), ("3", "8")]
    }
    assert stored == expected  # Di has no result: not in the file, so Moodle keeps what it holds
    assert "" not in stored.values()


def test_moodle_export_refuses_rows_without_the_mapping_cell_naming_the_students(klass, tmp_path):
    results, roster = klass
    with pytest.raises(RosterError, match=r"by 'Email address', which 1 student\(s\) lack: Carol \(103\)"):
        export_moodle(results, roster, tmp_path / "m.csv", map_by="Email address")
    assert not (tmp_path / "m.csv").exists()


def test_missing_as_zero_gives_missing_students_0_but_never_a_grader_failure(klass, tmp_path):
    results, roster = klass
    export = export_moodle(results, roster, tmp_path / "m.csv", missing_as_zero=True)
    rows = {row[1]: row for row in read_csv(export.text)[1:]}
    assert rows["105"][2] == "0" and rows["106"][2] == "0" and "no graded submission" in rows["106"][3]
    assert "104" not in rows  # Dave's grading failed: ours, not his
    canvas = read_csv(export_canvas(results, roster, tmp_path / "c.csv", missing_as_zero=True).text)
    assert [row[0] for row in canvas[2:]] == ["Alice Liddell", "Bob", "Carol", "Erin", "Frank"]


def test_gradebook_text_cells_never_run_as_formulas(tmp_path):
    results = tmp_path / "results"
    write_results(results, {"a": make_result("a.ipynb")})
    roster = write_roster(
        tmp_path / "r.csv", 'submission,user_id,name,section\na,1,"=HYPERLINK(""http://x"",""y"")",@SUM(A1)\n'
    )
    canvas = read_csv(export_canvas(results, roster, tmp_path / "c.csv").text)
    assert canvas[2][0] == '\'=HYPERLINK("http://x","y")' and canvas[2][4] == "'@SUM(A1)"
    moodle = read_csv(export_moodle(results, roster, tmp_path / "m.csv").text)
    assert moodle[1][0].startswith("'=")


def test_exports_refuse_to_overwrite_the_batch_files_and_report_unwritable_output(klass, tmp_path):
    results, roster = klass
    with pytest.raises(ResultsError, match="would overwrite the batch's own gradebook.csv"):
        export_canvas(results, roster, results / "gradebook.csv")
    with pytest.raises(ResultsError, match="cannot write the export"):
        export_moodle(results, roster, tmp_path / "no" / "such" / "folder.csv")


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_exports_warn_about_missing_and_unmatched_students(klass, tmp_path, capsys):
    from grader.cli import main

    results, roster = klass
    assert main(["export", "canvas", str(results), "--roster", str(roster), "--out", str(tmp_path / "canvas.csv")]) == 0
    out, err = capsys.readouterr()
    assert "Canvas gradebook written" in out
    assert "frank" in err and "mallory" in err  # no result / not on the roster: listed, not dropped
    rows = read_csv((tmp_path / "canvas.csv").read_text())
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert main(["export", "lti", str(results), "--roster", str(roster), "--out", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {s["userId"] for s in scores} >= {"101", "u-bob"}


def test_cli_publish_takes_the_token_from_the_environment_and_exits_1_on_rejections(
    tmp_path, platform, monkeypatch, capsys
):
    from grader.cli import main

    lineitem, requests = platform
    results = tmp_path / "results"
    write_results(results, {"alice": make_result("alice.ipynb"), "bob": make_result("bob.ipynb")})
    roster = write_roster(tmp_path / "roster.csv", "submission,user_id\nalice,101\nbob,status-400\n")
    monkeypatch.setenv("GRADER_LTI_TOKEN", TOKEN)
    code = main(["publish", "lti", str(results), "--roster", str(roster), "--lineitem", lineitem])
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 of 2 scores accepted" in out
    assert TOKEN not in out + err
    assert sorted(requests) == ["101", "status-400"]


def test_cli_publish_without_token_is_an_operator_error(tmp_path, monkeypatch, capsys):
    from grader.cli import main

    monkeypatch.delenv("GRADER_LTI_TOKEN", raising=False)
    code = main(
        ["publish", "lti", str(tmp_path), "--roster", str(tmp_path / "r.csv"), "--lineitem", "https://lms.example/li/1"]
    )
    assert code == 3
    assert "no token" in capsys.readouterr().err
