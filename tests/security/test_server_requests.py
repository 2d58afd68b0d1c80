"""The server sheds work nobody can use: requests that could never fit the queue, items counted
before any is decoded, generations capped; an empty API key never turns authentication off;
/ready shows no paths to a caller without a key."""

import base64
import time

import pytest

from test_serve import _toy, run_app


def test_a_request_larger_than_the_queue_is_a_413_before_any_item_is_decoded():
    """100k base64 items were decoded for ~20 s before the queue was checked, then refused 503
    "retry shortly", which could never succeed."""
    decoded = []

    def decode(item):
        decoded.append(item)
        return item

    async def checks(client, app):
        items = [base64.b64encode(b"x" * 64).decode()] * 100_000
        started = time.perf_counter()
        response = await client.post("/predict", json={"image": items})
        assert time.perf_counter() - started < 5
        assert response.status_code == 413, response.text
        assert "--max-queue" in response.json()["error"] and "100000" in response.json()["error"]
        texts = await client.post("/predict", json={"image": items[:9]})
        assert texts.status_code == 413
        fits = await client.post("/predict", json={"image": items[:8]})
        assert fits.status_code == 200, fits.text
        assert len(decoded) == 8

    run_app(_toy(kind="image", decode=decode, predict=lambda items: [{"n": len(i)} for i in items]), checks, max_queue=8)


def test_a_v2_tensor_of_more_elements_than_the_queue_is_a_413_before_any_is_decoded():
    decoded = []

    def decode(item):
        decoded.append(item)
        return item

    async def checks(client, app):
        data = [base64.b64encode(b"x" * 64).decode()] * 50_000
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}
        started = time.perf_counter()
        response = await client.post("/v2/models/model/infer", json=body)
        assert time.perf_counter() - started < 5
        assert response.status_code == 413 and "--max-queue" in response.json()["error"], response.text
        assert decoded == []

    run_app(_toy(kind="image", decode=decode, predict=lambda items: [{"n": 1} for _ in items]), checks, max_queue=8)


def test_a_multipart_request_of_more_files_than_the_queue_is_a_413():
    async def checks(client, app):
        files = [("file", (f"{i}.png", b"\x89PNG", "image/png")) for i in range(5)]
        response = await client.post("/predict", files=files)
        assert response.status_code == 413 and "--max-queue" in response.json()["error"]

    run_app(_toy(kind="image", predict=lambda items: [{"n": 1} for _ in items]), checks, max_queue=4)


@pytest.mark.parametrize("route,body,message", [
    ("/predict", {"prompt": "hi", "num_return_sequences": 1000, "max_new_tokens": 2}, "num_return_sequences is at most 16"),
    ("/v1/completions", {"model": "model", "prompt": "hi", "n": 1000, "max_tokens": 2}, "n must be an integer from 1 to 16"),
])
def test_generations_are_capped_with_a_400(tiny_gpt2, route, body, message):
    """1000 sequences of 500 tokens blocked the model for 83 s, and the requests after it."""
    from test_serve import servable

    async def checks(client, app):
        response = await client.post(route, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert message in (error["message"] if isinstance(error, dict) else error)

    run_app(lambda: servable("generate-text", model=str(tiny_gpt2)), checks)


@pytest.mark.parametrize("given", [["--api-key", ""], ["--api-key", "   "], ["--api-key", "good-key-123", "--api-key", ""]])
def test_an_empty_api_key_is_a_usage_error(cli, given):
    result = cli("serve", "--recipe", "classify-image", *given)
    assert result.exit_code == 2 and "an API key is empty" in result.stderr, result.output


@pytest.mark.parametrize("value", ["", "  ", "good-key-123,", ",good-key-123", "good-key-123,,other-key-456"])
def test_an_empty_entry_in_the_environment_is_a_usage_error(cli, monkeypatch, value):
    monkeypatch.setenv("PTCLI_SERVE_API_KEYS", value)
    result = cli("serve", "--recipe", "classify-image")
    assert result.exit_code == 2 and "an API key is empty" in result.stderr, result.output


def test_keys_from_the_environment_with_spaces_after_commas_still_work():
    from ptcli.serving.auth import parse_keys

    assert parse_keys(None, "key-one-1234, key-two-5678") == ("key-one-1234", "key-two-5678")


def test_ready_names_no_files_without_a_key(tmp_path):
    secret = str(tmp_path / "private" / "weights.safetensors")

    def load():
        raise FileNotFoundError(secret)

    async def checks(client, app):
        anonymous = await client.get("/ready")
        assert anonymous.status_code == 503 and secret not in anonymous.text and "server's log" in anonymous.text
        keyed = await client.get("/ready", headers={"Authorization": "Bearer good-key-123"})
        assert keyed.status_code == 503 and secret in keyed.text

    run_app(load, checks, api_keys=("good-key-123",))


def test_ready_shows_titles_only_to_key_holders():
    async def checks(client, app):
        anonymous = (await client.get("/ready")).json()
        assert anonymous == {"status": "ready", "models": {"model": "ready"}}
        keyed = (await client.get("/ready", headers={"Authorization": "Bearer good-key-123"})).json()
        assert keyed == {"status": "ready", "models": {"model": "toy"}}

    run_app(_toy(), checks, api_keys=("good-key-123",))
