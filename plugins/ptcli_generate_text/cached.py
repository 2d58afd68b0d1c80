"""Decoding with an exported step (ptcli_generate_text.exporting): the prompt goes through
once, then each new token is one step that reads and grows the key/value cache. The settings
are transformers' own logits processors and stopping criteria, so greedy decoding gives the
eager model's tokens and sampling draws from the same distribution."""

from __future__ import annotations

from types import SimpleNamespace


class CachedLanguageModel:
    """An exported cached step with the surface generate-text uses of a transformers model:
    ``config``, ``to``, ``eval`` and ``generate``."""

    def __init__(self, step) -> None:
        self.step = step
        meta = step.meta
        self.config = SimpleNamespace(**meta.get("config", {}))
        cache = meta["cache"]
        self.layers, self.heads, self.head_size = cache["layers"], cache["heads"], cache["head_size"]

    def to(self, device=None, *args, **kwargs) -> CachedLanguageModel:
        import torch

        if device is not None and not isinstance(device, torch.dtype):
            self.step.to(device)
        return self

    def eval(self) -> CachedLanguageModel:
        return self

    def generate(self, input_ids, *, max_new_tokens: int, num_return_sequences: int = 1, repetition_penalty: float = 1.0,
                 attention_mask=None, pad_token_id=None, do_sample: bool = False, temperature=None, top_k=None,
                 top_p=None, stop_strings=None, tokenizer=None, streamer=None, use_cache: bool = True,
                 stopping_criteria=None):
        """transformers' ``generate`` for the settings generate-text passes: the prompt and the
        new tokens, (rows, prompt + new), rows that ended padded with ``pad_token_id``."""
        import torch
        from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                            TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
        from transformers.generation.stopping_criteria import StopStringCriteria

        ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        rows = ids.shape[0]
        processors = LogitsProcessorList()
        if repetition_penalty and repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        if do_sample:
            if temperature is not None and temperature != 1.0:
                processors.append(TemperatureLogitsWarper(temperature))
            if top_k:
                processors.append(TopKLogitsWarper(top_k))
            if top_p is not None and top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p))
        stop = StopStringCriteria(tokenizer=tokenizer, stop_strings=list(stop_strings)) if stop_strings else None
        eos = getattr(self.config, "eos_token_id", None)
        pad = pad_token_id if pad_token_id is not None else eos
        if streamer is not None:
            streamer.put(ids[:1].cpu())
        past = [torch.zeros(rows, self.heads, 0, self.head_size) for _ in range(2 * self.layers)]
        running = torch.ones(rows, dtype=torch.bool)
        new, length = ids, 0
        for _ in range(max_new_tokens):
            if stopping_criteria is not None and bool(stopping_criteria(ids, None).all()):
                break
            count = new.shape[1]
            positions = torch.arange(length, length + count).expand(rows, count)
            mask = torch.ones(rows, length + count, dtype=torch.long)
            logits, *past = self.step(new, mask, positions, *past)
            length += count
            scores = processors(ids, logits[:, -1, :].float().cpu())
            if do_sample:
                chosen = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)
            else:
                chosen = scores.argmax(dim=-1)
            if pad is not None:
                chosen = torch.where(running, chosen, torch.full_like(chosen, pad))
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            if streamer is not None:
                streamer.put(chosen[:1])
            if eos is not None:
                running &= chosen != eos
            if stop is not None:
                running &= ~stop(ids, scores)
            if not running.any():
                break
            new = chosen[:, None]
        if streamer is not None:
            streamer.end()
        return ids
