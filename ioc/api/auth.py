"""Sign-in over HTTP: who is asking (cookie or bearer token), may they, and the /auth routes.

Browsers hold two HttpOnly, SameSite=Strict cookies (the short access token, and the refresh
token scoped to /api/v1/auth); scripts and benches send ``Authorization: Bearer``. Writes made
with a cookie must come from an allowed Origin (the API's own, or IOC_ALLOWED_ORIGINS), so another
site cannot act with an operator's cookie. Protocol and roles: docs/security.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.requests import HTTPConnection
from pydantic import BaseModel, Field

from ioc.api.deps import Conn
from ioc.api.schemas import PLAIN
from ioc.config import Settings
from ioc.security import tokens, users
from ioc.security.policy import Perm
from ioc.security.users import AuthPolicy, Principal, SignInRefused

ACCESS_COOKIE = "ioc_access"
REFRESH_COOKIE = "ioc_refresh"
REFRESH_PATH = "/api/v1/auth"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def policy(settings: Settings) -> AuthPolicy:
    return AuthPolicy(
        access=timedelta(minutes=settings.access_token_minutes),
        idle=timedelta(hours=settings.session_idle_hours),
        absolute=timedelta(days=settings.session_max_days),
        max_failures=settings.login_max_failures,
        lockout=timedelta(seconds=settings.login_lockout_seconds),
        ip_max_failures=settings.login_ip_max_failures,
    )


def client_ip(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


def refuse(status: int, code: str, message: str, **extra: Any) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if "retry_after" in extra:
        headers = {"Retry-After": str(extra["retry_after"])}
    return HTTPException(status, {"code": code, "message": message, **extra}, headers=headers)


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """True for no Origin (not a browser) or an allowed one: the API's own host, or listed."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    allowed = settings.allowed_origins
    if origin in allowed or ("*" in allowed and settings.environment != "production"):
        return True
    host = conn.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def bearer_or_cookie(conn: HTTPConnection) -> tuple[str | None, bool]:
    """The access token and whether it came from the cookie (never from the URL)."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip(), False
    return conn.cookies.get(ACCESS_COOKIE), True


async def authenticate(conn: HTTPConnection, db: Any, settings: Settings) -> Principal | None:
    token, _ = bearer_or_cookie(conn)
    if not token:
        return None
    try:
        claims = tokens.read_access(settings.secret_key, token)
    except tokens.BadToken:
        return None
    return await users.principal_for(db, claims.session_id, claims.username)


async def current(request: Request, conn: Conn) -> Principal:
    """The signed-in user, or 401. Cookie-authenticated writes also need an allowed Origin."""
    settings: Settings = request.app.state.settings
    token, via_cookie = bearer_or_cookie(request)
    if not token:
        raise refuse(401, "not_signed_in", "sign in first")
    try:
        claims = tokens.read_access(settings.secret_key, token)
    except tokens.BadToken:
        raise refuse(401, "not_signed_in", "the access token is invalid or expired") from None
    who = await users.principal_for(conn, claims.session_id, claims.username)
    if who is None:
        raise refuse(401, "not_signed_in", "the session has ended: sign in again")
    if (
        via_cookie
        and request.method not in SAFE_METHODS
        and (request.headers.get("origin") is None or not origin_allowed(request, settings))
    ):
        raise refuse(403, "bad_origin", "this request must come from the dashboard's own page")
    request.state.principal = who
    return who


def need(perm: Perm) -> Callable[..., Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(current)]) -> Principal:
        if not who.can(perm):
            raise refuse(403, "forbidden", f"your role ({who.role}) may not do this")
        return who

    check.__name__ = f"need_{perm.value}"
    return check


Viewer = Annotated[Principal, Depends(need(Perm.VIEW))]
Actor = Annotated[Principal, Depends(need(Perm.ACT))]
Maintainer = Annotated[Principal, Depends(need(Perm.MAINTAIN))]
PictureViewer = Annotated[Principal, Depends(need(Perm.PICTURES))]
Admin = Annotated[Principal, Depends(need(Perm.ADMIN))]


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def require_area(who: Principal, area_id: str | None, what: str = "area") -> None:
    """404 for an area (or a thing in it) outside the user's subtree: its existence is not told."""
    if not who.sees(area_id):
        raise not_found(what)


def scope_area(who: Principal, area_id: str | None) -> str | None:
    """The area a list should cover: the asked one if visible, else the user's own."""
    if area_id is None:
        return None if who.province else who.area_id
    require_area(who, area_id)
    return area_id


async def device_area(conn: Any, device_id: str) -> str | None:
    async with conn.cursor() as cur:
        await cur.execute("SELECT area_id FROM devices WHERE id = %s", (device_id,))
        row = await cur.fetchone()
    return None if row is None else row["area_id"]


