"""A /predict request's inputs: the body read up to its limit (refused from Content-Length
before any of it is read) and its deadline (a body that stops coming is a 408), then by
content type: multipart files, raw bytes, base64 or texts in JSON, plain text in its charset,
or (with --allow-urls) an image_url."""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json
import re
import time

from .spec import AUDIO, IMAGE, PROMPT, TEXT

#: The most generations one request may ask of a language model (OpenAI's n, a /predict
#: request's num_return_sequences): each costs the model's time as a request would.
MAX_GENERATIONS = 16


class RequestError(Exception):
    """A request the server refuses: an HTTP status, a one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class ClientGone(Exception):
    """The client went away before its request was read: nobody is left to answer."""


async def read_body(request, limit: int, deadline: float | None = None) -> bytes:
    """The body, up to ``limit`` bytes, arriving before ``deadline`` (time.monotonic())."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the body is {int(length) / 1e6:.1f} MB, over the server's --max-body-mb of {limit / 1e6:g} MB")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is over the server's --max-body-mb of {limit / 1e6:g} MB")
            chunks.append(chunk)

    try:
        if deadline is None:
            await read()
        else:
            await asyncio.wait_for(read(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive in time ({size} bytes of "
                           f"{length if length is not None else 'an unknown length'} came)", {"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


def charset(request, default: str = "utf-8") -> str:
    """The Content-Type's charset (a known codec), else ``default``."""
    header = request.headers.get("content-type", "")
    match = re.search(r";\s*charset=\"?([A-Za-z0-9._:-]+)\"?", header, re.IGNORECASE)
    if match is None:
        return default
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        raise RequestError(415, f"unknown charset {match.group(1)!r}; send UTF-8") from None


def loads_json(body: bytes, encoding: str = "utf-8"):
    """A JSON body; anything malformed (bad bytes, syntax, nesting too deep) is a 400."""
    try:
        return json.loads(body.decode(encoding))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from exc
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None


def _media_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


_WHITESPACE = re.compile(r"\s+")
_DATA_URL = re.compile(r"^data:[^,;]*(;[^,;=]+=[^,;]*)*;base64,", re.IGNORECASE)


def b64decode(value, field: str) -> bytes:
    """Base64 as clients send it: plain, with MIME line breaks, or a ``data:...;base64,`` URL."""
    if not isinstance(value, str):
        raise RequestError(400, f"\"{field}\" must be a base64 string (got {type(value).__name__})")
    if not value.startswith("data:"):  # the usual case, without copying it through a regex
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass  # line breaks, spaces: strip them and try again
    text = _DATA_URL.sub("", value.strip(), count=1)
    text = _WHITESPACE.sub("", text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"\"{field}\" is not valid base64: {exc}") from exc


def as_items(value, field: str, limit: int | None = None) -> list:
    """A value or a list of them, as a non-empty list of at most ``limit`` (counted before any
    item is decoded)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RequestError(400, f"\"{field}\" is an empty list; send at least one")
    if limit is not None:
        check_count(len(items), limit)
    return items


def check_count(count: int, limit: int) -> None:
    """A request of more inputs than the queue holds could never be served: 413, not a 503
    that says to retry."""
    if count > limit:
        raise RequestError(413, f"the request holds {count} inputs; this server queues at most {limit} (--max-queue): "
                                "send fewer in each request")


def _texts(value, limit: int | None = None) -> list[str]:
    items = as_items(value, "text", limit)
    if not all(isinstance(item, str) for item in items):
        raise RequestError(400, 'send {"text": "..."} or {"text": ["...", ...]} (strings)')
    return items


def _prompts(payload, limit: int | None = None) -> tuple[list, list, bool]:
    """A language model's requests: {"prompt": ..., settings...}, a list of them, or strings."""
    items = as_items(payload, "prompt", limit)
    if not all(isinstance(item, dict) and "prompt" in item or isinstance(item, str) for item in items):
        raise RequestError(400, 'send {"prompt": "...", "max_new_tokens": N, ...} or a list of them')
    return items, [None] * len(items), isinstance(payload, list)


def _options_object(value) -> dict:
    if not isinstance(value, dict):
        raise RequestError(400, 'options must be an object: {"options": {"NAME": VALUE, ...}}')
    return value


def request_options(request) -> dict:
    """A request's option values: its query parameters (an upload's way), then its JSON's
    "options" object (parse puts them on the request), checked later against the model's."""
    return {**dict(request.query_params), **getattr(request.state, "options", {})}


async def parse(request, kind: str, *, limit: int, allow_urls: bool, deadline: float | None = None,
                max_items: int | None = None) -> tuple[list, list, bool]:
    """(raw inputs, their names or None, whether the request sent a list); more than
    ``max_items`` inputs is a 413 before any of them is decoded."""
    media = _media_type(request)
    body = await read_body(request, limit, deadline)
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
        given = [value for key, value in form.multi_items() if key == "options"]
        if given:  # the model's options as a JSON part, as the schema documents (else ignored unchecked)
            if len(given) > 1 or not isinstance(given[0], str):
                raise RequestError(400, 'send the options as one form field "options" holding a JSON object')
            request.state.options = {**getattr(request.state, "options", {}), **_options_object(loads_json(given[0].encode()))}
        if max_items is not None:
            check_count(len(uploads) or len(form.multi_items()), max_items)
        if kind in (TEXT, PROMPT):
            texts = [value for key, value in form.multi_items() if key == kind and isinstance(value, str)]
            if not texts:
                raise RequestError(400, f"send the {kind} in a form field named \"{kind}\"")
            return texts, [None] * len(texts), len(texts) > 1
        if not uploads:
            raise RequestError(400, f"the form holds no file; upload {files} in a file field")
        return [await upload.read() for upload in uploads], [upload.filename for upload in uploads], len(uploads) > 1
    if media == "application/json":
        payload = loads_json(body, charset(request))
        if isinstance(payload, dict) and "options" in payload:
            request.state.options = {**getattr(request.state, "options", {}), **_options_object(payload.pop("options"))}
        if kind == PROMPT:
            return _prompts(payload, max_items)
        if kind == TEXT:
            value = payload.get("text") if isinstance(payload, dict) else payload
            if value is None:
                raise RequestError(400, 'send {"text": "..."} or {"text": ["...", ...]}')
            texts = _texts(value, max_items)
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
        items = as_items(value, kind, max_items)
        return [b64decode(item, kind) for item in items], [None] * len(items), isinstance(value, list)
    if kind in (TEXT, PROMPT) and media in ("text/plain", ""):
        encoding = charset(request)
        try:
            return [body.decode(encoding)], [None], False
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the text is not {encoding}: {exc}") from exc
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
