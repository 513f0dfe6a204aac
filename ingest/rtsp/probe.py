"""Why did a camera not open? One RTSP DESCRIBE, by hand, with a timeout.

A failed open says little (and FFmpeg's error text carries the URL, so it is never shown). When
that happens the capture asks the camera directly, so the operator reads "the camera refused our
credentials (401)" or "no stream at /cam3 (404)" instead of "offline". Basic and Digest authentication, as IP cameras use them. The password is only used
to compute the Authorization header; nothing here returns or logs it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ioc.domain.camera import Reason

MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    phrase: str
    headers: dict[str, list[str]]

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


def parse_response(data: bytes) -> Response:
    """Status line and headers of an RTSP response (the body is ignored)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    m = re.match(r"RTSP/\d\.\d\s+(\d{3})\s*(.*)", lines[0])
    if not m:
        raise ValueError(f"not an RTSP response: {lines[0][:80]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    return Response(int(m.group(1)), m.group(2).strip(), headers)


def _params(challenge: str) -> dict[str, str]:
    return {
        k.lower(): v1 if v1 else v2
        for k, v1, v2 in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', challenge)
    }


def authorization(
    challenges: list[str], user: str, password: str, method: str, uri: str, cnonce: str = ""
) -> str | None:
    """The Authorization header answering the strongest challenge we support."""
    digest = next((c for c in challenges if c.lower().startswith("digest")), None)
    if digest is not None:
        p = _params(digest[len("digest") :])
        realm, nonce = p.get("realm", ""), p.get("nonce", "")

        def md5(s: str) -> str:
            return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()

        ha1 = md5(f"{user}:{realm}:{password}")
        ha2 = md5(f"{method}:{uri}")
        fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        if "auth" in [q.strip() for q in p.get("qop", "").split(",")]:
            cnonce = cnonce or os.urandom(8).hex()
            resp = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
        else:
            resp = md5(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{resp}"')
        if "opaque" in p:
            fields.append(f'opaque="{p["opaque"]}"')
        return "Digest " + ", ".join(fields)
    if any(c.lower().startswith("basic") for c in challenges):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _request(uri: str, cseq: int, auth: str | None) -> bytes:
    lines = [f"DESCRIBE {uri} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp"]
    lines += ["User-Agent: ioc-camera-probe"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> Response:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the camera closed the connection without answering")
        data += chunk
        if len(data) > MAX_HEADER:
            raise ValueError("RTSP response header too long")
    resp = parse_response(data)
    length = int((resp.header("content-length") or ["0"])[0])
    body = len(data.split(b"\r\n\r\n", 1)[1])
    while body < length:  # drain the SDP so a second request on this socket parses cleanly
        chunk = sock.recv(min(4096, length - body))
        if not chunk:
            break
        body += len(chunk)
    return resp


def describe(url: str, user: str | None, password: str | None, timeout: float) -> Response:
    """DESCRIBE ``url`` (no credentials in it), answering one auth challenge. Raises OSError."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 554
    uri = f"rtsp://{host}:{port}{parts.path or '/'}"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_request(uri, 1, None))
        resp = _read_response(sock)
        if resp.status == 401 and user is not None and password is not None:
            auth = authorization(resp.header("www-authenticate"), user, password, "DESCRIBE", uri)
            if auth is not None:
                sock.sendall(_request(uri, 2, auth))
                resp = _read_response(sock)
        return resp


DEFINITE = ("unreachable", "auth_failed", "not_found", "no_video")  # opening cannot succeed


def classify(url: str, user: str | None, password: str | None, timeout: float) -> Reason:
    """Why the camera at ``url`` would not stream. ``url`` carries no credentials.

    ``open_failed`` means the camera answers DESCRIBE: the trouble is in the stream itself."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 554}"
    try:
        resp = describe(url, user, password, timeout)
    except TimeoutError:
        return Reason("no_video", f"{where} accepted the connection but did not answer", 0.9)
    except ConnectionRefusedError:
        return Reason("unreachable", f"nothing listens at {where} (connection refused)", 1.0)
    except ConnectionError as exc:
        return Reason("unreachable", f"{where}: {exc}", 0.9)
    except OSError as exc:
        return Reason("unreachable", f"{where}: {exc.strerror or type(exc).__name__}", 0.9)
    except ValueError as exc:
        return Reason("rtsp_error", f"{where} is not an RTSP server ({exc})", 0.8)
    if resp.status == 401:
        return Reason("auth_failed", "the camera refused our credentials (401)", 1.0)
    if resp.status == 403:
        return Reason("auth_failed", "the camera forbids this account (403)", 1.0)
    if resp.status == 404:
        return Reason("not_found", f"no stream at {parts.path or '/'} (404)", 1.0)
    if resp.status == 200:
        return Reason("open_failed", "the camera answers but its stream could not be opened", 0.6)
    return Reason("rtsp_error", f"the camera answered {resp.status} {resp.phrase}", 0.9)
