"""LTI 1.3 Assignment and Grade Services (AGS): one Score per student,
exported as a JSON array or POSTed to the platform's line item.

A Score (IMS AGS 2.0 Score publish service; Canvas, Moodle, Blackboard and
Brightspace accept the same object) is made from each roster student's result:

=====================  ====================  =====================  =========================================
result ``status``      ``activityProgress``  ``gradingProgress``    ``scoreGiven`` / ``scoreMaximum``
=====================  ====================  =====================  =========================================
``graded``             ``Completed``         ``FullyGraded``        the score / the assignment's points
``invalid_submission`` ``Submitted``         ``FullyGraded``        0 / the assignment's points
``error``              no Score is sent: the platform keeps what it holds
=====================  ====================  =====================  =========================================

- ``graded`` covers notebooks that ran only partly: the checks decided the score.
- An invalid submission (not a readable notebook) is an explicit 0,
  ``FullyGraded``, with a comment saying why it could not be graded: Moodle
  keeps ``scoreGiven`` only when ``FullyGraded`` (a ``PendingManual`` 0 would
  be stored as no grade).
- A grader failure is ours, not the student's, and sends nothing: Canvas and
  Moodle both store a ``Failed`` Score, or one without ``scoreGiven``, as no
  grade, erasing an earlier good one.  Such students are listed for the
  operator (:attr:`Matching.failed`) with what to do.
- Students on the roster without a readable result get no Score; they are
  listed in the :class:`~grader.platforms.matching.Matching` instead.

``timestamp`` is when the score was made, the result's ``graded_at``, in UTC with
milliseconds (``2026-11-28T19:30:00.123+00:00``).  Platforms do not let an
older score replace a newer one, so publishing an old results folder never
overwrites a regrade.  ``comment`` is :func:`grader.platforms.matching.feedback`: the score and
the first failed checks.

Publishing POSTs each Score to the line item URL with ``/scores`` appended to
its path (query kept), as ``application/vnd.ims.lis.v1.score+json`` with the
bearer token, using only :mod:`urllib.request`.  Connection errors, timeouts,
HTTP 429 and 5xx are retried with exponential backoff, honouring
``Retry-After``; other answers are final (a redirect is not followed, so the
token never goes elsewhere).  The token is never put in a message or a report.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from grader.platforms.matching import Graded, LmsError, Matching, feedback, match_results, write_export
from grader.platforms.roster import Roster

SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
RESULTS_MEDIA_TYPE = "application/vnd.ims.lis.v2.resultcontainer+json"
USER_AGENT = "grader-lti-ags"
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
EXCERPT_CHARS = 200

ActivityProgress = Literal["Initialized", "Started", "InProgress", "Submitted", "Completed"]
GradingProgress = Literal["FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"]
# result status -> (activityProgress, gradingProgress)
PROGRESS: dict[str, tuple[ActivityProgress, GradingProgress]] = {
    "graded": ("Completed", "FullyGraded"),
    "invalid_submission": ("Submitted", "FullyGraded"),
}


class Score(BaseModel):
    """An AGS Score; ``model_dump(by_alias=True, exclude_none=True)`` is the wire format."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False, frozen=True
    )

    user_id: str = Field(description="the platform's LTI user id (the launch's sub)")
    score_given: float | None = Field(None, ge=0)
    score_maximum: float | None = Field(None, ge=0, description="present whenever score_given is")
    activity_progress: ActivityProgress
    grading_progress: GradingProgress
    timestamp: str = Field(description="ISO 8601 with milliseconds and a time zone")
    comment: str | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def score_for(graded: Graded) -> Score:
    """The Score a roster student's result becomes (see the module's table)."""
    result = graded.result
    if result.status not in PROGRESS:
        raise LmsError(f"{graded.student.label}: a {result.status!r} result is not a grade; no Score is made for it")
    activity, grading = PROGRESS[result.status]
    return Score(
        user_id=graded.student.user_id,
        score_given=result.score,
        score_maximum=result.max_score,
        activity_progress=activity,
        grading_progress=grading,
        timestamp=score_timestamp(result.graded_at),
        comment=feedback(result),
    )


def build_scores(matching: Matching) -> list[Score]:
    """One Score per roster student with a readable result the grader did not
    fail on, in roster order (the others are in ``matching.failed`` and
    ``matching.without_result``)."""
    return [score_for(g) for g in matching.graded if g.result.status != "error"]


def score_timestamp(graded_at: str) -> str:
    """``graded_at`` as UTC with milliseconds; now if it cannot be read (naive times are UTC)."""
    try:
        moment = datetime.fromisoformat(graded_at)
    except ValueError:
        moment = datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass
class LtiExport:
    scores: list[Score]
    matching: Matching
    out: Path | None = None


