"""Pictures a person would rather look at than numbers: the training curves of a run
(curves.png: losses, and the monitored metric, per epoch) and, from an evaluation report, a
classifier's confusion matrix (confusion_matrix.png) or a detector's precision-recall curve
(pr_curve.png) and validation images with their boxes (predictions.png). matplotlib is imported
here only, and only when a picture is drawn. Each function returns the data it drew, for --json.

A report carries what only a picture needs (101 points per class, boxes per image) under
"_pictures", which ``report_pictures`` takes out: the printed report stays as it was."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def _drawing(path: Path, *grid, **figure_options):
    """(pyplot, figure, axes) of ``plt.subplots(*grid, **figure_options)``: laid out and saved
    to ``path`` when the block ends, and closed whatever happens."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the environment says
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(*grid, **figure_options)
    try:
        yield plt, figure, axes
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def curves(records: list[dict], monitor: str, path: Path) -> dict[str, Any]:
    """Per epoch: every loss (train and validation) on the left, ``monitor`` on the right."""
    epochs = [int(record["epoch"]) for record in records]
    losses = sorted({key for record in records for key in record if key.endswith("/loss")})
    series = {key: [record.get(key) for record in records] for key in [*losses, monitor]}
    with _drawing(path, 1, 2, figsize=(10, 4), dpi=100) as (_plt, _figure, (left, right)):
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
    return {"file": str(path), "epochs": epochs, "series": series}


def confusion_matrix(classes: list[str], matrix: list[list[int]], path: Path) -> dict[str, Any]:
    """Rows: the true class; columns: the predicted one; each cell's count written in it."""
    import numpy as np

    counts = np.asarray(matrix)
    size = max(4.0, 0.5 * len(classes) + 2)
    with _drawing(path, figsize=(size + 1, size), dpi=100) as (_plt, figure, axes):
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
    return {"file": str(path), "classes": list(classes), "matrix": counts.tolist()}


def pr_curve(data: dict, path: Path) -> dict[str, Any]:
    """Precision against recall at IoU ``data["iou"]``, a line per class, its AP in the legend."""
    with _drawing(path, figsize=(6, 5), dpi=100) as (_plt, _figure, axes):
        for name, precision in data["precision"].items():
            ap = sum(precision) / len(precision)
            axes.plot(data["recall"], precision, label=f"{name} (AP@{data['iou']} {ap:.3f})")
        axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
                 title=f"precision-recall at IoU {data['iou']}")
        axes.grid(alpha=0.3)
        if data["precision"]:
            axes.legend(loc="lower left")
    return {"file": str(path), **data}


def prediction_grid(data: dict, path: Path) -> dict[str, Any]:
    """The first validation images, each with its true boxes (dashed, white) and the boxes
    predicted with a score of at least ``data["score_floor"]`` (solid, a colour per class)."""
    from PIL import Image

    images = data["images"]
    columns = min(4, max(1, len(images)))
    rows = max(1, -(-len(images) // columns))
    names = sorted({box["label"] for image in images for box in image["truth"] + image["predicted"]})
    with _drawing(path, rows, columns, figsize=(3.2 * columns, 3.2 * rows), dpi=100, squeeze=False) as (plt, figure, grid):
        colours = plt.get_cmap("tab10")
        for axes in grid.flat:
            axes.axis("off")
        for axes, image in zip(grid.flat, images):
            with Image.open(image["file"]) as picture:
                axes.imshow(picture.convert("RGB"))
            for box in image["truth"]:
                x0, y0, x1, y1 = box["box"]
                axes.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--"))
            for box in image["predicted"]:
                x0, y0, x1, y1 = box["box"]
                colour = colours(names.index(box["label"]) % 10)
                axes.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
                axes.text(x0, y0, f"{box['label']} {box['score']:.2f}", color="white", fontsize=7, va="bottom",
                          bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
            axes.set_title(Path(image["file"]).name, fontsize=8)
        figure.suptitle(f"predictions (score >= {data['score_floor']}) and truth (dashed)", fontsize=10)
    return {"file": str(path), **data}


def report_pictures(report: dict, folder: Path) -> dict[str, Any]:
    """What an evaluation report can be drawn as, into ``folder``: {name: data}. Takes the
    report's "_pictures" out of it."""
    extra = report.pop("_pictures", None) or {}
    drawn: dict[str, Any] = {}
    if report.get("confusion_matrix") and report.get("classes"):
        drawn["confusion_matrix"] = confusion_matrix(report["classes"], report["confusion_matrix"],
                                                     folder / "confusion_matrix.png")
    if extra.get("pr_curve"):
        drawn["pr_curve"] = pr_curve(extra["pr_curve"], folder / "pr_curve.png")
    if extra.get("predictions", {}).get("images"):
        drawn["predictions"] = prediction_grid(extra["predictions"], folder / "predictions.png")
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


class EvaluationPictures:
    """A trainer callback, for recipes whose report has pictures (TrainingTask.draws_pictures):
    at the end of a finished run, the best checkpoint scored as `ptcli eval` scores it on the
    run's data root, and its pictures drawn into the run folder (as `eval --plots`). Not under
    torchrun: the scoring would share its inputs with processes that are not scoring (then
    `ptcli eval --plots` draws them)."""

    def __init__(self, run, recipe: str) -> None:
        self.run, self.recipe = run, recipe

    def on_fit_end(self, trainer) -> None:
        from ptcli.output import working

        from ptcli.distributed import world_size

        root = getattr(getattr(trainer.task.config, "data", None), "root", None)
        checkpoint = self.run.checkpoint("best")
        if not type(trainer.task).draws_pictures or root is None or not checkpoint.is_file() or world_size() > 1:
            return
        try:
            from ptcli.plugins import get_plugins
            from ptcli.training.scoring import score

            with working("scoring the best checkpoint for its pictures"):
                report, _ = score(get_plugins().recipe(self.recipe), checkpoint, Path(root), device=trainer.accelerator.device,
                                  batch_size=trainer.cfg.batch_size, pictures=True)
                report_pictures(report, self.run.path)
        except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn never costs the run
            from ptcli.errors import one_line
            from ptcli.output import warn

            warn(f"the evaluation pictures were not drawn: {one_line(exc)}")
