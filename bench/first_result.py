"""Time to first result of every recipe's offline default path, each a fresh process as a user
runs it, beside `python -c "import torch"`; then the import profile (-X importtime) of the
slowest, and the heavy libraries each path imports (a path should import only what it uses).

Paths: classify-image examples/cat.jpg (EfficientNet-Lite0, packaged weights); classify-text,
classify-audio, super-resolve and detect with small checkpoints made here (their defaults are
downloads); generate-text with a small local model folder; attack and explain on the cat.

    python bench/first_result.py [--runs 3]
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from startup import median_seconds as seconds

REPO = Path(__file__).resolve().parents[1]
CAT = REPO / "examples" / "cat.jpg"
HEAVY = ("torchvision", "transformers", "timm", "torchaudio", "basicsr", "cv2", "onnxruntime", "onnx", "fastapi",
         "uvicorn", "scipy", "sklearn", "matplotlib", "accelerate", "tensorboard", "torch._dynamo", "faster_coco_eval")


def make_inputs(folder: Path) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "plugins"))
    sys.path.insert(0, str(REPO / "tests"))
    from ptcli.models.checkpoints import save_checkpoint
    from ptcli.plugins.tiny_inputs import write_clip
    from ptcli_classify_audio.models import build_audionet
    from ptcli_classify_text.exporting import SAMPLE_TEXTS
    from ptcli_classify_text.nets import RecurrentClassifier
    from ptcli_classify_text.tokenization import TextEncoder, train_tokenizer
    from ptcli_detect.models import build_lite0_fasterrcnn
    from ptcli_super_resolve.models import build_rrdbnet

    torch.manual_seed(0)
    tok = train_tokenizer(list(SAMPLE_TEXTS) * 3, kind="word", vocab_size=200)
    enc = TextEncoder(tok, max_length=64, pad_id=tok.token_to_id("[PAD]"))
    net = RecurrentClassifier(tok.get_vocab_size(), 2, kind="bilstm", embed_dim=32, hidden=32)
    text = save_checkpoint(folder / "text", net.state_dict(), recipe="classify-text", model="bilstm", classes=["neg", "pos"],
                           extra={"model_args": {"vocab_size": tok.get_vocab_size(), "embed_dim": 32, "hidden": 32},
                                  "tokenizer": enc.state()})
    audio = save_checkpoint(folder / "audio", build_audionet(num_classes=3).state_dict(), recipe="classify-audio", model="audionet",
                            classes=["a", "b", "c"], preprocessing={"sample_rate": 16000, "clip_samples": 16000 * 5})
    sr = save_checkpoint(folder / "sr", build_rrdbnet(scale=4, num_feat=32, num_block=6, num_grow_ch=16).state_dict(),
                         recipe="super-resolve", model="rrdbnet", preprocessing={"scale": 4})
    det = save_checkpoint(folder / "det", build_lite0_fasterrcnn(num_classes=2).state_dict(), recipe="detect",
                          model="fasterrcnn_lite0_fpn", classes=["thing"], extra={"model_args": {}})
    from conftest import make_text_rows, make_tiny_gpt2

    gpt2 = make_tiny_gpt2(folder / "gpt2", [t for t, _ in make_text_rows(40, seed=5)])
    small = folder / "small.jpg"
    from PIL import Image

    Image.open(CAT).resize((128, 85)).save(small)
    return {"text": text, "audio": audio, "sr": sr, "det": det, "gpt2": gpt2, "clip": write_clip(folder / "clip.wav", 1.0),
            "small": small, "out": folder / "out"}


def paths(inputs: dict) -> dict[str, list[str]]:
    return {
        "classify-image": ["classify-image", str(CAT)],
        "classify-text (checkpoint)": ["classify-text", "What a wonderful surprise", "--checkpoint", str(inputs["text"])],
        "classify-audio (checkpoint)": ["classify-audio", str(inputs["clip"]), "--checkpoint", str(inputs["audio"])],
        "super-resolve (checkpoint)": ["super-resolve", str(inputs["small"]), "--checkpoint", str(inputs["sr"]), "-o",
                                       str(inputs["out"]), "--overwrite"],
        "generate-text (local model)": ["generate-text", "The team", "--model", str(inputs["gpt2"]), "--max-new-tokens", "5"],
        "detect (checkpoint)": ["detect", str(CAT), "--checkpoint", str(inputs["det"])],
        "attack": ["attack", str(CAT), "-o", str(inputs["out"]), "--overwrite"],
        "explain": ["explain", str(CAT), "-o", str(inputs["out"]), "--overwrite"],
    }


def import_profile(command: list[str]) -> tuple[list[tuple[int, str]], set[str]]:
    """(the slowest top-level imports in µs, cumulative), the heavy libraries imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    modules = {name for _, _, name in rows}
    heavy = {name for name in HEAVY if name in modules}
    top = sorted(((us, name) for us, depth, name in rows if depth <= 1), reverse=True)[:10]
    return top, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch_s = seconds([sys.executable, "-c", "import torch"], args.runs)
    label = 'python -c "import torch"'
    print(f"{label:<32} {torch_s:6.2f} s")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp))
        for name, command in paths(inputs).items():
            full = [sys.executable, "-m", "ptcli", *command]
            results[name] = (seconds(full, args.runs), import_profile(full[1:]), full[1:])
            taken, (_, heavy), _ = results[name]
            print(f"{name:<32} {taken:6.2f} s  {taken / torch_s:4.2f}x import torch  heavy: {', '.join(sorted(heavy)) or 'none'}",
                  flush=True)
        slowest = max(results, key=lambda n: results[n][0])
        print(f"\nimport profile of the slowest, {slowest} (cumulative ms, top-level modules):")
        for us, module in results[slowest][1][0]:
            print(f"  {us / 1000:8.1f}  {module}")


if __name__ == "__main__":
    main()