def export_lti(results_dir: Path | str, roster: Roster | Path | str, out: Path | str) -> LtiExport:
    """Write the Scores of a results folder as a JSON array to ``out``.

    Raises :class:`~grader.platforms.roster.RosterError` (bad roster),
    :class:`~grader.errors.ResultsError` (no results folder, ``out`` not
    writable) or :class:`~grader.errors.LmsError` (results of several
    assignments), all exit code 3.  Unreadable, unmatched and missing results
    are in the returned ``matching``, never an exception."""
    matching = match_results(results_dir, roster)
    scores = build_scores(matching)
    path = write_export(out, json.dumps([s.wire() for s in scores], indent=2, ensure_ascii=False) + "\n")
    return LtiExport(scores=scores, matching=matching, out=path)


class RetryPolicy(BaseModel):
    """How hard to try: ``attempts`` in all per student, waiting ``base_delay``
    seconds, doubling up to ``max_delay``, between them (or what the server's
    ``Retry-After`` asks, up to ``max_delay``); ``timeout`` seconds per request;
    stop sending after ``give_up_after`` students in a row failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(4, ge=1, le=10)
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(30.0, ge=0)
    timeout: float = Field(30.0, gt=0)
    give_up_after: int = Field(3, ge=1)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wanted = self.base_delay * 2 ** (attempt - 1) if retry_after is None else retry_after
        return min(self.max_delay, wanted)


@dataclass(frozen=True)
class Posted:
    """What became of one student's Score."""

    user_id: str
    outcome: Literal["accepted", "rejected", "failed"]  # 2xx / final non-2xx answer / gave up retrying
    attempts: int
    status: int | None  # the last HTTP status; None when no answer came
    detail: str  # an excerpt of the answer's body, or the error; never the token


@dataclass
class PublishOutcome:
    url: str  # the scores endpoint
    posted: list[Posted]
    matching: Matching | None = None

    def with_outcome(self, outcome: str) -> list[Posted]:
        return [p for p in self.posted if p.outcome == outcome]

    @property
    def ok(self) -> bool:
        return all(p.outcome == "accepted" for p in self.posted)

    def notes(self) -> list[str]:
        lines = [
            f"{p.user_id}: {p.outcome}"
            + (f" (HTTP {p.status})" if p.status else "")
            + (f" after {p.attempts} attempts" if p.attempts > 1 else "")
            + (f": {p.detail}" if p.detail else "")
            for p in self.posted
            if p.outcome != "accepted"
        ]
        return (self.matching.notes() if self.matching else []) + lines


def publish_lti(
    results_dir: Path | str,
    roster: Roster | Path | str,
    lineitem_url: str,
    token: str,
    *,
    retry: RetryPolicy | None = None,
    allow_http: bool = False,
) -> PublishOutcome:
    """Build the Scores of a results folder and POST them to the line item.

    The URL and the token are checked before anything is sent
    (:class:`~grader.errors.LmsError`); roster and results folder errors are as
    for :func:`export_lti`.  A Score the platform refuses or that cannot be
    delivered is in the report (``report.ok`` is False), not an exception."""
    matching = match_results(results_dir, roster)
    report = publish_scores(build_scores(matching), lineitem_url, token, retry=retry, allow_http=allow_http)
    report.matching = matching
    return report


