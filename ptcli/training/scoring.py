"""`ptcli eval`'s scoring, for any command that needs it (eval itself, benchmark): a recipe's
model scored on labelled data through its Predictor's ``evaluate`` (the command's own decode
and forward), else its training task's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ptcli.errors import UsageError


def score(recipe, checkpoint: Path, data: Path, *, device, batch_size: int,
          pictures: bool = False) -> tuple[dict, Callable[[dict], str]]:
    """(report, how it reads) for ``checkpoint`` (a checkpoint or an export) on ``data``; with
    ``pictures``, the report keeps what only its pictures need ("_pictures": see
    ptcli.training.pictures)."""
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import evaluates, load_predictor
    from ptcli.training.task import TrainingTask

    if evaluates(recipe):
        predictor = load_predictor(recipe, Source(checkpoint=Path(checkpoint)), device)
        report, describe = predictor.evaluate(Path(data), batch_size=batch_size), predictor.format_evaluation
    else:
        task_class = recipe.training_task if recipe.training is not None else None
        if task_class is None or task_class.evaluate.__func__ is TrainingTask.evaluate.__func__:
            raise UsageError(f"recipe {recipe.name} does not support `ptcli eval`")
        report = task_class.evaluate(Path(checkpoint), Path(data), device=device, batch_size=batch_size)
        describe = task_class.format_evaluation
    if not pictures:
        report.pop("_pictures", None)
    return report, describe


def scores(recipe) -> bool:
    """Whether ``score`` can score this recipe's models."""
    from ptcli.inference.runner import evaluates
    from ptcli.training.task import TrainingTask

    if evaluates(recipe):
        return True
    task_class = recipe.training_task if recipe.training is not None else None
    return task_class is not None and task_class.evaluate.__func__ is not TrainingTask.evaluate.__func__
