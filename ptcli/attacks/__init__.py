"""Adversarial examples (book ch. 9), small and in plain PyTorch, a package of their own: the
toolkit every attack shares at its bottom (``toolkit``), the gradient attacks (``gradient``:
FGSM, PGD, APGD-CE), the minimal ones (``minimal``: DeepFool, Carlini-Wagner; ``fab``), the
black-box Square (``square``) and AutoAttack (``autoattack``), and here the registry that
dispatches to them.

Every attack takes ``model``: a module from pixel images in [0, 1] (B, 3, H, W) to logits, with
any resizing and normalisation inside it, so that a perturbation bounded by ``eps`` is bounded
in the pixels a file holds. It returns adversarial pixels within ``eps`` of ``x`` and in [0, 1].
``quantize`` rounds the result to 8-bit values (what a PNG stores) inside the budget, so that
saving it does not undo the attack. Each sample keeps the latest point that succeeded (later
ones push the loss further), so more steps never lose a success.
"""

from __future__ import annotations

from .gradient import apgd, apgd_checkpoints, apgd_start, fgsm, pgd  # noqa: F401
from .toolkit import (NORMS, dlr, dlr_targeted, keep_successes, parse_eps, project, quantize,  # noqa: F401
                      straight_through, succeeded)
from .toolkit import _keep_successes  # noqa: F401 (the old name, for plugins that used it)

__all__ = ["ATTACKS", "BLACK_BOX", "L2_ONLY", "NORMS", "apgd", "apgd_checkpoints", "apgd_start", "autoattack", "cw",
           "deepfool", "dlr", "dlr_targeted", "fab", "fgsm", "keep_successes", "parse_eps", "pgd", "project", "quantize",
           "square", "straight_through", "succeeded"]


def deepfool(model, x, y, **kwargs):
    """DeepFool, minimal L2 (ptcli.attacks.minimal)."""
    from .minimal import deepfool as run

    return run(model, x, y, **kwargs)


def cw(model, x, y, **kwargs):
    """Carlini-Wagner L2 with a binary search over c (ptcli.attacks.minimal)."""
    from .minimal import carlini_wagner

    return carlini_wagner(model, x, y, **kwargs)


def square(model, x, y, **kwargs):
    """The Square attack, black-box: outputs only (ptcli.attacks.square)."""
    from .square import square as run

    return run(model, x, y, **kwargs)


def fab(model, x, y, **kwargs):
    """FAB-T, minimal change towards the likeliest other classes (ptcli.attacks.fab)."""
    from .fab import fab_targeted

    return fab_targeted(model, x, y, **kwargs)


def autoattack(model, x, y, **kwargs):
    """AutoAttack's standard or rand set (ptcli.attacks.autoattack)."""
    from .autoattack import autoattack as run

    return run(model, x, y, **kwargs)


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd, "deepfool": deepfool, "cw": cw, "square": square, "fab": fab,
           "autoattack": autoattack}
#: Attacks that look for the smallest change, in L2 only.
L2_ONLY = ("deepfool", "cw")
#: Attacks that use no gradient.
BLACK_BOX = ("square",)
