"""Work nobody waits for is stopped: a stream whose client went away stops generating at its
next token and is logged 499, not 200; a batch whose requests all timed out stops at its next
token. Driven over real sockets against a real server on 127.0.0.1, at many points of the
stream."""

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from conftest import make_text_rows, make_tiny_gpt2
from test_serve import Server

MAX_TOKENS = 4000


@pytest.fixture(scope="module")
def slow_gpt2(tmp_path_factory) -> Path:
    """A tiny GPT-2 that never says end-of-text: 4000 tokens take it a few seconds."""
    from transformers import GPT2LMHeadModel

    folder = make_tiny_gpt2(tmp_path_factory.mktemp("slow") / "gpt2", [t for t, _ in make_text_rows(40, seed=5)],
                            n_positions=4096)
    model = GPT2LMHeadModel.from_pretrained(folder)
    for config in (model.config, model.generation_config):
        config.eos_token_id = config.bos_token_id = None
    model.save_pretrained(folder)
    return folder


def _abandon_stream(port: int, events: int) -> None:
    """POST a streaming request, read ``events`` events, then drop the connection."""
    body = json.dumps({"prompt": "the cat", "max_new_tokens": MAX_TOKENS, "temperature": 0, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        seen = b""
        while seen.count(b"data: ") < events:
            chunk = conn.recv(65536)
            assert chunk, "the server closed the stream"
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 200")


@pytest.mark.slow
def test_an_abandoned_stream_stops_generating_and_is_logged_499(slow_gpt2):
    server = Server("--recipe", "generate-text", "--model", slow_gpt2, "--device", "cpu", "--max-wait-ms", "1")
    try:
        server.wait_ready(timeout=180)
        full = httpx.post(f"{server.url}/predict", json={"prompt": "the cat", "max_new_tokens": MAX_TOKENS, "temperature": 0},
                          timeout=60)
        assert full.status_code == 200 and full.json()["completion_tokens"] == [MAX_TOKENS]
        one_generation = full.elapsed.total_seconds()
        points = (1, 2, 5, 20, 100, 400)  # events read before the client leaves
        for events in points:
            _abandon_stream(server.port, events)
        started = time.perf_counter()
        quick = httpx.post(f"{server.url}/predict", json={"prompt": "the cat", "max_new_tokens": 1}, timeout=60)
        waited = time.perf_counter() - started
        assert quick.status_code == 200
        # Unstopped, the six streams would hold the model for six whole generations first.
        assert waited < max(1.0, one_generation), (waited, one_generation)
        deadline = time.time() + 10
        while time.time() < deadline:
            lines = [json.loads(line) for line in server.err().splitlines() if line.startswith("{")]
            gone = [line for line in lines if line.get("route") == "/predict" and line.get("status") == 499]
            if len(gone) == len(points):
                break
            time.sleep(0.1)
        assert len(gone) == len(points), server.err()[-3000:]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f'ptcli_requests_total{{model="generate-text",route="/predict",status="499"}} {len(points)}.0' in metrics, metrics
        code, _, err = server.stop()
        assert code == 0, err[-2000:]
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_a_batch_whose_requests_all_timed_out_stops_at_its_next_token(slow_gpt2):
    """/predict generation answered 504 at --timeout-s stops at its next token: the request
    after it gets the model at once, instead of timing out behind a generation nobody awaits."""
    from test_serve import run_app, servable

    async def checks(client, app):
        slow = await client.post("/predict", json={"prompt": "the cat", "max_new_tokens": MAX_TOKENS, "temperature": 0})
        assert slow.status_code == 504, slow.text
        quick = await client.post("/predict", json={"prompt": "the cat", "max_new_tokens": 1})
        assert quick.status_code == 200, quick.text

    run_app(lambda: servable("generate-text", model=str(slow_gpt2)), checks, timeout_s=1.0)


def test_cancellation_is_asked_on_the_thread_that_watches_only():
    import threading

    from ptcli.inference import cancellation

    flag = threading.Event()
    seen = []
    with cancellation.watching(flag.is_set):
        seen.append(cancellation.requested())
        flag.set()
        seen.append(cancellation.requested())
        other = threading.Thread(target=lambda: seen.append(cancellation.requested()))
        other.start()
        other.join()
    seen.append(cancellation.requested())
    assert seen == [False, True, False, False]
