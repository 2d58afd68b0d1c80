"""attack's inference contract: an image (a file or an upload) perturbed within ``eps`` against
any image classifier (the "image-classifier" capability), saved losslessly and classified
again as `ptcli classify-image` reads it. `ptcli serve --recipe adversarial` answers with the
adversarial PNG (``encode``) or JSON (clean and adversarial predictions, success, L-inf and L2,
and the PNG in base64). `attack --data DIR` is the same predictor's ``evaluate``: robust
accuracy over a labelled data set (ptcli_adversarial.report)."""

from __future__ import annotations

from ptcli.inference.contract import CommandRun, Sample
from ptcli.inference.options import Option
from ptcli.plugins.capabilities import ImageClassifierPredictor

from .settings import METHODS, NORMS, UNTARGETED, VERSIONS

OPTIONS = (
    Option("method", str, "pgd", "fgsm (one step), pgd (projected gradient descent), apgd (APGD-CE: step sizes adapt), "
           "autoattack (APGD-CE, APGD-T, FAB-T and Square in turn: the standard to report), square (black-box: model "
           "outputs only, --queries), fab (FAB-T: smallest change towards the 9 likeliest other classes); deepfool and "
           "cw (Carlini-Wagner, binary search over c) look for the smallest L2 change (--norm l2), then hold it to --eps.",
           choices=METHODS, metavar="METHOD"),
    Option("norm", str, "linf", "The perturbation's norm.", choices=NORMS, metavar="linf|l2"),
    Option("eps", str, "4/255", "Budget in pixel values of [0, 1]: 4/255 or 0.0157.", metavar="E"),
    Option("steps", int, None, "Attack steps (pgd, apgd, deepfool; cw: Adam steps for each of its 5 values of c; fab "
           "and each of autoattack's attacks) [default: 10; fab and autoattack: 100].", min=1, optional=True, metavar="N"),
    Option("queries", int, 5000, "Square's budget of model calls per input (also within autoattack).", min=1,
           metavar="N"),
    Option("eot", int, None, "EOT: average each gradient over N draws, against a random model or filter (--defense "
           "noise:0.25) [default: 1; autoattack --version rand: 20].", min=1, optional=True, metavar="N"),
    Option("version", str, "standard", "autoattack's set: standard (APGD-CE, APGD-T, FAB-T, Square), or rand for "
           "randomised defences (APGD-CE, APGD-DLR, each with EOT over 20 draws).", choices=VERSIONS,
           metavar="standard|rand"),
    Option("step_size", str, None, "PGD's step [default: 2.5 * eps / steps].", optional=True, metavar="A"),
    Option("random_start", bool, True, "PGD starts at a random point of the eps ball."),
    Option("target", str, None, "Targeted: push each image towards this class.", optional=True, metavar="LABEL"),
    Option("craft_on", str, None, "With --data: craft on this checkpoint, score on the model (a black-box transfer "
           "attack).", optional=True, command_only=True, flag="--source", metavar="CKPT"),
    Option("defense", str, None, "With --data: an input filter before the model, jpeg:75, median:3, bits:4 or "
           "noise:0.25 (random: add --eot); the adaptive attack (BPDA) is run too.", optional=True, command_only=True,
           metavar="F"),
    Option("checks", bool, True, "With --data: run the attack's sanity checks (eps 0, half eps, half steps, APGD).",
           command_only=True),
    Option("seed", int, 0, "Seed of the random start.", metavar="N"),
)


class Attacker(ImageClassifierPredictor):
    verb = "attack"
    options = OPTIONS
    default_batch_size = None  # batch_size_for: one file at a time; --data in batches
    # No default folder: an attack's images go only where the user says (-o), never into
    # whatever folder the command was typed in.
    writes, default_output, written = "_adv", None, "the adversarial images"
    progress, failed = "attacking", "could not be attacked"

    def __init__(self, classifier, device, *, settings=None, target: str | None = None, title: str = "",
                 **options) -> None:
        from ptcli.plugins.capabilities import label_index

        from .robustness import AttackSettings
        from .settings import settings_of

        super().__init__(classifier, device, title=title)
        self.settings = settings_of({**{o.name: o.default for o in OPTIONS}, **options}) if options else \
            settings or AttackSettings()  # the command's defaults: PGD-10, L-inf 4/255
        self.target = label_index(classifier.labels, target, "--target") if target is not None else None
        self.warnings: list[str] = []

    @classmethod
    def check_options(cls, options: dict) -> None:
        from ptcli.errors import UsageError

        from .settings import settings_of

        values = {**{o.name: o.default for o in OPTIONS}, **options}
        settings_of(values)
        if values["method"] in UNTARGETED and values["target"] is not None:
            raise UsageError(f"--method {values['method']} is untargeted (or picks its own targets): drop --target, or "
                             "use --method cw, pgd or square")
        if values["defense"] is not None:
            from ptcli.vision.defenses import parse_filter

            parse_filter(values["defense"])

    @classmethod
    def check_run(cls, run: CommandRun) -> None:
        from ptcli.errors import UsageError

        if run.data is None and (run.options["craft_on"] is not None or run.options["defense"] is not None):
            raise UsageError("--source and --defense go with --data DIR")
        if run.data is None and run.output is None and (run.inputs or run.videos):
            raise UsageError("attack writes each adversarial image: give -o DIR (-o . for this folder), "
                             "or --data DIR for a robustness report")

    @classmethod
    def batch_size_for(cls, device, run: CommandRun) -> int:
        return 32 if run.data is not None else 1

    def decode(self, item) -> Sample:
        """The upload itself: the attack reads it as the classifier does, then again as a PNG."""
        self.classifier.read(item)  # unreadable images are refused here, before the queue
        return Sample(item)

    def forward(self, items: list) -> list:
        from .files import attack_image

        return [attack_image(self.classifier, item, self.settings, self.target, self.device) for item in items]

    def postprocess(self, row, meta) -> dict:
        png, fields = row
        return {**fields, "png": png}

    def describe(self, path, r: dict) -> str:
        outcome = "fooled" if r["success"] else "NOT fooled (the saved file keeps its label)"
        return (f"{path} -> {r['output']}: {r['clean']['label']} ({r['clean']['score']:.3f}) -> "
                f"{r['adversarial']['label']} ({r['adversarial']['score']:.3f}), {outcome}; "
                f"L-inf {r['linf'] * 255:.1f}/255, L2 {r['l2']:.3f}")

    def evaluate(self, data, *, batch_size: int) -> dict:
        """--data DIR: clean and robust accuracy over a labelled ImageFolder."""
        from pathlib import Path

        from .report import robustness_report

        values = self.option_values
        report, self.warnings = robustness_report(
            self.classifier, self.device, Path(data), self.settings, source=None if values.craft_on is None else
            Path(values.craft_on), defense=values.defense, checks=values.checks, batch_size=batch_size)
        return report

    def format_evaluation(self, report: dict) -> str:
        from .report import human_report

        return human_report(report)

    def summary(self, count: int) -> str | None:
        return "; ".join(self.warnings) or None
