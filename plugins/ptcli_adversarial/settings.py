"""An attack's settings from the options `attack` and `defend` share, checked as one line each."""

from __future__ import annotations

from ptcli.errors import UsageError

#: The methods, norms and AutoAttack sets, as their flags list them (torch-free, for --help;
#: ptcli.attacks has the attacks themselves).
METHODS = ("fgsm", "pgd", "apgd", "deepfool", "cw", "square", "fab", "autoattack")
NORMS = ("linf", "l2")
VERSIONS = ("standard", "rand")
#: Steps when --steps is not given.
DEFAULT_STEPS = {"fab": 100, "autoattack": 100}
#: The methods that pick their own targets, or none.
UNTARGETED = ("deepfool", "fab", "autoattack")


def attack_settings(method: str, norm: str, eps: str, steps: int | None, step_size: str | None = None,
                    random_start: bool = True, seed: int = 0, queries: int = 5000, eot: int | None = None,
                    version: str = "standard"):
    from ptcli.attacks import BLACK_BOX, L2_ONLY, parse_eps

    from .robustness import AttackSettings

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    if norm not in NORMS:
        raise UsageError(f"--norm must be one of {', '.join(NORMS)} (got {norm!r})")
    if method in L2_ONLY and norm != "l2":
        raise UsageError(f"--method {method} finds the smallest L2 change: add --norm l2 (and an L2 --eps such as 0.5)")
    if version not in VERSIONS:
        raise UsageError(f"--version must be one of {', '.join(VERSIONS)} (got {version!r})")
    if version != "standard" and method != "autoattack":
        raise UsageError("--version goes with --method autoattack")
    if eot is not None and method in BLACK_BOX:
        raise UsageError(f"--eot averages gradients; --method {method} uses none (it already reads the model's outputs as they are)")
    return AttackSettings(method=method, norm=norm, eps=parse_eps(eps), steps=steps or DEFAULT_STEPS.get(method, 10),
                          step_size=parse_eps(step_size) if step_size is not None else None,
                          random_start=random_start, seed=seed, queries=queries, eot=eot, version=version)


def settings_of(values: dict):
    """The settings from an Attacker's option values (attack's flags, a served model's options)."""
    return attack_settings(values["method"], values["norm"], values["eps"], values["steps"], values["step_size"],
                           values["random_start"], values["seed"], values["queries"], values["eot"], values["version"])
