"""Pictures a person would rather look at than numbers: the training curves of a run
(curves.png: losses, and the monitored metric, per epoch) and, from an evaluation report, a
classifier's confusion matrix (confusion_matrix.png). matplotlib is imported here only, and
only when a picture is drawn. Each function returns the data it drew, for --json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the environment says
    import matplotlib.pyplot as plt

    return plt


def curves(records: list[dict], monitor: str, path: Path) -> dict[str, Any]:
    """Per epoch: every loss (train and validation) on the left, ``monitor`` on the right."""
    epochs = [int(record["epoch"]) for record in records]
    losses = sorted({key for record in records for key in record if key.endswith("/loss")})
    series = {key: [record.get(key) for record in records] for key in [*losses, monitor]}
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    try:
        for key in losses:
            left.plot(epochs, series[key], marker="o", label=key)
        left.set(title="loss", xlabel="epoch")
        if losses:
            left.legend()
        right.plot(epochs, series[monitor], marker="o", color="tab:green", label=monitor)
        right.set(title=monitor, xlabel="epoch")
        right.legend()
        for axes in (left, right):
            axes.grid(alpha=0.3)
            axes.xaxis.get_major_locator().set_params(integer=True)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return {"file": str(path), "epochs": epochs, "series": series}


def confusion_matrix(classes: list[str], matrix: list[list[int]], path: Path) -> dict[str, Any]:
    """Rows: the true class; columns: the predicted one; each cell's count written in it."""
    import numpy as np

    counts = np.asarray(matrix)
    plt = _pyplot()
    size = max(4.0, 0.5 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size), dpi=100)
    try:
        shown = axes.imshow(counts, cmap="Blues")
        figure.colorbar(shown, ax=axes)
        axes.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
                 title="confusion matrix")
        axes.set_xticklabels(classes, rotation=45, ha="right")
        axes.set_yticklabels(classes)
        if len(classes) <= 30:
            middle = counts.max() / 2 if counts.size else 0
            for (row, column), count in np.ndenumerate(counts):
                axes.text(column, row, str(count), ha="center", va="center",
                          color="white" if count > middle else "black", fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return {"file": str(path), "classes": list(classes), "matrix": counts.tolist()}


def report_pictures(report: dict, folder: Path) -> dict[str, Any]:
    """What an evaluation report can be drawn as, into ``folder``: {name: data}."""
    drawn: dict[str, Any] = {}
    if report.get("confusion_matrix") and report.get("classes"):
        drawn["confusion_matrix"] = confusion_matrix(report["classes"], report["confusion_matrix"],
                                                     folder / "confusion_matrix.png")
    return drawn


class Curves:
    """A trainer callback: the run's curves.png at the end of training (or of an interrupted
    run, up to its last epoch), from the records in metrics.jsonl."""

    def __init__(self, run) -> None:
        self.run = run

    def _draw(self, trainer) -> None:
        records = [record for record in self.run.read_metrics() if "epoch" in record]
        if not records:
            return
        try:
            curves(records, trainer.task.monitor, self.run.path / "curves.png")
        except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn never costs the run
            from ptcli.errors import one_line
            from ptcli.output import warn

            warn(f"curves.png was not drawn: {one_line(exc)}")

    def on_fit_end(self, trainer) -> None:
        self._draw(trainer)

    def on_interrupt(self, trainer) -> None:
        self._draw(trainer)
