"""Leave-one-fold-out accuracy on ../shared/data/esc50 (real recordings, 5 classes, 5 folds) of
the spectrogram recipe and of AudioNet, with CPU training time, beside a log-spectrum +
logistic regression baseline computed here (about 0.74). Each fold in turn is the validation
fold; the accuracy is that of the last epoch (no model selection on the held-out fold).
Goal: the spectrogram recipe beats the baseline.

    python bench/audio_accuracy.py [--data ../shared/data] [--skip-audionet]
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

REPO = Path(__file__).resolve().parents[1]
FOLDS = (1, 2, 3, 4, 5)


def band_features(path: Path, bands: int = 32):
    """Mean and standard deviation of the log power in ``bands`` frequency bands."""
    import numpy as np
    import soundfile
    from scipy.signal import stft

    wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    _, _, spec = stft(wave.mean(axis=1), fs=rate, nperseg=1024)
    power = np.log(np.abs(spec) ** 2 + 1e-10)
    groups = np.array_split(power, bands, axis=0)
    return np.concatenate([[g.mean() for g in groups], [g.std() for g in groups]])


def baseline(root: Path) -> float:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        sys.exit("the baseline needs scikit-learn: pip install scikit-learn")
    import numpy as np

    with open(root / "meta" / "esc50.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    x = np.stack([band_features(root / "audio" / r["filename"]) for r in rows])
    y, folds = np.array([r["target"] for r in rows]), np.array([int(r["fold"]) for r in rows])
    scores = []
    for fold in FOLDS:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x[folds != fold], y[folds != fold])
        scores.append(float((model.predict(x[folds == fold]) == y[folds == fold]).mean()))
    return sum(scores) / len(scores)


def recipe(name: str, root: Path, runs: str) -> tuple[float, float]:
    accuracies, seconds = [], 0.0
    for fold in FOLDS:
        command = [sys.executable, "-m", "ptcli", "train", str(REPO / "recipes" / name), f"data.root={root}",
                   f"data.val_folds=[{fold}]", "data.test_folds=[]", f"run.dir={runs}", f"run.name={name}-fold{fold}",
                   "trainer.device=cpu", "run.tensorboard=false", "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds += time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"ptcli train failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        accuracies.append(json.loads(done.stdout.strip().splitlines()[-1])["metrics"]["val/accuracy"])
    return sum(accuracies) / len(accuracies), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--skip-audionet", action="store_true")
    args = parser.parse_args()
    root = args.data / "esc50"
    if not (root / "meta" / "esc50.csv").is_file():
        sys.exit(f"benchmark data not found: {root} (see ../shared/data/README.md)")
    base = baseline(root)
    rows = [("log-spectrum bands + logistic regression (baseline)", f"accuracy {base:.3f}")]
    with tempfile.TemporaryDirectory() as runs:
        spectrogram, seconds = recipe("esc50-spectrogram.yaml", root, runs)
        rows.append(("esc50-spectrogram.yaml (EfficientNet-Lite0)", f"accuracy {spectrogram:.3f}, trained in {seconds:.0f} s (5 folds)"))
        if not args.skip_audionet:
            audionet, seconds = recipe("esc50-audionet.yaml", root, runs)
            rows.append(("esc50-audionet.yaml (AudioNet)", f"accuracy {audionet:.3f}, trained in {seconds:.0f} s (5 folds)"))
    report(rows, spectrogram / base, 1.0)


if __name__ == "__main__":
    main()
