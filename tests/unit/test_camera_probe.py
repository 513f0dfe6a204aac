"""Why a camera did not open: the RTSP DESCRIBE probe, against a tiny scripted server."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from ingest.rtsp import probe
from ingest.rtsp.capture import with_credentials
from ioc.logs import redact

Handler = Callable[[bytes], bytes | None]  # request -> response (None: say nothing)


@pytest.fixture
def server() -> Iterator[Callable[[Handler], str]]:
    """``server(handler)`` -> a URL whose connections are answered by ``handler``."""
    socks: list[socket.socket] = []

    def start(handler: Handler) -> str:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        socks.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    try:
                        chunk = conn.recv(4096)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                    while b"\r\n\r\n" in buf:
                        req, buf = buf.split(b"\r\n\r\n", 1)
                        reply = handler(req)
                        if reply is not None:
                            conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        return f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam1"

    yield start
    for s in socks:
        s.close()


def reply(status: str, *headers: str, body: bytes = b"") -> bytes:
    head = [f"RTSP/1.0 {status}", "CSeq: 1", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def digest_server(user: str, password: str) -> Handler:
    realm, nonce = "IOC", "abc123"

    def handle(req: bytes) -> bytes:
        text = req.decode()
        if "Authorization: Digest" not in text:
            return reply(
                "401 Unauthorized", f'WWW-Authenticate: Digest realm="{realm}", nonce="{nonce}"'
            )
        fields = dict(
            part.strip().split("=", 1)
            for part in text.split("Digest ", 1)[1].split("\r\n")[0].split(",")
        )
        uri = fields["uri"].strip('"')
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"DESCRIBE:{uri}".encode()).hexdigest()
        good = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        if fields["response"].strip('"') == good:
            return reply("200 OK", "Content-Type: application/sdp", body=b"v=0\r\n")
        return reply(
            "401 Unauthorized", f'WWW-Authenticate: Digest realm="{realm}", nonce="{nonce}"'
        )

    return handle


def test_parse_response_reads_status_and_headers() -> None:
    r = probe.parse_response(reply("404 Not Found", "Server: x", "Server: y"))
    assert (r.status, r.phrase, r.header("server")) == (404, "Not Found", ["x", "y"])
    with pytest.raises(ValueError):
        probe.parse_response(b"HTTP/1.1 200 OK\r\n\r\n")


def test_basic_and_digest_authorization_headers() -> None:
    basic = probe.authorization(['Basic realm="x"'], "u", "p", "DESCRIBE", "rtsp://h/c")
    assert basic == "Basic dTpw"
    digest = probe.authorization(
        ['Basic realm="x"', 'Digest realm="r", nonce="n", qop="auth"'], "u", "p", "DESCRIBE",
        "rtsp://h/c", cnonce="c0",
    )  # fmt: skip
    assert digest is not None and digest.startswith("Digest ") and "qop=auth" in digest
    assert probe.authorization(["Bearer x"], "u", "p", "DESCRIBE", "rtsp://h/c") is None


def test_classify_digest_login_good_and_bad(server: Callable[[Handler], str]) -> None:
    ok = probe.classify(server(digest_server("cam", "right")), "cam", "right", 2.0)
    assert ok.code == "open_failed"  # DESCRIBE succeeds: the stream itself is the problem
    bad = probe.classify(server(digest_server("cam", "right")), "cam", "wrong", 2.0)
    assert bad.code == "auth_failed" and "wrong" not in bad.detail


def test_classify_not_found_error_refused_and_silent(server: Callable[[Handler], str]) -> None:
    assert probe.classify(server(lambda _r: reply("404 Not Found")), None, None, 2.0).code == (
        "not_found"
    )
    r = probe.classify(server(lambda _r: reply("503 Service Unavailable")), None, None, 2.0)
    assert r.code == "rtsp_error" and "503" in r.detail
    silent = probe.classify(server(lambda _r: None), None, None, 0.5)
    assert silent.code == "no_video"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert probe.classify(f"rtsp://127.0.0.1:{port}/cam1", None, None, 1.0).code == "unreachable"


def test_credentials_go_into_the_url_and_never_out_of_redact() -> None:
    url = with_credentials("rtsp://10.0.0.5:554/Streaming/101", "admin", "p@ss:w/rd")
    assert url.startswith("rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/")
    assert "p%40ss" not in redact(url) and "admin" not in redact(url)
    assert redact(f"could not open {url}") == "could not open rtsp://***@10.0.0.5:554/Streaming/101"
    assert with_credentials("rtsp://h/c", None, None) == "rtsp://h/c"
