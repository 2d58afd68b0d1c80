"""attack and defend: adversarial samples against any image classifier ptcli loads, robust
accuracy over a data set, transfer attacks, and input-filter defences measured honestly
(book ch. 9).

This module is what `ptcli --help` imports: declarations only, no torch.
"""

from ptcli import hookimpl
from ptcli.plugins.recipe import Command, DeviceSupport, Recipe

RECIPE = Recipe(
    name="adversarial",
    help="Adversarial samples (FGSM, PGD, APGD, AutoAttack, Square, C&W, DeepFool), defences and certificates for image classifiers.",
    commands=(
        Command(
            name="attack",
            help="Perturb images within --eps so a classifier gets them wrong; --data: robust accuracy.",
            target="ptcli_adversarial.command:attack",
            example=("{image}", "-o", "{tmp}", "--steps", "1", "--device", "cpu"),
        ),
        Command(
            name="certify",
            help="Certified L2 robustness by randomized smoothing: per image, or over --data.",
            target="ptcli_adversarial.certify:certify",
        ),
        Command(
            name="defend",
            help="Clean and robust accuracy of a classifier with and without each input filter.",
            target="ptcli_adversarial.command:defend",
        ),
    ),
    devices=DeviceSupport(devices=("cuda", "mps", "cpu"), precisions=("fp32",)),
    predictor="ptcli_adversarial.predictor:Attacker",
)


@hookimpl
def register_recipes(register):
    register(RECIPE)
