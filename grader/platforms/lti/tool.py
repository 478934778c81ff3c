"""The grader's registration with one LTI 1.3 platform, and the access token it earns.

The registration is a TOML file the instructor fills from what the platform
shows when the tool is registered (Canvas: a Developer Key; Moodle: an
External tool; see README)::

    issuer = "https://canvas.instructure.com"
    client_id = "10000000000042"
    deployment_id = "7:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"
    token_url = "https://canvas.example.edu/login/oauth2/token"
    key = "lti-key.pem"                        # relative to this file
    lineitems = "https://canvas.example.edu/api/lti/courses/1/line_items"
    memberships = "https://canvas.example.edu/api/lti/courses/1/names_and_roles"

Tokens come from the OAuth 2 client-credentials grant with a JWT client
assertion (RFC 7523, as the LTI Security Framework and pylti1p3 do it): RS256,
header ``kid``, ``iss`` = ``sub`` = client id, ``aud`` = the token URL (or
``audience``), ``iat``, ``exp`` a minute later and a fresh ``jti``.  A token
is kept until shortly before it expires, per set of scopes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grader.errors import LmsError
from grader.platforms.lti.keys import load_private_key, public_jwk
from grader.platforms.lti.services import check_url, no_redirect_opener

SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_RESULT = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_MEMBERSHIPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60
EXPIRY_MARGIN_S = 30  # a token this close to expiring is not used for a new request
MAX_CONFIG_BYTES = 1 << 20


class ToolConfig(BaseModel):
    """One platform registration.  URLs are checked as the requests are made
    (https unless the host is this machine)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    issuer: str = Field(description="the platform's issuer, the iss of its launches")
    client_id: str = Field(min_length=1, description="the tool's client id at the platform")
    deployment_id: str | None = Field(None, description="the deployment id, for the record and for messages")
    token_url: str = Field(description="the platform's OAuth 2 token endpoint")
    audience: str | None = Field(None, description="the aud of the client assertion, when it is not the token URL")
    key: Path = Field(description="the tool's RSA private key (PEM), relative to this file")
    lineitems: str | None = Field(None, description="the context's AGS line items URL")
    memberships: str | None = Field(None, description="the context's NRPS memberships URL")

    @field_validator("token_url", "issuer")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


def load_tool_config(path: Path | str) -> ToolConfig:
    """Read a registration TOML file; :class:`LmsError` naming the file and the key at fault."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise LmsError(f"{path}: larger than 1 MB; not a tool configuration")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LmsError(f"{path}: cannot read the tool configuration: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LmsError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise LmsError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = ToolConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise LmsError(f"{path}: {problems}") from None
    key = config.key if config.key.is_absolute() else path.parent / config.key
    return config.model_copy(update={"key": key})


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenClient:
    """Access tokens for one registration, each kept until shortly before it expires."""

    def __init__(self, config: ToolConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self._key = load_private_key(config.key)
        self._kid = public_jwk(self._key.public_key())["kid"]
        self._tokens: dict[frozenset[str], _Token] = {}
        self._lock = threading.Lock()
        self.requested = 0  # token requests made, for the record

    def token(self, scopes: list[str] | tuple[str, ...]) -> str:
        """A bearer token granting ``scopes``; :class:`LmsError` if the platform refuses."""
        wanted = frozenset(scopes)
        with self._lock:
            held = self._tokens.get(wanted)
            if held and held.expires_at - EXPIRY_MARGIN_S > time.time():
                return held.value
            token = self._request(sorted(wanted))
            self._tokens[wanted] = token
            return token.value

    def assertion(self) -> str:
        """A signed client assertion, good for one token request."""
        now = int(time.time())
        claims = {
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": self.config.audience or self.config.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": f"grader-{uuid.uuid4()}",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def _request(self, scopes: list[str]) -> _Token:
        url = check_url(self.config.token_url, what="token URL")
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
                "scope": " ".join(scopes),
            }
        ).encode()
        request = urllib.request.Request(
            url,
            data=form,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        self.requested += 1
        try:
            with no_redirect_opener().open(request, timeout=self.timeout) as response:
                answer = _json_object(response.read(1 << 20))
        except urllib.error.HTTPError as exc:
            detail = _oauth_error(exc)
            raise LmsError(
                f"the platform refused a token for client {self.config.client_id} (HTTP {exc.code}{detail}); "
                "check client_id, the key registered with the platform (`grader lti keygen` prints it) and token_url"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise LmsError(f"cannot reach the token URL {url}: {getattr(exc, 'reason', exc)}") from None
        value, lifetime = answer.get("access_token"), answer.get("expires_in", 3600)
        if not isinstance(value, str) or not value:
            raise LmsError(f"the token URL {url} answered without an access_token")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = 3600
        return _Token(value, time.time() + float(lifetime))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise LmsError("the token URL answered with something that is not JSON") from None
    if not isinstance(data, dict):
        raise LmsError("the token URL answered with JSON that is not an object")
    return data


def _oauth_error(exc: urllib.error.HTTPError) -> str:
    """``: invalid_client: description`` from an RFC 6749 error answer, if it has one."""
    try:
        data = json.loads(exc.read(4096))
    except (ValueError, OSError, http.client.HTTPException):
        return ""
    finally:
        exc.close()
    if not isinstance(data, dict):
        return ""
    parts = [str(data[k])[:200] for k in ("error", "error_description") if isinstance(data.get(k), str)]
    return ": " + ": ".join(parts) if parts else ""
