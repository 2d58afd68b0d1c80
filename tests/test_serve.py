"""ptcli serve: the app in-process (httpx on ASGI) with a toy model and with the real
EfficientNet-Lite0, the batcher alone, a real server process on 127.0.0.1, the page in headless
Chromium, and the deployment files."""

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, SHARED

CAT = REPO / "examples" / "cat.jpg"


def _toy(predict=None, kind="text", decode=None, load_gate=None):
    """An app around a toy Servable: texts echoed upper-cased (or ``predict``)."""
    from ptcli.serving.spec import Servable

    def load():
        if load_gate is not None:
            load_gate.wait(10)
        return Servable(kind=kind, decode=decode or (lambda x: x), title="toy",
                        predict=predict or (lambda items: [{"echo": str(item).upper()} for item in items]))

    return load


def run_app(load, checks, **settings):
    """Run ``checks(client, app)`` (async) against the app, its lifespan running."""
    from ptcli.serving.app import Settings, create_app

    app = create_app(load, Settings(**settings))

    async def main():
        from ptcli.serving.inprocess import in_process

        # before_ready: the checks begin at once, while the model loads
        async with in_process(app, wait_s=0 if getattr(checks, "before_ready", False) else 2, base_url="http://test") as client:
            await checks(client, app)

    asyncio.run(main())


# --- the batcher ---------------------------------------------------------------------------------

def test_results_go_to_their_own_inputs_and_batches_fill():
    """200 distinct inputs, submitted at staggered moments by concurrent tasks: each future
    gets the result of its own input; batches form (size > 1) and never exceed max_batch."""
    from ptcli.serving.batcher import Batcher

    sizes = []

    def predict(items):
        time.sleep(0.002)
        return [item * 3 + 1 for item in items]

    async def main():
        batcher = Batcher(predict, max_batch=8, max_wait_ms=3, max_queue=1000, on_batch=sizes.append)
        batcher.start()

        async def client(start):
            results = []
            for value in range(start, start + 10):
                await asyncio.sleep((value % 7) * 0.0005)
                result, size = await batcher.submit(value)
                results.append((value, result, size))
            return results

        done = await asyncio.gather(*(client(start) for start in range(0, 200, 10)))
        await batcher.stop()
        return [row for rows in done for row in rows]

    rows = asyncio.run(main())
    assert len(rows) == 200 and all(result == value * 3 + 1 for value, result, _ in rows)
    assert max(sizes) <= 8 and sum(sizes) == 200

    async def burst():  # 20 inputs queued before the loop runs: batches of 8, 8 and 4
        sizes.clear()
        batcher = Batcher(predict, max_batch=8, max_wait_ms=3, max_queue=1000, on_batch=sizes.append)
        batcher.start()
        futures = [batcher.submit(value) for value in range(20)]
        done = await asyncio.gather(*futures)
        await batcher.stop()
        return done

    assert [result for result, _ in asyncio.run(burst())] == [value * 3 + 1 for value in range(20)]
    assert sizes == [8, 8, 4]


def test_a_full_queue_is_refused_and_timed_out_inputs_are_skipped():
    from ptcli.serving.batcher import Batcher, QueueFull

    gate = threading.Event()
    ran = []

    def predict(items):
        gate.wait(5)
        ran.extend(items)
        return items

    async def main():
        batcher = Batcher(predict, max_batch=1, max_wait_ms=0, max_queue=2)
        batcher.start()
        first = batcher.submit("first")
        await asyncio.sleep(0.05)  # "first" is running; the queue is empty again
        second, third = batcher.submit("second"), batcher.submit("third")
        with pytest.raises(QueueFull):
            batcher.submit("fourth")
        second.cancel()  # its request timed out: the model never sees it
        gate.set()
        assert (await first)[0] == "first" and (await third)[0] == "third"
        await batcher.stop()

    asyncio.run(main())
    assert ran == ["first", "third"]


