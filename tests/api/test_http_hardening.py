"""HTTP hardening (issue #10, findings 4 and 6): the body limit holds for chunked bodies (a real
socket to a real uvicorn: TestClient would buffer the body), and HSTS is sent in production
only, on every answer."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from tests.api.conftest import make_settings, production_settings
from tests.web.conftest import fingerprint, serving

MAX_BYTES = 2048
CHUNK_BYTES = 512


@pytest.fixture
def small_limit_url(pg_db: Engine) -> Iterator[str]:
    settings = make_settings(pg_db).model_copy(update={"request_body_max_bytes": MAX_BYTES})
    with serving(create_app(settings, pg_db)) as url:
        yield url


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)


def _head(path: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(lines[0].split()[1]), headers, body


def _stream_until_answered(url: str, path: str, content_type: str) -> tuple[int, bytes, int]:
    """Send a chunked body 512 bytes at a time until the server answers (at most 200 chunks);
    the status, the body and how many bytes had been sent when the answer came."""
    with _connect(url) as sock:
        sock.sendall(_head(path, content_type))
        sent = 0
        for _ in range(200):
            readable, _w, _x = select.select([sock], [], [], 0.2)
            if readable:
                break
            try:
                sock.sendall(_chunk(b"a" * CHUNK_BYTES))
            except OSError:  # the server closed after answering
                break
            sent += CHUNK_BYTES
        status, _headers, body = _read_response(sock)
    return status, body, sent


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/auth/login", "application/json"), ("/app/signin", "application/x-www-form-urlencoded")],
)
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    small_limit_url: str, pg_db: Engine, path: str, content_type: str
) -> None:
    before = fingerprint(pg_db)
    status, body, sent = _stream_until_answered(small_limit_url, path, content_type)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and error["details"] == {"max_bytes": MAX_BYTES}
    assert sent <= MAX_BYTES + 4 * CHUNK_BYTES  # answered once past the limit, not at the end
    assert fingerprint(pg_db) == before


def test_a_chunked_body_under_the_limit_still_works(small_limit_url: str) -> None:
    body = json.dumps({"email": "nobody@example.com", "password": "not-the-password-1"}).encode()
    with _connect(small_limit_url) as sock:
        sock.sendall(_head("/v1/auth/login", "application/json"))
        sock.sendall(_chunk(body[:10]) + _chunk(body[10:]) + b"0\r\n\r\n")
        status, _headers, answer = _read_response(sock)
    assert status == 401 and json.loads(answer)["error"]["code"] == "invalid_credentials"


def test_a_content_length_over_the_limit_is_refused_before_reading(small_limit_url: str) -> None:
    with _connect(small_limit_url) as sock:
        sock.sendall(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999\r\n\r\n"
        )
        status, _headers, answer = _read_response(sock)
    assert status == 413 and json.loads(answer)["error"]["details"] == {"max_bytes": MAX_BYTES}


# ------------------------------------------------------------------------------------------------
# HSTS


def test_production_sends_hsts_on_every_answer(pg_db: Engine) -> None:
    settings = production_settings(pg_db)
    wanted = f"max-age={settings.hsts_max_age_s}"
    app = create_app(settings, pg_db)

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/broken", broken)
    app.add_api_route("/app/broken", broken)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        for response in (
            client.get("/v1/broken"),
            client.get("/app/broken"),
            client.get("/health"),
            client.get("/app/signin"),
            client.get("/nowhere"),
            client.post(
                "/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}
            ),
            client.post("/v1/auth/login", content=b"x" * 10, headers={"Content-Length": "9999999"}),
            client.get("/static/web/base.css"),
        ):
            assert response.headers["strict-transport-security"] == wanted, response.url


def test_hsts_is_not_sent_outside_production(pg_db: Engine) -> None:
    with TestClient(create_app(make_settings(pg_db), pg_db)) as client:
        assert "strict-transport-security" not in client.get("/health").headers
