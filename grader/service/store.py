"""The service's durable queue: a folder of files and an SQLite database (WAL).

A submission is acknowledged only once its bytes are on disk (written whole,
flushed, renamed into place, the folder flushed) and its row is committed
(``synchronous=FULL``), so a ``kill -9`` or a power cut after the ``202``
loses nothing.  A result is written the same way *before* its row says
``done``: after a crash, a row still ``queued`` or ``running`` whose result
file exists is done (see :meth:`Store.pending`), never graded a second time.

Layout of ``data_dir``::

    queue.sqlite                  submissions (state, attempts, times) and assignments (open or closed)
    submissions/<id>/<file name>  the bytes received
    results/<id>.json             the result (the CLI's schema)
    answers/<id>.npz              the captured arrays, for the feedback page's pictures
    feedback/<id>.html            the feedback page, rendered on first request (.instructor.html: all checks)

The notebook, the result and the row are the grade of record and are kept.
The answers and the drawn pages, by far the largest files, may be removed
after a while (:meth:`Store.remove_pictures`, ``keep_answers_days``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grader.errors import ServiceError
from grader.grading.results_dir import write_atomic
from grader.model.result import Result

State = Literal["queued", "running", "done"]
DAY = 86400.0  # seconds: keep_answers_days counts in days
DATABASE = "queue.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,      -- arrival order: the queue's order
    id TEXT NOT NULL UNIQUE,                    -- unguessable: whoever holds it may read the result
    assignment TEXT NOT NULL,
    file_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,        -- gradings started (a crash mid-grading leaves one more)
    submitted_at REAL NOT NULL,                 -- Unix time
    started_at REAL,
    finished_at REAL,
    score REAL,
    result_status TEXT
);
CREATE INDEX IF NOT EXISTS unfinished ON submissions (state, seq);
CREATE TABLE IF NOT EXISTS assignments (name TEXT PRIMARY KEY, open INTEGER NOT NULL);
"""
COLUMNS = (
    "seq, id, assignment, file_name, sha256, size, state, attempts, submitted_at, started_at, finished_at, "
    "score, result_status"
)


@dataclass(frozen=True)
class Submission:
    seq: int
    id: str
    assignment: str
    file_name: str
    sha256: str
    size: int
    state: State
    attempts: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    score: float | None
    result_status: str | None


def graded_before(days: float) -> float:
    """The Unix time before which a graded submission's pictures are past ``keep_answers_days``."""
    return time.time() - days * DAY