def publish_scores(
    scores: list[Score],
    lineitem_url: str,
    token: str,
    *,
    retry: RetryPolicy | None = None,
    allow_http: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishOutcome:
    """POST each Score to ``<lineitem_url>/scores``, one after the other.

    When ``retry.give_up_after`` students in a row could not be delivered
    (the platform is down or unreachable), the rest are not sent: they are
    reported ``failed`` with 0 attempts.  ``allow_http``: permit plain
    ``http://`` to a host that is not this machine (the bearer token would
    travel in clear text).  Raises :class:`~grader.errors.LmsError` for an
    unusable URL or token, before anything is sent."""
    url = scores_url(lineitem_url, allow_http=allow_http)
    _check_token(token)
    retry = retry or RetryPolicy()
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": SCORE_MEDIA_TYPE,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    posted: list[Posted] = []
    for score in scores:
        recent = posted[-retry.give_up_after :]
        if len(recent) == retry.give_up_after and all(p.outcome == "failed" for p in recent):
            posted.append(
                Posted(
                    score.user_id,
                    "failed",
                    0,
                    None,
                    f"not sent: the previous {retry.give_up_after} students could not be delivered",
                )
            )
        else:
            posted.append(_post(opener, url, headers, score, retry, sleep))
    return PublishOutcome(url=url, posted=[replace(p, detail=_scrub(p.detail, token)) for p in posted])


def scores_url(lineitem_url: str, *, allow_http: bool = False) -> str:
    """The AGS scores endpoint: the line item URL with ``/scores`` appended to
    its path, query string kept, fragment dropped."""
    try:
        parts = urllib.parse.urlsplit(lineitem_url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        raise LmsError(f"line item URL {_safe_url(lineitem_url)!r}: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LmsError(f"line item URL {_safe_url(lineitem_url)!r}: not an http(s) URL")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise LmsError(
            f"line item URL {_safe_url(lineitem_url)!r}: plain http would send the token in clear text; use https"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/scores"):
        raise LmsError(f"line item URL {_safe_url(lineitem_url)!r}: give the line item URL, without /scores")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/scores", parts.query, ""))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


def _post(
    opener: urllib.request.OpenerDirector,
    url: str,
    headers: dict[str, str],
    score: Score,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
) -> Posted:
    """Deliver one Score, retrying what may heal by waiting."""
    body = json.dumps(score.wire()).encode()
    status, detail = None, ""
    for attempt in range(1, retry.attempts + 1):
        retry_after = None
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=retry.timeout) as response:
                return Posted(score.user_id, "accepted", attempt, response.status, _excerpt(response.read(4096)))
        except urllib.error.HTTPError as exc:
            status, detail = exc.code, _error_body(exc)
            if 300 <= status < 400:
                detail = f"redirect to {exc.headers.get('Location', '?')!r} not followed"
            if status == 409 and _already_held(opener, url, headers, score, retry.timeout):
                # Moodle answers 409 when it holds a score at least as new: a re-publish, or a retry after a lost
                # answer. Where what it holds is this very score, it was delivered.
                return Posted(score.user_id, "accepted", attempt, status, "already held by the platform (409)")
            if status != 429 and status < 500:
                return Posted(score.user_id, "rejected", attempt, status, detail)
            retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
        except urllib.error.URLError as exc:
            status, detail = None, f"cannot connect: {exc.reason}"
            if isinstance(exc.reason, ssl.SSLCertVerificationError):  # does not heal by waiting
                return Posted(score.user_id, "failed", attempt, None, detail)
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, connection closed mid-answer
            status, detail = None, f"{type(exc).__name__}: {exc}".rstrip(": ")
        if attempt < retry.attempts:
            sleep(retry.delay(attempt, retry_after))
    return Posted(score.user_id, "failed", retry.attempts, status, f"gave up after {retry.attempts} attempts: {detail}")


def results_url(scores: str, user_id: str) -> str:
    """The line item's AGS results endpoint for one user, from its scores
    endpoint: ``.../scores?q`` becomes ``.../results?q&user_id=...``."""
    parts = urllib.parse.urlsplit(scores)
    query = "&".join(q for q in (parts.query, urllib.parse.urlencode({"user_id": user_id})) if q)
    path = parts.path[: -len("/scores")] + "/results"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _already_held(
    opener: urllib.request.OpenerDirector, scores: str, headers: dict[str, str], score: Score, timeout: float
) -> bool:
    """Whether the platform's result for the user is this score (read back
    through the AGS results service); False when it cannot be read."""
    read = {**headers, "Accept": RESULTS_MEDIA_TYPE}
    read.pop("Content-Type", None)
    request = urllib.request.Request(results_url(scores, score.user_id), headers=read, method="GET")
    try:
        with opener.open(request, timeout=timeout) as response:
            results = json.loads(response.read(1 << 20))
    except (OSError, ValueError, http.client.HTTPException):
        return False
    if not isinstance(results, list):
        return False
    for result in results:
        if not isinstance(result, dict) or str(result.get("userId")) != score.user_id:
            continue
        held, maximum = result.get("resultScore"), result.get("resultMaximum")
        if not isinstance(held, int | float) or score.score_given is None or not score.score_maximum:
            continue
        if isinstance(maximum, int | float) and maximum > 0:  # a platform may rescale to its own maximum
            if abs(held / maximum - score.score_given / score.score_maximum) < 1e-9:
                return True
        elif abs(held - score.score_given) < 1e-9:
            return True
    return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect becomes an HTTPError: the token is only ever sent to the URL given."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return _excerpt(exc.read(4096))
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        exc.close()


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def _check_token(token: str) -> None:
    if not token or not token.strip():
        raise LmsError("no access token given")
    if not BEARER_TOKEN.fullmatch(token):  # never echo it: the message would leak it into logs
        raise LmsError(
            f"the access token ({len(token)} characters) is not a bearer token: only letters, digits "
            "and -._~+/ (then =) are allowed; check it was copied whole, without quotes or spaces"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_url(url: str) -> str:
    """The URL without user:password@, for messages."""
    return re.sub(r"//[^/?#]*@", "//", url.strip())
