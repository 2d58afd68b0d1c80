"""`ptcli plugins check NAME`: an installed plugin against the contract, each check reported.

1. Its module imports no torch (nor torchvision, transformers, timm): `ptcli --help` stays fast.
2. Every command answers `--help`.
3. Every training config schema validates its own defaults (a default the schema rejects is a
   bug users meet on their first run).
4. Every command with a declared ``example`` runs it on the CPU on tiny inputs, offline; one
   that stops only because its weights are not on this machine is skipped, with the reason.
5. Every declared predictor (``Recipe.predictor``, the inference contract) is a Predictor
   subclass that writes the steps the core calls (load, decode, forward, postprocess) and
   declares an input kind serve knows.
6. Every predictor runs for real, on the CPU, in a process of its own: its options' defaults
   pass their own checks; it loads its default model (skipped when its weights are not on this
   machine); it decodes a file, the file's bytes and (an image recipe) a video's frame; one
   batch goes through preprocess, forward and postprocess; an in-process server answers one
   /predict and one /v2 request; and the recipe exports (its own Exportable, or the one derived
   from its predictor) to ONNX, checked against the eager model. Each step is one check, and a
   failure is one line naming it.
7. A recipe without a predictor: its export resolves to a function, and it serves through a
   ``Recipe.serve`` function, or is reported as skipped.

Commands run in fresh processes (``python -m ptcli``), as a user would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ptcli.errors import UsageError

HEAVY = ("torch", "torchvision", "transformers", "timm")


def _check(name: str, status: str, detail: str = "") -> dict:
    return {"check": name, "status": status, "detail": detail}


def _run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptcli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _imports_nothing_heavy(module: str) -> dict:
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return _check("imports without torch", "failed", f"importing {module} failed: {done.stderr.strip().splitlines()[-1:]}")
    heavy = json.loads(done.stdout.strip().splitlines()[-1])
    if heavy:
        return _check("imports without torch", "failed", f"importing {module} imports {', '.join(heavy)}: move it inside the commands")
    return _check("imports without torch", "ok", module)


def _defaults_validate(schema) -> list[str]:
    """The fields (dotted paths) of a pydantic schema whose default the schema itself rejects."""
    from pydantic import BaseModel, TypeAdapter, ValidationError

    bad = []

    def walk(model, prefix: str) -> None:
        for field_name, field in model.model_fields.items():
            path = f"{prefix}{field_name}"
            if field.is_required():
                continue
            default = field.get_default(call_default_factory=True)
            try:
                TypeAdapter(field.annotation).validate_python(default.model_dump() if isinstance(default, BaseModel) else default)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join([path, *(str(part) for part in error["loc"])])
                bad.append(f"{where}: {error['msg']}")
                continue
            nested = default if isinstance(default, BaseModel) else None
            if nested is not None:
                walk(type(nested), path + ".")

    walk(schema, "")
    return bad


def _tiny_inputs(folder: Path) -> dict[str, str]:
    from ptcli.plugins.tiny_inputs import TINY_TEXT, write_clip, write_coco, write_image

    (folder / "out").mkdir()
    return {"image": str(write_image(folder / "tiny.png", size=(64, 48))), "clip": str(write_clip(folder / "tiny.wav")),
            "text": TINY_TEXT, "coco": str(write_coco(folder / "coco")), "tmp": str(folder / "out")}


def check_plugin(name: str) -> list[dict]:
    from ptcli.plugins import get_plugins

    loaded = get_plugins()
    info = next((i for i in loaded.infos if i.name == name), None)
    if info is None:
        raise UsageError(f"no installed plugin {name!r}; installed: {', '.join(i.name for i in loaded.infos) or 'none'}")
    if info.status != "ok":
        return [_check("loads", "failed", info.error or info.status)]
    checks = [_check("loads", "ok", f"{info.distribution} {info.version}".strip()),
              _imports_nothing_heavy(info.module.split(":")[0])]
    recipes = [loaded.recipes[r] for r in info.recipes]
    commands = [command for recipe in recipes for command in recipe.commands]
    for command in commands:
        done = _run(command.name, "--help", timeout=120)
        ok = done.returncode == 0 and "Usage" in done.stdout
        checks.append(_check(f"{command.name} --help", "ok" if ok else "failed",
                             "" if ok else (done.stderr.strip() or done.stdout.strip())[-300:]))
    for recipe in recipes:
        if recipe.training is None:
            continue
        try:
            bad = _defaults_validate(recipe.training_task.config_schema)
        except Exception as exc:  # a plugin's schema may fail in any way
            bad = [f"{type(exc).__name__}: {exc}"]
        checks.append(_check(f"{recipe.name} config defaults", "failed" if bad else "ok", "; ".join(bad)))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = None
        for command in commands:
            if not command.example:
                checks.append(_check(f"{command.name} example", "skipped", "the command declares no example"))
                continue
            inputs = inputs or _tiny_inputs(Path(tmp))
            args = [arg.format(**inputs) for arg in command.example]
            done = _run(command.name, *args, env={"PTCLI_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
            if done.returncode == 0:
                checks.append(_check(f"{command.name} example", "ok", " ".join(args)))
            elif done.returncode == 1 and ("not on this machine" in said[0] or "offline" in said[0]):
                checks.append(_check(f"{command.name} example", "skipped", f"its weights are not on this machine: {said[0][:200]}"))
            else:
                checks.append(_check(f"{command.name} example", "failed", f"exit {done.returncode}: {said[0][:300]}"))
    for recipe in recipes:
        if recipe.predictor is not None:
            checks.append(_check_predictor(recipe))
            if checks[-1]["status"] == "ok":
                checks += _run_predictor(recipe)
    for recipe in recipes:
        if recipe.predictor is not None:
            continue
        for what, ref, command in (("export", recipe.export, "ptcli export"),
                                   ("serve", recipe.predictor or recipe.serve, "ptcli serve")):
            if ref is None:
                checks.append(_check(f"{recipe.name} {what}", "skipped", f"the recipe declares no {what} ({command} says so)"))
                continue
            try:
                from ptcli.refs import load_ref

                ok = callable(load_ref(ref))
                detail = (f"through its predictor, {ref}" if ref is recipe.predictor else str(ref)) if ok \
                    else f"{ref} is not a function"
            except Exception as exc:  # a plugin's module may fail in any way
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            checks.append(_check(f"{recipe.name} {what}", "ok" if ok else "failed", detail))
    return checks


def _check_predictor(recipe) -> dict:
    """The recipe's Predictor against the contract, without loading a model."""
    from ptcli.inference.contract import AUDIO, IMAGE, PROMPT, TEXT, Predictor
    from ptcli.refs import load_ref

    name = f"{recipe.name} predictor"
    try:
        cls = load_ref(recipe.predictor)
    except Exception as exc:  # a plugin's module may fail in any way
        return _check(name, "failed", f"{type(exc).__name__}: {exc}")
    if not (isinstance(cls, type) and issubclass(cls, Predictor)):
        return _check(name, "failed", f"{recipe.predictor} is not a ptcli.inference.contract.Predictor subclass")
    steps = ["load", "decode", "forward", "postprocess"] if cls.predict is Predictor.predict else ["load", "decode"]
    missing = [step for step in steps if getattr(cls, step) is getattr(Predictor, step)]
    if missing:
        return _check(name, "failed", f"{cls.__name__} does not write {', '.join(missing)}")
    if cls.kind not in (IMAGE, TEXT, AUDIO, PROMPT):
        return _check(name, "failed", f"{cls.__name__}.kind is {cls.kind!r}; one of image, text, audio, prompt")
    return _check(name, "ok", f"{cls.__name__} ({cls.kind} inputs)")


