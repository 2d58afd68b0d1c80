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
6. Every declared export resolves to a function, and the recipe serves (through its predictor,
   or a ``Recipe.serve`` function); a recipe without one is reported as skipped (`ptcli export`
   and `ptcli serve` then say so).

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
    for recipe in recipes:
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


def format_checks(name: str, checks: list[dict]) -> str:
    width = max(len(c["check"]) for c in checks)
    lines = [f"plugin {name}:"]
    lines += [f"  {c['check']:<{width}}  {c['status'].upper() if c['status'] == 'failed' else c['status']:<7}  {c['detail']}".rstrip()
              for c in checks]
    failed = sum(c["status"] == "failed" for c in checks)
    lines.append(f"{failed} check{'s' if failed != 1 else ''} failed" if failed else "all checks passed")
    return "\n".join(lines)
