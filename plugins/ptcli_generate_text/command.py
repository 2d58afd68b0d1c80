"""`ptcli generate-text`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import DeviceOption, JsonOption, TimingsOption, TrustRemoteCodeOption, checkpoint_option

from . import RECIPE

DTYPES = ("auto", "fp32", "bf16", "fp16")


def _dtype(name: str, device):
    import torch

    if name not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}")
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if name == "fp16" and device.type == "cpu":
        raise UsageError("--dtype fp16 needs a GPU; on the CPU use fp32 or bf16")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _read_prompt(prompt: str | None) -> str:
    if prompt == "-":
        try:
            text = sys.stdin.read().rstrip("\n")
            text.encode("utf-8")  # lone surrogates: bytes that were not text (surrogateescape)
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise UsageError("standard input is not UTF-8 text; give the prompt as UTF-8") from None
        return text
    if prompt is None:
        raise UsageError("give a prompt, - for standard input, or --interactive (see `ptcli generate-text --help`)")
    return prompt


def _generations_format():
    from ptcli.inference.results import ResultFormat

    return ResultFormat(
        human=lambda prompt, result: "\n\n".join(prompt + generation for generation in result["generations"]),
        fields=lambda prompt, result: {"generations": result["generations"], "tokens_per_second": result["tokens_per_second"]},
        key=lambda prompt: {"prompt": prompt}, label=lambda number, prompt: f"prompt {number}", noun="prompts")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def generate_text(
    prompt: Annotated[str | None, typer.Argument(metavar="PROMPT", help="Text to continue; - reads standard input.", show_default=False)] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="NAME|PATH", help="gpt2 (default), gpt2-medium, gpt2-large, distilgpt2, any "
                     "Hugging Face causal LM (org/name, downloaded once) or a local model folder.", show_default=False),
    ] = None,
    checkpoint: checkpoint_option("A checkpoint from `ptcli train recipes/gpt2-finetune.yaml`.") = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, metavar="N", help="Tokens to generate.")] = 50,
    temperature: Annotated[float, typer.Option(min=0.0, metavar="T", help="Sampling temperature; 0 (or below 0.01) picks the likeliest token (greedy).")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, metavar="K", help="Sample among the K likeliest tokens (0: all).")] = 50,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, metavar="P", help="Nucleus sampling: the smallest set of tokens with probability P.")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(metavar="R", help="From 0.01 to 100; above 1 discourages repeating tokens, 1 leaves them be.")] = 1.0,
    num_return_sequences: Annotated[int, typer.Option(min=1, metavar="N", help="Continuations per prompt.")] = 1,
    seed: Annotated[int | None, typer.Option(metavar="S", help="Seed for reproducible sampling.")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", metavar="TEXT", help="End the generation where TEXT first appears (not shown); repeatable, up to 4.", show_default=False)] = None,
    stream: Annotated[bool | None, typer.Option("--stream/--no-stream", help="Print tokens as they are generated [default: on a terminal].", show_default=False)] = None,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Keep asking for prompts (empty line or Ctrl-D ends).")] = False,
    dtype: Annotated[str, typer.Option(metavar="auto|fp32|bf16|fp16", help="Weights precision; auto: fp32 on the CPU, fp16 on a GPU.")] = "auto",
    export_hf: Annotated[Path | None, typer.Option("--export-hf", metavar="DIR", help="Write the model (e.g. a --checkpoint) as a standard Hugging Face folder and exit.")] = None,
    trust_remote_code: TrustRemoteCodeOption = False,
    device: DeviceOption = "auto",
    timings: TimingsOption = False,
    json_output: JsonOption = False,
) -> None:
    """Continue a prompt with GPT-2 (default), another Hugging Face causal language model or a
    fine-tuned checkpoint. Tokens stream to stdout as they are generated; --seed makes sampling
    reproducible; --json prints {"prompt", "generations", "tokens_per_second"}."""
    from ptcli.devices import resolve_device
    from ptcli.inference.timings import stage, timed_run
    from ptcli.models.hub import set_trust_remote_code
    from ptcli.models.loading import check_request

    from .generation import Settings
    from .models import load_language_model

    if export_hf is None and not interactive:
        prompt = _read_prompt(prompt)
        if not prompt.strip():  # before any weights load: a usage error, at once
            raise UsageError("the prompt is empty; give some text to continue")
    from .generation import REPETITION_PENALTY_RANGE

    low, high = REPETITION_PENALTY_RANGE
    if not low <= repetition_penalty <= high:
        raise UsageError(f"--repetition-penalty must be from {low:g} to {high:g} (got {repetition_penalty:g}); "
                         "1 leaves repetitions be")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}")
    check_request(RECIPE, checkpoint=checkpoint, model=model, options=("--model", "--checkpoint"), device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    precision = _dtype(dtype, target)
    set_trust_remote_code(trust_remote_code)
    stops = tuple(stop or ())
    if len(stops) > 4 or not all(stops):
        raise UsageError("--stop takes a non-empty text, up to 4 times")
    settings = Settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, num_return_sequences, seed, stops)
    if timings and (export_hf is not None or interactive):
        raise UsageError("--timings times one generation; not with --interactive or --export-hf")
    with timed_run(timings, target, json_output):
        with stage("load"):
            lm = load_language_model(model, checkpoint, dtype=precision)
        _generate(lm, target, settings, prompt, export_hf=export_hf, interactive=interactive, stream=stream,
                  json_output=json_output)


def _generate(lm, target, settings, prompt: str | None, *, export_hf, interactive: bool, stream: bool | None,
              json_output: bool) -> None:
    from ptcli.inference.contract import Sample
    from ptcli.inference.results import emit_results
    from ptcli.inference.timings import stage
    from ptcli.output import emit, emit_json

    from .models import export_hf as write_hf
    from .predictor import TextGenerator

    if export_hf is not None:
        folder = write_hf(lm, export_hf)
        emit_json({"exported": str(folder)}) if json_output else emit(str(folder))
        return
    predictor = TextGenerator(lm, target, settings)  # the inference contract `ptcli serve` runs too
    streaming = (sys.stdout.isatty() if stream is None else stream) and not json_output and settings.num_return_sequences == 1

    def run(text: str) -> None:
        # Not through predictor.decode: its errors are a request's (400); the command's are
        # usage errors, raised by the generation itself.
        if streaming:  # each token written as it is made: all of it is forward
            _write(text)
            with stage("forward"):
                predictor.stream(Sample((text, settings)), _write)
            _write("\n")
            return
        with stage("forward"):
            output = predictor.forward([(text, settings)])[0]
        with stage("postprocess"):
            result = predictor.postprocess(output, None)
        with stage("write"):
            emit_results([(text, result)], _generations_format(), total=1, json_output=json_output)

    if not interactive:
        run(prompt)
        return
    while True:
        sys.stderr.write("prompt> ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line.strip():
            return
        try:
            run(line.rstrip("\n"))
        except UsageError as exc:
            sys.stderr.write(f"error: {exc}\n")
