"""OpenAI-compatible routes for the language models a server holds (generate-text): /v1/models,
/v1/completions and /v1/chat/completions, plain or streamed as server-sent events, with usage
counts. Errors have OpenAI's shape ({"error": {"message", "type", ...}}), which its clients read.

What maps to what: max_tokens to max_new_tokens (OpenAI's default, 16), temperature (0: greedy,
as `generate-text --temperature 0`), top_p, n, seed and stop as they are; OpenAI has no top-k, so
sampling draws from every token (top_k 0). Settings OpenAI has and ptcli does not (logprobs,
penalties other than 0, echo, tools) are refused with a 400 rather than ignored.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from fastapi import Request
from fastapi.responses import StreamingResponse

from . import schema
from .requests import MAX_GENERATIONS, RequestError, loads_json, read_body
from .spec import PROMPT

ROUTES = ("/v1/models", "/v1/models/{name}", "/v1/completions", "/v1/chat/completions")
_IGNORED = {"user", "metadata", "store", "service_tier"}
_DEFAULTS = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": None, "top_logprobs": None, "echo": False,
             "logit_bias": None, "best_of": None, "suffix": None, "tools": None, "tool_choice": None,
             "response_format": None, "parallel_tool_calls": None, "stream_options": None}
_COMMON = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "stop", "stream"}

_CHOICE = {"type": "object", "required": ["index", "finish_reason"]}
_COMPLETION = {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
    "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
    "choices": {"type": "array", "items": _CHOICE}, "usage": {"type": "object"}}}
_BODY = {"type": "object", "required": ["model"], "properties": {
    "model": {"type": "string"}, "max_tokens": {"type": "integer"}, "temperature": {"type": "number"},
    "top_p": {"type": "number"}, "n": {"type": "integer"}, "seed": {"type": "integer"}, "stream": {"type": "boolean"},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}
COMPLETIONS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    **_BODY, "required": ["model", "prompt"],
    "properties": {**_BODY["properties"], "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}}}}}
CHAT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    **_BODY, "required": ["model", "messages"],
    "properties": {**_BODY["properties"], "messages": {"type": "array", "items": {
        "type": "object", "required": ["role", "content"],
        "properties": {"role": {"type": "string"}, "content": {"anyOf": [{"type": "string"}, {"type": "array"}]}}}}}}}}}}


def _int(body: dict, key: str, default, low: int, high: int | None = None):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise RequestError(400, f"{key} must be an integer from {low}" + (f" to {high}" if high is not None else " up"))
    return value


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(400, f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _settings(body: dict, allowed: set[str]) -> dict:
    """The ptcli request settings an OpenAI body asks for; what ptcli cannot do is a 400."""
    for key in body:
        if key in allowed or key in _IGNORED:
            continue
        if key in _DEFAULTS:
            if body[key] in (_DEFAULTS[key], None, {}, []) or key == "stream_options":
                continue
            raise RequestError(400, f"{key} is not supported by ptcli's models; leave it out")
        raise RequestError(400, f"unknown field {key!r}")
    if not isinstance(body.get("model"), str):
        raise RequestError(400, "model must be the name of a model (see /v1/models)")
    legacy = _int(body, "max_tokens", 16, 1)  # checked even beside max_completion_tokens: a bad value is a 400
    max_tokens = _int(body, "max_completion_tokens", None, 1) or legacy
    settings = {"max_new_tokens": max_tokens, "temperature": _number(body, "temperature", 1.0, 0, 2),
                "top_p": _number(body, "top_p", 1.0, 0, 1), "top_k": 0,
                "num_return_sequences": _int(body, "n", 1, 1, MAX_GENERATIONS)}
    seed = _int(body, "seed", None, -(2**63), 2**63 - 1)
    if seed is not None:
        settings["seed"] = seed % (2**32)
    stop = body.get("stop")
    if stop is not None:
        settings["stop"] = stop
    if not isinstance(body.get("stream", False), bool):
        raise RequestError(400, "stream must be true or false")
    return settings


def _in_openai_words(message: str, body: dict) -> str:
    """A model's error about its settings, naming the OpenAI fields the body set them with."""
    tokens = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return re.sub(r"\bmax_new_tokens\b", tokens, re.sub(r"\bnum_return_sequences\b", "n", message))


