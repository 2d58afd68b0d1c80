"""`ptcli classify-text`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import DeviceOption, JsonOption, TrustRemoteCodeOption, batch_size_option

from . import RECIPE

_PREVIEW = 70


def gather_texts(texts: list[str] | None, file: Path | None, column: str | None, encoding: str) -> list[str]:
    """Texts from the arguments (``-`` reads standard input, one text per line) or a file."""
    from .textfiles import read_texts

    texts = list(texts or [])
    if file is not None:
        if texts:
            raise UsageError("give texts as arguments or with --file, not both")
        found = read_texts(file, column=column, encoding=encoding)
        if not found:
            raise UsageError(f"{file} holds no texts; give a file with one text per line (or a --column of a table)")
        return found
    if column is not None:
        raise UsageError("--column needs --file")
    gathered: list[str] = []
    for text in texts:
        if text == "-":
            try:
                gathered += [check_decoded(line.rstrip("\r\n"), encoding) for line in sys.stdin]
            except UnicodeDecodeError as exc:
                raise UsageError(f"standard input is not {encoding} text; give its encoding with --encoding") from exc
        else:
            gathered.append(text)
    if not gathered:
        raise UsageError("give at least one text, - for standard input, or --file FILE (see `ptcli classify-text --help`)")
    return gathered


def check_decoded(text: str, encoding: str) -> str:
    """Standard input decoded with surrogateescape (Python's choice under a C or POSIX locale)
    turns bytes that are not text into lone surrogates, which tokenizers reject with a
    TypeError: say what is wrong instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnicodeDecodeError(encoding, b"", 0, 1, "not text") from exc
    return text


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 3] + "..."



def classify_text(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to classify; - reads standard input, one text per line.", show_default=False, metavar="TEXT"),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", metavar="FILE", help="Texts from a file: one per line (.txt), or a column of a CSV, TSV or JSONL file.")
    ] = None,
    column: Annotated[str | None, typer.Option(metavar="NAME", help="The text column of a CSV/TSV/JSONL --file [default: text].")] = None,
    encoding: Annotated[str, typer.Option(metavar="ENC", help="Encoding of --file and standard input.")] = "utf-8",
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="NAME|PATH", help="A Hugging Face sequence-classification model (org/name, "
                     "downloaded once) or a local model folder [default: distilbert/distilbert-base-uncased-finetuned-sst-2-english].",
                     show_default=False),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(metavar="CKPT", help="A checkpoint from `ptcli train` (NAME.safetensors with its NAME.json sidecar).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions per text.")] = 2,
    batch_size: batch_size_option("Texts per forward pass.") = 32,
    max_length: Annotated[
        int | None, typer.Option(min=2, metavar="N", help="Cut texts to N tokens [default: the model's limit].")
    ] = None,
    trust_remote_code: TrustRemoteCodeOption = False,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Classify texts with a sentiment model (the default, from the Hugging Face Hub) or a
    trained checkpoint. Prints the top-k labels per text; with --json, one
    {"text", "predictions": [{"label", "score"}]} object per text per line. Empty texts are
    reported and skipped (exit code 1); texts longer than the model's limit are cut, with a
    warning."""
    from ptcli.devices import resolve_device
    from ptcli.models.hub import set_trust_remote_code
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import load_predictor, run
    from ptcli.models.loading import check_request
    from ptcli.output import format_predictions, warn
    from ptcli.inference.results import ResultFormat, emit_results

    if file is None and texts and "-" in texts and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        sys.stdin.reconfigure(encoding=encoding)
    inputs = gather_texts(texts, file, column, encoding)
    set_trust_remote_code(trust_remote_code)
    check_request(RECIPE, checkpoint=checkpoint, model=model, options=("--model", "--checkpoint"), device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    predictor = load_predictor(RECIPE, Source(checkpoint, model), target, top_k=top_k, max_length=max_length)
    # Texts are tokenised in this process: Rust tokenizers are fast and threaded, so worker
    # processes would only add start-up time.
    results = run(predictor, inputs, batch_size=batch_size, workers=0, description="classifying")

    def warn_cut() -> None:
        if predictor.encode.truncated:
            warn(f"{predictor.encode.truncated} of {len(inputs)} texts were longer than "
                 f"{predictor.classifier.encoder.max_length} tokens and were cut to fit the model")

    fmt = ResultFormat(human=lambda text, result: format_predictions(_preview(text), result["predictions"]),
                       fields=lambda text, result: {"predictions": result["predictions"], "truncated": result["truncated"]}, key=lambda text: {"text": text},
                       label=lambda number, text: f"text {number}", noun="texts", failed="could not be classified")
    emit_results(results, fmt, total=len(inputs), json_output=json_output, before_exit=warn_cut)