async def require_device(conn: Any, who: Principal, device_id: str) -> str:
    area = await device_area(conn, device_id)
    if area is None or not who.sees(area):
        raise not_found(f"device {device_id}")
    return area


# ----------------------------------------------------------------------------- routes ---


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    area_id: str
    area_name: str


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=PLAIN)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(BaseModel):
    refresh_token: str | None = Field(None, max_length=200)


class SessionOut(BaseModel):
    user: UserOut
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    session_expires_at: datetime


class MeOut(BaseModel):
    user: UserOut
    session_expires_at: datetime | None = None


def _issue(request: Request, response: Response, new: users.NewSession) -> SessionOut:
    settings: Settings = request.app.state.settings
    life = policy(settings).access
    access = tokens.issue_access(
        settings.secret_key, new.principal.username, new.principal.session_id, life
    )
    secure = settings.secure_cookies
    response.set_cookie(
        ACCESS_COOKIE,
        access,
        max_age=int(life.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        new.refresh_token,
        max_age=int(policy(settings).absolute.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="strict",
        path=REFRESH_PATH,
    )
    response.headers["Cache-Control"] = "no-store"
    return SessionOut(
        user=UserOut(**new.principal.public()),
        access_token=access,
        expires_in=int(life.total_seconds()),
        refresh_token=new.refresh_token,
        session_expires_at=new.expires_at,
    )


MESSAGES = {
    "bad_credentials": "wrong username or password",
    "locked": "too many failed attempts: the account is locked for a while",
    "rate_limited": "too many failed attempts from this address: wait a while",
    "disabled": "this account is disabled: ask an administrator",
    "expired": "the session has ended: sign in again",
}
STATUS = {
    "bad_credentials": 401,
    "locked": 429,
    "rate_limited": 429,
    "disabled": 403,
    "expired": 401,
}


def _refused(e: SignInRefused) -> HTTPException:
    extra = {"retry_after": e.retry_after} if e.retry_after is not None else {}
    return refuse(STATUS[e.code], e.code, MESSAGES[e.code], **extra)


@router.post(
    "/login",
    response_model=SessionOut,
    responses={401: {"description": "wrong credentials"}, 429: {"description": "locked"}},
)
async def login(body: LoginIn, request: Request, response: Response, conn: Conn) -> SessionOut:
    """Sign in: sets the session cookies and returns the same tokens for scripts."""
    settings: Settings = request.app.state.settings
    if not origin_allowed(request, settings):
        raise refuse(403, "bad_origin", "sign in from the dashboard's own page")
    try:
        new = await users.sign_in(
            conn,
            policy(settings),
            body.username.strip().lower(),
            body.password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except SignInRefused as e:
        raise _refused(e) from None
    return _issue(request, response, new)


@router.post("/refresh", response_model=SessionOut, responses={401: {"description": "ended"}})
async def refresh(
    request: Request, response: Response, conn: Conn, body: RefreshIn | None = None
) -> SessionOut:
    """A new access token (and a new refresh token: each works once) for a live session."""
    settings: Settings = request.app.state.settings
    token = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise refuse(401, "not_signed_in", "no refresh token")
    cookie = body is None or not body.refresh_token
    if cookie and not origin_allowed(request, settings):  # the cookie: only from our pages
        raise refuse(403, "bad_origin", "refresh from the dashboard's own page")
    try:
        new = await users.refresh(conn, policy(settings), token, ip=client_ip(request))
    except SignInRefused as e:
        _clear(response)
        raise _refused(e) from None
    return _issue(request, response, new)


def _clear(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, conn: Conn) -> Response:
    """Sign out: the session ends everywhere at once (its open live streams close too). Works
    with the access token, or with the refresh cookie alone once the access token expired."""
    settings: Settings = request.app.state.settings
    if not origin_allowed(request, settings):
        raise refuse(403, "bad_origin", "sign out from the dashboard's own page")
    who = await authenticate(request, conn, settings)
    if who is not None:
        await users.sign_out(conn, who, ip=client_ip(request))
    elif refresh_token := request.cookies.get(REFRESH_COOKIE):
        await users.sign_out_refresh(conn, refresh_token, ip=client_ip(request))
    else:
        raise refuse(401, "not_signed_in", "not signed in")
    response = Response(status_code=204)
    _clear(response)
    return response


@router.get("/me", response_model=MeOut)
async def me(conn: Conn, who: Annotated[Principal, Depends(current)]) -> MeOut:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT expires_at FROM auth_sessions WHERE id = %s::uuid", (who.session_id,)
        )
        row = await cur.fetchone()
    return MeOut(user=UserOut(**who.public()), session_expires_at=row and row["expires_at"])
