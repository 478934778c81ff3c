"""The HTTP API and the students' page (FastAPI).

    GET  /                                  the students' page (grader.service.page)
    GET  /assignments                       what is served, open or closed, and whether a token is needed
    POST /assignments/{name}/submissions    a notebook (multipart file, or the raw JSON as the body): 202 {id, url}
    POST /assignments/{name}/open|close     instructors only
    GET  /submissions/{id}[?wait=SECONDS]   202 {status: queued|running, position}, then 200 with the result JSON
    GET  /submissions/{id}/feedback         the HTML feedback page, pictures included
    GET  /submissions/{id}/answers.npz      the captured arrays (for `grader batch --server --keep-answers`)
    GET  /healthz, GET /metrics             readiness; Prometheus' text format

Refusals, checked before the body is read: 401 (a token is needed), 404
(unknown assignment), 403 (closed), 429 with ``Retry-After`` (the queue is
full); then 413 (larger than ``max_upload_mb``) while it is read.  A
submission is answered ``202`` only once it is stored (:mod:`~grader.service.store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grader.grading.results_dir import read_result
from grader.model.result import Result
from grader.reports.html import CSP as FEEDBACK_CSP
from grader.service import page
from grader.service.access import Role, may_submit, role
from grader.service.metrics import CONTENT_TYPE, Metrics
from grader.service.pool import GradingPool, Served
from grader.service.store import Store, Submission, safe_file_name
from grader.service.views import FeedbackPages, shown_result
from grader.settings import ServeSettings

MAX_WAIT = 60.0  # seconds a status request may wait for the result
JSON_TYPES = ("application/json", "application/x-ipynb+json", "application/octet-stream", "")
# The submission id in a URL is what lets its holder read the result: never sent on as a Referer.
COMMON_HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


class CommonHeaders:
    """Adds :data:`COMMON_HEADERS` to every response.  Plain ASGI: FastAPI's
    ``@app.middleware`` runs each request through a task and a memory stream
    of its own, which cost more CPU than most of our handlers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, sending)


class Waiters:
    """Requests waiting for results (``?wait=``), woken from the workers' threads."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def event(self, sid: str) -> asyncio.Event:
        return self.events.setdefault(sid, asyncio.Event())

    def wake(self, sid: str) -> None:
        """Called by a worker thread once a result is stored."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._set, sid)

    def _set(self, sid: str) -> None:
        event = self.events.pop(sid, None)
        if event is not None:
            event.set()


DRAIN_BYTES = 16 * 2**20  # read past the limit before a 413, so that the client hears it


