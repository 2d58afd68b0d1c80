"""ptcli's AutoAttack and each of its attacks against the authors' own code (the pyautoattack
package, Croce & Hein's auto-attack packaged; a bench-only dependency: pip install pyautoattack)
on the same checkpoints and images: robust accuracy (goal: no more than 0.01 above the
reference's) and seconds (goal: less).

The checkpoints are the shipped SimpleNet recipe and the TRADES recipe, trained on
../shared/data/imagefolder_digits; the images are 400 digits neither saw
(bench/unseen_digits.py, seed 8). L-inf eps 0.1 and L2 eps 1.0; each attack at AutoAttack's
standard settings (100 steps, 9 targets, 5000 queries, one restart).

    python bench/attack_speed.py [--data ../shared/data/imagefolder_digits] [--device cpu]
                                 [--only plain|trades] [--norm linf|l2] [--attacks autoattack,square] [--images N]

With --photos: Square on the default model (EfficientNet-Lite0) and real photos at their own
size (the shared images and the photo ImageFolder's val/, 33), L-inf 8/255, 5000 queries:
ptcli's `attack --method square` against the reference's SquareAttack (pyautoattack, p_init
0.8, its schedule) on the same model in the same pixels, each result saved as an 8-bit PNG and
judged the way `ptcli classify-image` reads that file. Goal: ptcli fools at least as many,
with no more median queries over the photos both fool.

    python bench/attack_speed.py --photos [--photo-data ../shared/data] [--queries 5000]
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report
from unseen_digits import write_unseen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
RECIPES = {"plain": "imagefolder-simplenet.yaml", "trades": "imagefolder-trades.yaml"}
SETTINGS = (("linf", 0.1), ("l2", 1.0))
ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack")
BATCH = 500


def train(recipe: str, data: Path, runs: str, device: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / recipe), f"data.root={data}",
                           f"run.dir={runs}", f"trainer.device={device}", "run.tensorboard=false", "--json"],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["best_checkpoint"]


def ours(name, model, x, y, norm, eps):
    from ptcli.attacks import apgd
    from ptcli.attacks.autoattack import _apgd_targeted, autoattack
    from ptcli.attacks.fab import fab_targeted
    from ptcli.attacks.square import square

    common = dict(eps=eps, norm=norm, seed=0, on_step=None)
    classes = int(model(x[:1]).shape[1])
    return {"apgd-ce": lambda: apgd(model, x, y, steps=100, first_success=True, **common),
            "apgd-t": lambda: _apgd_targeted(model, x, y, 100, 1, classes, common),
            "fab-t": lambda: fab_targeted(model, x, y, steps=100, **common),
            "square": lambda: square(model, x, y, queries=5000, **common),
            "autoattack": lambda: autoattack(model, x, y, **common)}[name]()


def reference(name, model, x, y, norm, eps, device):
    from pyautoattack import AutoAttack

    attacks = ["apgd-ce", "apgd-t", "fab-t", "square"] if name == "autoattack" else [name]
    aa = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="custom", attacks=attacks, seed=0,
                    device=device)
    aa.apgd.n_restarts = aa.fab.n_restarts = aa.apgd_targeted.n_restarts = 1
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = 9
    return aa.run_standard_evaluation(x, y, batch_size=BATCH)[0]


def square_on_photos(args) -> None:
    """The --photos figure (see the module's docstring)."""
    import io

    import torch
    from PIL import Image
    from pyautoattack.square import SquareAttack

    from ptcli.plugins import capabilities
    from ptcli.vision.imaging import to_pixels
    from ptcli_adversarial.files import attack_image
    from ptcli_adversarial.settings import attack_settings

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    photos = [args.photo_data / "images" / name for name in ("astronaut.jpg", "cat.jpg", "coffee.jpg", "dog.jpg", "rocket.jpg")]
    photos += sorted((args.photo_data / "imagefolder_photos" / "val").rglob("*.jpg"))
    classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER, model="efficientnet_lite0")
    pipeline = classifier.pipeline().eval()
    settings = attack_settings("square", "linf", "8/255", None, queries=args.queries)
    ours, theirs = [], []
    for path in photos:
        start = time.perf_counter()
        _, fields = attack_image(classifier, path, settings, None, torch.device("cpu"))
        ours.append((fields["success"], fields["queries"], time.perf_counter() - start))
        start = time.perf_counter()
        x = to_pixels(classifier.read(path))[None]
        clean = classifier.predict_file(path)[0]
        attack = SquareAttack(pipeline, p_init=0.8, n_queries=args.queries, eps=8 / 255, norm="Linf", n_restarts=1,
                              seed=0, verbose=False, device="cpu", resc_schedule=False)
        attack.init_hyperparam(x)
        with torch.no_grad():
            queries, adversarial = attack.attack_single_run(x, torch.tensor([clean]))
        buffer = io.BytesIO()
        pixels = (adversarial[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(buffer, format="PNG")
        theirs.append((classifier.predict_file(buffer.getvalue())[0] != clean, int(queries[0]), time.perf_counter() - start))
        print(f"{path.name}: ptcli {'fooled' if ours[-1][0] else 'held'} after {ours[-1][1]} queries ({ours[-1][2]:.1f} s), "
              f"reference {'fooled' if theirs[-1][0] else 'held'} after {theirs[-1][1]} ({theirs[-1][2]:.1f} s)",
              file=sys.stderr, flush=True)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if values else 0

    both = [i for i in range(len(photos)) if ours[i][0] and theirs[i][0]]
    fooled_ours, fooled_theirs = sum(row[0] for row in ours), sum(row[0] for row in theirs)
    report([("photos", f"{len(photos)} (L-inf 8/255, {args.queries} queries, judged on the saved PNG)"),
            ("ptcli fooled", f"{fooled_ours}, median queries {median([ours[i][1] for i in both])} over the {len(both)} both fool"),
            ("reference fooled", f"{fooled_theirs}, median queries {median([theirs[i][1] for i in both])}"),
            ("seconds", f"{sum(r[2] for r in ours):.0f} vs {sum(r[2] for r in theirs):.0f} (ptcli vs reference)")],
           fooled_ours / max(fooled_theirs, 1), 1.0, figure="square photos fooled: ptcli / reference",
           ours=str(fooled_ours), baseline=str(fooled_theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagefolder_digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(RECIPES), help="one checkpoint instead of both")
    parser.add_argument("--norm", choices=[norm for norm, _ in SETTINGS], help="one norm instead of both")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"some of {','.join(ATTACKS)}")
    parser.add_argument("--images", type=int, default=400, help="the first N unseen digits (of 400, 40 per class, in class order)")
    parser.add_argument("--photos", action="store_true", help="Square on the default model and real photos instead")
    parser.add_argument("--photo-data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--queries", type=int, default=5000, help="Square's budget with --photos")
    args = parser.parse_args()
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        sys.exit("this benchmark compares with the authors' AutoAttack: pip install pyautoattack")
    if args.photos:
        square_on_photos(args)
        return
    import torch

    from ptcli.plugins import capabilities

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    rows, worst_gap, ratios = [], -1.0, []
    with tempfile.TemporaryDirectory() as tmp:
        unseen = write_unseen(Path(tmp) / "unseen", seed=8, exclude=write_unseen(Path(tmp) / "tuning", seed=7)) / "val"
        for label, recipe in RECIPES.items():
            if args.only and label != args.only:
                continue
            checkpoint = train(recipe, args.data, f"{tmp}/runs", args.device)
            device = torch.device(args.device)
            classifier = capabilities.load(capabilities.IMAGE_CLASSIFIER, checkpoint=Path(checkpoint)).to(device)
            pairs = classifier.labelled(unseen)
            pairs = [pairs[i] for i in range(len(pairs)) if i % max(len(pairs) // args.images, 1) == 0][:args.images]
            x = torch.stack([classifier.model_input(classifier.read(path)) for path, _ in pairs]).to(device)
            y = torch.tensor([index for _, index in pairs], device=device)
            network = classifier.network().eval()
            for parameter in network.parameters():
                parameter.requires_grad_(False)

            def robust(adversarial):
                with torch.no_grad():
                    return float((network(adversarial).argmax(1) == y).float().mean())

            for norm, eps in SETTINGS:
                if args.norm and norm != args.norm:
                    continue
                for name in [a for a in ATTACKS if a in args.attacks.split(",")]:
                    timed = {}
                    for who, run in (("ptcli", lambda: ours(name, network, x, y, norm, eps)),
                                     ("reference", lambda: reference(name, network, x, y, norm, eps, args.device))):
                        start = time.perf_counter()
                        adversarial = run()
                        timed[who] = (robust(adversarial), time.perf_counter() - start)
                    (mine, my_s), (theirs, their_s) = timed["ptcli"], timed["reference"]
                    worst_gap = max(worst_gap, mine - theirs)
                    ratios.append(their_s / my_s)
                    rows.append((f"{label} {norm} {eps:g} {name}", f"robust {mine:.4f} vs {theirs:.4f} | "
                                                                   f"{my_s:6.1f} s vs {their_s:6.1f} s (ptcli vs reference)"))
                    print(rows[-1][0], rows[-1][1], file=sys.stderr, flush=True)
    rows += [("images", f"{len(x)} unseen digits"),
             ("largest robust-accuracy excess", f"{worst_gap:+.4f} (goal <= +0.01)"),
             ("ratio below", "the smallest of reference seconds / ptcli seconds (goal > 1)")]
    report(rows, min(ratios), 1.0)


if __name__ == "__main__":
    main()
