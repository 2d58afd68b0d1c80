"""The server's OpenAPI schema: FastAPI's, with what only the running server knows (its models'
names and each model's own bodies, ptcli.serving.model_schemas)."""

from __future__ import annotations


def openapi_schema(app, state) -> dict:
    """FastAPI's schema, with what only the running server knows: the names its models go by
    (so that a client generator or a fuzzer reaches them), the one version of each, and each
    model's own request and answer bodies (ptcli.serving.model_schemas). Kept once every model
    has loaded; until then it is made anew."""
    from fastapi.openapi.utils import get_openapi

    from .model_schemas import specialize

    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                             tags=app.openapi_tags)
        names = sorted(state.models)
        for route in schema["paths"].values():
            for operation in route.values():
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path" and parameter["name"] == "name":
                        parameter["schema"] = {"type": "string", "enum": names, "title": "Name"}
                    elif parameter["in"] == "path" and parameter["name"] == "version":
                        parameter["schema"] = {"type": "string", "enum": ["1"], "title": "Version"}
        infos = {name: model.info for name, model in state.models.items()}
        schema = specialize(schema, infos, state.settings.max_queue)
        if all(info is not None for info in infos.values()):
            app.openapi_schema = schema
        return schema
    return app.openapi_schema
