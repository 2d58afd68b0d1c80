"""What every classification recipe shares: the loss with label smoothing and mixup (book
ch. 9), the validation metrics, and the evaluation report of `ptcli eval`."""

from __future__ import annotations


from ptcli.inference.evaluation import classification_report, format_classification_report  # noqa: F401 (its home before)


class ClassificationLoss:
    """Cross-entropy with optional label smoothing; ``mix`` applies mixup to a training batch."""

    def __init__(self, label_smoothing: float = 0.0, mixup_alpha: float = 0.0) -> None:
        import torch

        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.mixup_alpha = mixup_alpha

    def mix(self, inputs, targets):
        """(mixed inputs, targets, shuffled targets, lambda); lambda 1.0 when mixup is off."""
        import torch

        if self.mixup_alpha <= 0:
            return inputs, targets, targets, 1.0
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        order = torch.randperm(inputs.shape[0], device=inputs.device)
        return lam * inputs + (1 - lam) * inputs[order], targets, targets[order], lam

    def __call__(self, logits, targets, shuffled=None, lam: float = 1.0):
        loss = self.criterion(logits, targets)
        if shuffled is not None and lam < 1.0:
            loss = lam * loss + (1 - lam) * self.criterion(logits, shuffled)
        return loss


def classification_metrics(num_classes: int):
    """Validation metrics: accuracy, and top-5 accuracy when there are more than 5 classes."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy

    metrics = {"accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro")}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes=num_classes, average="micro", top_k=5)
    return MetricCollection(metrics)


class ClassifierSteps:
    """The steps and the eval report every one-model classifier shares, as a mixin before
    TrainingTask: batches are (inputs, targets); the task sets ``self.loss`` (a
    ClassificationLoss) and ``self.classes`` in setup, and overrides ``logits`` when its model
    is not called as ``model(inputs)``."""

    draws_pictures = True  # the confusion matrix

    def logits(self, model, inputs):
        return model(inputs)

    def metrics(self):
        return classification_metrics(len(self.classes))

    def training_step(self, batch, ctx):
        inputs, targets = batch
        inputs, targets_a, targets_b, lam = self.loss.mix(inputs, targets)
        loss = self.loss(self.logits(ctx.model, inputs), targets_a, targets_b, lam)
        ctx.optimize(loss)
        return {"loss": loss.detach()}

    def validation_step(self, batch, ctx):
        inputs, targets = batch
        logits = self.logits(ctx.model, inputs).float()
        ctx.update_metrics(logits, targets)
        return {"loss": self.loss.criterion(logits, targets)}

    @classmethod
    def format_evaluation(cls, report) -> str:
        return format_classification_report(report)
