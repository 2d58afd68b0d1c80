"""Tokens/s of `ptcli generate-text` against a bare `model.generate` loop with the same model,
settings and threads (target ratio >= 0.95), each in a fresh process as a user runs it. The model is a GPT-2 of small size with random
weights and a byte-level BPE tokenizer learnt from ../shared/data/text/corpus.txt (CPU default);
`--gpt2` uses GPT-2's own size (124M) instead, for the GPU machine. Both sides are timed around
generation only (ptcli reports its own tokens_per_second). Each round runs ptcli and the bare
loop back to back; the ratio is the median of the rounds' ratios (a fresh process's 0.4 s of
generation varies by +-15% on a shared 2-core machine, so a best-of or a single pair misleads).
A second figure isolates the per-token path from process noise: ptcli's generate() against
model.generate on the same loaded model in one process, alternating, median of 8 each.

    python bench/generate_throughput.py [--data ../shared/data] [--device cpu] [--gpt2] [--rounds 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

TARGET = 0.95
REPO = Path(__file__).resolve().parents[1]
PROMPT = "It was a dark and stormy night; the rain fell in torrents"


def make_model(folder: Path, corpus: Path, full_size: bool) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_generate_text.textdata import train_byte_level_bpe

    tokenizer = train_byte_level_bpe([corpus.read_text(encoding="utf-8")], 8000)
    size = {} if full_size else {"n_layer": 4, "n_embd": 256, "n_head": 4}
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, **size)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ptcli_rate(folder: Path, tokens: int, device: str) -> float:
    command = [sys.executable, "-m", "ptcli", "generate-text", PROMPT, "--model", str(folder), "--max-new-tokens", str(tokens),
               "--temperature", "0", "--device", device, "--dtype", "fp32", "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ptcli failed: {done.stderr.strip()}")
    return json.loads(done.stdout)["tokens_per_second"]


def bare_rate(folder: Path, tokens: int, device: str) -> float:
    """The bare loop in a fresh process, like ptcli: a second call in one process runs warm."""
    command = [sys.executable, __file__, "--bare-once", str(folder), "--tokens", str(tokens), "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def bare_once(folder: Path, tokens: int, device: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(device)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return (out.shape[1] - ids.shape[1]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpt2", action="store_true", help="GPT-2's own size (124M parameters)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bare-once", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_once:
        print(bare_once(args.bare_once, args.tokens, args.device))
        return
    corpus = args.data / "text" / "corpus.txt"
    if not corpus.is_file():
        sys.exit(f"benchmark data not found: {corpus} (see ../shared/data/README.md)")
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(Path(tmp) / "model", corpus, args.gpt2)
        pairs = []
        for _ in range(args.rounds):  # back to back, so that machine noise hits both alike
            pairs.append((ptcli_rate(folder, args.tokens, args.device), bare_rate(folder, args.tokens, args.device)))
        same_process = in_process_ratio(folder, args.tokens, args.device)
    ours, bare = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    ratios = [o / b for o, b in pairs]
    report([("model", "GPT-2 124M (random)" if args.gpt2 else "GPT-2 4 layers x 256 (random)"), ("device", args.device),
            ("threads", str(torch.get_num_threads())), ("new tokens", str(args.tokens)),
            ("ptcli generate-text (median)", f"{ours:.1f} tokens/s"), ("bare model.generate (median)", f"{bare:.1f} tokens/s"),
            ("ratio per round", " ".join(f"{r:.3f}" for r in ratios)),
            ("same process, same model, alternating", f"{same_process:.3f}")], statistics.median(ratios), TARGET,
           figure="generate-text tokens/s", ours=f"{ours:.1f}", baseline=f"{bare:.1f} (bare model.generate)")


def in_process_ratio(folder: Path, tokens: int, device: str, repeats: int = 8) -> float:
    """ptcli's generate() against model.generate on one loaded model, alternating: the per-token
    path alone, without process start-up or machine drift."""
    import statistics

    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli_generate_text.generation import Settings, generate
    from ptcli_generate_text.models import load_language_model

    lm = load_language_model(str(folder), None, dtype=torch.float32)
    lm.model.to(device).eval()
    ids = lm.tokenizer(PROMPT, return_tensors="pt")["input_ids"].to(device)

    def bare() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False,
                                    pad_token_id=lm.tokenizer.eos_token_id)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - start)

    def ours() -> float:
        return generate(lm, PROMPT, Settings(max_new_tokens=tokens, temperature=0), device=torch.device(device)).tokens_per_second

    bare(), ours()
    a, b = [], []
    for _ in range(repeats):
        a.append(bare())
        b.append(ours())
    return statistics.median(b) / statistics.median(a)


if __name__ == "__main__":
    main()
