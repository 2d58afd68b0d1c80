"""The Open Inference Protocol v2 (KServe's and Triton's), JSON and its binary tensor extension.

A model takes one input named after its kind: ``image``, ``audio``, ``text`` or ``prompt``, a
BYTES tensor of shape [N] (the encoded files or texts; in JSON, texts as strings and files as
base64). An image model also takes a UINT8 tensor [H, W, 3] or [N, H, W, 3] of RGB pixels. A
language model takes its settings as the request's ``parameters`` (max_new_tokens, ...).

The outputs: ``result``, BYTES [N], each input's answer as the command's --json object (the
same JSON as /predict); and typed tensors where the answer has them: ``label`` (BYTES) and
``score`` (FP32) for a classifier's top prediction, ``text`` (BYTES) for a language model's
first generation, ``image`` (BYTES, PNG) for a model that answers with an image.
"""

from __future__ import annotations

import base64
import json
import struct

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from . import schema
from .requests import RequestError, b64decode, check_count, loads_json, read_body
from .spec import IMAGE, PROMPT
from .state import jsonable, server_version

ROUTES = ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
          "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}", "/v2/models/{name}/versions/{version}/ready",
          "/v2/models/{name}/versions/{version}/infer")
HEADER_LENGTH = "inference-header-content-length"
VERSION = "1"
_NUMPY = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1", "INT16": "<i2",
          "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}

_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "parameters": {"type": "object"}, "data": {"type": "array"}}}
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"}, "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": "The binary tensor extension: a JSON header of "
                                                           "Inference-Header-Content-Length bytes, then the tensors."}}}}}
_INFER_ANSWER = {"type": "object", "required": ["model_name", "outputs"], "properties": {
    "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
    "parameters": {"type": "object"}, "outputs": {"type": "array", "items": _TENSOR}}}
_METADATA = {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
    "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}}, "platform": {"type": "string"},
    "inputs": {"type": "array", "items": _TENSOR}, "outputs": {"type": "array", "items": _TENSOR}}}


#: Outputs named for what every classifier, generator and image model answers with.
_NAMED = ("label", "score", "text", "image")


def _field_type(value) -> str | None:
    """A result field's tensor type: numbers and strings are typed; lists, objects and files
    stay in the "result" tensor (the --json object)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP32"
    if isinstance(value, str):
        return "BYTES"
    return None


def typed_outputs(result_keys, example: dict | None = None) -> list[dict]:
    """The typed tensors an answer with these keys gives, besides ``result``: a classifier's top
    label and score, a generator's text, an image's PNG, and every field of the result that
    is a number or a string (floats FP32, ints INT64, strings BYTES), by its own name."""
    keys = set(result_keys or ())
    outputs = []
    if "predictions" in keys:
        outputs += [{"name": "label", "datatype": "BYTES", "shape": [-1]}, {"name": "score", "datatype": "FP32", "shape": [-1]}]
    if "generations" in keys:
        outputs.append({"name": "text", "datatype": "BYTES", "shape": [-1]})
    if "png" in keys:
        outputs.append({"name": "image", "datatype": "BYTES", "shape": [-1]})
    for key, value in (example or {}).items():
        datatype = _field_type(value)
        if datatype is not None and key not in _NAMED and key != "result":
            outputs.append({"name": key, "datatype": datatype, "shape": [-1]})
    return outputs


def _typed(name: str, results: list[dict], datatype: str | None = None):
    if name == "label":
        return "BYTES", [r["predictions"][0]["label"] if r.get("predictions") else "" for r in results]
    if name == "score":
        return "FP32", [float(r["predictions"][0]["score"]) if r.get("predictions") else 0.0 for r in results]
    if name == "text":
        return "BYTES", [r["generations"][0] if r.get("generations") else "" for r in results]
    if name == "image":
        return "BYTES", [r.get("png", b"") for r in results]
    empty = {"BYTES": "", "BOOL": False, "INT64": 0, "FP32": 0.0}[datatype]
    convert = {"BYTES": str, "BOOL": bool, "INT64": int, "FP32": float}[datatype]
    return datatype, [convert(r[name]) if r.get(name) is not None else empty for r in results]


def _bytes_elements(raw: bytes, where: str) -> list[bytes]:
    """A binary BYTES tensor: each element a 4-byte little-endian length, then its bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(400, f"{where}: a BYTES element's length is cut short")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise RequestError(400, f"{where}: a BYTES element says {size} bytes, {len(raw) - offset} remain")
        items.append(raw[offset:offset + size])
        offset += size
    return items


def _encode_bytes(items: list) -> bytes:
    parts = []
    for item in items:
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _flatten(data) -> list:
    """A tensor's nested JSON data, flat, without recursion (nesting as deep as JSON allows
    must be a 400, not a RecursionError)."""
    flat, stack = [], [iter([data])]
    while stack:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


