"""Back-translation (book ch. 5): paraphrase training texts by translating them to another
language and back with two Hugging Face translation models (e.g. Helsinki-NLP/opus-mt-en-de and
opus-mt-de-en). Done once, before training, as it is far too slow to do per batch."""

from __future__ import annotations

from collections.abc import Sequence

from ptcli.errors import UsageError, flatten


def _translator(name: str, device):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ptcli.models.hub import quiet_transformers

    from .models import model_folder

    folder = model_folder(name)
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).to(device).eval()
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"{name} cannot be used as a translation model: {flatten(exc, 200)}") from exc
    return tokenizer, model


def translate(texts: Sequence[str], name: str, *, device, batch_size: int = 16, max_new_tokens: int = 256,
              description: str = "translating") -> list[str]:
    import torch

    from ptcli.output import progress

    tokenizer, model = _translator(name, device)
    # Generating past the position table fails deep inside the model; stop before it.
    limit = getattr(model.config, "max_position_embeddings", None)
    max_new_tokens = min(max_new_tokens, limit) if limit else max_new_tokens
    out: list[str] = []
    with progress() as bar, torch.inference_mode():
        task = bar.add_task(description, total=len(texts))
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            batch = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=limit).to(device)
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
            out += tokenizer.batch_decode(generated, skip_special_tokens=True)
            bar.advance(task, len(chunk))
    return out


def back_translate(texts: Sequence[str], to_model: str, back_model: str, *, device, batch_size: int = 16) -> list[str]:
    """Each text translated with ``to_model`` and back with ``back_model`` (empty when a model
    produced nothing)."""
    there = translate(texts, to_model, device=device, batch_size=batch_size, description="back-translation (there)")
    return translate(there, back_model, device=device, batch_size=batch_size, description="back-translation (back)")
