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

Canvas's submission extension (``https://canvas.instructure.com/lti/submission``,
read in Canvas's ``Lti::IMS::ScoresController``): a Score without it makes a
new submission attempt stamped *now*, so publishing after the due date would
mark every student late, and an assignment with an attempt limit answers 422.
Each Score therefore carries it:

- the first time a student is graded, ``submitted_at``: when the student
  handed in (the roster's ``submitted_at``, which ``grader import`` writes);
- a regrade (the line item already holds a result for the student, read
  through the AGS results service before publishing), or a student whose
  submission time is unknown: ``new_submission: false``, so the grade is set
  on the existing submission and no attempt is made or stamped.

Other platforms ignore the extension, as AGS requires of unknown members.

Publishing POSTs each Score to the line item URL with ``/scores`` appended to
its path (query kept), as ``application/vnd.ims.lis.v1.score+json`` with the
bearer token (:mod:`.services` has the rules on URLs, retries and redirects).
The token is never put in a message or a report.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from grader.platforms.lti.services import (
    RetryPolicy,
    ServiceClient,
    ServiceError,
    check_url,
    error_body,
    excerpt,
    no_redirect_opener,
    retry_after_seconds,
    safe_url,
    scrub,
)
from grader.platforms.lti.tool import SCOPE_LINEITEM, SCOPE_RESULT, SCOPE_SCORE, TokenClient
from grader.platforms.matching import Graded, LmsError, Matching, feedback, match_results, write_export
from grader.platforms.roster import Roster

__all__ = ["RetryPolicy", "retry_after_seconds"]  # part of publishing's interface, defined with the other services

SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
RESULTS_MEDIA_TYPE = "application/vnd.ims.lis.v2.resultcontainer+json"
CANVAS_SUBMISSION = "https://canvas.instructure.com/lti/submission"
USER_AGENT = "grader-lti-ags"
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
PUBLISH_SCOPES = [SCOPE_SCORE, SCOPE_RESULT, SCOPE_LINEITEM]

ActivityProgress = Literal["Initialized", "Started", "InProgress", "Submitted", "Completed"]
GradingProgress = Literal["FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"]
# result status -> (activityProgress, gradingProgress)
PROGRESS: dict[str, tuple[ActivityProgress, GradingProgress]] = {
    "graded": ("Completed", "FullyGraded"),
    "invalid_submission": ("Submitted", "FullyGraded"),
}


class CanvasSubmission(BaseModel):
    """Canvas's submission extension of a Score (see the module's text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new_submission: bool | None = None
    submitted_at: str | None = Field(None, description="ISO 8601 with milliseconds and a time zone")


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
    canvas_submission: CanvasSubmission | None = Field(None, alias=CANVAS_SUBMISSION)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def score_for(graded: Graded, *, regrade: bool = False) -> Score:
    """The Score a roster student's result becomes (see the module's table);
    ``regrade``: the platform already holds a result for the student."""
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
        canvas_submission=_canvas_submission(graded, regrade),
    )


def _canvas_submission(graded: Graded, regrade: bool) -> CanvasSubmission:
    submitted_at = graded.student.submitted_at
    if regrade or submitted_at is None:
        return CanvasSubmission(new_submission=False)
    return CanvasSubmission(submitted_at=submitted_at.astimezone(UTC).isoformat(timespec="milliseconds"))


def build_scores(matching: Matching, held: set[str] | None = None) -> list[Score]:
    """One Score per roster student with a readable result the grader did not
    fail on, in roster order (the others are in ``matching.failed`` and
    ``matching.without_result``); ``held``: the users the line item already
    holds a result for (their Scores are regrades)."""
    held = held or set()
    return [score_for(g, regrade=g.student.user_id in held) for g in matching.graded if g.result.status != "error"]


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
    lineitem: str | None = None
    warnings: list[str] = field(default_factory=list)

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
        return (self.matching.notes() if self.matching else []) + self.warnings + lines


def publish_lti(
    results_dir: Path | str,
    roster: Roster | Path | str,
    lineitem_url: str | None = None,
    token: str | None = None,
    *,
    tool: TokenClient | None = None,
    retry: RetryPolicy | None = None,
    allow_http: bool = False,
) -> PublishOutcome:
    """Build the Scores of a results folder and POST them to the line item.

    Authentication: ``token`` (a bearer token the platform handed out) or
    ``tool`` (the grader's own registration: tokens by the client-credentials
    grant).  Without ``lineitem_url``, the tool's ``lineitems`` service is
    searched for the assignment's line item (``resourceId`` = the assignment's
    name, ``tag`` = ``grader``), which is created if there is none.

    Before sending, the line item's results are read so that a regrade is sent
    as one to Canvas (``new_submission: false``); if they cannot be read,
    first-time Scores are sent and a Canvas attempt limit (422) is met by
    resending the Score as a regrade.

    The URL and the token are checked before anything is sent
    (:class:`~grader.errors.LmsError`); roster and results folder errors are as
    for :func:`export_lti`.  A Score the platform refuses or that cannot be
    delivered is in the report (``report.ok`` is False), not an exception."""
    from grader.platforms.lti.lineitems import lineitem_for

    matching = match_results(results_dir, roster)
    if tool is not None:
        token = tool.token(PUBLISH_SCOPES)
    if not token:
        raise LmsError("no access token: give a token, or the tool's registration to obtain one")
    _check_token(token)
    fixed = token
    client = ServiceClient(lambda _scopes: fixed, retry=retry, allow_http=allow_http)
    warnings: list[str] = []
    if lineitem_url is None:
        if tool is None or not tool.config.lineitems:
            raise LmsError("no line item: give its URL (--lineitem), or a tool registration with `lineitems`")
        graded = [g for g in matching.graded if g.result.status != "error"]
        if not graded:
            raise LmsError(f"{results_dir}: no gradable result to publish, so the line item is not looked up")
        first = graded[0].result
        lineitem_url = lineitem_for(
            client,
            tool.config.lineitems,
            resource_id=first.assignment.name,
            label=first.assignment.title,
            score_maximum=first.max_score,
        ).id
    scores_endpoint = scores_url(lineitem_url, allow_http=allow_http)
    held = held_results(client, lineitem_url)
    if held is None:
        warnings.append(
            "the line item's results could not be read, so each Score is sent as a first grading; "
            "Canvas records an attempt for a student it already holds a grade for"
        )
    report = publish_scores(
        build_scores(matching, held), lineitem_url, token, retry=retry, allow_http=allow_http, regrade_on_limit=True
    )
    report.url, report.matching, report.lineitem, report.warnings = scores_endpoint, matching, lineitem_url, warnings
    return report


def held_results(client: ServiceClient, lineitem_url: str) -> set[str] | None:
    """The users the line item holds a score for (AGS results service, all
    pages); None when they cannot be read."""
    try:
        results = client.get_all(results_url(lineitem_url), scopes=[SCOPE_RESULT], accept=RESULTS_MEDIA_TYPE)
    except ServiceError:
        return None
    return {
        str(r["userId"])
        for r in results
        if isinstance(r, dict) and "userId" in r and isinstance(r.get("resultScore"), int | float)
    }


def publish_scores(
    scores: list[Score],
    lineitem_url: str,
    token: str,
    *,
    retry: RetryPolicy | None = None,
    allow_http: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    regrade_on_limit: bool = False,
) -> PublishOutcome:
    """POST each Score to ``<lineitem_url>/scores``, one after the other.

    When ``retry.give_up_after`` students in a row could not be delivered
    (the platform is down or unreachable), the rest are not sent: they are
    reported ``failed`` with 0 attempts.  ``allow_http``: permit plain
    ``http://`` to a host that is not this machine (the bearer token would
    travel in clear text).  ``regrade_on_limit``: a first-time Score Canvas
    refuses for its attempt limit (422) is sent again as a regrade.  Raises
    :class:`~grader.errors.LmsError` for an unusable URL or token, before
    anything is sent."""
    url = scores_url(lineitem_url, allow_http=allow_http)
    _check_token(token)
    retry = retry or RetryPolicy()
    opener = no_redirect_opener()
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
            continue
        outcome = _post(opener, url, headers, score, retry, sleep)
        if regrade_on_limit and _attempt_limit(outcome, score):
            regrade = score.model_copy(update={"canvas_submission": CanvasSubmission(new_submission=False)})
            again = _post(opener, url, headers, regrade, retry, sleep)
            note = "no attempt left for a new submission (422), so the grade was set on the existing one"
            outcome = replace(again, attempts=outcome.attempts + again.attempts, detail=f"{note}; {again.detail}")
        posted.append(outcome)
    return PublishOutcome(url=url, posted=[replace(p, detail=scrub(p.detail, token)) for p in posted])


def _attempt_limit(posted: Posted, score: Score) -> bool:
    extension = score.canvas_submission
    first_time = extension is None or extension.new_submission is not False
    return first_time and posted.status == 422 and "attempts" in posted.detail.lower()


def scores_url(lineitem_url: str, *, allow_http: bool = False) -> str:
    """The AGS scores endpoint: the line item URL with ``/scores`` appended to
    its path, query string kept, fragment dropped."""
    url = check_url(lineitem_url, what="line item URL", allow_http=allow_http)
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/scores"):
        raise LmsError(f"line item URL {safe_url(lineitem_url)!r}: give the line item URL, without /scores")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/scores", parts.query, ""))


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
                return Posted(score.user_id, "accepted", attempt, response.status, excerpt(response.read(4096)))
        except urllib.error.HTTPError as exc:
            status, detail = exc.code, error_body(exc)
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


def results_url(lineitem_url: str, user_id: str | None = None) -> str:
    """The line item's AGS results endpoint, from the line item URL or its
    scores endpoint: ``.../7?q`` (or ``.../7/scores?q``) becomes
    ``.../7/results?q`` (and ``&user_id=...`` for one user)."""
    parts = urllib.parse.urlsplit(lineitem_url)
    path = parts.path.rstrip("/").removesuffix("/scores") + "/results"
    query = "&".join(q for q in (parts.query, urllib.parse.urlencode({"user_id": user_id}) if user_id else "") if q)
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


def _check_token(token: str) -> None:
    if not token or not token.strip():
        raise LmsError("no access token given")
    if not BEARER_TOKEN.fullmatch(token):  # never echo it: the message would leak it into logs
        raise LmsError(
            f"the access token ({len(token)} characters) is not a bearer token: only letters, digits "
            "and -._~+/ (then =) are allowed; check it was copied whole, without quotes or spaces"
        )
