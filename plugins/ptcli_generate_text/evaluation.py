"""`ptcli eval` for generate-text checkpoints: perplexity on a text file or folder."""

from __future__ import annotations

import math
from pathlib import Path


def evaluate_checkpoint(checkpoint: Path, data: Path, *, device, batch_size: int) -> dict:
    from .models import load_checkpoint_model

    return evaluate_lm(load_checkpoint_model(checkpoint), data, device=device, batch_size=batch_size, checkpoint=checkpoint)


def evaluate_lm(lm, data: Path, *, device, batch_size: int, checkpoint) -> dict:
    """Loss and perplexity of language model ``lm`` on ``data`` (a text file or folder), in
    blocks of its context (at most 1024 tokens)."""
    import torch

    from ptcli.errors import UsageError

    from .textdata import blocks, read_corpus, token_stream

    if not hasattr(lm.model, "forward"):
        raise UsageError(f"{checkpoint} is an export of the decoding step; score the checkpoint it came from")
    block_size = min(int(lm.context), 1024)
    ids = token_stream(read_corpus(data), lm.tokenizer)
    rows = blocks(ids, block_size, block_size) or ([ids] if len(ids) > 1 else [])
    if not rows:
        raise UsageError(f"{data} is too short to score")
    model = lm.model.to(device).eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = torch.tensor(rows[start:start + batch_size], device=device)
            predicted = batch.numel() - batch.shape[0]
            total += float(model(input_ids=batch, labels=batch).loss) * predicted
            count += predicted
    loss = total / count
    return {"checkpoint": str(checkpoint), "data": str(data), "blocks": len(rows), "block_size": len(rows[0]),
            "loss": round(loss, 6), "perplexity": round(math.exp(loss), 4)}


def format_report(report: dict) -> str:
    return (f"blocks      {report['blocks']} of {report['block_size']} tokens\nloss        {report['loss']:.4f}\n"
            f"perplexity  {report['perplexity']:.2f}")
