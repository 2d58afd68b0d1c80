"""Test accuracy of the classify-text recipes on real quotes (../shared/data/text: 5 classes,
280 train / 60 val / 60 test), each with its CPU training time, beside a TF-IDF + logistic
regression baseline computed here (about 0.77). Goal: the fine-tuned transformer recipe
reaches >= 0.80 in under 10 minutes on CPU.

    python bench/text_accuracy.py [--data ../shared/data] [--skip-bilstm]
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
TARGET = 0.80
TIME_LIMIT_S = 600


def read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def baseline(text: Path) -> float:
    """TF-IDF, then logistic regression, both with scikit-learn's defaults (scikit-learn comes
    with sentence-transformers, a dependency of the packaged MiniLM)."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        sys.exit("the baseline needs scikit-learn: pip install scikit-learn")
    (train_x, train_y), (test_x, test_y) = read(text / "train.csv"), read(text / "test.csv")
    vectorizer = TfidfVectorizer()
    classifier = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train_x), train_y)
    return float((classifier.predict(vectorizer.transform(test_x)) == test_y).mean())


def ptcli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "ptcli", *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ptcli {args[0]} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def recipe_accuracy(recipe: str, text: Path, runs: str) -> tuple[float, float]:
    start = time.perf_counter()
    summary = ptcli("train", str(REPO / "recipes" / recipe), f"data.root={text}", f"run.dir={runs}", "trainer.device=cpu",
                    "run.tensorboard=false")
    seconds = time.perf_counter() - start
    evaluation = ptcli("eval", summary["best_checkpoint"], str(text / "test.csv"), "--device", "cpu")
    return evaluation["accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--skip-bilstm", action="store_true")
    args = parser.parse_args()
    text = args.data / "text"
    if not (text / "train.csv").is_file():
        sys.exit(f"benchmark data not found: {text} (see ../shared/data/README.md)")
    rows = [("TF-IDF + logistic regression (baseline)", f"test accuracy {baseline(text):.3f}")]
    with tempfile.TemporaryDirectory() as runs:
        if not args.skip_bilstm:
            accuracy, seconds = recipe_accuracy("text-bilstm.yaml", text, runs)
            rows.append(("text-bilstm.yaml (biLSTM from scratch)", f"test accuracy {accuracy:.3f}, trained in {seconds:.0f} s"))
        accuracy, seconds = recipe_accuracy("text-transformer.yaml", text, runs)
        rows.append(("text-transformer.yaml (MiniLM-L6 fine-tuned)", f"test accuracy {accuracy:.3f}, trained in {seconds:.0f} s"
                     + ("" if seconds <= TIME_LIMIT_S else f" (over the {TIME_LIMIT_S} s budget)")))
    report(rows, accuracy / TARGET, 1.0)


if __name__ == "__main__":
    main()
