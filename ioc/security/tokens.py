"""Access tokens (JWT, HS256 pinned, expiry required) and opaque refresh tokens.

An access token lives minutes and names its session; each request also checks the session row,
so signing out or disabling a user ends access at once. A refresh token is 32 random bytes,
stored only as its SHA-256 digest, and replaced at every use (rotation)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "ioc"
REQUIRED = ["exp", "iat", "sub", "sid", "iss"]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    username: str
    session_id: str
    expires_at: datetime


class BadToken(Exception):
    """The token is missing, malformed, expired or not ours."""


def _key(secret: str) -> bytes:
    """The signing key: derived from the deployment's secret, used for nothing else."""
    return hmac.new(secret.encode(), b"ioc access token v1", hashlib.sha256).digest()


def issue_access(secret: str, username: str, session_id: str, lifetime: timedelta) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": username,
        "sid": session_id,
        "iss": ISSUER,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


def read_access(secret: str, token: str) -> AccessClaims:
    try:
        c = jwt.decode(
            token,
            _key(secret),
            algorithms=[ALGORITHM],  # pinned: "none" and RS/HS confusion are refused
            issuer=ISSUER,
            options={"require": REQUIRED},
        )
    except jwt.PyJWTError as e:
        raise BadToken(type(e).__name__) from None
    return AccessClaims(
        username=str(c["sub"]),
        session_id=str(c["sid"]),
        expires_at=datetime.fromtimestamp(int(c["exp"]), UTC),
    )


def new_refresh() -> str:
    return secrets.token_urlsafe(32)


def digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()
