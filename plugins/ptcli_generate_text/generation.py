"""Sampling from a causal LM with the KV cache on, optionally streaming text as it comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ptcli.errors import UsageError


#: Temperatures below it decode greedily; repetition penalties are within these bounds (beyond
#: them the logits overflow and sampling fails on inf or NaN).
MIN_TEMPERATURE = 0.01
REPETITION_PENALTY_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int = 50
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None
    #: Texts that end a generation where they first appear (not part of it), as OpenAI's stop.
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        """Temperature 0, or below 0.01: sampling there is greedy decoding in all but name, and
        the logits divided by a temperature of 1e-300 overflow to inf."""
        return self.temperature < MIN_TEMPERATURE


@dataclass
class Result:
    prompt: str
    generations: list[str]
    new_tokens: int
    seconds: float
    prompt_tokens: int = 0
    #: Per generation: the tokens it made, and why it ended ("stop": the end-of-text token or a
    #: stop text; "length": max_new_tokens).
    completion_tokens: list[int] | None = None
    finish_reasons: list[str] | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def encode_prompt(lm, prompt: str, max_new_tokens: int):
    if not prompt.strip():
        raise UsageError("the prompt is empty; give some text to continue")
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    check_fits(lm, ids.shape[1], max_new_tokens)
    return ids


def check_fits(lm, length: int, max_new_tokens: int, name: str = "--max-new-tokens") -> None:
    """A prompt of ``length`` tokens and ``max_new_tokens`` more must fit the model's context;
    ``name``: the setting as the user gave it (the flag, or a request's field)."""
    context = lm.context
    if length >= context:
        raise UsageError(f"the prompt is {length} tokens; {lm.name} reads at most {context}: shorten it")
    if length + max_new_tokens > context:
        flag = name.startswith("-")
        said = f"{name} {max_new_tokens}" if flag else f"{name}={max_new_tokens}"
        fix = f"use {name} {context - length} or less" if flag else f"set {name} to {context - length} or less"
        raise UsageError(f"the prompt ({length} tokens) plus {said} exceeds the model's context of {context} tokens; {fix}")


class _TextSink:
    """A transformers streamer: passes on the text of one sequence's new tokens as it grows by
    whole characters (a multi-byte character can span tokens). Each step decodes only the
    tokens since the last text it passed on, plus those before it (``prefix``: a tokenizer may
    drop a word's leading space at the start of what it decodes), so that streaming costs the
    same at token 500 as at token 5 rather than decoding everything each time."""

    def __init__(self, tokenizer, write: Callable[[str], None]) -> None:
        self.tokenizer, self.write = tokenizer, write
        self.ids: list[int] = []
        self.prefix = self.read = 0
        self.prompt_seen = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _flush(self, final: bool) -> None:
        before = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        if len(text) > len(before) and (final or not text.endswith("\ufffd")):
            self.write(text[len(before):])
            self.prefix, self.read = self.read, len(self.ids)

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids += value.reshape(-1).tolist()
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    """``text`` up to the first of ``stops`` in it, and whether one was there."""
    ends = [text.find(stop) for stop in stops if stop and stop in text]
    return (text[:min(ends)], True) if ends else (text, False)


class _StopFilter:
    """Passes streamed text on, holding back what may be the start of a stop text, and nothing
    from the first stop text on: a stream shows what the whole answer shows."""

    def __init__(self, stops, write: Callable[[str], None]) -> None:
        self.stops, self.write = [stop for stop in stops if stop], write
        self.held, self.stopped = "", False

    def __call__(self, text: str) -> None:
        if self.stopped:
            return
        self.held += text
        kept, found = cut_at_stop(self.held, self.stops)
        if found:
            self.stopped = True
            self.held = ""
            if kept:
                self.write(kept)
            return
        partial = max((k for stop in self.stops for k in range(1, len(stop)) if self.held.endswith(stop[:k])), default=0)
        ready = self.held[:len(self.held) - partial]
        if ready:
            self.write(ready)
            self.held = self.held[len(ready):]

    def end(self) -> None:
        if not self.stopped and self.held:
            self.write(self.held)
        self.held = ""


def _stop_when_cancelled():
    """A stopping criterion that ends every sequence at the next token once the server says
    nobody waits for them (ptcli.inference.cancellation)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from ptcli.inference import cancellation

    class WhenCancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancellation.requested(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([WhenCancelled()])


def generate(lm, prompt: str, settings: Settings, *, device, stream: Callable[[str], None] | None = None) -> Result:
    """Continue ``prompt``; with ``stream`` (one sequence only), pass text pieces to it as they
    are generated."""
    import torch

    ids = encode_prompt(lm, prompt, settings.max_new_tokens).to(device)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    kwargs = {
        "max_new_tokens": settings.max_new_tokens,
        "num_return_sequences": settings.num_return_sequences,
        "repetition_penalty": settings.repetition_penalty,
        "use_cache": True,
        "attention_mask": torch.ones_like(ids),
        "pad_token_id": lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id,
    }
    if settings.greedy:
        kwargs.update(do_sample=False, top_k=None, top_p=None, temperature=None)
    else:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=lm.tokenizer)
    gate = None
    if stream is not None:
        gate = _StopFilter(settings.stop, stream) if settings.stop else None
        kwargs["streamer"] = _TextSink(lm.tokenizer, gate or stream)
    kwargs["stopping_criteria"] = _stop_when_cancelled()
    start = time.perf_counter()
    with torch.inference_mode():
        output = lm.model.generate(ids, **kwargs)
    seconds = time.perf_counter() - start
    from ptcli.inference import cancellation

    if cancellation.requested():  # stopped short: nobody waits for this result
        raise cancellation.Cancelled("the generation was stopped: nobody waits for it")
    if gate is not None:
        gate.end()
    new = output[:, ids.shape[1]:]
    ends = {token for token in (lm.tokenizer.eos_token_id, kwargs["pad_token_id"]) if token is not None}
    texts, counts, reasons = [], [], []
    for row in new.tolist():
        made = next((i for i, token in enumerate(row) if token in ends), None)
        text, stopped = cut_at_stop(lm.tokenizer.decode(row[:made], skip_special_tokens=True), settings.stop)
        texts.append(text)
        counts.append(len(row) if made is None else made)
        reasons.append("stop" if stopped or made is not None else "length")
    return Result(prompt, texts, sum(counts), seconds, int(ids.shape[1]), counts, reasons)