class Store:
    """The queue and the files, shared by the web server's threads and the
    grading workers (one connection, one lock: every statement is short)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.submissions, self.results = self.root / "submissions", self.root / "results"
        self.answers, self.feedback = self.root / "answers", self.root / "feedback"
        try:
            for folder in (self.submissions, self.results, self.answers, self.feedback):
                folder.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob("*/.tmp-*.part"):  # a write cut short by a crash; never acknowledged
                stale.unlink()
            self._db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the 202 goes out
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ServiceError(f"{self.root}: cannot use it as the service's data folder: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- files ------------------------------------------------------------------

    def submission_file(self, sub: Submission) -> Path:
        """``submissions/<id>/<file name>``: results and messages name the student's file, not the id."""
        return self.submissions / sub.id / sub.file_name

    def result_file(self, sid: str) -> Path:
        return self.results / f"{sid}.json"

    def answers_file(self, sid: str) -> Path:
        return self.answers / f"{sid}.npz"

    def feedback_file(self, sid: str, instructor: bool = False) -> Path:
        return self.feedback / f"{sid}.instructor.html" if instructor else self.feedback / f"{sid}.html"

    def remove_pictures(self, graded_before: float) -> int:
        """Delete the kept answers and the drawn feedback pages of the
        submissions graded before ``graded_before`` (Unix time); returns how
        many files went.  Rows, notebooks and results stay."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM submissions WHERE state = 'done' AND finished_at < ?", (graded_before,)
            ).fetchall()
        removed = 0
        for (sid,) in rows:
            for path in (self.answers_file(sid), self.feedback_file(sid), self.feedback_file(sid, instructor=True)):
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def _durable(self, path: Path, data: bytes) -> None:
        """Whole or not at all, and still there after a power cut (the rename flushed too)."""
        write_atomic(path, data)
        _fsync_folder(path.parent)

    # --- the queue ----------------------------------------------------------------

    def add(self, assignment: str, file_name: str, data: bytes) -> Submission:
        """Store a submission durably; returns its row (state ``queued``).
        ``file_name``: a plain file name (see :func:`safe_file_name`)."""
        sid = secrets.token_urlsafe(16)
        folder = self.submissions / sid
        path = folder / file_name
        folder.mkdir()
        _fsync_folder(self.submissions)
        self._durable(path, data)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO submissions (id, assignment, file_name, sha256, size, state, submitted_at) "
                    "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                    (sid, assignment, file_name, hashlib.sha256(data).hexdigest(), len(data), time.time()),
                )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        found = self.get(sid)
        assert found is not None
        return found

    def get(self, sid: str) -> Submission | None:
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM submissions WHERE id = ?", (sid,)).fetchone()
        return Submission(*row) if row else None

    def unfinished(self) -> list[Submission]:
        """Rows still ``queued`` or ``running`` (after a crash), in arrival order."""
        with self._lock:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM submissions WHERE state != 'done' ORDER BY seq").fetchall()
        return [Submission(*row) for row in rows]

    def start(self, sid: str) -> Submission:
        """Mark a submission ``running`` (one more attempt)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET state = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
                (time.time(), sid),
            )
        found = self.get(sid)
        assert found is not None
        return found

    def requeue(self, sid: str, not_an_attempt: bool = False) -> None:
        """Back in the queue; ``not_an_attempt``: the grading it was in was given up
        (a shutdown), so it does not count towards the attempts that end in a failure."""
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET state = 'queued', attempts = attempts - ? WHERE id = ? AND state != 'done'",
                (int(not_an_attempt), sid),
            )

    def finish(self, sid: str, result: Result) -> None:
        """Write the result, then mark the row ``done`` (in that order: see the module's docstring)."""
        self._durable(self.result_file(sid), result.model_dump_json(indent=2).encode())
        self.mark_done(sid, result)

    def mark_done(self, sid: str, result: Result) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET state = 'done', finished_at = ?, score = ?, result_status = ? WHERE id = ?",
                (time.time(), result.score, result.status, sid),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM submissions GROUP BY state").fetchall()
        found = {"queued": 0, "running": 0, "done": 0}
        found.update({state: n for state, n in rows})
        return found

    def position(self, submission: Submission) -> int:
        """How many queued submissions arrived before this one."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM submissions WHERE state = 'queued' AND seq < ?", (submission.seq,)
            ).fetchone()
        return int(n)

    # --- assignments ----------------------------------------------------------------

    def is_open(self, name: str) -> bool:
        """Open unless an instructor closed it (a new assignment starts open)."""
        with self._lock:
            row = self._db.execute("SELECT open FROM assignments WHERE name = ?", (name,)).fetchone()
        return bool(row[0]) if row else True

    def set_open(self, name: str, is_open: bool) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO assignments (name, open) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET open = ?",
                (name, int(is_open), int(is_open)),
            )


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MAX_NAME = 100


def safe_file_name(name: str | None) -> str:
    """The name a client gave its file, made a plain ``.ipynb`` file name
    (no folder, no leading dot, no character a shell or a page would read
    otherwise): ``../../x y.ipynb`` is ``x_y.ipynb``."""
    base = re.split(r"[/\\]", name or "")[-1]
    if base.endswith(".ipynb"):
        base = base[: -len(".ipynb")]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return (base[: MAX_NAME - len(".ipynb")] or "submission") + ".ipynb"