def _count(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def input_names(kind: str) -> list[str]:
    """The input tensors a model of ``kind`` takes: its kind's (BYTES), and an image model's pixels."""
    return [kind, "pixels"] if kind == IMAGE else [kind]


def _read_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    if header_length is None:
        return loads_json(body), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise RequestError(400, f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the body")
    size = int(header_length)
    return loads_json(body[:size]), body[size:]


def _inputs(request: dict, binary: bytes, kind: str, limit: int | None = None) -> list:
    """The raw inputs the model's decode takes, from the request's one input tensor."""
    import numpy as np

    tensors = request.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
        raise RequestError(400, f"send one input tensor, named \"{kind}\"")
    tensor = tensors[0]
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list) \
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise RequestError(400, "an input tensor needs a name, a datatype and a shape (a list of sizes >= 0)")
    names = input_names(kind)
    if name not in names:
        raise RequestError(400, f"input tensor {name[:60]!r}: this model's inputs are named "
                                f"{' or '.join(repr(n) for n in names)}")
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, "an input's parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(binary):
            raise RequestError(400, f"input {name!r}: binary_data_size {size!r} is not within the body")
        raw, values = binary[:size], None
    else:
        if "data" not in tensor:
            raise RequestError(400, f"input {name!r} has no data (nor binary_data_size)")
        raw, values = None, _flatten(tensor["data"])
    count = _count(shape)
    if datatype == "BYTES":
        if limit is not None:
            check_count(count, limit)  # before any element is decoded
        if raw is not None:
            items = _bytes_elements(raw, f"input {name!r}")
        else:
            if not all(isinstance(v, str) for v in values):
                raise RequestError(400, f"input {name!r}: BYTES data in JSON are strings")
            items = values if kind in ("text", PROMPT) else [b64decode(v, name) for v in values]
        if len(items) != count:
            raise RequestError(400, f"input {name!r}: shape {shape} holds {count} elements, the data {len(items)}")
        if not items:
            raise RequestError(400, f"input {name!r} is empty; send at least one element")
        if kind in ("text", PROMPT):
            try:
                items = [item.decode("utf-8") if isinstance(item, bytes) else item for item in items]
            except UnicodeDecodeError as exc:
                raise RequestError(400, f"input {name!r}: a text is not UTF-8: {exc}") from None
        if kind == PROMPT:
            settings = request.get("parameters") or {}
            if not isinstance(settings, dict):
                raise RequestError(400, "parameters must be an object")
            settings = {k: v for k, v in settings.items() if k not in ("binary_data_output",)}
            items = [{"prompt": item, **settings} for item in items]
        return items
    if kind != IMAGE or datatype != "UINT8":
        raise RequestError(400, f"input {name!r}: this model takes BYTES" + (" or UINT8 pixels" if kind == IMAGE else ""))
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise RequestError(400, f"input {name!r}: UINT8 pixels are [H, W, 3] or [N, H, W, 3], not {shape}")
    try:
        array = (np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.asarray(values, dtype=np.uint8)).reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(400, f"input {name!r}: the data do not fill shape {shape}: {exc}") from None
    images = array[None] if array.ndim == 3 else array
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise RequestError(400, f"input {name!r} is empty")
    return [_png(image) for image in images]


def _png(pixels) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


#: Request parameters the protocol itself defines (and Triton's clients send), not a model's options.
_PROTOCOL_PARAMETERS = ("binary_data_output", "sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
                        "headers")


def _parameters(request: dict, info) -> dict:
    """The request's "parameters" that set the model's options (threshold, top_k...): checked
    by the model against what a request may set, a 400 naming an unknown one. A language
    model's parameters are its generation settings instead (_inputs gives them to each prompt)."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, "parameters must be an object")
    if info.kind == PROMPT:
        return {}
    return {key: value for key, value in parameters.items() if key not in _PROTOCOL_PARAMETERS}


def _wanted(request: dict, available: list[str]) -> list[tuple[str, bool]]:
    """(output name, binary?) for each output the request asks for (all, when it names none)."""
    params = request.get("parameters") or {}
    default_binary = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    asked = request.get("outputs")
    if asked is None:
        return [(name, default_binary) for name in available]
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise RequestError(400, "outputs must be a list of {\"name\": ...}")
    wanted = []
    for output in asked:
        if output["name"] not in available:
            raise RequestError(400, f"no output {output['name']!r}; this model gives {', '.join(available)}")
        parameters = output.get("parameters") or {}
        wanted.append((output["name"], bool(parameters.get("binary_data", default_binary)) if isinstance(parameters, dict) else default_binary))
    return wanted


def add_routes(app, state) -> None:

    def model_metadata(name: str) -> dict:
        model = state.ready_model(name)
        info = model.info
        return {"name": name, "versions": [VERSION], "platform": f"ptcli_{info.kind}",
                "inputs": [{"name": info.kind, "datatype": "BYTES", "shape": [-1]}]
                + ([{"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}] if info.kind == IMAGE else []),
                "outputs": [{"name": "result", "datatype": "BYTES", "shape": [-1]}, *typed_outputs(info.result_keys, info.example)]}

    def check_version(version: str | None) -> None:
        if version is not None and version != VERSION:
            raise RequestError(404, f"no version {version!r}; the only version is {VERSION}")

    answers = schema.responses
    tags = ["v2"]

    @app.get("/v2", tags=tags, summary="Server metadata", responses=answers(200, body={"type": "object"}))
    async def server_metadata():
        return {"name": "ptcli", "version": server_version(), "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=tags, summary="Alive", responses=answers(200, body={"type": "object"}))
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", tags=tags, summary="Every model ready", responses=answers(200, 503, body={"type": "object"}))
    async def ready():
        waiting = [name for name, model in state.models.items() if model.info is None]
        if waiting:
            return JSONResponse({"error": f"not ready: {', '.join(waiting)}"}, status_code=503, headers={"Retry-After": "1"})
        return {"ready": True}

    @app.get("/v2/models/{name}", tags=tags, summary="Model metadata", responses=answers(200, 404, 503, body=_METADATA))
    async def metadata(name: str, request: Request):
        request.state.model = name if name in state.models else ""
        return model_metadata(name)

    @app.get("/v2/models/{name}/versions/{version}", tags=tags, summary="Model metadata",
             responses=answers(200, 404, 503, body=_METADATA))
    async def metadata_version(name: str, version: str, request: Request):
        check_version(version)
        return await metadata(name, request)

    @app.get("/v2/models/{name}/ready", tags=tags, summary="Model ready", responses=answers(200, 404, 503, body={"type": "object"}))
    async def model_ready(name: str, request: Request):
        request.state.model = name if name in state.models else ""
        state.ready_model(name)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=tags, summary="Model ready",
             responses=answers(200, 404, 503, body={"type": "object"}))
    async def model_ready_version(name: str, version: str, request: Request):
        check_version(version)
        return await model_ready(name, request)

    infer_answers = answers(200, 400, 404, 408, 413, 500, 503, 504, body=_INFER_ANSWER,
                            extra_media={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})

    @app.post("/v2/models/{name}/infer", tags=tags, summary="Inference", openapi_extra=INFER_BODY, responses=infer_answers)
    async def infer(name: str, request: Request):
        model = state.ready_model(name)
        request.state.model = name
        info = model.info
        deadline = state.deadline(request)
        body = await read_body(request, int(state.settings.max_body_mb * 1e6), deadline)
        if not body:
            raise RequestError(400, "the request body is empty; send {\"inputs\": [...]}")
        payload, binary = _read_request(body, request.headers.get(HEADER_LENGTH))
        if not isinstance(payload, dict):
            raise RequestError(400, "send a JSON object {\"inputs\": [...]}")
        def typed_by(example) -> dict:
            return {output["name"]: output["datatype"] for output in typed_outputs(info.result_keys, example)}

        # A model without a warm-up answer has its outputs typed from this request's answer.
        typed = typed_by(info.example)
        wanted = _wanted(payload, ["result", *typed]) if info.example is not None else None
        items = _inputs(payload, binary, info.kind, state.settings.max_queue)
        outcomes = await model.predict(items, deadline=deadline, options=_parameters(payload, info))
        for outcome in outcomes:
            if outcome.error is not None:
                raise RequestError(outcome.status, outcome.error)
        if wanted is None:
            typed = typed_by(outcomes[0].result)
            wanted = _wanted(payload, ["result", *typed])
        sizes = [o.batch_size for o in outcomes if o.batch_size]
        request.state.batch_size = max(sizes) if sizes else None
        results = [o.result for o in outcomes]
        return _answer(name, payload.get("id"), wanted, results, typed)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=tags, summary="Inference", openapi_extra=INFER_BODY,
              responses=infer_answers)
    async def infer_version(name: str, version: str, request: Request):
        check_version(version)
        return await infer(name, request)


def _answer(name: str, ident, wanted: list[tuple[str, bool]], results: list[dict], typed: dict):
    import numpy as np


    outputs, blobs = [], []
    for output, binary in wanted:
        if output == "result":
            datatype, data = "BYTES", [json.dumps(jsonable(r), ensure_ascii=False) for r in results]
        else:
            datatype, data = _typed(output, results, typed.get(output))
        tensor = {"name": output, "datatype": datatype, "shape": [len(data)]}
        if binary:
            blob = _encode_bytes(data) if datatype == "BYTES" else np.asarray(data, dtype=_NUMPY[datatype]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if datatype == "BYTES":
                data = [item if isinstance(item, str) else base64.b64encode(item).decode() for item in data]
            tensor["data"] = data
        outputs.append(tensor)
    answer = {"model_name": name, "model_version": VERSION, "outputs": outputs}
    if isinstance(ident, str):
        answer["id"] = ident
    if not blobs:
        return answer
    header = json.dumps(answer).encode()
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})
