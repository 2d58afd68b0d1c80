"""Slow clients never hold the server: 120 connections dripping a header line at a time are
answered 408 and closed at --header-timeout-s while other clients are served within a second;
a request of too many header fields is a 431; every line the server logs is JSON. A real
server on 127.0.0.1; every loop here is bounded in count and time."""

import json
import select
import socket
import time

import httpx
import pytest

from test_serve import CAT, Server

SLOW_CLIENTS = 120
HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server():
    server = Server("--recipe", "classify-image", "--device", "cpu", "--header-timeout-s", str(HEADER_TIMEOUT_S),
                    "--max-wait-ms", "2")
    server.wait_ready(timeout=180)
    yield server
    if server.process.poll() is None:
        server.stop()
    if server.process.poll() is None:
        server.process.kill()


def _open(port: int, first: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(first)
    conn.setblocking(False)
    return conn


@pytest.mark.slow
@pytest.mark.parametrize("start", ["a new connection", "after an answered request"])
def test_a_slowloris_is_cut_off_while_others_are_served(server, start):
    slow = []
    for _ in range(SLOW_CLIENTS):
        if start == "a new connection":
            slow.append(_open(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n"))
        else:  # keep-alive: one whole request answered, then the next one dripped
            conn = _open(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n")
            slow.append(conn)
    opened = time.monotonic()
    closed_at, answers = {}, {conn: b"" for conn in slow}
    served = []
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while time.monotonic() - opened < HEADER_TIMEOUT_S + 4 and len(closed_at) < len(slow):
            for conn in slow:  # a header line each, every half second: each resets uvicorn's keep-alive timer
                if conn not in closed_at:
                    try:
                        conn.send(b"X-Drip: 1\r\n")
                    except OSError:
                        closed_at[conn] = time.monotonic() - opened
            ready, _, _ = select.select([c for c in slow if c not in closed_at], [], [], 0)
            for conn in ready:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                answers[conn] += data
                if not data:
                    closed_at[conn] = time.monotonic() - opened
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            photo = client.post("/predict", files={"file": ("cat.jpg", CAT.read_bytes(), "image/jpeg")})
            assert photo.status_code == 200
            served.append(time.monotonic() - started)
            time.sleep(0.5)
    for conn in slow:
        conn.close()
    assert len(closed_at) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(closed_at)} slow connections still open"
    assert HEADER_TIMEOUT_S - 0.5 <= min(closed_at.values()) and max(closed_at.values()) <= HEADER_TIMEOUT_S + 2
    assert all(b"408" in answer and b"did not arrive" in answer for answer in answers.values())
    assert len(served) >= 4 and max(served) < 1.0, served


def test_too_many_header_fields_is_a_431(server):
    headers = {f"x-field-{i}": "1" for i in range(300)}
    response = httpx.get(f"{server.url}/health", headers=headers, timeout=10)
    assert response.status_code == 431 and "at most 100" in response.json()["error"]
    assert httpx.get(f"{server.url}/health", headers=dict(list(headers.items())[:50]), timeout=10).status_code == 200


def test_every_line_the_server_logs_is_json(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):  # the server closes the connection after its answer,
            answer += chunk               # which may come in more than one segment
    assert answer.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in answer
    deadline = time.time() + 5
    while time.time() < deadline and "Invalid HTTP request" not in server.err():
        time.sleep(0.1)
    lines = [line for line in server.err().splitlines() if line.strip()]
    assert any("Invalid HTTP request" in line for line in lines)
    for line in lines:
        json.loads(line)
