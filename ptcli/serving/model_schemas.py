"""The OpenAPI schema of the models a server runs, each its own: `/predict/NAME` and
`/v2/models/NAME/infer` with the request body its kind takes (files, texts or a language
model's prompt with the ranges the server checks) and the answer its results have (the keys of
its warm-up's answer), and OpenAI's routes naming the language models only. A client generator
or a fuzzer reads what each model takes, not the union of every kind."""

from __future__ import annotations

import copy

from .requests import MAX_GENERATIONS
from .spec import IMAGE, PROMPT, TEXT

_B64 = {"type": "string", "minLength": 1, "description": "base64, MIME line breaks or a data: URL"}
_FILE = {"type": "string", "format": "binary"}
_TEXT = {"type": "string", "minLength": 1}
_NON_BLANK = {"type": "string", "pattern": r"\S"}
#: What a language model's request may set, with the ranges its predictor checks.
PROMPT_SETTINGS = {
    "max_new_tokens": {"type": ["integer", "null"], "minimum": 1},
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
    "top_k": {"type": ["integer", "null"], "minimum": 0},
    "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "repetition_penalty": {"type": ["number", "null"], "minimum": 0.01, "maximum": 100},
    "num_return_sequences": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_GENERATIONS},
    "seed": {"type": ["integer", "null"]},
    "stop": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 1},
                       {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "string", "minLength": 1}}]},
    "stream": {"type": ["boolean", "null"]},
}


def _one_or_many(item: dict, most: int) -> dict:
    """One input, or a list of them: a list's items are answered each in its place, a bad one
    with its own error (so any string is a list item)."""
    return {"anyOf": [item, {"type": "array", "minItems": 1, "maxItems": most, "items": {"type": "string"}}]}


def predict_body(kind: str, most: int) -> dict:
    """The request body of /predict/NAME for a model of ``kind``."""
    if kind == PROMPT:
        request = {"type": "object", "required": ["prompt"], "additionalProperties": False,
                   "properties": {"prompt": _NON_BLANK, **PROMPT_SETTINGS}}
        item = {"anyOf": [{"type": "object", "required": ["prompt"]}, {"type": "string"}]}  # each answered in its place
        content = {"application/json": {"schema": {"anyOf": [
                       request, {"type": "array", "minItems": 1, "maxItems": most, "items": item}]}},
                   "text/plain": {"schema": _NON_BLANK}}
    elif kind == TEXT:
        texts = _one_or_many(_TEXT, most)
        content = {"application/json": {"schema": {"anyOf": [
                       {"type": "object", "required": ["text"], "properties": {"text": texts}}, *texts["anyOf"]]}},
                   "text/plain": {"schema": _TEXT},
                   "multipart/form-data": {"schema": {"type": "object", "required": ["text"], "properties": {"text": _TEXT}}}}
    else:  # a file: an image or a sound
        media = "image" if kind == IMAGE else "audio"
        content = {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": _FILE}}},
                   "application/json": {"schema": {"type": "object", "required": [media],
                                                   "properties": {media: _one_or_many(_B64, most)}}},
                   "application/octet-stream": {"schema": _FILE}, f"{media}/*": {"schema": _FILE}}
    return {"required": True, "description": f"What a {kind} model takes; a list answers with a list.", "content": content}


def result_schema(result_keys) -> dict:
    """An answer: the model's result object (its warm-up's keys), or a list of them, each an
    error in its place."""
    one = {"type": "object", "required": sorted(result_keys)} if result_keys else {"type": "object"}
    row = {"anyOf": [one, {"type": "object", "required": ["error"]}]}
    return {"anyOf": [one, {"type": "array", "items": row}]}


def request_options_schema(info) -> dict:
    """The options a request to this model may set (its predictor's declaration), as a JSON
    object schema: unknown names are refused (400), so none other is allowed."""
    properties = {}
    for option in info.options:
        if option.request:  # its default is what this model was served with (models.yaml's options:)
            properties[option.name] = {**option.json_schema(), "default": info.option_values.get(option.name, option.default)}
    return {"type": "object", "additionalProperties": False, "description": "Options for this request.",
            "properties": properties}


