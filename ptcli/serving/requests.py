"""A /predict request's inputs: the body read up to its limit (refused from Content-Length
before any of it is read), then by content type: multipart files, raw bytes, base64 or texts
in JSON, plain text, or (with --allow-urls) an image_url."""

from __future__ import annotations

import base64
import binascii
import json

from .spec import AUDIO, IMAGE, PROMPT, TEXT


class RequestError(Exception):
    """A request the server refuses: an HTTP status, a one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


async def read_body(request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the body is {int(length) / 1e6:.1f} MB, over the server's --max-body-mb of {limit / 1e6:g} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the server's --max-body-mb of {limit / 1e6:g} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _b64(value, field: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, f"\"{field}\" must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"\"{field}\" is not valid base64: {exc}") from exc


def _texts(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise RequestError(400, 'send {"text": "..."} or {"text": ["...", ...]} (strings)')
    return items


def _prompts(payload) -> tuple[list, list, bool]:
    """A language model's requests: {"prompt": ..., settings...}, a list of them, or strings."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(item, dict) and "prompt" in item or isinstance(item, str) for item in items):
        raise RequestError(400, 'send {"prompt": "...", "max_new_tokens": N, ...} or a list of them')
    return items, [None] * len(items), isinstance(payload, list)


async def parse(request, kind: str, *, limit: int, allow_urls: bool) -> tuple[list, list, bool]:
    """(raw inputs, their names or None, whether the request sent a list)."""
    media = _media_type(request)
    body = await read_body(request, limit)
    if not body:
        raise RequestError(400, "the request body is empty")
    files = "an image" if kind == IMAGE else "a sound file"
    if media == "multipart/form-data":
        request._body = body  # starlette parses the form from the body already read
        try:
            form = await request.form()
        except Exception as exc:  # python-multipart's errors for a malformed form
            raise RequestError(400, f"malformed multipart body: {exc}") from exc
        uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
        if kind in (TEXT, PROMPT):
            texts = [value for key, value in form.multi_items() if key == kind and isinstance(value, str)]
            if not texts:
                raise RequestError(400, f"send the {kind} in a form field named \"{kind}\"")
            return texts, [None] * len(texts), len(texts) > 1
        if not uploads:
            raise RequestError(400, f"the form holds no file; upload {files} in a file field")
        return [await upload.read() for upload in uploads], [upload.filename for upload in uploads], len(uploads) > 1
    if media == "application/json":
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"malformed JSON: {exc}") from exc
        if kind == PROMPT:
            return _prompts(payload)
        if kind == TEXT:
            value = payload.get("text") if isinstance(payload, dict) else payload
            if value is None:
                raise RequestError(400, 'send {"text": "..."} or {"text": ["...", ...]}')
            texts = _texts(value)
            return texts, [None] * len(texts), isinstance(value, list)
        if not isinstance(payload, dict):
            raise RequestError(400, f'send {{"{kind}": BASE64}} or {{"{kind}": [BASE64, ...]}}')
        if "image_url" in payload and kind == IMAGE:
            if not allow_urls:
                raise RequestError(400, "image_url is off on this server (start it with --allow-urls)")
            return [await _fetch(payload["image_url"], limit)], [payload["image_url"]], False
        value = payload.get(kind, payload.get("data"))
        if value is None:
            raise RequestError(400, f'send {{"{kind}": BASE64}} or {{"{kind}": [BASE64, ...]}}')
        items = value if isinstance(value, list) else [value]
        return [_b64(item, kind) for item in items], [None] * len(items), isinstance(value, list)
    if kind in (TEXT, PROMPT) and media in ("text/plain", ""):
        try:
            return [body.decode("utf-8")], [None], False
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the text is not UTF-8: {exc}") from exc
    if kind in (IMAGE, AUDIO) and (media.startswith(f"{kind}/") or media == "application/octet-stream"):
        return [body], [None], False
    accepted = ("application/json, text/plain or multipart/form-data" if kind in (TEXT, PROMPT)
                else f"multipart/form-data, {kind}/*, application/octet-stream or application/json")
    raise RequestError(415, f"content type {media or 'none'} is not accepted; send {accepted}")


async def _fetch(url, limit: int) -> bytes:
    import urllib.request

    from starlette.concurrency import run_in_threadpool

    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise RequestError(400, "image_url must be an http:// or https:// URL")

    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (scheme checked above)
            data = response.read(limit + 1)
        if len(data) > limit:
            raise RequestError(413, f"the image at image_url is over --max-body-mb ({limit / 1e6:g} MB)")
        return data

    try:
        return await run_in_threadpool(get)
    except RequestError:
        raise
    except Exception as exc:  # any network failure, as one line
        raise RequestError(400, f"cannot fetch image_url: {type(exc).__name__}: {exc}") from exc