def create_app(
    settings: ServeSettings,
    store: Store,
    pool: GradingPool,
    served: dict[str, Served],
    metrics: Metrics,
    waiters: Waiters,
    pages: FeedbackPages,
) -> FastAPI:
    limit = int(settings.max_upload_mb * 2**20)
    accepting = 0  # submissions being stored now (counted against the queue limit too)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        waiters.loop = asyncio.get_running_loop()
        pool.start()
        yield
        await run_in_threadpool(pool.close)

    app = FastAPI(title="grader", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    app.add_middleware(CommonHeaders)

    def who(request: Request) -> Role:
        return role(settings, request.headers.get("authorization"))

    def refuse(reason: str, status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
        metrics.rejected.labels(reason).inc()
        return HTTPException(status, detail, headers=headers)

    # --- the page -------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page.INDEX_HTML, headers={"Content-Security-Policy": page.CSP})

    @app.get("/static/page.js")
    async def script() -> Response:
        return Response(page.PAGE_JS, media_type="text/javascript")

    @app.get("/static/page.css")
    async def style() -> Response:
        return Response(page.PAGE_CSS, media_type="text/css")

    # --- assignments ------------------------------------------------------------------------

    @app.get("/assignments")
    async def assignments() -> dict[str, Any]:
        return {
            "auth": "token" if settings.tokens or settings.instructor_tokens else "none",
            "assignments": [
                {
                    "name": name,
                    "title": s.assignment.spec.title,
                    "open": store.is_open(name),
                    "max_score": s.assignment.spec.max_score,
                    "reference_key": s.key,
                    "submissions": f"assignments/{name}/submissions",
                }
                for name, s in served.items()
            ],
        }

    def known(name: str) -> Served:
        if name not in served:
            raise refuse("unknown", 404, f"no assignment {name!r} is served here (see GET /assignments)")
        return served[name]

    @app.post("/assignments/{name}/open")
    async def open_assignment(name: str, request: Request) -> dict[str, Any]:
        return await _set_open(name, request, True)

    @app.post("/assignments/{name}/close")
    async def close_assignment(name: str, request: Request) -> dict[str, Any]:
        return await _set_open(name, request, False)

    async def _set_open(name: str, request: Request, is_open: bool) -> dict[str, Any]:
        known(name)
        if who(request) < Role.instructor:
            raise HTTPException(403, "opening and closing an assignment needs an instructor token")
        await run_in_threadpool(store.set_open, name, is_open)
        return {"name": name, "open": is_open}

    # --- submitting -------------------------------------------------------------------------

    @app.post("/assignments/{name}/submissions", status_code=202)
    async def submit(name: str, request: Request, filename: str | None = None) -> JSONResponse:
        nonlocal accepting
        if not may_submit(settings, who(request)):
            raise refuse("unauthorized", 401, "a token is needed: Authorization: Bearer <token>", _challenge())
        known(name)
        if not store.is_open(name):
            raise refuse("closed", 403, f"{name} is closed: it does not take submissions now")
        waiting = store.counts()["queued"] + accepting
        if waiting >= settings.queue_limit:
            retry = str(pool.retry_after(waiting))
            raise refuse("queue_full", 429, f"{waiting} submissions are waiting; try again", {"Retry-After": retry})
        accepting += 1
        try:
            body = await _read_capped(request, limit)
            given_name, data = await _notebook_from(request, body, filename)
            sub = await run_in_threadpool(store.add, name, safe_file_name(given_name), data)
        finally:
            accepting -= 1
        pool.put(sub.id)
        metrics.received.labels(name).inc()
        url = str(request.url_for("submission", sid=sub.id))
        return JSONResponse(
            {**_pending(sub, store), "url": url, "feedback_url": f"{url}/feedback"},
            status_code=202,
            headers={"Location": url},
        )

    async def _read_capped(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        declared_size = int(declared) if declared and declared.isdigit() else 0
        if declared_size > limit + DRAIN_BYTES:
            raise _too_large()
        # Past the limit, read on a little before answering: a client still
        # sending when the connection closes sees a broken pipe, not the 413
        # (Python's http.client and requests do).
        too_large = declared_size > limit
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + DRAIN_BYTES:
                raise _too_large()
            too_large = too_large or total > limit
            if not too_large:
                chunks.append(chunk)
        if too_large:
            raise _too_large()
        return b"".join(chunks)

    def _too_large() -> HTTPException:
        return refuse("too_large", 413, f"larger than the {settings.max_upload_mb:g} MB a submission may be")

    # --- reading back ---------------------------------------------------------------------------

    def submission_of(sid: str) -> Submission:
        sub = store.get(sid)
        if sub is None:
            raise HTTPException(404, "no such submission")
        return sub

    def result_of(sub: Submission) -> Result:
        result = read_result(store.result_file(sub.id))
        if not isinstance(result, Result):
            raise HTTPException(500, f"the result cannot be read: {result}")
        return result

    @app.get("/submissions/{sid}", name="submission")
    async def submission(sid: str, request: Request, wait: float = 0.0) -> Response:
        sub = submission_of(sid)
        if sub.state != "done" and wait > 0:
            event = waiters.event(sid)  # before looking again: a result stored meanwhile wakes it
            sub = submission_of(sid)
            if sub.state != "done":
                try:
                    await asyncio.wait_for(event.wait(), min(wait, MAX_WAIT))
                except TimeoutError:
                    pass
                sub = submission_of(sid)
        if sub.state != "done":
            return JSONResponse(_pending(sub, store), status_code=202, headers={"Cache-Control": "no-store"})
        assignment = served[sub.assignment].assignment if sub.assignment in served else None
        result = result_of(sub)
        if assignment is not None:
            result = shown_result(result, assignment, who(request) is Role.instructor)
        return Response(result.model_dump_json(indent=2), media_type="application/json")

    @app.get("/submissions/{sid}/feedback", response_class=HTMLResponse)
    async def feedback(sid: str, request: Request) -> Response:
        sub = submission_of(sid)
        if sub.state != "done":
            return HTMLResponse(_STILL_GRADING, status_code=202, headers={"Cache-Control": "no-store"})
        if sub.assignment not in served:
            raise HTTPException(409, f"{sub.assignment} is not served now: its feedback page cannot be drawn")
        path = await run_in_threadpool(pages.get, sub, who(request) is Role.instructor)
        return HTMLResponse(
            path.read_bytes(), headers={"Content-Security-Policy": f"{FEEDBACK_CSP}; frame-ancestors 'self'"}
        )

    @app.get("/submissions/{sid}/answers.npz")
    async def answers(sid: str) -> Response:
        sub = submission_of(sid)
        path = store.answers_file(sid)
        if sub.state != "done" or not path.is_file():
            raise HTTPException(404, "no captured answers for this submission")
        return Response(await run_in_threadpool(path.read_bytes), media_type="application/octet-stream")

    # --- operations -----------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        counts = store.counts()
        ready = pool.ready.is_set()
        state = "ok" if ready else ("failed: " + pool.failed if pool.failed else "starting")
        body: dict[str, Any] = {"status": state, "ready": ready, "workers": pool.workers, **counts}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(await run_in_threadpool(metrics.text), media_type=CONTENT_TYPE)

    return app


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="grader"'}


def _pending(sub: Submission, store: Store) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": sub.id,
        "assignment": sub.assignment,
        "file": sub.file_name,
        "status": sub.state,
        "submitted_at": datetime.fromtimestamp(sub.submitted_at, UTC).isoformat(timespec="milliseconds"),
    }
    if sub.state == "queued":
        found["position"] = store.position(sub)
    return found


async def _notebook_from(request: Request, body: bytes, filename: str | None) -> tuple[str | None, bytes]:
    """(the client's file name, the notebook's bytes) from a multipart form's
    file, or from the body itself."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await Request(request.scope, _replay(body)).form(max_files=1, max_fields=8)
        files = [(key, v) for key, v in form.multi_items() if not isinstance(v, str)]
        if not files:
            raise HTTPException(400, "the form has no file: send the notebook as a file field (`notebook`)")
        upload = next((v for key, v in files if key == "notebook"), files[0][1])
        data = await upload.read()
        await form.close()
        given = upload.filename
    elif kind in JSON_TYPES:
        data, given = body, filename
    else:
        raise HTTPException(415, f"send the notebook as multipart/form-data or as application/json, not {kind}")
    if not data:
        raise HTTPException(400, "the notebook is empty")
    return given, data


def _replay(body: bytes) -> Callable[[], Any]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


_STILL_GRADING = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">'
    "<title>Still grading</title></head><body><p>Your notebook is still being graded; this page reloads by "
    "itself.</p></body></html>"
)
