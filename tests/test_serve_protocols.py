"""Serving v2 through real server processes on 127.0.0.1: several models from one --config,
the Open Inference Protocol v2 through the official `tritonclient[http]`, OpenAI's routes through
the official `openai` client, API keys, and the OpenAPI schema fuzzed by schemathesis."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from test_serve import CAT, Server

pytestmark = pytest.mark.slow


def _write_config(folder, tiny_bert_classifier, tiny_gpt2):
    config = folder / "models.yaml"
    config.write_text(
        "models:\n"
        "  - {name: cat, recipe: classify-image, max_batch: 8}\n"
        f"  - {{name: sentiment, recipe: classify-text, model: {tiny_bert_classifier}}}\n"
        f"  - {{name: gpt, recipe: generate-text, model: {tiny_gpt2}, max_wait_ms: 0}}\n")
    return config


@pytest.fixture(scope="module")
def three_models(tmp_path_factory, tiny_bert_classifier, tiny_gpt2):
    """One server, three models, one API key."""
    folder = tmp_path_factory.mktemp("serve3")
    server = Server("--config", _write_config(folder, tiny_bert_classifier, tiny_gpt2), "--device", "cpu",
                    "--max-wait-ms", "2", env={"PTCLI_SERVE_API_KEYS": "key-one-1234,key-two-5678"})
    server.key = "key-two-5678"
    server.auth = {"Authorization": f"Bearer {server.key}"}
    server.wait_ready(timeout=180)
    yield server
    if server.process.poll() is None:
        code, _, err = server.stop()
        assert code == 0, err
        assert "key-one-1234" not in err and "key-two-5678" not in err  # never logged


def test_several_models_answer_on_their_own_routes_as_their_commands(cli, three_models, tiny_bert_classifier):
    url, auth = three_models.url, three_models.auth
    image = json.loads(cli("classify-image", CAT, "--json").stdout)
    text = json.loads(cli("classify-text", "good great fine", "--model", tiny_bert_classifier, "--json").stdout)
    got = httpx.post(f"{url}/predict/cat", files={"file": ("cat.jpg", CAT.read_bytes())}, headers=auth, timeout=30).json()
    assert got == {"input": "cat.jpg", "predictions": image["predictions"]}
    assert httpx.post(f"{url}/predict/sentiment", json={"text": "good great fine"}, headers=auth, timeout=30).json() == text
    one = httpx.post(f"{url}/predict", json={"text": "x"}, headers=auth, timeout=30)
    assert one.status_code == 404 and "/predict/NAME" in one.json()["error"]
    unknown = httpx.post(f"{url}/predict/nope", json={"text": "x"}, headers=auth, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"] == "no model 'nope'; this server has cat, sentiment, gpt"
    ready = httpx.get(f"{url}/ready", timeout=30).json()
    assert set(ready["models"]) == {"cat", "sentiment", "gpt"} and ready["status"] == "ready"
    metrics = httpx.get(f"{url}/metrics", headers=auth, timeout=30).text
    assert 'ptcli_requests_total{model="cat",route="/predict/{name}",status="200"}' in metrics
    assert 'ptcli_requests_total{model="sentiment",route="/predict/{name}",status="200"}' in metrics
    for name in ("cat", "sentiment", "gpt"):
        assert f'ptcli_queue_depth{{model="{name}"}} 0.0' in metrics and f'ptcli_batch_size_count{{model="{name}"}}' in metrics


def test_api_keys_on_every_route_but_health_and_the_pages(three_models):
    url = three_models.url
    for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(url + path, timeout=30).status_code == 200, path
    # The pages are code that asks for the key: open, and naming no model.
    for path in ("/", "/docs", "/docs/assets/swagger-ui-bundle.js"):
        page = httpx.get(url + path, timeout=30)
        assert page.status_code == 200 and "sentiment" not in page.text, path
    for method, path in [("GET", "/models"), ("GET", "/metrics"), ("POST", "/predict/cat"), ("GET", "/v2"),
                         ("GET", "/v2/models/cat"), ("POST", "/v2/models/cat/infer"), ("GET", "/openapi.json"),
                         ("GET", "/v1/models")]:
        for headers in ({}, {"Authorization": "Bearer wrong-key-000"}, {"Authorization": "key-two-5678"},
                        {"Authorization": "Basic key-two-5678"}):
            response = httpx.request(method, url + path, headers=headers, timeout=30)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            error = response.json()["error"]
            message = error["message"] if path.startswith("/v1") else error
            assert message == "missing or wrong API key; send Authorization: Bearer KEY"
    assert httpx.get(f"{url}/v2", headers={"Authorization": "Bearer key-one-1234"}, timeout=30).status_code == 200
    # Through the open prefix, as written on the wire (httpx would tidy the dots away): refused.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(b"GET /docs/assets/../../models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert httpx.get(f"{url}/v2", headers={"Authorization": "bearer key-two-5678"}, timeout=30).status_code == 200


def test_the_open_inference_protocol_through_tritonclient(cli, three_models, tiny_gpt2):
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    expected = json.loads(cli("classify-image", CAT, "--json").stdout)["predictions"]
    client = triton.InferenceServerClient(url=three_models.url.removeprefix("http://"))
    auth = three_models.auth
    # (tritonclient adds its binary header to the dict it is given: a fresh one each call)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cat", headers=dict(auth)) and not client.is_model_ready("nope", headers=dict(auth))
    assert client.get_server_metadata(headers=dict(auth))["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata("cat", headers=dict(auth))
    assert [i["name"] for i in metadata["inputs"]] == ["image", "pixels"]
    assert [o["name"] for o in metadata["outputs"]] == ["result", "label", "score"]

    for binary in (True, False):  # the binary tensor extension, and plain JSON (base64 files)
        photo = np.array([CAT.read_bytes()], dtype=np.object_) if binary else \
            np.array([__import__("base64").b64encode(CAT.read_bytes())], dtype=np.object_)
        tensor = triton.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(photo, binary_data=binary)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "score", "result")]
        result = client.infer("cat", [tensor], outputs=outputs, headers=dict(auth), request_id="r-1")
        label = result.as_numpy("label")[0]
        assert (label.decode() if isinstance(label, bytes) else label) == expected[0]["label"]
        assert abs(float(result.as_numpy("score")[0]) - expected[0]["score"]) < 1e-5
        whole = result.as_numpy("result")[0]
        assert json.loads(whole)["predictions"] == expected
        assert result.get_response()["id"] == "r-1"

    # Typed pixels: the photo as UINT8 [H, W, 3] gives the same top label.
    from PIL import Image

    pixels = np.asarray(Image.open(CAT).convert("RGB"))
    pixel_tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    pixel_tensor.set_data_from_numpy(pixels)
    result = client.infer("cat", [pixel_tensor], outputs=[triton.InferRequestedOutput("label")], headers=dict(auth))
    assert result.as_numpy("label")[0].decode() == expected[0]["label"]

    # Texts and a language model's settings as parameters.
    texts = np.array([b"good great fine", b"bad awful"], dtype=np.object_)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(texts)
    labels = client.infer("sentiment", [tensor], headers=dict(auth)).as_numpy("label")
    assert len(labels) == 2
    prompt = triton.InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"bake the bread"], dtype=np.object_))
    made = client.infer("gpt", [prompt], parameters={"max_new_tokens": 4, "temperature": 0}, headers=dict(auth))
    greedy = json.loads(cli("generate-text", "bake the bread", "--model", tiny_gpt2, "--max-new-tokens",
                            "4", "--temperature", "0", "--json").stdout)["generations"][0]
    assert made.as_numpy("text")[0].decode() == greedy

    for call, message in [(lambda: client.infer("nope", [tensor], headers=dict(auth)), "no model 'nope'"),
                          (lambda: client.infer("sentiment", [pixel_tensor], headers=dict(auth)), "input tensor 'pixels': this model's inputs are named 'text'"),
                          (lambda: client.get_model_metadata("cat", model_version="7", headers=dict(auth)), "no version '7'")]:
        with pytest.raises(InferenceServerException, match=message):
            call()
    bad = triton.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="cannot read image"):
        client.infer("cat", [bad], headers=dict(auth))
    client.close()


def test_openai_clients_complete_and_chat_as_generate_text_does(cli, three_models, tiny_gpt2):
    import openai

    client = openai.OpenAI(base_url=f"{three_models.url}/v1", api_key=three_models.key, max_retries=0)
    greedy = json.loads(cli("generate-text", "bake the bread", "--model", tiny_gpt2, "--max-new-tokens", "6",
                            "--temperature", "0", "--json").stdout)["generations"][0]
    assert [model.id for model in client.models.list()] == ["gpt"]
    done = client.completions.create(model="gpt", prompt="bake the bread", max_tokens=6, temperature=0)
    assert done.choices[0].text == greedy and done.object == "text_completion"
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens == 6 and done.choices[0].finish_reason == "length"
    pieces = [chunk.choices[0].text for chunk in client.completions.create(
        model="gpt", prompt="bake the bread", max_tokens=6, temperature=0, stream=True) if chunk.choices]
    assert len(pieces) >= 2 and "".join(pieces) == greedy
    # stop: the text ends before its first stop string, as generate-text --stop does.
    stop = greedy.strip().split()[1] if len(greedy.split()) > 1 else greedy[1:3]
    cut = json.loads(cli("generate-text", "bake the bread", "--model", tiny_gpt2, "--max-new-tokens", "6", "--temperature",
                         "0", "--stop", stop, "--json").stdout)["generations"][0]
    assert stop not in cut and greedy.startswith(cut)
    stopped = client.completions.create(model="gpt", prompt="bake the bread", max_tokens=6, temperature=0, stop=[stop])
    assert stopped.choices[0].text == cut and stopped.choices[0].finish_reason == "stop"
    streamed_stop = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model="gpt", prompt="bake the bread", max_tokens=6, temperature=0, stop=stop, stream=True) if chunk.choices)
    assert streamed_stop == cut
    # n and seed: n choices; the same seed, the same samples.
    first = client.completions.create(model="gpt", prompt="the court", max_tokens=5, n=2, seed=3, temperature=1.0)
    again = client.completions.create(model="gpt", prompt="the court", max_tokens=5, n=2, seed=3, temperature=1.0)
    assert len(first.choices) == 2 and [c.text for c in first.choices] == [c.text for c in again.choices]
    # chat: the plain template for a model without one.
    chat = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "bake the bread"}],
                                          max_tokens=5, temperature=0)
    newer = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "bake the bread"}],
                                           max_completion_tokens=5, temperature=0)  # the newer name of max_tokens
    assert newer.choices[0].message.content == chat.choices[0].message.content
    plain = json.loads(cli("generate-text", "User: bake the bread\nAssistant:", "--model", tiny_gpt2, "--max-new-tokens",
                           "5", "--temperature", "0", "--stop", "\nUser:", "--json").stdout)["generations"][0]
    assert chat.choices[0].message.content == plain and chat.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "bake the bread"}],
                                              max_tokens=5, temperature=0, stream=True,
                                              stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    with pytest.raises(openai.NotFoundError, match="no model 'nope'"):
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="not a language model"):
        client.completions.create(model="cat", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):  # refused even beside the newer name
        client.completions.create(model="gpt", prompt="x", max_tokens=0, extra_body={"max_completion_tokens": 2})
    with pytest.raises(openai.BadRequestError, match="logprobs is not supported"):
        client.completions.create(model="gpt", prompt="x", max_tokens=2, logprobs=2)
    # In OpenAI's words: the field the body used, never ptcli's flag
    with pytest.raises(openai.BadRequestError, match="exceeds the model's context") as too_long:
        client.completions.create(model="gpt", prompt="x", max_tokens=5000)
    assert "max_tokens=5000" in str(too_long.value) and "set max_tokens to" in str(too_long.value)
    assert "--max-new-tokens" not in str(too_long.value) and "max_new_tokens" not in str(too_long.value)
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens=5000"):
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], max_completion_tokens=5000)
    native = httpx.post(f"{three_models.url}/predict/gpt", json={"prompt": "x", "max_new_tokens": 5000},
                        headers=three_models.auth, timeout=30)
    assert native.status_code == 400 and "max_new_tokens=5000" in native.json()["error"], native.text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{three_models.url}/v1", api_key="wrong-key-000", max_retries=0).models.list()


def test_the_openapi_schema_holds_under_schemathesis(three_models, tmp_path):
    """schemathesis reads /openapi.json and sends generated requests to every route (bounded):
    no 5xx, and no answer that contradicts the schema (status, content type, body)."""
    schema = httpx.get(f"{three_models.url}/openapi.json", headers=three_models.auth, timeout=30).json()
    paths = set(schema["paths"])
    assert {"/v2/models/{name}", "/v1/chat/completions", "/health", "/metrics"} <= paths
    assert httpx.get(f"{three_models.url}/docs", headers=three_models.auth, timeout=30).status_code == 200
    # Each model has its own routes in the schema, with its own bodies (ptcli.serving.model_schemas).
    assert {"/predict/cat", "/predict/sentiment", "/predict/gpt", "/v2/models/gpt/infer"} <= paths
    assert "/predict/{name}" not in paths
    gpt = schema["paths"]["/predict/gpt"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    assert gpt["required"] == ["prompt"] and gpt["properties"]["num_return_sequences"]["maximum"] == 16
    schemathesis = [str(Path(sys.executable).parent / "schemathesis")]
    report = tmp_path / "junit.xml"
    # A request of more inputs than --max-queue is refused 413, a rejection like 400 (issue 38).
    config = tmp_path / "schemathesis.toml"
    config.write_text('[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "404", "413", "415", "422"]\n')
    run = subprocess.run([*schemathesis, "--config-file", str(config), "run", f"{three_models.url}/openapi.json", "-H",
                          f"Authorization: Bearer {three_models.key}",
                          "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
                                      "response_headers_conformance,negative_data_rejection,unsupported_method,ignored_auth",
                          "--max-examples", "25", "--seed", "1", "--request-timeout", "30", "--max-response-time", "30",
                          "--report", "junit", "--report-junit-path", str(report), "--phases", "examples,fuzzing"],
                         capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)  # its example database here: no crash from an earlier run replayed, none left in the repo
    summary = run.stdout[-3000:]
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, summary + run.stderr[-2000:]
