"""A loopback LTI 1.3 platform for the tests: the OAuth 2 token endpoint, AGS
line items, scores and results, and NRPS memberships, with Canvas's or
Moodle's rules for what a Score does to the gradebook.  It listens on
127.0.0.1 only.

The rules, as the platforms implement them:

- token endpoint (LTI Security Framework, RFC 7523): the client assertion must
  verify against the JWKS the tool registered (RS256, the key named by
  ``kid``), with ``aud`` the token URL, ``iss`` = ``sub`` = the client id, an
  ``exp`` not passed and a ``jti`` not seen before; the token carries only the
  scopes the registration allows, and expires after ``token_lifetime``;
- Canvas (``Lti::IMS::ScoresController``): a Score makes a new submission
  attempt unless its submission extension says ``new_submission: false``; the
  attempt is stamped with the extension's ``submitted_at``, else now, and is
  late when that is after the due date; with no attempt left, 422; a
  ``timestamp`` older than the stored result's is 400; a Score that is not
  ``FullyGraded``/``PendingManual`` or has no ``scoreGiven`` clears the grade;
- Moodle (``mod/lti/service/gradebookservices``): 409 when the stored
  timestamp is at or after the one sent; ``scoreGiven`` is kept only when
  ``FullyGraded`` (anything else clears the grade).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

SCOPES = {
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
}
LINEITEMS = "/api/lti/courses/1/line_items"
MEMBERSHIPS = "/api/lti/courses/1/names_and_roles"
TOKEN = "/login/oauth2/token"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


@dataclass
class Grade:
    score: float | None = None
    timestamp: str | None = None  # the last Score's, as sent
    attempts: int = 0
    submitted_at: datetime | None = None
    late: bool = False
    comment: str | None = None


@dataclass
class PlatformState:
    kind: str = "canvas"  # or "moodle"
    client_id: str = "10000000000042"
    jwks: dict = field(default_factory=lambda: {"keys": []})
    allowed_scopes: set[str] = field(default_factory=lambda: set(SCOPES))
    token_lifetime: int = 3600
    page_size: int = 2
    due_at: datetime = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)
    allowed_attempts: int | None = None  # Canvas: None is unlimited
    results_readable: bool = True
    lineitems: dict[str, dict] = field(default_factory=dict)  # id number -> line item (without its URL id)
    members: list[dict] = field(default_factory=list)
    grades: dict[tuple[str, str], Grade] = field(default_factory=dict)  # (line item, user) -> grade
    tokens: dict[str, tuple[float, set[str]]] = field(default_factory=dict)
    jtis: set[str] = field(default_factory=set)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    token_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def grade(self, item: str, user: str) -> Grade:
        return self.grades.setdefault((item, user), Grade())


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    @property
    def state(self) -> PlatformState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, *args):
        pass

    def answer(self, code: int, body, headers: dict | None = None, media: str = "application/json"):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.state.log.append((self.command, self.path, code))

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def authorized(self, scope: str) -> bool:
        header = self.headers.get("Authorization", "")
        held = self.state.tokens.get(header.removeprefix("Bearer "))
        if not header.startswith("Bearer ") or held is None or held[0] < time.time():
            self.answer(401, {"errors": [{"message": "Invalid access token"}]})
            return False
        if scope not in held[1]:
            self.answer(403, {"errors": [{"message": f"Insufficient scopes: {scope}"}]})
            return False
        return True

    # --- OAuth 2 ------------------------------------------------------------------------------------------------

    def token(self):
        form = urllib.parse.parse_qs(self.body().decode())
        one = {k: v[0] for k, v in form.items()}
        state = self.state
        state.token_requests += 1
        if one.get("grant_type") != "client_credentials" or one.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self.answer(400, {"error": "unsupported_grant_type"})
        assertion = one.get("client_assertion", "")
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            jwk = next(k for k in state.jwks["keys"] if k.get("kid") == kid)
            key = jwt.PyJWK(jwk).key
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=state.base + TOKEN,
                options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
            )
        except (StopIteration, jwt.PyJWTError) as exc:
            return self.answer(401, {"error": "invalid_client", "error_description": f"assertion: {exc}"})
        if claims["iss"] != state.client_id or claims["sub"] != state.client_id:
            return self.answer(401, {"error": "invalid_client", "error_description": "unknown client"})
        if claims["jti"] in state.jtis:
            return self.answer(401, {"error": "invalid_client", "error_description": "jti replayed"})
        state.jtis.add(claims["jti"])
        asked = set(one.get("scope", "").split())
        if not asked or not asked <= state.allowed_scopes:
            return self.answer(400, {"error": "invalid_scope", "error_description": " ".join(sorted(asked))})
        value = secrets.token_urlsafe(24)
        state.tokens[value] = (time.time() + state.token_lifetime, asked)
        return self.answer(
            200,
            {
                "access_token": value,
                "token_type": "Bearer",
                "expires_in": state.token_lifetime,
                "scope": " ".join(asked),
            },
        )

    # --- paging -------------------------------------------------------------------------------------------------

    def page(self, items: list, media: str, wrap: str | None = None):
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        start = int(query.get("page", ["0"])[0])
        chunk = items[start : start + self.state.page_size]
        headers = {}
        if start + self.state.page_size < len(items):
            query["page"] = [str(start + self.state.page_size)]
            following = urllib.parse.urlunsplit(("", "", parts.path, urllib.parse.urlencode(query, doseq=True), ""))
            headers["Link"] = f'<{self.state.base}{following}>; rel="next"'
        body = {"id": self.state.base + self.path, wrap: chunk} if wrap else chunk
        return self.answer(200, body, headers, media)

    # --- routes -------------------------------------------------------------------------------------------------

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        with self.state.lock:
            if path == TOKEN:
                return self.token()
            if path == LINEITEMS:
                return self.create_lineitem()
            if path.startswith(LINEITEMS + "/") and path.endswith("/scores"):
                return self.score(path.split("/")[-2])
        return self.answer(404, {"errors": [{"message": "not found"}]})

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
        with self.state.lock:
            if parts.path == LINEITEMS:
                if not self.authorized("https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"):
                    return None
                items = [
                    {"id": f"{self.state.base}{LINEITEMS}/{n}", **item}
                    for n, item in self.state.lineitems.items()
                    if all(
                        item.get(k) == query[q]
                        for q, k in (("resource_id", "resourceId"), ("tag", "tag"))
                        if q in query
                    )
                ]
                return self.page(items, "application/vnd.ims.lis.v2.lineitemcontainer+json")
            if parts.path == MEMBERSHIPS:
                if not self.authorized("https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"):
                    return None
                return self.page(
                    self.state.members, "application/vnd.ims.lti-nrps.v2.membershipcontainer+json", wrap="members"
                )
            if parts.path.startswith(LINEITEMS + "/") and parts.path.endswith("/results"):
                return self.results(parts.path.split("/")[-2], query.get("user_id"))
        return self.answer(404, {"errors": [{"message": "not found"}]})

    def create_lineitem(self):
        if not self.authorized("https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"):
            return None
        item = json.loads(self.body())
        if not isinstance(item.get("scoreMaximum"), int | float) or not item.get("label"):
            return self.answer(400, {"errors": [{"message": "scoreMaximum and label are required"}]})
        number = str(len(self.state.lineitems) + 1)
        self.state.lineitems[number] = item
        return self.answer(
            201,
            {"id": f"{self.state.base}{LINEITEMS}/{number}", **item},
            media="application/vnd.ims.lis.v2.lineitem+json",
        )

    def results(self, item: str, user: str | None):
        if not self.authorized("https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"):
            return None
        if not self.state.results_readable:
            return self.answer(403, {"errors": [{"message": "results are not available to this tool"}]})
        maximum = self.state.lineitems[item]["scoreMaximum"]
        results = [
            {"userId": u, "resultScore": g.score, "resultMaximum": maximum}
            for (i, u), g in self.state.grades.items()
            if i == item and g.score is not None and (user is None or u == user)
        ]
        return self.page(results, "application/vnd.ims.lis.v2.resultcontainer+json")

    def score(self, item: str):
        if not self.authorized("https://purl.imsglobal.org/spec/lti-ags/scope/score"):
            return None
        if self.headers.get("Content-Type") != "application/vnd.ims.lis.v1.score+json":
            return self.answer(415, {"errors": [{"message": "media type"}]})
        if item not in self.state.lineitems:
            return self.answer(404, {"errors": [{"message": "no such line item"}]})
        score = json.loads(self.body())
        user, sent = str(score["userId"]), score["timestamp"]
        if user not in {m["user_id"] for m in self.state.members}:
            return self.answer(422, {"errors": [{"message": "User not found in course or is not a student"}]})
        grade = self.state.grade(item, user)
        maximum = self.state.lineitems[item]["scoreMaximum"]
        given, progress = score.get("scoreGiven"), score.get("gradingProgress")
        if self.state.kind == "moodle":
            if grade.timestamp is not None and grade.timestamp >= sent:
                return self.answer(409, {"error": "a score at least as new is stored"})
            grade.timestamp = sent
            grade.score = (
                given * maximum / score["scoreMaximum"] if progress == "FullyGraded" and given is not None else None
            )
            return self.answer(200, {})
        # Canvas
        if grade.timestamp is not None and datetime.fromisoformat(sent) < datetime.fromisoformat(grade.timestamp):
            return self.answer(400, {"errors": [{"message": "Provided timestamp before last updated timestamp"}]})
        extension = score.get("https://canvas.instructure.com/lti/submission") or {}
        new_submission = extension.get("new_submission") is not False and extension.get("submission_type") != "none"
        stamped = extension.get("submitted_at")
        when = datetime.fromisoformat(stamped) if stamped else datetime.now(UTC)
        if when > datetime.now(UTC):
            return self.answer(
                400, {"errors": [{"message": f"Provided submitted_at timestamp of {stamped} in the future"}]}
            )
        if new_submission:
            limit = self.state.allowed_attempts
            if limit is not None and grade.attempts >= limit:
                return self.answer(
                    422,
                    {
                        "errors": [
                            {"message": "The maximum number of allowed attempts has been reached for this submission"}
                        ]
                    },
                )
            grade.attempts += 1
            grade.submitted_at, grade.late = when, when > self.state.due_at
        grade.timestamp = sent
        keeps = progress in ("FullyGraded", "PendingManual") and given is not None
        grade.score = given * maximum / score["scoreMaximum"] if keeps else None
        grade.comment = score.get("comment")
        return self.answer(200, {"resultUrl": f"{self.state.base}{LINEITEMS}/{item}/results/{user}"})


class Platform:
    """A running platform: ``with Platform(...) as lms:``; ``lms.url(path)``."""

    def __init__(self, **settings):
        self.state = PlatformState(**settings)

    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False
        self.server.state = self.state
        self.state.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return self.state.base + path

    def lineitem(self, resource_id: str, *, tag: str = "grader", label: str = "Conv2D filters", maximum: float = 10):
        number = str(len(self.state.lineitems) + 1)
        self.state.lineitems[number] = {"scoreMaximum": maximum, "label": label, "resourceId": resource_id, "tag": tag}
        return self.url(f"{LINEITEMS}/{number}")

    def member(self, user_id: str, given: str, family: str, *, email=None, sis=None, role=LEARNER, status="Active"):
        self.state.members.append(
            {
                "status": status,
                "name": f"{given} {family}",
                "given_name": given,
                "family_name": family,
                "email": email,
                "user_id": user_id,
                "lis_person_sourcedid": sis,
                "roles": [role],
            }
        )

    def tool_config(self, folder, key_path, **extra) -> str:
        """Write a tool registration for this platform into ``folder``; its path."""
        lines = {
            "issuer": "https://canvas.instructure.com",
            "client_id": self.state.client_id,
            "deployment_id": "7:deployment",
            "token_url": self.url(TOKEN),
            "key": str(key_path),
            "lineitems": self.url(LINEITEMS),
            "memberships": self.url(MEMBERSHIPS),
            **extra,
        }
        path = folder / "tool.toml"
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in lines.items()), encoding="utf-8")
        return path
