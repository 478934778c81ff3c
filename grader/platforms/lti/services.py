"""Requests to a platform's LTI services: the URL rules, retries and paging
that line items, memberships and scores share.

- Only ``https://`` URLs, or ``http://`` to this machine (``allow_http`` for
  another host): the bearer token must not travel in clear text.
- Redirects are not followed, so the token never goes to another URL.
- Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
  backoff, honouring ``Retry-After``; other answers are final.
- Collections are read page by page, following the ``Link: <...>; rel="next"``
  header (RFC 8288) that AGS and NRPS use, up to :data:`MAX_PAGES`.
- The token is never put in a message.
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
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from grader.errors import LmsError

USER_AGENT = "grader-lti"
EXCERPT_CHARS = 200
MAX_PAGES = 1000
MAX_BODY_BYTES = 16 << 20
LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*?\brel\s*=\s*"?(?:[^",]*\s)?next(?:\s[^",]*)?"?', re.I)


class RetryPolicy(BaseModel):
    """How hard to try: ``attempts`` in all per request, waiting ``base_delay``
    seconds, doubling up to ``max_delay``, between them (or what the server's
    ``Retry-After`` asks, up to ``max_delay``); ``timeout`` seconds per request;
    when publishing, stop sending after ``give_up_after`` students in a row failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(4, ge=1, le=10)
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(30.0, ge=0)
    timeout: float = Field(30.0, gt=0)
    give_up_after: int = Field(3, ge=1)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wanted = self.base_delay * 2 ** (attempt - 1) if retry_after is None else retry_after
        return min(self.max_delay, wanted)


def check_url(url: str, *, what: str, allow_http: bool = False) -> str:
    """``url`` stripped, if it may carry a token; :class:`LmsError` saying why not."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        raise LmsError(f"{what} {safe_url(url)!r}: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LmsError(f"{what} {safe_url(url)!r}: not an http(s) URL")
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise LmsError(f"{what} {safe_url(url)!r}: plain http would send the token in clear text; use https")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (what is there is kept)."""
    parts = urllib.parse.urlsplit(url)
    query = "&".join(q for q in (parts.query, urllib.parse.urlencode(params)) if q)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, if any."""
    match = LINK_NEXT.search(header or "")
    return match.group(1).strip() if match else None


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


class ServiceError(LmsError):
    """A service request that was refused or could not be delivered."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ServiceClient:
    """Authenticated JSON requests to one platform's services.

    ``token`` gives the bearer token for a list of scopes (a fixed token, or
    :meth:`grader.platforms.lti.tool.TokenClient.token`)."""

    def __init__(
        self,
        token: Callable[[list[str]], str],
        *,
        retry: RetryPolicy | None = None,
        allow_http: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._token = token
        self.retry = retry or RetryPolicy()
        self.allow_http = allow_http
        self.sleep = sleep
        self.opener = no_redirect_opener()

    def send(
        self,
        method: str,
        url: str,
        *,
        scopes: list[str],
        accept: str,
        body: Any = None,
        content_type: str | None = None,
        what: str = "service URL",
    ) -> tuple[Any, http.client.HTTPMessage]:
        """One request, retried while that may help; the decoded JSON answer and its headers.

        Raises :class:`ServiceError` for a final refusal or when retries ran out."""
        url = check_url(url, what=what, allow_http=self.allow_http)
        token = self._token(scopes)
        headers = {"Authorization": f"Bearer {token}", "Accept": accept, "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        detail, status = "", None
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self.opener.open(request, timeout=self.retry.timeout) as response:
                    raw = response.read(MAX_BODY_BYTES)
                    headers_in = response.headers
                try:
                    return (json.loads(raw) if raw.strip() else None), headers_in
                except ValueError:
                    raise ServiceError(f"{method} {safe_url(url)}: the answer is not JSON: {excerpt(raw)}") from None
            except urllib.error.HTTPError as exc:
                status, detail = exc.code, scrub(error_body(exc), token)
                if 300 <= status < 400:
                    detail = f"redirect to {exc.headers.get('Location', '?')!r} not followed"
                if status != 429 and status < 500:
                    raise ServiceError(
                        f"{method} {safe_url(url)}: HTTP {status}" + (f": {detail}" if detail else ""), status, detail
                    ) from None
                retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
            except urllib.error.URLError as exc:
                status, detail = None, f"cannot connect: {exc.reason}"
                if isinstance(exc.reason, ssl.SSLCertVerificationError):
                    break
            except (OSError, http.client.HTTPException) as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}".rstrip(": ")
            if attempt < self.retry.attempts:
                self.sleep(self.retry.delay(attempt, retry_after))
        raise ServiceError(f"{method} {safe_url(url)}: gave up: {detail}", status, detail)

    def get_all(self, url: str, *, scopes: list[str], accept: str, key: str | None = None) -> list[Any]:
        """Every item of a paged collection: the answer's array (or its ``key``
        member's), page after page along ``rel="next"``."""
        items: list[Any] = []
        seen: set[str] = set()
        page: str | None = url
        while page is not None:
            if page in seen or len(seen) >= MAX_PAGES:
                raise ServiceError(f"GET {safe_url(url)}: the pages do not end (page {len(seen) + 1})")
            seen.add(page)
            data, headers = self.send("GET", page, scopes=scopes, accept=accept)
            chunk = data.get(key) if key and isinstance(data, dict) else data
            if not isinstance(chunk, list):
                raise ServiceError(f"GET {safe_url(page)}: expected a list{f' in {key!r}' if key else ''}")
            items += chunk
            following = next_link(headers.get("Link"))
            page = urllib.parse.urljoin(page, following) if following else None
        return items


def no_redirect_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect)


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


def error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return excerpt(exc.read(4096))
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        exc.close()


def excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_url(url: str) -> str:
    """The URL without user:password@, for messages."""
    return re.sub(r"//[^/?#]*@", "//", url.strip())
