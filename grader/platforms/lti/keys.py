"""The tool's signing key: an RSA private key in a PEM file, and the public
half as a JSON Web Key Set (RFC 7517) to register with the platform.

The key id (``kid``) is the key's RFC 7638 thumbprint, so the same key always
has the same id and a platform holding several keys finds the right one.
Cryptography is PyJWT's and ``cryptography``'s; nothing here is hand-written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from grader.errors import LmsError

KEY_BITS = 2048  # what Canvas, Moodle and pylti1p3 use for RS256
MAX_KEY_BYTES = 64 * 1024


def generate_key(out: Path | str, *, force: bool = False) -> dict[str, Any]:
    """Write a new RSA private key to ``out`` (PEM, PKCS #8, mode 0600) and return its public JWKS.

    Refuses to replace an existing file unless ``force``: the platform holds
    the old key's public half, and a lost key means registering again."""
    out = Path(out)
    if out.exists() and not force:
        raise LmsError(f"{out}: already exists; the platform may hold its public key (use --force to replace it)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise LmsError(f"{out}: cannot write the key: {exc.strerror or exc}") from None
    return jwks(key.public_key())


def load_private_key(path: Path | str) -> rsa.RSAPrivateKey:
    """Read the tool's RSA private key; :class:`LmsError` naming the file if it is not one."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise LmsError(f"{path}: larger than {MAX_KEY_BYTES // 1024} KB; not a PEM key")
        data = path.read_bytes()
    except OSError as exc:
        raise LmsError(f"{path}: cannot read the tool's key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise LmsError(
            f"{path}: not an unencrypted PEM private key ({exc}); make one with `grader lti keygen`"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise LmsError(f"{path}: a {type(key).__name__}, not an RSA key; LTI 1.3 signs with RS256")
    if key.key_size < KEY_BITS:
        raise LmsError(f"{path}: a {key.key_size}-bit RSA key; platforms require at least {KEY_BITS} bits")
    return key


def public_jwk(public: rsa.RSAPublicKey) -> dict[str, Any]:
    """The public key as a JWK with ``kid``, ``alg`` and ``use``."""
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
    members = {name: jwk[name] for name in ("e", "kty", "n")}  # RFC 7638: required members, sorted, no spaces
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return {**members, "kid": kid, "alg": "RS256", "use": "sig"}


def public_pem(public: rsa.RSAPublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), as Moodle's "RSA key" wants it."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwks(public: rsa.RSAPublicKey) -> dict[str, Any]:
    return {"keys": [public_jwk(public)]}
