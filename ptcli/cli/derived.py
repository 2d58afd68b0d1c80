"""The command a recipe gets from its Predictor alone (a ``Command`` with no ``target``): the
shared option block (PATH... or TEXT..., --model, --weights, --checkpoint, --batch-size,
--workers, --device, --json, --list-models) around the core's loop, each result printed by
the predictor's ``describe`` or as its JSON fields. A recipe with options of its own writes its
command, and runs it through ptcli.inference.runner the same way.
"""

from __future__ import annotations

from ptcli.inference.contract import Source
from ptcli.cli.options import (DeviceOption, DtypeOption, EndOption, JsonOption, ListModelsOption, StartOption, VidStrideOption,
                               WorkersOption, batch_size_option, checkpoint_option, model_option, paths_argument,
                               weights_option)

Inputs = paths_argument("Input files, folders (searched recursively) or glob patterns; texts for a text recipe; "
                        "for an image recipe videos too (files, image sequences, stream URLs, a webcam's number).")
Model = model_option("A model of the recipe (--list-models) [default: the recipe's default].")


def predictor_command(recipe, help_text: str):
    """A Typer command function running ``recipe``'s Predictor over its inputs."""

    def command(
        inputs: Inputs = None,
        model: Model = None,
        weights: weights_option() = None,
        checkpoint: checkpoint_option() = None,
        batch_size: batch_size_option() = 16,
        workers: WorkersOption = None,
        vid_stride: VidStrideOption = 1,
        start: StartOption = None,
        end: EndOption = None,
        dtype: DtypeOption = "fp32",
        device: DeviceOption = "auto",
        json_output: JsonOption = False,
        list_models: ListModelsOption = False,
    ) -> None:
        from ptcli.video.runner import VideoOptions

        run_command(recipe, inputs, Source(checkpoint, model, weights), batch_size=batch_size, workers=workers,
                    device=device, json_output=json_output, list_models=list_models,
                    video=VideoOptions(vid_stride, start, end), dtype=dtype)

    command.__doc__ = help_text
    return command


def run_command(recipe, inputs: list[str] | None, source: Source, *, batch_size: int, workers: int | None, device: str,
                json_output: bool, list_models: bool, video=None, dtype: str = "fp32") -> None:
    """The derived command's work; an image recipe's video inputs go frame by frame through the
    same predictor (ptcli.video.runner)."""
    from itertools import chain

    from ptcli.devices import resolve_device
    from ptcli.errors import UsageError
    from ptcli.vision.imaging import IMAGE_EXTENSIONS
    from ptcli.inference.inputs import expand_inputs
    from ptcli.models.loading import check_request
    from ptcli.cli.options import list_models as print_models
    from ptcli.refs import load_ref
    from ptcli.inference.results import ResultFormat, emit_results

    from ptcli.inference.contract import AUDIO, IMAGE
    from ptcli.inference.runner import load_predictor, run

    if list_models:
        print_models(recipe, json_output)
        return
    cls = load_ref(recipe.predictor)
    if not inputs:
        raise UsageError(f"give at least one input (see `ptcli {recipe.name} --help`)")
    videos: list = []
    extensions = cls.extensions or (recipe.data_adapter.extensions if recipe.data else IMAGE_EXTENSIONS)
    if cls.kind == IMAGE:
        from ptcli.video.sources import split_inputs

        inputs, videos = split_inputs(inputs, extensions)
    elif cls.kind == AUDIO:
        inputs = expand_inputs(inputs, extensions)
    check_request(recipe, checkpoint=source.checkpoint, model=source.model, weights=source.weights, device=device)
    from ptcli.inference.precision import check_dtype

    target = resolve_device(device, recipe.devices.devices)
    precision = check_dtype(recipe, dtype, target)
    predictor = load_predictor(recipe, source, target)
    predictor.precision = precision
    results = run(predictor, inputs, batch_size=batch_size, workers=workers, description=recipe.name) if inputs else ()
    if videos:
        from ptcli.video.runner import VideoOptions, video_results

        results = chain(results, video_results(predictor, videos, video or VideoOptions(), batch_size=batch_size,
                                               description=recipe.name))
    fmt = ResultFormat(human=predictor.describe, fields=lambda item, result: result)
    emit_results(results, fmt, total=len(inputs) + len(videos), json_output=json_output)
