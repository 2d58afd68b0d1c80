"""The OpenAPI pieces of the routes whose bodies ptcli reads itself (a file, a base64 string, a
text or a binary tensor: more than a pydantic model says): request bodies, answers by status."""

from __future__ import annotations

DESCRIPTION = (
    "Models served by `ptcli serve`. ptcli's own routes take a file (multipart, raw bytes, or JSON "
    "base64) or texts and answer with the command's --json object; /v2 speaks the Open Inference "
    "Protocol (KServe, Triton); /v1 speaks OpenAI's completions for language models. With API keys, "
    "every route but /health, /ready and /v2/health/* needs `Authorization: Bearer KEY` (401 without)."
)
TAGS = [
    {"name": "ptcli", "description": "ptcli's own routes: the commands' --json over HTTP."},
    {"name": "v2", "description": "Open Inference Protocol v2 (KServe, Triton), JSON and the binary tensor extension."},
    {"name": "openai", "description": "OpenAI-compatible completions for language models (generate-text)."},
]

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
STATUS = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
READY = {"type": "object", "properties": {"status": {"type": "string"}, "models": {"type": "object"}},
         "required": ["status", "models"]}
RESULT = {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}

_REASONS = {200: "The answer", 400: "A request the server cannot read: a bad field, base64, image or text",
            401: "Missing or wrong API key", 404: "No such route or model", 408: "The body did not arrive within --timeout-s",
            413: "The body is over --max-body-mb", 415: "A content type the route does not take",
            500: "The model failed on this input's batch", 503: "Loading, queue full, or its model process died; retry",
            504: "No result within --timeout-s"}


def responses(*statuses: int, body: dict | None = None, media: str = "application/json", extra_media: dict | None = None,
              error: dict = ERROR) -> dict:
    """OpenAPI ``responses`` for ``statuses``: 200 with ``body`` as ``media``, the rest errors."""
    out: dict = {}
    for status in statuses:
        if status == 200:
            content = {media: {"schema": body or {}}} | (extra_media or {})
        else:
            content = {"application/json": {"schema": error}}
        out[status] = {"description": _REASONS.get(status, "An answer"), "content": content}
    return out


_FILE = {"type": "string", "format": "binary"}
_B64 = {"type": "string", "description": "base64, MIME line breaks or a data: URL"}
PREDICT_BODY = {"requestBody": {"required": True, "description": (
    "By the model's kind. Images and sounds: a multipart file, the raw bytes with their Content-Type, or "
    "JSON {\"image\"|\"audio\": BASE64 or [BASE64, ...]}. Texts: JSON {\"text\": \"...\" or [...]}, or text/plain "
    "(its charset honoured). Language models: {\"prompt\": \"...\", \"max_new_tokens\": N, ..., \"stream\": true}. "
    "A list answers with a list, each input's error in its place."), "content": {
    "application/json": {"schema": {"anyOf": [
        {"type": "object", "properties": {"image": {"anyOf": [_B64, {"type": "array", "items": _B64}]}}},
        {"type": "object", "properties": {"audio": {"anyOf": [_B64, {"type": "array", "items": _B64}]}}},
        {"type": "object", "properties": {"text": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
        {"type": "object", "properties": {"prompt": {"type": "string"}, "max_new_tokens": {"type": "integer"},
                                          "temperature": {"type": "number"}, "stream": {"type": "boolean"}}},
        {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}]}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": _FILE, "text": {"type": "string"}}}},
    "application/octet-stream": {"schema": _FILE},
    "image/jpeg": {"schema": _FILE}, "image/png": {"schema": _FILE}, "audio/wav": {"schema": _FILE},
    "text/plain": {"schema": {"type": "string"}},
}}}
#: A server-sent event as clients (and schemathesis) read it: its data, a JSON text, line by line.
EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}
PREDICT_ANSWERS = {"image/png": {"schema": _FILE}, "text/event-stream": {"schema": EVENT}}