def _run_predictor(recipe) -> list[dict]:
    """The predictor's steps (``predictor_steps``) in a fresh process, offline."""
    with tempfile.TemporaryDirectory() as tmp:
        code = f"from ptcli.plugins.check import predictor_steps; predictor_steps({recipe.name!r}, {tmp!r})"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PTCLI_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    checks = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        checks.append(_check(f"{recipe.name} run", "failed", f"the process ended with exit {done.returncode}: {said[:300]}"))
    return checks


def predictor_steps(recipe_name: str, folder: str) -> None:
    """Each step of a recipe's Predictor run for real, one JSON check a line on stdout; the
    first that fails stops the steps that need it."""
    from ptcli.plugins import get_plugins

    recipe = get_plugins().recipe(recipe_name)
    for check in _steps(recipe, Path(folder)):
        print(json.dumps(check), flush=True)


def _steps(recipe, folder: Path):
    import asyncio

    import torch

    from ptcli.errors import flatten
    from ptcli.inference.contract import AUDIO, IMAGE, PROMPT, Source
    from ptcli.inference.options import OptionError, declared
    from ptcli.inference.runner import load_predictor
    from ptcli.refs import load_ref

    name = recipe.name
    cls = load_ref(recipe.predictor)
    for option in declared(cls):
        try:
            option.check(option.default)
        except OptionError as exc:
            yield _check(f"{name} options", "failed", f"the default of {option.name} fails its own check: {exc}")
            return
    described = ", ".join(f"{o.name} ({o.type.__name__}, default {o.default!r}{', per request' if o.request else ''}"
                          f"{', command only' if o.command_only else ''})"
                          for o in declared(cls))
    yield {**_check(f"{name} options", "ok", described or "none declared"),
           "options": [o.describe() for o in declared(cls)]}
    try:
        predictor = load_predictor(recipe, Source(), torch.device("cpu"))
    except Exception as exc:  # a plugin's load may fail in any way
        said = flatten(exc, 300)
        offline = "not on this machine" in said or "offline" in said
        yield _check(f"{name} load", "skipped" if offline else "failed",
                     f"its default model's weights are not on this machine: {said}" if offline else said)
        return
    yield _check(f"{name} load", "ok", predictor.title or type(predictor).__name__)
    inputs = _tiny_inputs(folder)
    item = {IMAGE: inputs["image"], AUDIO: inputs["clip"]}.get(cls.kind, inputs["text"])
    if cls.kind == PROMPT:
        item = {"prompt": inputs["text"], "max_new_tokens": 4}
    ways = [("a file", item)]
    if cls.kind in (IMAGE, AUDIO):
        ways.append(("bytes", Path(item).read_bytes()))
    if cls.kind == IMAGE:
        from PIL import Image

        from ptcli.video.frames import Frame

        ways.append(("a video frame", Frame("tiny.mp4", 0, 0.0, Image.open(item).convert("RGB"))))
    samples = []
    for what, value in ways:
        try:
            samples.append(predictor.decode(value))
        except Exception as exc:  # noqa: BLE001
            yield _check(f"{name} decode {what}", "failed", flatten(exc, 300))
            return
        yield _check(f"{name} decode {what}", "ok")
    try:
        results = predictor.predict(samples)
        if len(results) != len(samples) or not all(isinstance(r, dict) for r in results):
            raise TypeError(f"predict gave {len(results)} results for {len(samples)} inputs, or not dicts")
        json.dumps(results, default=lambda value: "<bytes>" if isinstance(value, bytes) else repr(value))
    except Exception as exc:  # noqa: BLE001
        yield _check(f"{name} batch", "failed", flatten(exc, 300))
        return
    yield _check(f"{name} batch", "ok", f"{len(samples)} inputs: {', '.join(results[0])}")
    yield from asyncio.run(_serve_once(name, predictor, item, cls.kind))
    yield _export_once(recipe, folder, item if cls.kind in (IMAGE, AUDIO) else None)


