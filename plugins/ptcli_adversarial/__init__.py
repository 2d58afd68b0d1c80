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
            example=("{image}", "-o", "{tmp}", "--steps", "1", "--device", "cpu"),
            doc="Craft adversarial images against an image classifier (EfficientNet-Lite0 by default, offline). The "
                "perturbation lives in the original image's pixels: resizing, cropping and normalising happen inside "
                "the attacked model, and each result is saved as a lossless PNG at the original size whose change is "
                "within --eps. Each saved file is classified again the way `ptcli classify-image` does; \"success\" is "
                "what that gives. With --data, prints clean and robust accuracy instead.",
            help_for={
                "inputs": "Image files, folders or globs to perturb.",
                "model": "An image classifier by name (default: efficientnet_lite0, offline).",
                "weights": "Local weights for --model.",
                "checkpoint": "A classify-image checkpoint.",
                "batch_size": "Images per attack batch with --data [default: 32; files one at a time].",
                "output": "Write DIR/<name>_adv.png per image (lossless, original size); needed unless --data.",
            },
            data="Robust accuracy over a labelled ImageFolder (DIR/<class>/*, or its val/) instead of perturbing files.",
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
