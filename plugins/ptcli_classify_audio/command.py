"""`ptcli classify-audio`: the command. Heavy imports happen inside functions."""

from __future__ import annotations

from typing import Annotated

import typer

from ptcli.errors import UsageError
from ptcli.cli.options import DeviceOption, JsonOption, TrustRemoteCodeOption, batch_size_option, checkpoint_option, model_option, paths_argument

from . import RECIPE


def classify_audio(
    paths: paths_argument("Sound files (.wav, .flac, .ogg), folders or globs.") = None,
    model: model_option("A Hugging Face audio classifier (org/name, downloaded once) or local folder [default without --checkpoint: MIT/ast-finetuned-audioset-10-10-0.4593, AudioSet's 527 classes].", "NAME|PATH") = None,
    checkpoint: checkpoint_option("A checkpoint from `ptcli train recipes/esc50-*.yaml`.") = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions per file.")] = 3,
    batch_size: batch_size_option("Files per forward pass.") = 16,
    window: Annotated[bool, typer.Option("--window", help="Classify long files in clip-length windows (half overlapping) and average them, instead of cutting them to one clip.")] = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Classify sound files with a trained checkpoint, or a Hugging Face audio classifier
    (AudioSet's by default). Each file is mixed down to mono,
    resampled to the model's rate and padded or cut to its clip length (or, with --window,
    split into clips whose predictions are averaged). Unreadable files are reported and
    skipped; the exit code is then 1."""
    from ptcli.devices import resolve_device
    from ptcli.models.hub import set_trust_remote_code
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import run
    from ptcli.inference.inputs import expand_inputs
    from ptcli.models.loading import check_request
    from ptcli.inference.results import emit_results, prediction_format

    from .predictor import AudioClassifier

    if not paths:
        raise UsageError("give at least one sound file, folder or glob (see `ptcli classify-audio --help`)")
    inputs = expand_inputs(paths, RECIPE.data_adapter.extensions)
    set_trust_remote_code(trust_remote_code)
    check_request(RECIPE, checkpoint=checkpoint, model=model, options=("--model", "--checkpoint"), device=device)
    target = resolve_device(device, RECIPE.devices.devices)
    predictor = AudioClassifier.load(Source(checkpoint, model), target, top_k=top_k, window=window)
    results = run(predictor, inputs, batch_size=batch_size, description="classifying")
    emit_results(results, prediction_format(fields=lambda item, result: result), total=len(inputs), json_output=json_output)
