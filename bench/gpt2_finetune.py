"""Training a small GPT-2 config from scratch on ../shared/data/text/corpus.txt for about two
minutes on the CPU, through `ptcli train recipes/gpt-scratch.yaml` (its own learning rate and
one-cycle schedule): validation perplexity of the untrained model (same tokenizer, split and
seed) and after training, printed.

    python bench/gpt2_finetune.py [--data ../shared/data] [--epochs 8]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "gpt-scratch.yaml"
SETTINGS = ["sample.every=0", "trainer.device=cpu", "run.tensorboard=false"]


def untrained_perplexity(corpus: Path, overrides: list[str]) -> float:
    """The validation perplexity the run starts from, computed with the recipe's own task."""
    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    from ptcli.training.session import resolve_config
    from ptcli_generate_text.textdata import Blocks

    resolved = resolve_config(RECIPE, [f"data.root={corpus}", *overrides])
    task = resolved.task_class(resolved.config)
    task.setup()
    torch.manual_seed(resolved.config.trainer.seed)
    model = task.build_models()["model"].eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(task.val_blocks), 32):
            batch = torch.stack([Blocks(task.val_blocks)[i] for i in range(start, min(start + 32, len(task.val_blocks)))])
            predicted = batch.numel() - batch.shape[0]
            total += float(model(input_ids=batch, labels=batch).loss) * predicted
            count += predicted
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    corpus = args.data / "text" / "corpus.txt"
    if not corpus.is_file():
        sys.exit(f"benchmark data not found: {corpus} (see ../shared/data/README.md)")
    before = untrained_perplexity(corpus, SETTINGS)
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "ptcli", "train", str(RECIPE), f"data.root={corpus}",
                   *SETTINGS, f"trainer.epochs={args.epochs}", f"run.dir={runs}", "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"ptcli train failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        best = json.loads(Path(summary["best_checkpoint"]).with_suffix(".json").read_text())["training"]
    print(f"{RECIPE.name}: GPT-2 2 layers x 128, byte-level BPE 4000, blocks of 128, {args.epochs} epochs on CPU in {seconds:.0f} s")
    print(f"validation perplexity before  {before:.1f}")
    print(f"validation perplexity after   {best['val/perplexity']:.1f} (best epoch {best['epoch']})")
    print(f"ratio {best['val/perplexity'] / before:.3f} (after / before; lower is better)")


if __name__ == "__main__":
    main()
