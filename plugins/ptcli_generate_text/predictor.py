"""generate-text's inference contract: a prompt with its sampling settings (a request may set
each) through the language model with its KV cache; the result is the command's --json object
(prompt, generations, tokens_per_second), or its text a piece at a time (``stream``). The
command's one-shot path and `ptcli serve` both run this."""

from __future__ import annotations

from dataclasses import replace

from ptcli.inference.contract import PROMPT, Predictor, Sample, Source

#: What a request may set, and the type each takes (JSON numbers: ints are floats too).
REQUEST_SETTINGS = {"max_new_tokens": int, "temperature": float, "top_k": int, "top_p": float,
                    "repetition_penalty": float, "num_return_sequences": int, "seed": int}


class TextGenerator(Predictor):
    kind = PROMPT
    collate = "list"
    streams = True

    def __init__(self, lm, device, settings, *, title: str = "") -> None:
        lm.model.to(device).eval()
        self.lm, self.device, self.settings, self.title = lm, device, settings, title

    @classmethod
    def load(cls, source: Source, device, *, settings=None, dtype=None) -> TextGenerator:
        from ptcli.errors import UsageError

        from .generation import Settings
        from .models import DEFAULT_MODEL, load_language_model

        if source.weights is not None:
            raise UsageError("generate-text takes no --weights; give a checkpoint, or --model NAME|FOLDER")
        lm = load_language_model(source.model, source.checkpoint, dtype=dtype)
        return cls(lm, device, settings or Settings(), title=f"generate-text ({source.describe(DEFAULT_MODEL)})")

    def evaluate(self, data, *, batch_size: int) -> dict:
        """Loss and perplexity on a text file or folder, by the model as loaded."""
        from .evaluation import evaluate_lm

        return evaluate_lm(self.lm, data, device=self.device, batch_size=batch_size, checkpoint=self.source.describe())

    def format_evaluation(self, report: dict) -> str:
        from .evaluation import format_report

        return format_report(report)

    def decode(self, item) -> Sample:
        """A prompt (a text, or a request's JSON object: {"prompt", and any of REQUEST_SETTINGS}),
        or a conversation ({"messages": [...], ...}, through the chat template), checked against
        the model's context, with its settings."""
        from ptcli.errors import InputError

        from .generation import check_fits

        request = item if isinstance(item, dict) else {"prompt": item}
        plain_chat = False
        if "messages" in request:
            from .chat import chat_prompt, has_template, read_messages

            if "prompt" in request:
                raise InputError("send a prompt or messages, not both")
            request = dict(request)
            request["prompt"] = chat_prompt(self.lm.tokenizer, read_messages(request.pop("messages")))
            plain_chat = not has_template(self.lm.tokenizer)
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError('the prompt is empty or missing; send {"prompt": "text to continue", ...}')
        settings = self._settings(request)
        if plain_chat:
            from .chat import PLAIN_STOP

            settings = replace(settings, stop=(*settings.stop, PLAIN_STOP))
        if request.get("stream") is True and settings.num_return_sequences != 1:
            raise InputError("a stream carries one generation; drop num_return_sequences or stream")
        try:
            check_fits(self.lm, len(self.lm.tokenizer(prompt)["input_ids"]), settings.max_new_tokens,
                       "max_new_tokens" if isinstance(item, dict) else "--max-new-tokens")
        except Exception as exc:  # UsageError's words, for this one input
            raise InputError(str(exc)) from exc
        return Sample((prompt, settings))

    def _settings(self, request: dict):
        from ptcli.errors import InputError

        unknown = sorted(set(request) - set(REQUEST_SETTINGS) - {"prompt", "messages", "stream", "stop"})
        if unknown:
            raise InputError(f"unknown field {unknown[0]!r}; a request may set "
                             f"{', '.join(['prompt', 'messages', *REQUEST_SETTINGS, 'stop', 'stream'])}")
        changes = {"stop": _stops(request.get("stop"))} if request.get("stop") is not None else {}
        for key, kind in REQUEST_SETTINGS.items():
            value = request.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise InputError(f"{key} must be a{'n integer' if kind is int else ' number'} (got {value!r})")
            changes[key] = kind(value)
        settings = replace(self.settings, **changes)
        from ptcli.serving.requests import MAX_GENERATIONS

        if settings.num_return_sequences > MAX_GENERATIONS:
            raise InputError(f"num_return_sequences is at most {MAX_GENERATIONS} a request (got {settings.num_return_sequences})")
        from .generation import REPETITION_PENALTY_RANGE

        low, high = REPETITION_PENALTY_RANGE
        if settings.max_new_tokens < 1 or settings.num_return_sequences < 1 or not 0 <= settings.temperature <= 100 \
                or not 0 <= settings.top_p <= 1 or not low <= settings.repetition_penalty <= high or settings.top_k < 0:
            raise InputError(f"out of range: max_new_tokens and num_return_sequences >= 1, 0 <= temperature <= 100, "
                             f"0 <= top_p <= 1, {low:g} <= repetition_penalty <= {high:g}, top_k >= 0")
        return settings

    def forward(self, batch: list) -> list:
        from .generation import generate

        return [generate(self.lm, prompt, settings, device=self.device) for prompt, settings in batch]

    def postprocess(self, result, meta) -> dict:
        return {"prompt": result.prompt, "generations": result.generations,
                "tokens_per_second": round(result.tokens_per_second, 2), "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens, "finish_reasons": result.finish_reasons}

    def stream(self, sample: Sample, emit) -> dict:
        from .generation import generate

        prompt, settings = sample.data
        if settings.num_return_sequences != 1:
            from ptcli.errors import InputError

            raise InputError("a stream carries one generation; drop num_return_sequences or stream")
        return self.postprocess(generate(self.lm, prompt, settings, device=self.device, stream=emit), None)

    def warmup(self):
        return {"prompt": "Hello", "max_new_tokens": 1}



def _stops(value) -> tuple[str, ...]:
    """A request's stop: a text or a list of up to 4 (OpenAI's limit)."""
    from ptcli.errors import InputError

    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(stop, str) and stop for stop in stops):
        raise InputError("stop must be a non-empty text or a list of up to 4")
    return tuple(stops)