def _usage(results: list[dict]) -> dict:
    prompt = sum(r["prompt_tokens"] for r in results)
    completion = sum(sum(r["completion_tokens"]) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def add_routes(app, state) -> None:
    tags = ["openai"]
    errors = dict(error=schema.OPENAI_ERROR)

    def language_model(name: str):
        model = state.models.get(name)
        if model is None:
            raise RequestError(404, f"no model {name!r}; see /v1/models")
        model = state.ready_model(name)
        if model.info.kind != PROMPT:
            raise RequestError(400, f"model {name!r} is not a language model; it serves /predict/{name} and /v2")
        return model

    @app.get("/v1/models", tags=tags, summary="The language models",
             responses=schema.responses(200, body={"type": "object"}, **errors))
    async def models():
        return {"object": "list", "data": [_card(name) for name, model in state.models.items()
                                           if model.info is not None and model.info.kind == PROMPT]}

    @app.get("/v1/models/{name}", tags=tags, summary="A language model",
             responses=schema.responses(200, 400, 404, 503, body={"type": "object"}, **errors))
    async def model_card(name: str):
        language_model(name)
        return _card(name)

    async def complete(request: Request, chat: bool):
        body = loads_json(await read_body(request, int(state.settings.max_body_mb * 1e6), state.deadline(request)))
        if not isinstance(body, dict):
            raise RequestError(400, "send a JSON object")
        field = "messages" if chat else "prompt"
        settings = _settings(body, _COMMON | {field})
        model = language_model(body["model"])
        request.state.model = body["model"]
        if chat:
            items = [{"messages": body.get("messages"), **settings}]
        else:
            prompts = body.get("prompt")
            prompts = [prompts] if isinstance(prompts, str) else prompts
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise RequestError(400, "prompt must be a text or a list of texts (token arrays are not taken)")
            items = [{"prompt": prompt, **settings} for prompt in prompts]
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        deadline = state.deadline(request)
        if body.get("stream") and len(items) == 1 and settings["num_return_sequences"] == 1:
            events = await model.stream({**items[0], "stream": True}, deadline=deadline)
            return _stream(events, ident, created, body["model"], chat, _include_usage(body))
        outcomes = await model.predict(items, deadline=deadline)
        for outcome in outcomes:
            if outcome.error is not None:
                raise RequestError(outcome.status, _in_openai_words(outcome.error, body))
        results = [outcome.result for outcome in outcomes]
        choices = []
        for result in results:
            for text, reason in zip(result["generations"], result["finish_reasons"]):
                index = len(choices)
                choices.append({"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
                                "finish_reason": reason} if chat else
                               {"index": index, "text": text, "logprobs": None, "finish_reason": reason})
        answer = {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                  "model": body["model"], "choices": choices, "usage": _usage(results)}
        if body.get("stream"):  # several choices: each whole, one event apiece
            return _whole_as_stream(answer, chat, _include_usage(body))
        return answer

    answers = schema.responses(200, 400, 404, 408, 413, 500, 503, 504, body=_COMPLETION, **errors,
                               extra_media={"text/event-stream": {"schema": schema.EVENT}})

    @app.post("/v1/completions", tags=tags, summary="Complete a prompt", openapi_extra=COMPLETIONS_BODY, responses=answers)
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions", tags=tags, summary="Answer a conversation", openapi_extra=CHAT_BODY, responses=answers)
    async def chat_completions(request: Request):
        return await complete(request, chat=True)


def _card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "ptcli"}


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _chunk(ident, created, model, chat: bool, choice: dict) -> str:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return "data: " + json.dumps({"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]},
                                 ensure_ascii=False) + "\n\n"


def _stream(events, ident, created, model, chat: bool, include_usage: bool):
    def piece(text: str | None, reason: str | None) -> str:
        if chat:
            delta = {} if text is None else {"content": text}
            return _chunk(ident, created, model, chat, {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason})
        return _chunk(ident, created, model, chat, {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason})

    async def lines():
        if chat:
            yield _chunk(ident, created, model, chat, {"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None})
        async for event in events:
            if "text" in event:
                yield piece(event["text"], None)
            elif "result" in event:
                result = event["result"]
                yield piece(None, result["finish_reasons"][0])
                if include_usage:
                    kind = "chat.completion.chunk" if chat else "text_completion"
                    yield "data: " + json.dumps({"id": ident, "object": kind, "created": created, "model": model,
                                                 "choices": [], "usage": _usage([result])}) + "\n\n"
            else:  # the stream had begun: the failure is its last event
                yield "data: " + json.dumps({"error": {"message": event["error"], "type": "server_error",
                                                       "param": None, "code": None}}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _whole_as_stream(answer: dict, chat: bool, include_usage: bool):
    async def lines():
        for choice in answer["choices"]:
            if chat:
                choice = {"index": choice["index"], "delta": choice["message"], "logprobs": None,
                          "finish_reason": choice["finish_reason"]}
            yield _chunk(answer["id"], answer["created"], answer["model"], chat, choice)
        if include_usage:
            kind = "chat.completion.chunk" if chat else "text_completion"
            yield "data: " + json.dumps({"id": answer["id"], "object": kind, "created": answer["created"],
                                         "model": answer["model"], "choices": [], "usage": answer["usage"]}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