def _per_model(paths: dict, template: str, models: dict, build) -> None:
    """Replace the path ``template`` (with {name}) by one path per loaded model."""
    generic = paths.pop(template, None)
    if generic is None:
        return
    for name, info in models.items():
        item = copy.deepcopy(generic)
        for operation in item.values():
            operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
            operation["operationId"] = f"{operation.get('operationId', 'op')}_{name}"
            if info is not None:
                build(operation, info)
        paths[template.replace("{name}", name)] = item


def specialize(schema: dict, models: dict, max_queue: int) -> dict:
    """``schema`` with each loaded model's own routes (``models``: name -> ModelInfo)."""
    paths = schema["paths"]

    def predict(operation: dict, info) -> None:
        operation["requestBody"] = predict_body(info.kind, max_queue)
        options = request_options_schema(info)
        if options["properties"]:
            for media in operation["requestBody"]["content"].values():
                for shape in [media["schema"], *media["schema"].get("anyOf", [])]:
                    if shape.get("type") == "object" and "properties" in shape and info.kind != PROMPT:
                        shape["properties"]["options"] = options
            operation["parameters"] = [*operation.get("parameters", []), *(
                {"name": name, "in": "query", "required": False, "schema": schema, "description": schema["description"]}
                for name, schema in options["properties"].items())]
        answer = operation["responses"]["200"]["content"]
        answer["application/json"] = {"schema": result_schema(info.result_keys)}
        operation["summary"] = f"Predict ({info.title})"

    def infer(operation: dict, info) -> None:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        tensor = copy.deepcopy(body["properties"]["inputs"]["items"])
        from .v2 import input_names

        tensor["properties"]["name"] = {"type": "string", "enum": input_names(info.kind)[:1]}  # pixels: UINT8, below
        tensor["properties"]["datatype"] = {"type": "string", "enum": ["BYTES"]}
        tensor["properties"]["shape"] = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}
        tensor["properties"]["data"] = {"type": "array", "minItems": 1, "maxItems": max_queue,
                                        "items": _NON_BLANK if info.kind in (TEXT, PROMPT) else _B64}
        tensor["required"] = ["name", "datatype", "shape", "data"]
        body["properties"]["inputs"] = {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor}
        from .v2 import typed_outputs

        options = request_options_schema(info)
        if options["properties"] and info.kind != PROMPT:
            body["properties"]["parameters"] = {"type": "object", "properties": {
                **options["properties"], "binary_data_output": {"type": "boolean"}}}
        outputs = body["properties"].get("outputs")
        if outputs is not None:
            names = ["result", *(output["name"] for output in typed_outputs(info.result_keys, info.example))]
            outputs["items"]["properties"]["name"] = {"type": "string", "enum": names}

    _per_model(paths, "/predict/{name}", models, predict)
    for template in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        _per_model(paths, template, models, infer)
    language = sorted(name for name, info in models.items() if info is not None and info.kind == PROMPT)
    _language_models_only(paths, language)
    return schema


def _language_models_only(paths: dict, language: list[str]) -> None:
    """OpenAI's routes take the language models by name, with the ranges the server checks."""
    for path in ("/v1/models/{name}",):
        for operation in paths.get(path, {}).values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "name" and language:
                    parameter["schema"] = {"type": "string", "enum": language, "title": "Name"}
    for path in ("/v1/completions", "/v1/chat/completions"):
        for operation in paths.get(path, {}).values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                continue
            props = body["properties"]
            if language:
                props["model"] = {"type": "string", "enum": language}
            props["max_tokens"] = {"type": ["integer", "null"], "minimum": 1}
            props["max_completion_tokens"] = {"type": ["integer", "null"], "minimum": 1}
            props["temperature"] = {"type": ["number", "null"], "minimum": 0, "maximum": 2}
            props["top_p"] = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
            props["n"] = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_GENERATIONS}
            props["seed"] = {"type": ["integer", "null"]}
            props["stream"] = {"type": ["boolean", "null"]}
            props["stop"] = PROMPT_SETTINGS["stop"]
            if "prompt" in props:
                props["prompt"] = {"anyOf": [_NON_BLANK, {"type": "array", "minItems": 1, "maxItems": 1, "items": _NON_BLANK}]}
            if "messages" in props:
                props["messages"] = {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role", "content"], "additionalProperties": False,
                    "properties": {"role": {"type": "string", "enum": ["system", "user", "assistant"]},
                                   "content": _NON_BLANK}}}
            for name in ("user", "metadata", "store", "service_tier", "stream_options"):
                props.setdefault(name, {})
            body["additionalProperties"] = False
