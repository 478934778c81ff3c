"""Using a running ``grader serve`` instead of a local executor:
``grader check --server URL`` and ``grader batch --server URL``.

Standard library only (``urllib``): a student's install has no web framework.
A full queue (429) is waited out as ``Retry-After`` says; every other refusal
is a :class:`~grader.errors.ServiceError` with the service's reason.  A batch
keeps ``grader batch``'s guarantees: results written atomically as they
arrive, up-to-date ones skipped (against the service's references), the
summary rebuilt from the files.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from grader.errors import InvalidSubmission, ServiceError
from grader.execution.plan import read_submission
from grader.grading.batch import (
    BatchSummary,
    answers_path,
    batch_summary,
    find_submissions,
    pending,
    prepare_out,
    store_result,
)
from grader.grading.results_dir import result_names, write_atomic
from grader.model.assignment import Assignment
from grader.model.result import Result

WAIT = 30  # seconds one status request waits on the service
MAX_RETRIES = 50  # 429s waited out per submission


class ServiceClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ServiceError(f"--server {url}: not an http:// or https:// URL")
        self.base = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(urllib.parse.urljoin(self.base, path), body, headers, method=method)
        for _ in range(MAX_RETRIES):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout + WAIT) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 429:
                    time.sleep(min(60.0, float(exc.headers.get("Retry-After") or 1)))
                    continue
                raise ServiceError(f"{self.base}: {method} {path}: {exc.code} {_detail(exc.read()) or exc.reason}")
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ServiceError(f"cannot reach the grading service at {self.base}: {reason}") from None
        raise ServiceError(f"{self.base}: the queue stayed full; try again later")

    def _json(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        status, data = self._request(method, path, body, content_type)
        return status, json.loads(data)

    def assignments(self) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self._json("GET", "assignments")[1]["assignments"]}

    def submit(self, assignment: str, notebook: Path) -> str:
        """Post a notebook's bytes; its submission id."""
        query = urllib.parse.urlencode({"filename": notebook.name})
        path = f"assignments/{urllib.parse.quote(assignment)}/submissions?{query}"
        _, body = self._json("POST", path, notebook.read_bytes(), "application/json")
        return str(body["id"])

    def result(self, sid: str, timeout: float = 3600.0) -> Result:
        """Wait for the result (long polls of :data:`WAIT` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, data = self._request("GET", f"submissions/{urllib.parse.quote(sid)}?wait={WAIT}")
            if status == 200:
                return Result.model_validate_json(data)
        raise ServiceError(f"{self.base}: submission {sid} was not graded within {timeout:g} s")

    def feedback(self, sid: str) -> bytes:
        return self._request("GET", f"submissions/{urllib.parse.quote(sid)}/feedback")[1]

    def answers(self, sid: str) -> bytes | None:
        try:
            return self._request("GET", f"submissions/{urllib.parse.quote(sid)}/answers.npz")[1]
        except ServiceError:
            return None  # an unreadable notebook has none


def check_on_server(
    server: str, notebook: Path, assignment: str | None, token: str | None = None
) -> tuple[Result, bytes]:
    """Submit one notebook and wait: its result (the checks students see) and feedback page."""
    client = ServiceClient(server, token)
    name = assignment or _assignment_of(notebook, client)
    sid = client.submit(name, notebook)
    return client.result(sid), client.feedback(sid)


def _assignment_of(notebook: Path, client: ServiceClient) -> str:
    try:
        hint = read_submission(notebook, 64 * 2**20).assignment_hint
    except InvalidSubmission:
        hint = None
    served = client.assignments()
    if hint:
        return hint
    if len(served) == 1:
        return next(iter(served))
    raise ServiceError(
        f"{notebook.name}: cannot tell which assignment this is; pass --assignment (served: {', '.join(served)})"
    )


def batch_on_server(
    server: str,
    folder: Path,
    assignment: Assignment,
    out: Path,
    *,
    jobs: int = 8,
    force: bool = False,
    keep_answers: bool = False,
    token: str | None = None,
    on_result: Callable[[Path, Result], None] | None = None,
) -> BatchSummary:
    """:func:`~grader.grading.batch.grade_batch`, graded by the service."""
    start = time.monotonic()
    client = ServiceClient(server, token)
    served = client.assignments()
    if assignment.name not in served:
        raise ServiceError(f"{server}: does not serve {assignment.name} (it serves {', '.join(served) or 'nothing'})")
    key = served[assignment.name]["reference_key"]
    submissions = find_submissions(folder)
    prepare_out(out)
    names = result_names([s.name for s in submissions])
    todo = pending(submissions, out, names, key, force=force, keep_answers=keep_answers)

    def graded(submission: Path) -> tuple[Path, Result, bytes | None]:
        sid = client.submit(assignment.name, submission)
        result = client.result(sid)
        return submission, result, client.answers(sid) if keep_answers else None

    # a few uploads in flight per job: the service's workers find the next one queued, not on its way
    with ThreadPoolExecutor(max_workers=4 * max(1, jobs), thread_name_prefix="grader-client") as pool:
        for future in as_completed([pool.submit(graded, s) for s in todo]):
            submission, result, answers = future.result()
            result.submission.file = submission.name  # the service stores it under a plain name; results match by it
            if answers is not None:
                answers_path(out, submission, names).parent.mkdir(parents=True, exist_ok=True)
                write_atomic(answers_path(out, submission, names), answers, cache=False)
            store_result(out, submission, names, result, on_result)
    return batch_summary(submissions, assignment, out, len(todo), start)


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    return detail if isinstance(detail, str) else json.dumps(detail)
