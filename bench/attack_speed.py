"""PGD-10 images/s of ptcli's attack against IBM ART's ProjectedGradientDescent on the same
model and data (goal >= 3x), and the robust accuracy each reaches (goal: within 2 points).

The model is the shipped SimpleNet recipe trained for 5 epochs on
../shared/data/imagefolder_digits; both attack its 200 validation images (L-inf eps 0.1,
10 steps, step 0.025, random start) in batches of 32. ART is a benchmark dependency only:
`pip install adversarial-robustness-toolbox`.

    python bench/attack_speed.py [--data ../shared/data/imagefolder_digits] [--device cpu]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
EPS, STEPS, STEP, BATCH = 0.1, 10, 0.025, 32
TARGET = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagefolder_digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        sys.exit("this benchmark compares with IBM ART: pip install adversarial-robustness-toolbox")
    import numpy as np
    import torch

    from ptcli.plugins import capabilities
    from ptcli.vision.attacks import pgd

    with tempfile.TemporaryDirectory() as runs:
        done = subprocess.run([sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / "imagefolder-simplenet.yaml"),
                               f"data.root={args.data}", f"run.dir={runs}", "trainer.epochs=5", "run.tensorboard=false", "--json"],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            sys.exit(done.stderr[-2000:])
        checkpoint = json.loads(done.stdout.strip().splitlines()[-1])["best_checkpoint"]
        device = torch.device(args.device)
        classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER, checkpoint=Path(checkpoint)).to(device)
        pairs = classifier.labelled(args.data / "val")
        x = torch.stack([classifier.model_input(classifier.read(path)) for path, _ in pairs])
        y = torch.tensor([label for _, label in pairs])
        network = classifier.network().eval()

        def ours():
            correct = 0
            for start in range(0, len(x), BATCH):
                xb, yb = x[start:start + BATCH].to(device), y[start:start + BATCH].to(device)
                adversarial = pgd(network, xb, yb, eps=EPS, steps=STEPS, step_size=STEP)
                with torch.no_grad():
                    correct += int((network(adversarial).argmax(1) == yb).sum())
            return correct / len(x)

        art_model = PyTorchClassifier(model=network, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                      nb_classes=len(classifier.labels), clip_values=(0.0, 1.0),
                                      device_type="gpu" if device.type == "cuda" else "cpu")
        attack = ProjectedGradientDescent(art_model, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=STEPS, num_random_init=1,
                                          batch_size=BATCH, verbose=False)

        def theirs():
            adversarial = attack.generate(x=x.numpy(), y=y.numpy())
            return float((art_model.predict(adversarial, batch_size=BATCH).argmax(1) == y.numpy()).mean())

        timings = {}
        for name, run in (("ptcli", ours), ("ART", theirs)):
            run()  # warm-up
            best, accuracy = float("inf"), None
            for _ in range(args.rounds):
                start = time.perf_counter()
                accuracy = run()
                best = min(best, time.perf_counter() - start)
            timings[name] = (len(x) / best, accuracy)
    (ours_rate, ours_acc), (art_rate, art_acc) = timings["ptcli"], timings["ART"]
    report([("images", str(len(x))), ("ptcli PGD-10", f"{ours_rate:7.1f} images/s, robust accuracy {ours_acc:.3f}"),
            ("ART PGD-10", f"{art_rate:7.1f} images/s, robust accuracy {art_acc:.3f}"),
            ("robust accuracy gap", f"{100 * abs(ours_acc - art_acc):.1f} points (goal <= 2)")], ours_rate / art_rate, TARGET)


if __name__ == "__main__":
    main()
