"""`ptcli serve` for the recipes whose results are not labels: generate-text (JSON and
server-sent events) and super-resolve (the PNG itself, or JSON with it in base64), each through
a real server process on 127.0.0.1, answering as the command does for the same input."""

import base64
import json

import httpx
import pytest

from test_serve import Server, audionet_and_tone




class Chatter:
    """A streaming predictor that gives "a", "b", then fails when the prompt says so."""

    @staticmethod
    def make():
        from ptcli.errors import InputError
        from ptcli.inference.contract import PROMPT, Predictor, Sample

        class Toy(Predictor):
            kind, collate, streams = PROMPT, "list", True

            def decode(self, item):
                prompt = item["prompt"] if isinstance(item, dict) else item
                if not prompt:
                    raise InputError("the prompt is empty")
                return Sample(prompt, prompt)

            def forward(self, batch):
                return ["ab" for _ in batch]

            def postprocess(self, row, meta):
                return {"prompt": meta, "generations": [row]}

            def stream(self, sample, emit):
                for piece in "ab":
                    emit(piece)
                if sample.data == "fail":
                    raise RuntimeError("the model broke")
                return {"prompt": sample.data, "generations": ["ab"]}

        toy = Toy()
        toy.title = "chatter"
        return toy


def test_a_stream_that_fails_after_it_began_ends_with_an_error_event():
    """The 200 is sent with the first piece: a failure later is an event, then [DONE]; a bad
    request is refused before the stream begins."""
    import asyncio

    from ptcli.serving.spec import servable_from
    from test_serve import run_app

    served = servable_from(Chatter.make())

    async def checks(client, app):
        good, broken, empty = await asyncio.gather(
            client.post("/predict", json={"prompt": "hi", "stream": True}),
            client.post("/predict", json={"prompt": "fail", "stream": True}),
            client.post("/predict", json={"prompt": "", "stream": True}))
        assert _events(good) == [{"text": "a"}, {"text": "b"}, {"result": {"prompt": "hi", "generations": ["ab"]}}, "[DONE]"]
        assert broken.status_code == 200
        assert _events(broken) == [{"text": "a"}, {"text": "b"}, {"error": "RuntimeError: the model broke"}, "[DONE]"]
        assert empty.status_code == 400 and empty.json()["error"] == "the prompt is empty"
        plain = await client.post("/predict", json={"prompt": "hi"})
        assert plain.json() == {"prompt": "hi", "generations": ["ab"]}

    run_app(lambda: served, checks)


pytestmark = pytest.mark.slow


@pytest.fixture
def server_of():
    started = []

    def start(*args):
        server = Server(*args, "--device", "cpu", "--max-wait-ms", "2")
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def _events(response) -> list:
    """The data of each server-sent event, parsed (the last is the literal [DONE])."""
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    return [event if event == "[DONE]" else json.loads(event) for event in events]


def test_generate_text_serves_the_commands_json_and_streams_it(cli, server_of, tiny_gpt2):
    args = ("--max-new-tokens", "6", "--temperature", "0")
    expected = json.loads(cli("generate-text", "bake the bread", "--model", tiny_gpt2, *args, "--json").stdout)
    server = server_of("--recipe", "generate-text", "--model", tiny_gpt2)
    url = f"{server.url}/predict"
    request = {"prompt": "bake the bread", "max_new_tokens": 6, "temperature": 0}

    body = httpx.post(url, json=request, timeout=30).json()
    assert body["generations"] == expected["generations"] and body["prompt"] == "bake the bread"
    assert body["tokens_per_second"] > 0

    streamed = httpx.post(url, json={**request, "stream": True}, timeout=30)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed)
    assert events[-1] == "[DONE]" and events[-2]["result"]["generations"] == expected["generations"]
    pieces = [event["text"] for event in events[:-2]]
    assert len(pieces) >= 2 and "".join(pieces) == expected["generations"][0]
    # Accept: text/event-stream asks for the same stream.
    accepted = httpx.post(url, json=request, headers={"Accept": "text/event-stream"}, timeout=30)
    assert _events(accepted)[-2]["result"]["generations"] == expected["generations"]

    plain = httpx.post(url, content="the court", headers={"Content-Type": "text/plain"}, timeout=30)
    assert plain.status_code == 200 and plain.json()["prompt"] == "the court"
    both = httpx.post(url, json=[request, {**request, "prompt": "bake the"}], timeout=30).json()
    assert [b["prompt"] for b in both] == ["bake the bread", "bake the"]

    for bad, message in [({"prompt": "  "}, "the prompt is empty"), ({"prompt": "x", "max_new_tokens": "5"}, "max_new_tokens must be"),
                         ({"prompt": "x", "temprature": 1}, "unknown field 'temprature'"),
                         ({"prompt": "x", "max_new_tokens": 500}, "exceeds the model's context"),
                         ({"prompt": "x", "top_p": 2}, "out of range"), ({"text": "x"}, 'send {"prompt"'),
                         ({"prompt": "x", "stream": True, "num_return_sequences": 2}, "a stream carries one generation")]:
        response = httpx.post(url, json=bad, timeout=30)
        assert response.status_code == 400 and message in response.json()["error"], (bad, response.text)
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200 and '"kind": "prompt"' in page.text
    code, _, err = server.stop()
    assert code == 0, err


