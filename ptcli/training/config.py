"""Training configuration: a YAML file, dotted KEY=VALUE overrides, one typed schema per recipe.

Precedence is schema defaults < file < overrides. Values on the command line are parsed as
YAML scalars or flow collections (``trainer.lr=3e-4``, ``trainer.freeze=[backbone]``), never
evaluated as code. Every mistake (unknown key, wrong type, missing value) is a usage error that
names the dotted key and, for unknown keys, the closest valid one.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

from ptcli.errors import UsageError, flatten


def read_yaml(path: str | os.PathLike, keys: str = "recipe: ..., data: ..., trainer: ...") -> dict:
    """A YAML file holding a mapping; ``keys``: the top-level keys it should have, for the error."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a config file; give a YAML file (recipes/ has examples)")
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {flatten(exc, 300)}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not a text file: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of keys ({keys}), not a {type(data).__name__}")
    return data


def parse_overrides(items: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``a.b=value`` items as (["a", "b"], parsed value)."""
    import yaml

    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise UsageError(f"override {item!r} is not KEY=VALUE (for example trainer.epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # an unparseable value is taken as the string it is; the schema decides
        parsed.append((path, value))
    return parsed


def apply_overrides(config: dict, overrides: Iterable[tuple[list[str], Any]]) -> dict:
    result = copy.deepcopy(config)
    for path, value in overrides:
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(path[: depth + 1])
                raise UsageError(f"cannot set {'.'.join(path)}: {prefix} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _submodel(annotation: Any):
    """The pydantic model class inside an annotation (``Model``, ``Model | None``), if any."""
    from pydantic import BaseModel

    candidates = [annotation, *get_args(annotation)] if get_origin(annotation) is not None else [annotation]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def schema_keys(schema, prefix: str = "") -> list[str]:
    """Every dotted key a schema accepts, sections included."""
    keys = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        sub = _submodel(field.annotation)
        if sub is not None:
            keys += schema_keys(sub, key + ".")
    return keys


def closest_key(key: str, schema) -> str | None:
    """The valid key a mistyped one most likely meant: same section first, then anywhere."""
    valid = schema_keys(schema)
    section, _, leaf = key.rpartition(".")
    siblings = [k for k in valid if k.rpartition(".")[0] == section]
    match = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if match:
        return match[0]
    same_leaf = [k for k in valid if k.rpartition(".")[2] == leaf]
    if same_leaf:
        return same_leaf[0]
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def describe_validation_error(exc, schema) -> str:
    """A pydantic ValidationError as one line per problem, naming dotted keys."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            guess = closest_key(key, schema)
            hint = f"; did you mean {guess}?" if guess else ""
            problems.append(f"unknown key {key}{hint}")
        elif kind == "missing":
            problems.append(f"{key} is required")
        else:
            given = error.get("input")
            shown = f" (got {given!r})" if not isinstance(given, (dict, list)) else ""
            problems.append(f"{key}: {error['msg'][0].lower()}{error['msg'][1:]}{shown}")
    return "; ".join(problems)


def validate(schema, data: Mapping[str, Any], source: str = "config"):
    from pydantic import ValidationError

    try:
        return schema.model_validate(dict(data))
    except ValidationError as exc:
        raise UsageError(f"{source}: {describe_validation_error(exc, schema)}") from exc


def to_yaml(config) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