async def _serve_once(name: str, predictor, item, kind: str) -> list[dict]:
    """One /predict and one /v2 request to an in-process server of the loaded predictor."""
    import base64

    from ptcli.inference.contract import AUDIO, IMAGE, PROMPT
    from ptcli.serving.app import create_app
    from ptcli.serving.inprocess import in_process
    from ptcli.serving.spec import servable_from

    app = create_app(lambda: servable_from(predictor))
    checks = []
    async with in_process(app) as client:
        if app.state.ptcli.load_error is not None:
            return [_check(f"{name} serve", "failed", f"loading to serve: {app.state.ptcli.load_error}")]
        if kind in (IMAGE, AUDIO):
            body = {kind: base64.b64encode(Path(item).read_bytes()).decode()}
            v2_data = [body[kind]]
        elif kind == PROMPT:
            body, v2_data = item, [item["prompt"]]
        else:
            body, v2_data = {"text": item}, [item]
        for route, request in (("/predict", body), ("/v2/models/model/infer", {
                "inputs": [{"name": kind, "datatype": "BYTES", "shape": [1], "data": v2_data}]})):
            answer = await client.post(route, json=request)
            ok = answer.status_code == 200
            checks.append(_check(f"{name} {route.split('/models')[0] if 'v2' in route else route}",
                                 "ok" if ok else "failed", "" if ok else f"{answer.status_code}: {answer.text[:300]}"))
    return checks


def _export_once(recipe, folder: Path, sample) -> dict:
    """`ptcli export` to ONNX, checked against the eager model, in a process of its own."""
    from ptcli.refs import load_ref

    if recipe.export is None:
        cls = load_ref(recipe.predictor)
        if cls.collate != "stack" or cls.streams:
            return _check(f"{recipe.name} export", "skipped", "its inputs do not stack and it declares no export")
    args = ["export", "--recipe", recipe.name, "-o", str(folder / "check.onnx"), "--json"]
    if sample is not None:
        args += ["--sample", str(sample)]
    done = _run(*args, env={"PTCLI_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}, timeout=900)
    said = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or [""]
    if done.returncode == 0:
        report = json.loads(said[0])
        return _check(f"{recipe.name} export", "ok", f"onnx via {report['exporter']}, checked")
    if "not on this machine" in said[0] or "offline" in said[0]:
        return _check(f"{recipe.name} export", "skipped", f"its weights are not on this machine: {said[0][:200]}")
    try:
        said = [json.loads(said[0])["error"]]
    except (ValueError, KeyError, TypeError):
        pass
    return _check(f"{recipe.name} export", "failed", said[0][:300])


def format_checks(name: str, checks: list[dict]) -> str:
    width = max(len(c["check"]) for c in checks)
    lines = [f"plugin {name}:"]
    lines += [f"  {c['check']:<{width}}  {c['status'].upper() if c['status'] == 'failed' else c['status']:<7}  {c['detail']}".rstrip()
              for c in checks]
    failed = sum(c["status"] == "failed" for c in checks)
    lines.append(f"{failed} check{'s' if failed != 1 else ''} failed" if failed else "all checks passed")
    return "\n".join(lines)