def test_super_resolve_serves_the_commands_pixels(cli, server_of, tmp_path, tiny_rrdbnet):
    """An image of 3 x 2 tiles (128 px on the CPU): the served PNG holds the command's pixels."""
    import cv2
    import numpy as np

    from ptcli.plugins.tiny_inputs import write_image

    image = write_image(tmp_path / "small.png", size=(300, 170))
    result = json.loads(cli("super-resolve", image, "--weights", tiny_rrdbnet, "-o", tmp_path / "out", "--json").stdout)
    written = cv2.imread(result["output"], cv2.IMREAD_UNCHANGED)
    server = server_of("--recipe", "super-resolve", "--weights", tiny_rrdbnet)
    url = f"{server.url}/predict"

    png = httpx.post(url, content=image.read_bytes(), headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    served = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert served.shape == written.shape == (680, 1200, 3) and np.array_equal(served, written)
    assert written.std() > 1  # not a blank image, where any two ways of computing it would agree

    body = httpx.post(url, files={"file": ("small.png", image.read_bytes())}, timeout=60).json()
    assert body["input"] == "small.png" and body["size"] == result["size"] == [1200, 680] and body["scale"] == 4
    assert base64.b64decode(body["png"]) == png.content

    bad = httpx.post(url, content=image.read_bytes()[:60], headers={"Content-Type": "image/png"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"].startswith("cannot read image")
    code, _, err = server.stop()
    assert code == 0, err


def test_explain_and_attack_serve_the_commands_images(cli, server_of, tmp_path):
    """The capability recipes (they drive any image classifier): explain's overlay and attack's
    adversarial PNG, served byte for byte as the commands write them, with their fields."""
    from conftest import REPO

    cat = REPO / "examples" / "cat.jpg"
    for recipe, command, suffix in (("debug", "explain", "_cam"), ("adversarial", "attack", "_adv")):
        written = json.loads(cli(command, cat, "-o", tmp_path / command, "--device", "cpu", "--json").stdout)
        server = server_of("--recipe", recipe)
        url = f"{server.url}/predict"
        png = httpx.post(url, content=cat.read_bytes(), headers={"Content-Type": "image/jpeg", "Accept": "image/png"}, timeout=120)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png", png.text
        assert png.content == (tmp_path / command / f"cat{suffix}.png").read_bytes()
        body = httpx.post(url, files={"file": ("cat.jpg", cat.read_bytes())}, timeout=120).json()
        assert base64.b64decode(body.pop("png")) == png.content
        assert body == {"input": "cat.jpg", **{k: v for k, v in written.items() if k not in ("input", "output")}}
        bad = httpx.post(url, content=b"not an image", headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"].startswith("cannot read image")
        assert 'id="picture"' in httpx.get(server.url, timeout=30).text
        code, _, err = server.stop()
        assert code == 0, err


def test_text_audio_and_detect_serve_over_http_as_their_commands(cli, server_of, tmp_path, tiny_bert_classifier):
    """The classifiers and the detector through real server processes: each answer is the
    command's --json object of the same input (the image recipes' real server test is
    test_serve's)."""
    import torchvision
    from safetensors.torch import save_file

    from conftest import REPO

    expected = json.loads(cli("classify-text", "good great fine", "--model", tiny_bert_classifier, "--json").stdout)
    server = server_of("--recipe", "classify-text", "--model", tiny_bert_classifier)
    assert httpx.post(f"{server.url}/predict", json={"text": "good great fine"}, timeout=30).json() == expected
    assert server.stop()[0] == 0

    ckpt, clip = audionet_and_tone(tmp_path)
    expected = json.loads(cli("classify-audio", clip, "--checkpoint", ckpt, "--json").stdout)
    server = server_of(ckpt)
    response = httpx.post(f"{server.url}/predict", content=clip.read_bytes(), headers={"Content-Type": "audio/wav"}, timeout=30)
    assert response.json() == {"predictions": expected["predictions"]}
    assert server.stop()[0] == 0

    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    weights = tmp_path / "mobilenet.safetensors"
    save_file(model.state_dict(), weights)
    cat = REPO / "examples" / "cat.jpg"
    args = ("--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", weights)
    expected = json.loads(cli("detect", cat, *args, "--json", "--device", "cpu").stdout)
    server = server_of("--recipe", "detect", *args)
    body = httpx.post(f"{server.url}/predict", files={"file": ("cat.jpg", cat.read_bytes())}, timeout=60).json()
    assert body == {**expected, "input": "cat.jpg"}
    assert server.stop()[0] == 0


def test_the_page_shows_heat_maps_and_draws_boxes_in_chromium(server_of):
    """explain's real server in a browser: an uploaded photo shows itself, its class and the heat
    map the model answers with; a detector's answer (the page's own renderer, given detect's
    fields) draws its boxes over the photo."""
    from conftest import REPO
    from test_serve import _until, _upload, chromium_page

    cat = REPO / "examples" / "cat.jpg"
    server = server_of("--recipe", "debug")
    with chromium_page(f"{server.url}/") as (call, evaluate):
        assert _until(evaluate, "!!document.getElementById('file')")
        _upload(call, evaluate, cat)
        assert _until(evaluate, "document.getElementById('picture').naturalWidth") > 0
        assert evaluate("document.getElementById('top-label').textContent").startswith("Egyptian cat")
        assert evaluate("document.getElementById('upload').naturalWidth") > 0
        blank = "(() => { const c = document.getElementById('boxes'); if (c.hidden || !c.width) return 0; " \
                "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((v, i) => i % 4 == 3 && v).length; })()"
        assert evaluate(blank) == 0
        evaluate("show({width: document.getElementById('upload').naturalWidth, height: document.getElementById('upload').naturalHeight, "
                 "detections: [{label: 'cat', score: 0.9, bbox: [20, 30, 200, 150]}]})")
        assert _until(evaluate, blank) > 100  # the box's outline and its label, drawn
        assert evaluate("document.getElementById('predictions').textContent").startswith("cat")
    code, _, err = server.stop()
    assert code == 0, err
