"""Hugging Face model folders, for every recipe that runs transformers models: a local folder,
or a hub name (org/name) resolved like any weights (a pip package, the Hugging Face cache, a
download, or one line saying what is missing)."""

from __future__ import annotations

from pathlib import Path

from ptcli.errors import UsageError
from ptcli.models.weights import WeightsSpec

LOCAL_OPTION = "--model FOLDER (a local copy of the model)"

#: Whether this command may run a model folder's own Python code (its --trust-remote-code).
#: Each command that loads Hugging Face models sets it, True or False, before loading any.
_trust = {"remote_code": False}


def set_trust_remote_code(trust: bool) -> None:
    _trust["remote_code"] = bool(trust)


def trust_remote_code() -> bool:
    """What to pass as transformers' ``trust_remote_code``."""
    return _trust["remote_code"]


def hub_weights(repo: str, name: str | None = None) -> WeightsSpec:
    """The whole repository ``repo`` as a model folder in the Hugging Face cache, under ``name``
    (default: the repository id)."""
    return WeightsSpec(name=name or repo, filename=None, cache="huggingface", hf_repo=repo, local_option=LOCAL_OPTION)


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def is_repo_id(name: str) -> bool:
    """org/name, and not a path on this machine."""
    return name.count("/") == 1 and all(name.split("/")) and not looks_like_path(name)


def model_folder(name: str, registry, *, no_weights_hint: str) -> Path:
    """A local model folder for a folder path or a model name the recipe's ``registry`` knows
    (a hub name is downloaded once). ``no_weights_hint`` says what to do about a name that has
    no published weights."""
    from ptcli.models.weights import resolve

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{name} is not a Hugging Face model folder: it has no config.json")
        return refuse_custom_code(path, name)
    if path.exists():
        raise UsageError(f"{name} is a file; give a Hugging Face model name (org/name) or a model folder")
    if looks_like_path(name):
        raise UsageError(f"model folder not found: {name}")
    spec = registry.get(name)
    if spec.weights is None:
        raise UsageError(f"model {name} has no published weights: {no_weights_hint}")
    return refuse_custom_code(resolve(spec.weights), name)


def refuse_custom_code(folder: Path, name: str) -> Path:
    """A model folder whose config maps its classes to Python files of its own (``auto_map``):
    loading it would run that code, which ptcli does only with --trust-remote-code."""
    import json

    if trust_remote_code():
        return Path(folder)
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Path(folder)  # transformers reports an unreadable config in its own words
    custom = config.get("auto_map") if isinstance(config, dict) else None
    if custom:
        files = sorted({str(ref).split(".")[0] + ".py" for ref in custom.values() if isinstance(ref, str)})
        raise UsageError(f"{name} ships its own Python code ({', '.join(files) or 'auto_map'}), which ptcli runs only "
                         "with --trust-remote-code: read that code first, or use a model transformers implements")
    return Path(folder)


def quiet_transformers() -> None:
    """transformers logs weight-loading reports and progress bars; ptcli says what matters itself."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _folder_model(name: str, **_):
    from ptcli.errors import PluginError

    raise PluginError(f"{name} is a Hugging Face model folder: load it with ptcli.models.hub.model_folder and transformers")


def hub_spec(name: str, *, hf_repo: str | None = None, description: str = ""):
    """A ModelSpec for a Hugging Face model whose weights are the repository as a folder."""
    from functools import partial

    from ptcli.models.registry import ModelSpec

    return ModelSpec(name=name, build=partial(_folder_model, name), weights=hub_weights(hf_repo or name, name=name),
                     description=description or f"Hugging Face model {hf_repo or name}")


def add_hub_resolver(registry, listed=()) -> None:
    """Let ``registry`` take any Hugging Face ``org/name`` (a catch-all: other recipes' own
    entries win in cross-recipe lookups); ``listed`` are the names `ptcli weights list` shows."""
    registry.add_resolver(lambda name: hub_spec(name) if is_repo_id(name) else None, lambda: list(listed), catch_all=True)
