"""The server bounds decode memory across requests: 8 concurrent uploads of an 86 KB PNG of
9400x9400 pixels (about 420 MB each to decode) added 3.3 GB to the server; decoding now holds
a budget by the size each header announces, and the rest wait their turn."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from test_serve import Server, _toy, run_app


def _peak_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _current_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("png") / "huge.png"
    Image.new("L", (9400, 9400)).save(path)
    assert path.stat().st_size < 100_000
    return path.read_bytes()


@pytest.mark.slow
def test_concurrent_decode_bombs_stay_within_the_budget(huge_png, tmp_path):
    server = Server("--recipe", "classify-image", "--device", "cpu", "--max-wait-ms", "2")
    try:
        server.wait_ready(timeout=180)
        pid = server.process.pid
        small = httpx.post(f"{server.url}/predict", files={"file": ("a.png", huge_png[:0] or _small_png(), "image/png")},
                           timeout=60)
        assert small.status_code == 200, small.text
        settled = _current_mb(pid)
        before = _peak_mb(pid)

        def upload(_):
            return httpx.post(f"{server.url}/predict", files={"file": ("huge.png", huge_png, "image/png")}, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(upload, range(8)))
        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
        grown = _peak_mb(pid) - max(before, settled)
        print(f"server peak before {before:.0f} MB, after 8 concurrent 9400x9400 PNGs +{grown:.0f} MB")
        assert grown < 1024
        code, _, err = server.stop()
        assert code == 0, err[-2000:]
    finally:
        if server.process.poll() is None:
            server.process.kill()


def _small_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decoding_waits_for_its_share_of_the_budget():
    """With room for one huge image at a time, the second decode starts after the first ends;
    small inputs pass beside them."""
    from ptcli.serving import budget

    running, most = [0], [0]
    lock = threading.Lock()

    def decode(raw):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return len(raw)

    huge = _png(4000, 4000)
    saved = budget.BUDGET.total
    budget.configure(4000 * 4000 * 6)  # one of them at a time
    try:
        async def checks(client, app):
            answers = await asyncio.gather(*(client.post("/predict", content=huge, headers={"Content-Type": "image/png"})
                                             for _ in range(3)))
            assert all(answer.status_code == 200 for answer in answers)
            assert most[0] == 1

        run_app(_toy(kind="image", decode=decode, predict=lambda items: [{"n": n} for n in items]), checks)
    finally:
        budget.configure(saved)


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_cost_comes_from_the_header():
    from ptcli.serving.budget import decode_cost

    assert decode_cost("image", _png(1000, 2000)) == 1000 * 2000 * 6
    assert decode_cost("image", b"not an image") == len(b"not an image")
    assert decode_cost("text", "some text") == 9


def test_a_request_that_waits_past_its_deadline_for_the_budget_is_a_504():
    """Waiting for the budget counts toward --timeout-s; the budget is free again after."""
    from ptcli.serving import budget

    gate = threading.Event()

    def decode(raw):
        gate.wait(5)
        return len(raw)

    huge = _png(3000, 3000)
    saved = budget.BUDGET.total
    budget.configure(3000 * 3000 * 6)
    try:
        async def checks(client, app):
            first = asyncio.create_task(client.post("/predict", content=huge, headers={"Content-Type": "image/png"}))
            for _ in range(200):
                if budget.BUDGET.held:
                    break
                await asyncio.sleep(0.01)
            second = await client.post("/predict", content=huge, headers={"Content-Type": "image/png"})
            assert second.status_code == 504 and "--timeout-s" in second.json()["error"]
            gate.set()
            await first
            assert budget.BUDGET.held == 0

        run_app(_toy(kind="image", decode=decode, predict=lambda items: [{"n": n} for n in items]), checks, timeout_s=0.5)
    finally:
        budget.configure(saved)