def test_a_failing_batch_fails_its_requests_and_the_next_batch_runs():
    from ptcli.serving.batcher import Batcher

    def predict(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    async def main():
        batcher = Batcher(predict, max_batch=4, max_wait_ms=1, max_queue=10)
        batcher.start()
        with pytest.raises(ValueError, match="boom"):
            await batcher.submit("bad")
        assert (await batcher.submit("good"))[0] == "good"
        await batcher.stop()

    asyncio.run(main())


def test_decodes_and_forward_passes_never_overlap_and_each_input_gets_its_own_result():
    """Decodes side by side, forward passes alone (ptcli.serving.turns): 5 rounds of 40 inputs
    whose decodes and passes take random times, and at no point do the two overlap, nor do
    more decodes run than the batcher has cores."""
    import random

    from ptcli.serving.batcher import Batcher

    lock, running, seen = threading.Lock(), {"decoding": 0, "computing": 0}, {"overlaps": 0, "most": 0}

    def enter(kind: str) -> None:
        with lock:
            running[kind] += 1
            seen["overlaps"] += running["decoding"] > 0 and running["computing"] > 0
            seen["most"] = max(seen["most"], running["decoding"])

    def leave(kind: str) -> None:
        with lock:
            running[kind] -= 1

    def predict(items):
        enter("computing")
        time.sleep(random.uniform(0, 0.004))
        leave("computing")
        return [item * 3 + 1 for item in items]

    def decode(value):
        enter("decoding")
        time.sleep(random.uniform(0, 0.003))
        leave("decoding")
        return value * 2

    async def main(seed):
        random.seed(seed)
        batcher = Batcher(predict, max_batch=8, max_wait_ms=2, max_queue=1000)
        batcher.start()

        async def request(value):
            await asyncio.sleep(random.uniform(0, 0.02))
            decoded = await batcher.between_passes(lambda: decode(value))
            result, _ = await batcher.submit(decoded)
            return value, result

        rows = await asyncio.gather(*(request(value) for value in range(40)))
        cores = batcher._turns.cores
        await batcher.stop()
        return rows, cores

    for seed in range(5):
        rows, cores = asyncio.run(main(seed))
        assert all(result == value * 6 + 1 for value, result in rows)
    assert seen["overlaps"] == 0 and 1 <= seen["most"] <= cores


def test_a_batch_takes_the_inputs_still_decoding_when_its_wait_ends():
    """Eight requests at once, each decode 30 ms, max_wait 1 ms: one batch of eight. A batch
    that left at its 1 ms would hold the first decoded input or two, and the others would wait
    a whole pass."""
    from ptcli.serving.batcher import Batcher

    sizes = []

    def decode(value):
        time.sleep(0.03)
        return value

    async def main():
        batcher = Batcher(lambda items: items, max_batch=16, max_wait_ms=1, max_queue=100, on_batch=sizes.append)
        batcher.start()

        async def request(value):
            return (await batcher.submit(await batcher.between_passes(lambda: decode(value))))[0]

        results = await asyncio.gather(*(request(value) for value in range(8)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == list(range(8)) and sizes == [8]


def test_a_pass_waits_for_a_decode_whose_request_gave_up():
    """A request cancelled while its input decodes (its client left) leaves the decode running
    on its thread: the next forward pass starts only when that thread is done."""
    from ptcli.serving.batcher import Batcher

    moments = {}

    def decode():
        time.sleep(0.1)
        moments["decoded"] = time.perf_counter()

    def predict(items):
        moments["computing"] = time.perf_counter()
        return items

    async def main():
        batcher = Batcher(predict, max_batch=4, max_wait_ms=0, max_queue=10)
        batcher.start()
        abandoned = asyncio.ensure_future(batcher.between_passes(decode))
        await asyncio.sleep(0.02)
        abandoned.cancel()
        result, _ = await batcher.submit("next")
        await batcher.stop()
        return result

    assert asyncio.run(main()) == "next"
    assert moments["computing"] >= moments["decoded"]


def test_decodes_get_their_cores_in_the_order_they_asked():
    """A decode that asks while others wait goes behind them, even when it asks just as a core
    frees: one that took the core first would leave a request that had waited a pass to wait a
    second. Requests at random moments, decodes and passes of random lengths, 5 seeds."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from ptcli.serving.turns import Turns

    class InOrder(ThreadPoolExecutor):
        """Notes which decode each core was given to, as it is given."""

        def __init__(self):
            super().__init__(2)
            self.given = []

        def submit(self, function, *args):
            self.given.append(function.tag)
            return super().submit(function, *args)

    async def main(seed):
        rng = random.Random(seed)
        turns, decoders, model = Turns(cores=2), InOrder(), ThreadPoolExecutor(1)
        asked, stop = [], asyncio.Event()

        async def request(tag):
            await asyncio.sleep(rng.uniform(0, 0.15))

            def decode():
                time.sleep(rng.uniform(0, 0.004))

            decode.tag = tag
            asked.append(tag)  # in the same step as decode() joins the queue or takes a core
            await turns.decode(decoders, decode)

        async def passes():
            while not stop.is_set():
                await turns.compute(model, time.sleep, rng.uniform(0.002, 0.015))
                await asyncio.sleep(rng.uniform(0, 0.003))

        loop = asyncio.ensure_future(passes())
        await asyncio.gather(*(request(tag) for tag in range(60)))
        stop.set()
        await loop
        decoders.shutdown()
        model.shutdown()
        return asked, decoders.given

    for seed in range(5):
        asked, given = asyncio.run(main(seed))
        assert sorted(given) == list(range(60))
        assert given == asked, seed


def test_a_decode_cancelled_as_its_core_is_granted_hands_the_core_on():
    """The request gives up between being granted a core and running on it: the core goes to
    the next decode in line, and a pass after them is not left waiting for it."""
    from concurrent.futures import ThreadPoolExecutor

    from ptcli.serving.turns import Turns

    ran, gate = [], threading.Event()

    class CancelAtGrant(Turns):
        victim = None

        def _grant(self):
            waiting = list(self._queue)
            super()._grant()
            if self.victim is not None and any(ticket.done() for ticket in waiting):
                self.victim.cancel()  # granted in this very call: before its task can run
                self.victim = None

    async def main():
        turns, executor, model = CancelAtGrant(cores=1), ThreadPoolExecutor(1), ThreadPoolExecutor(1)
        first = asyncio.ensure_future(turns.decode(executor, lambda: gate.wait(5) and ran.append("first")))
        await asyncio.sleep(0.01)
        given_up = asyncio.ensure_future(turns.decode(executor, lambda: ran.append("given up")))
        after = asyncio.ensure_future(turns.decode(executor, lambda: ran.append("after")))
        await asyncio.sleep(0.01)
        turns.victim = given_up
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, after), 5)
        with pytest.raises(asyncio.CancelledError):
            await given_up
        computed = await asyncio.wait_for(turns.compute(model, lambda: "pass"), 5)
        executor.shutdown()
        model.shutdown()
        return computed, turns._running

    assert asyncio.run(main()) == ("pass", 0)
    assert ran == ["first", "after"]


# --- the app, in-process -------------------------------------------------------------------------

def test_health_at_once_ready_only_once_loaded():
    gate = threading.Event()

    async def checks(client, app):
        assert (await client.get("/health")).json() == {"status": "ok"}
        response = await client.get("/ready")
        assert response.status_code == 503 and response.json() == {"error": "the model is loading"}
        assert response.headers["retry-after"] == "1"
        assert (await client.post("/predict", json={"text": "x"})).status_code == 503
        gate.set()
        for _ in range(200):
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/ready")).json() == {"status": "ready", "models": {"model": "toy"}}

    checks.before_ready = True
    run_app(_toy(load_gate=gate), checks)


def test_texts_in_every_form_and_errors_as_json(capfd):
    async def checks(client, app):
        response = await client.post("/predict", json={"text": "hello"}, headers={"X-Request-ID": "abc123"})
        assert response.json() == {"echo": "HELLO"} and response.headers["x-request-id"] == "abc123"
        assert (await client.post("/predict", json={"text": ["a", "b"]})).json() == [{"echo": "A"}, {"echo": "B"}]
        assert (await client.post("/predict", json=["c", "d"])).json() == [{"echo": "C"}, {"echo": "D"}]
        assert (await client.post("/predict", content="plain", headers={"Content-Type": "text/plain"})).json() == {"echo": "PLAIN"}
        assert (await client.post("/predict", data={"text": "form"}, files={"unused": ("a.txt", b"x")})).json() == {"echo": "FORM"}
        cases = [
            (dict(content=b"{bad", headers={"Content-Type": "application/json"}), 400, "malformed JSON"),
            (dict(json={"text": 5}), 400, "send {\"text\""),
            (dict(json={"other": "x"}), 400, "send {\"text\""),
            (dict(content=b"", headers={"Content-Type": "text/plain"}), 400, "the request body is empty"),
            (dict(content=b"x", headers={"Content-Type": "image/png"}), 415, "content type image/png is not accepted"),
            (dict(content=b"x" * 2000, headers={"Content-Type": "text/plain"}), 413, "over the server's --max-body-mb"),
        ]
        for kwargs, status, message in cases:
            response = await client.post("/predict", **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            assert message in response.json()["error"] and set(response.json()) == {"error"}
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/predict")).status_code == 405
        assert (await client.post("/predict", json={"text": "still serving"})).json() == {"echo": "STILL SERVING"}

    run_app(_toy(), checks, max_body_mb=0.001)
    logs = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    requests = [entry for entry in logs if entry.get("route") == "/predict" or entry.get("route") == "other"]
    first = next(entry for entry in requests if entry["id"] == "abc123")
    assert set(first) == {"id", "method", "route", "model", "status", "latency_ms", "batch_size"}
    assert first["route"] == "/predict" and first["status"] == 200 and first["batch_size"] == 1
    assert sorted({entry["status"] for entry in requests}) == [200, 400, 404, 405, 413, 415]


def test_the_body_limit_refuses_from_content_length_before_reading():
    from ptcli.serving.requests import RequestError, read_body

    class Request:
        headers = {"content-length": str(50_000_000)}

        async def stream(self):
            raise AssertionError("the body was read")
            yield b""

    with pytest.raises(RequestError) as refused:
        asyncio.run(read_body(Request(), 20_000_000))
    assert refused.value.status == 413


def test_queue_full_is_503_with_retry_after_and_timeout_is_504():
    """One input running (held by a gate), one waiting: the queue (1) is full. Each step waits
    for the state it needs, not for a moment."""
    gate, started = threading.Event(), threading.Event()

    def predict(items):
        started.set()
        gate.wait(5)
        return [{"echo": item} for item in items]

    async def until(condition):
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the server never got there")

    async def checks(client, app):
        batcher = app.state.ptcli.batcher
        first = asyncio.create_task(client.post("/predict", json={"text": "first"}))
        await until(started.is_set)  # running, on the model thread
        second = asyncio.create_task(client.post("/predict", json={"text": "second"}))
        await until(lambda: len(batcher.pending) == 1)  # waiting
        full = await client.post("/predict", json={"text": "more"})
        assert full.status_code == 503 and full.headers["retry-after"] == "1" and "queue is full" in full.json()["error"]
        timed_out = await asyncio.gather(first, second)
        assert [r.status_code for r in timed_out] == [504, 504] and "--timeout-s" in timed_out[0].json()["error"]
        gate.set()
        await until(lambda: not batcher.pending)
        assert (await client.post("/predict", json={"text": "after"})).json() == {"echo": "after"}

    run_app(_toy(predict=predict), checks, max_queue=1, max_batch=1, timeout_s=0.5)


def test_a_model_that_fails_answers_500_and_the_server_goes_on():
    def predict(items):
        if "crash" in items:
            raise RuntimeError("CUDA error: an illegal memory access")
        return [{"echo": item} for item in items]

    async def checks(client, app):
        response = await client.post("/predict", json={"text": "crash"})
        assert response.status_code == 500
        assert response.json() == {"error": "prediction failed: RuntimeError: CUDA error: an illegal memory access"}
        assert (await client.post("/predict", json={"text": "ok"})).json() == {"echo": "ok"}

    run_app(_toy(predict=predict), checks, max_wait_ms=0)


def test_a_model_that_cannot_load_says_so_on_ready():
    def load():
        raise FileNotFoundError("weights.safetensors")

    async def checks(client, app):
        response = await client.get("/ready")
        assert response.status_code == 503 and "the model failed to load: FileNotFoundError" in response.json()["error"]
        assert "failed to load" in (await client.post("/predict", json={"text": "x"})).json()["error"]

    run_app(load, checks)


def test_metrics_in_prometheus_format():
    """Six requests, five of them queued while the first holds the model: two forward passes."""
    gate, started = threading.Event(), threading.Event()

    def predict(items):
        started.set()
        gate.wait(5)
        return [{"echo": item} for item in items]

    async def checks(client, app):
        batcher = app.state.ptcli.batcher
        first = asyncio.create_task(client.post("/predict", json={"text": "0"}))
        for _ in range(500):
            if started.is_set():
                break
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(client.post("/predict", json={"text": str(i)})) for i in range(1, 6)]
        for _ in range(500):
            if len(batcher.pending) == 5:
                break
            await asyncio.sleep(0.01)
        assert 'ptcli_queue_depth{model="model"} 5.0' in (await client.get("/metrics")).text
        gate.set()
        assert [r.status_code for r in await asyncio.gather(first, *rest)] == [200] * 6
        await client.post("/predict", content=b"{", headers={"Content-Type": "application/json"})
        text = (await client.get("/metrics")).text
        assert 'ptcli_requests_total{model="model",route="/predict",status="200"} 6.0' in text
        assert 'ptcli_requests_total{model="model",route="/predict",status="400"} 1.0' in text
        assert 'ptcli_request_latency_seconds_bucket{le="0.005",model="model",route="/predict"}' in text
        assert 'ptcli_batch_size_count{model="model"} 2.0' in text and 'ptcli_batch_size_sum{model="model"} 6.0' in text
        assert 'ptcli_queue_depth{model="model"} 0.0' in text and 'ptcli_dropped_inputs_total{model="model"} 0.0' in text
        # where the time went: every input's wait, decode and encode, and each batch's forward pass
        stages = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("ptcli_stage_seconds_") and not line.startswith("ptcli_stage_seconds_bucket")}
        for stage, count in (("queue_wait", 6), ("decode", 6), ("forward", 2), ("encode", 6)):
            assert stages[f'ptcli_stage_seconds_count{{model="model",stage="{stage}"}}'] == count, (stage, stages)
        # the five queued inputs waited while the first held the model, which waited on the gate
        assert stages['ptcli_stage_seconds_sum{model="model",stage="queue_wait"}'] > 0
        assert stages['ptcli_stage_seconds_sum{model="model",stage="forward"}'] >= \
            stages['ptcli_stage_seconds_sum{model="model",stage="queue_wait"}'] / 5

    run_app(_toy(predict=predict), checks, max_wait_ms=0)


def servable(recipe, *, checkpoint=None, model=None, weights=None):
    """What `ptcli serve` runs for ``recipe`` (through its Predictor), on the CPU."""
    import torch

    from ptcli.plugins import get_plugins
    from ptcli.serving.spec import load_servable

    return load_servable(get_plugins().recipe(recipe), checkpoint=checkpoint, model=model, weights=weights,
                         device=torch.device("cpu"))


@pytest.fixture(scope="module")
def lite0_servable():
    return servable("classify-image")


def _photos():
    names = ("cat.jpg", "dog.jpg", "coffee.jpg", "rocket.jpg", "rgba.png", "gray.png")
    found = [SHARED / "images" / name for name in names if (SHARED / "images" / name).is_file()]
    return found or [CAT]


def test_the_real_model_answers_each_concurrent_request_with_its_own_image(cli, lite0_servable):
    """Many concurrent uploads of different photos, in every accepted form: each answer is the
    classify-image --json object of its own photo."""
    photos = _photos()
    expected = {}
    for line in cli("classify-image", *photos, "--json").stdout.splitlines():
        row = json.loads(line)
        expected[Path(row["input"]).name] = row["predictions"]

    async def checks(client, app):
        def send(i, path):
            data = path.read_bytes()
            form = i % 3
            if form == 0:
                return client.post("/predict", files={"file": (path.name, data, "application/octet-stream")})
            if form == 1:
                return client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
            return client.post("/predict", json={"image": base64.b64encode(data).decode()})

        jobs = [(i, photos[i % len(photos)]) for i in range(24)]
        responses = await asyncio.gather(*(send(i, path) for i, path in jobs))
        for (i, path), response in zip(jobs, responses):
            assert response.status_code == 200, response.text
            body = response.json()
            want = expected[path.name]  # scores to float noise: batches are composed differently
            assert [p["label"] for p in body["predictions"]] == [p["label"] for p in want], (i, path.name)
            assert all(abs(p["score"] - q["score"]) < 1e-5 for p, q in zip(body["predictions"], want))
            assert body.get("input") == (path.name if i % 3 == 0 else None)
        bad = await client.post("/predict", content=CAT.read_bytes()[:500], headers={"Content-Type": "image/jpeg"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("cannot read image")
        assert "BytesIO" not in bad.json()["error"]
        # one request of three inputs, decoded by their batch on the model thread: the broken one
        # is its own error, the others are answered
        encoded = [base64.b64encode(data).decode() for data in (photos[0].read_bytes(), CAT.read_bytes()[:500], photos[1].read_bytes())]
        mixed = await client.post("/predict", json={"image": encoded})
        assert mixed.status_code == 200, mixed.text
        first, broken, third = mixed.json()
        assert [p["label"] for p in first["predictions"]] == [p["label"] for p in expected[photos[0].name]]
        assert [p["label"] for p in third["predictions"]] == [p["label"] for p in expected[photos[1].name]]
        assert broken == {"error": bad.json()["error"]}
        page = await client.get("/")
        assert page.status_code == 200 and '"kind": "image"' in page.text and "classify-image" in page.text

    run_app(lambda: lite0_servable, checks, max_batch=8, max_wait_ms=20)


def test_image_url_only_with_allow_urls():
    async def checks(client, app):
        response = await client.post("/predict", json={"image_url": "http://127.0.0.1:1/x.jpg"})
        assert response.status_code == 400 and "--allow-urls" in response.json()["error"]

    run_app(_toy(kind="image"), checks)

    async def allowed(client, app):
        response = await client.post("/predict", json={"image_url": "file:///etc/passwd"})
        assert response.status_code == 400 and "http:// or https://" in response.json()["error"]
        response = await client.post("/predict", json={"image_url": "http://127.0.0.1:1/x.jpg"})
        assert response.status_code == 400 and "cannot fetch image_url" in response.json()["error"]

    run_app(_toy(kind="image"), allowed, allow_urls=True)


def test_an_export_serves_like_its_checkpoint(cli, tmp_path):
    import torch

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli.plugins.tiny_inputs import write_image
    from ptcli_classify_image.models import _build_simplenet

    torch.manual_seed(0)
    pre = {"resize": 32, "crop": 32, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    ckpt = save_checkpoint(tmp_path / "s", _build_simplenet(num_classes=3, image_size=32).state_dict(), recipe="classify-image",
                           model="simplenet", classes=["r", "g", "b"], preprocessing=pre, extra={"model_args": {"image_size": 32}})
    assert cli("export", ckpt, "-o", tmp_path / "s.onnx").exit_code == 0
    image = write_image(tmp_path / "x.png", size=(40, 30))
    expected = json.loads(cli("classify-image", image, "--checkpoint", ckpt, "--json").stdout)["predictions"]
    served = servable("classify-image", checkpoint=tmp_path / "s.onnx")

    async def checks(client, app):
        body = (await client.post("/predict", content=image.read_bytes(), headers={"Content-Type": "image/png"})).json()
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
        assert all(abs(p["score"] - q["score"]) < 1e-4 for p, q in zip(body["predictions"], expected))

    run_app(lambda: served, checks)


def audionet_and_tone(folder):
    """(a random 3-class AudioNet checkpoint at 8 kHz, a 0.7 s tone to classify)."""
    import torch

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli.plugins.tiny_inputs import write_clip
    from ptcli_classify_audio.models import build_audionet

    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / "audio", build_audionet(num_classes=3, width=16).state_dict(), recipe="classify-audio",
                           model="audionet", classes=["a", "b", "c"], preprocessing={"sample_rate": 8000, "clip_samples": 8000},
                           extra={"model_args": {"width": 16}})
    return ckpt, write_clip(folder / "tone.wav", seconds=0.7)


def test_other_recipes_serve_their_own_json(cli, tmp_path, tiny_bert_classifier):
    text_served = servable("classify-text", model=str(tiny_bert_classifier))
    expected = json.loads(cli("classify-text", "good great fine", "--model", tiny_bert_classifier, "--json").stdout)

    async def checks(client, app):
        assert (await client.post("/predict", json={"text": "good great fine"})).json() == expected
        empty = await client.post("/predict", json={"text": "  "})
        assert empty.status_code == 400 and "empty text" in empty.json()["error"]

    run_app(lambda: text_served, checks)

    ckpt, clip = audionet_and_tone(tmp_path)
    expected = json.loads(cli("classify-audio", clip, "--checkpoint", ckpt, "--json").stdout)
    served = servable("classify-audio", checkpoint=ckpt)

    async def audio(client, app):
        response = await client.post("/predict", files={"file": ("tone.wav", clip.read_bytes())})
        assert response.json() == {"input": "tone.wav", "predictions": expected["predictions"]}
        bad = await client.post("/predict", content=b"RIFFnope", headers={"Content-Type": "audio/wav"})
        assert bad.status_code == 400 and "cannot read audio" in bad.json()["error"]

    run_app(lambda: served, audio)


# --- a real server process -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``ptcli serve ARGS`` on a free port of 127.0.0.1. Its log (stderr) goes to a file, never
    to a pipe nobody reads: a long test's log lines would fill a pipe and stall the server."""

    def __init__(self, *args, env=None):
        import tempfile

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ptcli-serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "ptcli", "serve", *map(str, args)],
                                        env={**os.environ, "PTCLI_SERVE_PORT": str(self.port), **(env or {})},
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)

    def err(self) -> str:
        return Path(self.log.name).read_text()

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, (self.process.communicate()[0], self.err()[-5000:])
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server never became ready")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, self.err()


@pytest.fixture
def lite0_server():
    server = Server("--recipe", "classify-image", "--max-wait-ms", "2", "--device", "cpu")
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.communicate()


def test_a_real_server_answers_over_http_and_stops_on_sigterm(cli, lite0_server):
    lite0_server.wait_ready()
    expected = json.loads(cli("classify-image", CAT, "--json").stdout)["predictions"]
    response = httpx.post(f"{lite0_server.url}/predict", files={"file": ("cat.jpg", CAT.read_bytes())}, timeout=30)
    assert response.status_code == 200 and response.json() == {"input": "cat.jpg", "predictions": expected}
    assert len(response.headers["x-request-id"]) == 16
    code, out, err = lite0_server.stop()
    assert code == 0 and out == ""
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logs[0]["event"] == "serving" and any(entry.get("event") == "ready" for entry in logs)
    assert any(entry.get("route") == "/predict" and entry["status"] == 200 for entry in logs)


@pytest.mark.parametrize("queued", [1, 6])
def test_sigterm_drains_requests_in_flight_then_exits_0(queued):
    """Requests held in the queue (a long --max-wait-ms, checked on /metrics) when SIGTERM
    arrives all get their answers; then the server exits 0."""
    server = Server("--recipe", "classify-image", "--max-wait-ms", "6000", "--max-batch", "64", "--device", "cpu")
    try:
        server.wait_ready()
        results = []

        def post():
            results.append(httpx.post(f"{server.url}/predict", content=CAT.read_bytes(),
                                      headers={"Content-Type": "image/jpeg"}, timeout=60).status_code)

        threads = [threading.Thread(target=post) for _ in range(queued)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            depth = [line for line in httpx.get(f"{server.url}/metrics").text.splitlines() if line.startswith("ptcli_queue_depth")]
            if depth and float(depth[0].split()[-1]) == queued:  # ptcli_queue_depth{model="classify-image"} N
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the requests never queued")
        code, _, err = server.stop()
        for thread in threads:
            thread.join(30)
        assert code == 0, err
        assert results == [200] * queued
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_ctrl_c_drains_then_exits_130(lite0_server):
    lite0_server.wait_ready()
    code, _, err = lite0_server.stop(signal.SIGINT)
    assert code == 130 and "error: interrupted" in err


def test_a_model_that_fails_to_load_stops_the_server_with_one_line(tmp_path):
    from ptcli.models.checkpoints import save_checkpoint

    import torch

    save_checkpoint(tmp_path / "bad", {"w": torch.zeros(1)}, recipe="classify-image", model="simplenet", classes=["a", "b"],
                    preprocessing={"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1]})
    server = Server(tmp_path / "bad.safetensors", "--device", "cpu")
    code, out, err = server.stop(signal.SIGCONT, timeout=120)  # SIGCONT: no-op; wait for it to stop on its own
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("error: the model failed to load: checkpoint")


def test_sigterm_while_the_model_loads_exits_0():
    server = Server("--recipe", "classify-image", "--device", "cpu")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    code, _, err = server.stop()
    assert code == 0, err


def _unservable():
    """A plugin whose recipe declares no predictor (nor a serve of its own)."""
    import types

    from ptcli import hookimpl
    from ptcli.plugins.recipe import Recipe

    module = types.ModuleType("unservable_plugin")
    module.register_recipes = hookimpl(lambda register: register(Recipe(name="unservable", help="")))
    return module


def test_serve_usage_errors(cli, tmp_path):
    result = cli("serve", "--recipe", "unservable", plugins=[_unservable()])
    assert result.exit_code == 2 and "recipe unservable cannot be served" in result.stderr
    cases = [
        (("serve",), "give a checkpoint, or --recipe R"),
        (("serve", "--recipe", "classify-image", "--model", "nope"), "unknown model 'nope'"),
        (("serve", tmp_path / "none.safetensors"), "checkpoint not found"),
        (("serve", "--recipe", "classify-image", "--device", "cuda:7"), "--device cuda:7 asked for"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("serve", "--recipe", "classify-image", "--port", taken.getsockname()[1])
    assert result.exit_code == 2 and "pick another --port" in result.stderr


def test_every_option_comes_from_the_environment(cli, monkeypatch):
    import typer

    from ptcli.cli import app

    command = typer.main.get_command(app).commands["serve"]
    for param in command.params:
        if param.name != "help":
            name = {"json_output": "json"}.get(param.name, param.name)
            assert param.envvar == f"PTCLI_SERVE_{name.upper()}", param.name
    monkeypatch.setenv("PTCLI_SERVE_RECIPE", "unservable")
    result = cli("serve", plugins=[_unservable()])
    assert result.exit_code == 2 and "recipe unservable cannot be served" in result.stderr
    monkeypatch.setenv("PTCLI_SERVE_RECIPE", "classify-image")
    monkeypatch.setenv("PTCLI_SERVE_PORT", "0")
    result = cli("serve")
    assert result.exit_code == 2 and "PTCLI_SERVE_PORT" in result.stderr


# --- the page in a browser ------------------------------------------------------------------

import contextlib


@contextlib.contextmanager
def chromium_page(url):
    """(call, evaluate) on ``url`` in Debian's headless chromium, over the DevTools protocol."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from websockets.sync.client import connect

    profile = Path(REPO / "test-artifacts" / f"chromium-profile-{os.getpid()}")
    shutil.rmtree(profile, ignore_errors=True)
    chrome = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                               f"--user-data-dir={profile}", "about:blank"], stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        deadline = time.time() + 60
        while endpoint is None and time.time() < deadline:
            line = chrome.stderr.readline()
            if "DevTools listening on" in line:
                endpoint = line.split("DevTools listening on", 1)[1].strip()
        assert endpoint, "chromium did not start its DevTools endpoint"
        port = endpoint.split(":")[2].split("/")[0]
        target = httpx.put(f"http://127.0.0.1:{port}/json/new?{url}", timeout=10).json()
        with connect(target["webSocketDebuggerUrl"], max_size=2**26) as page:
            ids = iter(range(1, 100_000))

            def call(method, **params):
                number = next(ids)
                page.send(json.dumps({"id": number, "method": method, "params": params}))
                while True:
                    message = json.loads(page.recv(timeout=60))
                    if message.get("id") == number:
                        assert "error" not in message, message
                        return message["result"]

            def evaluate(expression):
                return call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)["result"].get("value")

            for _ in range(100):
                if evaluate("document.readyState") == "complete":
                    break
                time.sleep(0.1)
            yield call, evaluate
    finally:
        chrome.kill()
        chrome.communicate()
        shutil.rmtree(profile, ignore_errors=True)


def _upload(call, evaluate, path):
    root = call("DOM.getDocument")["root"]["nodeId"]
    node = call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)
    evaluate("document.getElementById('file').dispatchEvent(new Event('change'))")


def _until(evaluate, expression, tries=200):
    value = None
    for _ in range(tries):
        value = evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    return value


def test_the_page_uploads_an_image_in_headless_chromium(lite0_server, tmp_path):
    """The page at /, in a browser: an uploaded photo shows itself and its top label; a broken
    file shows its error with the last result cleared, even when an answer to an older upload
    comes back late (each upload here fires the page's change handler twice: once from the
    file chooser, once by hand). The screenshot is kept in test-artifacts/serve-page.png."""
    lite0_server.wait_ready()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(CAT.read_bytes()[:300])
    with chromium_page(f"{lite0_server.url}/") as (call, evaluate):
        assert _until(evaluate, "!!document.getElementById('file')")
        _upload(call, evaluate, CAT)
        assert _until(evaluate, "document.getElementById('top-label').textContent") == "Egyptian cat"
        assert "tiger cat" in evaluate("document.getElementById('predictions').textContent")
        assert evaluate("!document.getElementById('upload').hidden && document.getElementById('upload').naturalWidth") > 0
        shot = call("Page.captureScreenshot", format="png")["data"]
        _upload(call, evaluate, broken)
        assert "cannot read image" in _until(evaluate, "document.getElementById('error').textContent")
        time.sleep(1.0)  # time for any older answer to come back: it must not show
        assert evaluate("document.getElementById('top-label').textContent + document.getElementById('predictions').textContent") == ""
        assert "cannot read image" in evaluate("document.getElementById('error').textContent")
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "serve-page.png").write_bytes(base64.b64decode(shot))
    assert (artifacts / "serve-page.png").stat().st_size > 1000


def test_docs_and_the_page_work_offline_with_a_key_asked_for_and_kept_for_the_tab():
    """A server with an API key, in headless chromium (no network here: a CDN would leave
    /docs blank): /docs asks for the key, then shows Swagger UI from ptcli's own files and
    calls a route with the key; the page at / asks for it too, then lists the model and
    classifies an upload. A wrong key is asked for again; a reload keeps the right one."""
    server = Server("--recipe", "classify-image", "--max-wait-ms", "2", "--device", "cpu",
                    env={"PTCLI_SERVE_API_KEYS": "right-key-1234"})
    try:
        server.wait_ready()
        with chromium_page(f"{server.url}/docs") as (call, evaluate):
            assert _until(evaluate, "!!document.getElementById('api-key')")
            assert not evaluate("!!document.querySelector('.swagger-ui .info')")  # nothing before the key
            evaluate("document.getElementById('api-key').value = 'wrong-key-000'; document.getElementById('use-key').click()")
            assert "refused" in _until(evaluate, "document.getElementById('key-error') && "
                                                 "document.getElementById('key-error').textContent")
            evaluate("document.getElementById('api-key').value = 'right-key-1234'; document.getElementById('use-key').click()")
            title = _until(evaluate, "document.querySelector('.swagger-ui .info .title') && "
                                     "document.querySelector('.swagger-ui .info .title').textContent")
            assert title and title.startswith("ptcli serve")
            assert _until(evaluate, "document.querySelectorAll('.opblock').length") > 10  # the routes, listed
            # The schema came from /openapi.json, which wants the key: the interceptor sent it, as it
            # does for every "Try it out" request.
            sent = evaluate("ui.getConfigs().requestInterceptor({url: '/models', headers: {}}).headers.Authorization")
            assert sent == "Bearer right-key-1234"
            listed = evaluate("fetch('/models', {headers: withKey({})}).then(r => r.json())")
            assert list(listed) == ["classify-image"] and listed["classify-image"]["kind"] == "image"
            evaluate("location.reload()")
            time.sleep(1)
            assert _until(evaluate, "document.querySelector('.swagger-ui .info .title') && "
                                    "!document.getElementById('api-key')")
        with chromium_page(f"{server.url}/") as (call, evaluate):
            assert _until(evaluate, "!!document.getElementById('api-key')")
            evaluate("document.getElementById('api-key').value = 'right-key-1234'; document.getElementById('use-key').click()")
            assert _until(evaluate, "!!document.getElementById('file')")
            _upload(call, evaluate, CAT)
            assert _until(evaluate, "document.getElementById('top-label').textContent") == "Egyptian cat"
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


@pytest.mark.slow
def test_the_page_streams_a_language_models_text_beside_an_image_model(tmp_path, tiny_gpt2):
    """A two-model server: the page offers both; a prompt to the language model shows its
    continuation growing as it streams, with no error."""
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  - {{name: cat, recipe: classify-image}}\n  - {{name: gpt, recipe: generate-text, model: {tiny_gpt2}}}\n")
    server = Server("--config", config, "--device", "cpu")
    try:
        server.wait_ready(timeout=180)
        with chromium_page(f"{server.url}/") as (call, evaluate):
            assert _until(evaluate, "document.getElementById('model').options.length") == 2
            evaluate("const s = document.getElementById('model'); s.value = 'gpt'; s.dispatchEvent(new Event('change'))")
            assert _until(evaluate, "!!document.getElementById('prompt')")
            evaluate("document.getElementById('prompt').value = 'bake the bread'; document.getElementById('send').click()")
            text = _until(evaluate, "(() => { const t = document.getElementById('top-label').textContent; "
                                    "return t.length > 'bake the bread'.length ? t : ''; })()")
            assert text.startswith("bake the bread") and evaluate("document.getElementById('error').textContent") == ""
            for _ in range(100):  # the stream ends: the text stops growing
                before = evaluate("document.getElementById('top-label').textContent")
                time.sleep(0.2)
                if evaluate("document.getElementById('top-label').textContent") == before:
                    break
            assert len(before) >= len(text) > len("bake the bread")
        code, _, err = server.stop()
        assert code == 0, err[-2000:]
    finally:
        if server.process.poll() is None:
            server.process.kill()


# --- deployment files ----------------------------------------------------------------------------

def test_deployment_files_match_the_server():
    import inspect

    import yaml

    from ptcli.cli.commands.serve_cmd import serve
    from ptcli.serving.app import ROUTES

    default_port = inspect.signature(serve).parameters["port"].default
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    assert any(line == f"EXPOSE {default_port}" for line in lines)
    assert any(line.startswith("USER ") and line.split()[1] not in ("root", "0") for line in lines)
    assert "download.pytorch.org/whl/cpu" in dockerfile and "ARG TORCH_INDEX" in dockerfile
    health = dockerfile[dockerfile.index("HEALTHCHECK"):].split("\n\n")[0]
    assert f"127.0.0.1:{default_port}/health" in health and "/health" in ROUTES
    assert 'CMD ["ptcli", "serve"]' in dockerfile and "PTCLI_SERVE_HOST=0.0.0.0" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    copied = [line.split()[1] for line in lines if line.startswith("COPY")]
    assert all(Path(REPO / c.split()[0]).exists() for c in copied)

    deployment = yaml.safe_load((REPO / "deploy" / "k8s" / "deployment.yaml").read_text())
    service = yaml.safe_load((REPO / "deploy" / "k8s" / "service.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = container["ports"][0]
    assert port["containerPort"] == default_port and port["name"] == "http"
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["PTCLI_SERVE_PORT"] == str(default_port) and env["PTCLI_SERVE_HOST"] == "0.0.0.0"
    assert all(name[len("PTCLI_SERVE_"):].lower() in inspect.signature(serve).parameters for name in env)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {container["livenessProbe"]["httpGet"]["port"], container["readinessProbe"]["httpGet"]["port"]} == {"http"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > inspect.signature(serve).parameters["timeout_s"].default


def test_kserve_and_autoscaler_files_match_the_server(cli, tmp_path, monkeypatch):
    """The KServe InferenceService probes v2 health routes the server has, sets only options
    serve takes, and its models.yaml is a config serve accepts as the container gets it; the
    HPA scales the Deployment on a metric /metrics exports."""
    import inspect

    import yaml

    from ptcli.cli.commands.serve_cmd import serve
    from ptcli.serving import v2
    from ptcli.serving.app import OPEN_ROUTES, Settings, create_app

    documents = list(yaml.safe_load_all((REPO / "deploy" / "kserve" / "inferenceservice.yaml").read_text()))
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    service = next(d for d in documents if d["kind"] == "InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = service["spec"]["predictor"]
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container" and container["command"] == ["ptcli", "serve"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert all(name[len("PTCLI_SERVE_"):].lower() in inspect.signature(serve).parameters for name in env)
    port = int(env["PTCLI_SERVE_PORT"])
    assert container["ports"][0]["containerPort"] == port
    for probe in ("livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path in v2.ROUTES and path in OPEN_ROUTES and container[probe]["httpGet"]["port"] == port
    mount = container["volumeMounts"][0]
    assert env["PTCLI_SERVE_CONFIG"].startswith(mount["mountPath"] + "/")
    volume = next(v for v in predictor["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    # The container's environment as the image gives it (the Dockerfile's, then the service's):
    # serve gets past every check of its models to the port it cannot take.
    config = tmp_path / "models.yaml"
    config.write_text(config_map["data"]["models.yaml"])
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for name, value in [("PTCLI_SERVE_RECIPE", "classify-image"), *env.items()]:
        if name in dockerfile or name in env:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PTCLI_SERVE_CONFIG", str(config))
    monkeypatch.setenv("PTCLI_SERVE_HOST", "127.0.0.1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("PTCLI_SERVE_PORT", str(taken.getsockname()[1]))
        result = cli("serve")
    assert result.exit_code == 2 and "pick another --port" in result.stderr, result.stderr

    hpa = yaml.safe_load((REPO / "deploy" / "k8s" / "hpa.yaml").read_text())
    deployment = yaml.safe_load((REPO / "deploy" / "k8s" / "deployment.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == deployment["kind"]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    app = create_app(_toy(), Settings())
    exported = app.state.ptcli.metrics.render()[0].decode()
    assert f"# TYPE {metric} gauge" in exported
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["ptcli", "serve"]
