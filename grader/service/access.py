"""Who may do what with the service.

* With no token configured, anyone who reaches it may submit, so it must be
  bound to a loopback address (this machine only, or a reverse proxy on it
  that decides who gets through): :func:`check_binding` refuses anything else.
* With tokens, submitting needs ``Authorization: Bearer <token>`` with one of
  ``tokens`` (students' page, an LMS) or ``instructor_tokens``.
* Reading a submission needs its id (128 random bits), which only the
  submitter was given.  Checks the spec does not show students (``visibility``
  other than ``visible``) are left out of what is shown unless the reader holds
  an instructor token.
* Opening and closing an assignment needs an instructor token.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from enum import IntEnum

from pydantic import SecretStr

from grader.errors import ServiceError
from grader.settings import ServeSettings


class Role(IntEnum):
    nobody = 0  # may read what it holds the id of
    submitter = 1
    instructor = 2


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_binding(settings: ServeSettings) -> None:
    """Refuse anonymous submissions from beyond this machine."""
    if not settings.tokens and not settings.instructor_tokens and not is_loopback(settings.host):
        raise ServiceError(
            f"refusing to serve {settings.host}:{settings.port} without tokens: anyone who can reach it could run "
            "code on this machine.  Bind to 127.0.0.1 (behind a reverse proxy that authenticates), or set "
            "GRADER_SERVE__TOKENS='[\"...\"]' (and GRADER_SERVE__INSTRUCTOR_TOKENS) so that clients must send "
            "`Authorization: Bearer <token>`"
        )


def role(settings: ServeSettings, authorization: str | None) -> Role:
    """The role a request's ``Authorization`` header gives (compared in constant time)."""
    token = _bearer(authorization)
    if token is not None:
        if _matches(token, settings.instructor_tokens):
            return Role.instructor
        if _matches(token, settings.tokens):
            return Role.submitter
    return Role.nobody


def may_submit(settings: ServeSettings, who: Role) -> bool:
    anonymous = not settings.tokens and not settings.instructor_tokens
    return anonymous or who >= Role.submitter


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _matches(token: str, accepted: tuple[SecretStr, ...]) -> bool:
    found = False
    for secret in accepted:  # every one compared: the time says nothing about which matched
        found |= hmac.compare_digest(token.encode(), secret.get_secret_value().encode())
    return found
