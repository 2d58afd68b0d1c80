"""The command a recipe gets from its Predictor (a ``Command`` with no ``target``): the options
every recipe shares (PATH... or TEXT..., --model, --weights, --checkpoint, --batch-size,
--workers, --dtype, --device, --json, --list-models; an image recipe's video options
--vid-stride/--start/--end; --trust-remote-code for a predictor that loads hub code) around
the recipe's own, declared once on its Predictor (ptcli.inference.options), all of it run
through the core's loop, each result printed by the predictor's ``describe`` or as its JSON
fields. The ``Command`` may reword the shared options' help (``help_for``), and with ``data``
give the command --data DIR: a run over a labelled data set (the predictor's ``evaluate``) in
place of inputs.
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from ptcli.cli.options import (DeviceOption, DtypeOption, EndOption, JsonOption, ListModelsOption, StartOption,
                               TimingsOption, TrustRemoteCodeOption, VidStrideOption, WorkersOption)
from ptcli.inference.contract import Source

_INPUTS = ("Input files, folders (searched recursively) or glob patterns; texts for a text recipe; for an image "
           "recipe videos too (files, image sequences, stream URLs, a webcam's number).")
_RESULTS_HELP = ("Write the results (the --json rows) to a .jsonl or .parquet file, or a folder (or s3://, gs:// prefix; "
                 "DIR.parquet/ for Parquet) of parts, committed as they are done: the same command run again after a "
                 "kill or Ctrl-C goes on where it stopped (--overwrite starts over). Prints a summary instead of rows.")
_HELP = {
    "inputs": _INPUTS,
    "model": "A model of the recipe (--list-models) [default: the recipe's default].",
    "weights": "Local weights file (.safetensors, .pt, .pth) for --model.",
    "checkpoint": "A ptcli checkpoint (NAME.safetensors with its NAME.json sidecar) or export (.onnx, .xml, .pt2, .ts).",
    "batch_size": "Inputs per forward pass.",
}


def _parameter(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def option_parameter(option) -> inspect.Parameter:
    """A declared option as a Typer parameter: its flag, type, range or choices, help."""
    flag = option.cli_flag
    if option.type is bool and option.default is not False:  # on by default, or the recipe's choice: both ways
        flag = f"{flag}/--no-{flag[2:]}"
    names = [flag] + ([option.short] if option.short else [])
    kind: Any = option.type | None if option.optional or option.default is None else option.type
    extra: dict[str, Any] = {}
    if option.type in (int, float):
        extra = {"min": option.min, "max": option.max}
    help_text = option.help  # choices show as the metavar
    metavar = option.metavar or ("|".join(map(str, option.choices)) if option.choices else None)
    if metavar is None and option.type is not bool:
        metavar = option.name.upper()
    info = typer.Option(*names, help=help_text, metavar=metavar, show_default=option.default is not None, **extra)
    return _parameter(option.name, Annotated[kind, info], option.default)


def predictor_command(recipe, spec):
    """A Typer command function running ``recipe``'s Predictor over its inputs, with the
    shared options and the predictor's own."""
    from ptcli.inference.contract import IMAGE, PROMPT, TEXT
    from ptcli.inference.options import declared
    from ptcli.refs import load_ref

    cls = load_ref(recipe.predictor)
    helps = {**_HELP, **dict(getattr(spec, "help_for", None) or {})}
    is_text = cls.kind in (TEXT, PROMPT)
    parameters = [
        _parameter("inputs", Annotated[list[str] | None, typer.Argument(
            help=helps["inputs"], show_default=False, metavar="TEXT" if is_text else "PATH")], None),
    ]
    if cls.kind == TEXT:  # texts from a file, or standard input's lines, as well as arguments
        parameters += [
            _parameter("file", Annotated[Path | None, typer.Option("--file", "-f", metavar="FILE", help=helps.get(
                "file", "Texts from a file: one per line (.txt), or a column of a CSV, TSV or JSONL file."))], None),
            _parameter("column", Annotated[str | None, typer.Option(metavar="NAME", help=helps.get(
                "column", "The text column of a CSV/TSV/JSONL --file [default: text]."))], None),
            _parameter("encoding", Annotated[str, typer.Option(metavar="ENC", help=helps.get(
                "encoding", "Encoding of --file and standard input."))], "utf-8")]
    parameters += [
        _parameter("model", Annotated[str | None, typer.Option("--model", "-m", metavar="NAME|PATH" if cls.remote_code else "NAME",
                                                               help=helps["model"], show_default=False)], None),
        _parameter("weights", Annotated[Path | None, typer.Option(metavar="FILE", help=helps["weights"])], None),
        _parameter("checkpoint", Annotated[Path | None, typer.Option(metavar="CKPT", help=helps["checkpoint"])], None),
    ]
    own = declared(cls)
    parameters += [option_parameter(option) for option in own]
    if getattr(spec, "data", None):
        parameters.append(_parameter("data", Annotated[Path | None, typer.Option(metavar="DIR", help=spec.data)], None))
    parameters += [
        _parameter("batch_size", Annotated[int | None, typer.Option(
            min=1, metavar="N", help=helps["batch_size"], show_default=cls.default_batch_size is not None)],
                   cls.default_batch_size),
        _parameter("workers", WorkersOption, cls.default_workers),
        _parameter("engine", Annotated[str, typer.Option(metavar="local|ray", help=(
            "Where the inputs run: here, or on a Ray cluster (Ray Data; --replicas actors each load the model once)."))],
                   "local"),
        _parameter("replicas", Annotated[int, typer.Option(min=1, metavar="N", help=(
            "--engine ray: actors running the predictor (a GPU each with --device cuda)."))], 1),
        _parameter("address", Annotated[str | None, typer.Option(metavar="HOST:PORT", help=(
            "--engine ray: the cluster to join [default: RAY_ADDRESS, else a new local one]."), show_default=False)], None),
    ]
    if cls.kind == IMAGE:
        parameters += [_parameter("vid_stride", VidStrideOption, 1), _parameter("start", StartOption, None),
                       _parameter("end", EndOption, None)]
    if cls.writes is not None:
        default = None if cls.default_output is None else Path(cls.default_output)
        parameters += [
            _parameter("output", Annotated[Path | None, typer.Option(
                "--output", "-o", metavar="DIR", help=helps.get("output", f"Write DIR/<name>{cls.writes}.png per image and "
                f"DIR/<name>{cls.writes}.mp4 per video (created if needed)."), show_default=default is not None)], default),
        ]
    if cls.kind != TEXT and cls.kind != PROMPT:
        parameters.append(_parameter("inputs_from", Annotated[Path | None, typer.Option(
            metavar="FILE", help="Inputs listed in FILE, one path or URL a line (taken as written: for lists too long for "
            "a shell).")], None))
    parameters += [
        _parameter("results", Annotated[str | None, typer.Option(metavar="PATH|URL", help=_RESULTS_HELP)], None),
        _parameter("overwrite", Annotated[bool, typer.Option("--overwrite", help=(
            "Replace existing files in DIR, and start --results over." if cls.writes is not None else
            "Start --results over."))], False)]
    if cls.remote_code:
        parameters.append(_parameter("trust_remote_code", TrustRemoteCodeOption, False))
    parameters += [_parameter("dtype", DtypeOption, "fp32"), _parameter("device", DeviceOption, "auto"),
                   _parameter("timings", TimingsOption, False), _parameter("json_output", JsonOption, False)]
    if recipe.models is not None:
        parameters.append(_parameter("list_models", ListModelsOption, False))

    def command(**given) -> None:
        from ptcli.video.runner import VideoOptions

        options = {option.name: given.pop(option.name) for option in own}
        if cls.remote_code:  # set either way: a process that ran another command keeps no trust
            from ptcli.models.hub import set_trust_remote_code

            set_trust_remote_code(given.pop("trust_remote_code"))
        video = VideoOptions(given.pop("vid_stride", 1), given.pop("start", None), given.pop("end", None))
        source = Source(given.pop("checkpoint"), given.pop("model"), given.pop("weights"))
        files = (given.pop("output", None), given.pop("overwrite", False))
        texts = (given.pop("file", None), given.pop("column", None), given.pop("encoding", "utf-8"))
        inputs = given.pop("inputs")
        listed = given.pop("inputs_from", None)
        if listed is not None:
            from ptcli.inference.inputs import read_input_list

            inputs = [*(inputs or []), *read_input_list(listed)]
        run_command(recipe, inputs, source, video=video, options=options, files=files, texts=texts,
                    data=given.pop("data", None), **given)

    names = [p.name for p in parameters] + ["source", "where"]  # load_predictor's own arguments too
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        from ptcli.errors import PluginError

        raise PluginError(f"recipe {recipe.name}: option {', '.join(clashes)} is one every command has; rename it")
    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = getattr(spec, "doc", None) or spec.help
    return command


def check_flags(declaration, values: dict) -> None:
    """Choices as every ptcli command words them: "--method must be one of cam, gradcam (got 'x')"
    (Typer checks types and ranges itself)."""
    from ptcli.errors import UsageError

    for option in declaration:
        value = values.get(option.name)
        if option.choices and value is not None and value not in option.choices:
            raise UsageError(f"{option.cli_flag} must be one of {', '.join(map(str, option.choices))} (got {value!r})")


def run_command(recipe, inputs: list[str] | None, source: Source, *, batch_size: int | None, workers: int | None,
                device: str, json_output: bool, list_models: bool = False, video=None, dtype: str = "fp32",
                options: dict | None = None, files: tuple = (None, False), texts: tuple = (None, None, "utf-8"),
                data: Path | None = None, results: str | None = None, engine: str = "local", replicas: int = 1,
                address: str | None = None, timings: bool = False) -> None:
    """The derived command's work; an image recipe's video inputs go frame by frame through the
    same predictor (ptcli.video.runner). ``files``: (-o DIR or None, --overwrite); ``texts``
    (a text recipe's): (--file, --column, --encoding); ``data``: --data DIR; ``results``: --results
    (ptcli.inference.resumable); ``timings``: --timings (ptcli.inference.timings)."""
    from itertools import chain

    from ptcli.cli.large_runs import check_engine, results_plan, split_units
    from ptcli.cli.options import list_models as print_models
    from ptcli.devices import resolve_device
    from ptcli.errors import UsageError
    from ptcli.inference.contract import AUDIO, IMAGE, TEXT, CommandRun
    from ptcli.inference.inputs import expand_inputs
    from ptcli.inference.options import OptionError, declared, settle
    from ptcli.inference.precision import check_dtype
    from ptcli.inference.runner import load_predictor, run
    from ptcli.inference.timings import stage, timed_run
    from ptcli.refs import load_ref
    from ptcli.vision.imaging import IMAGE_EXTENSIONS

    if list_models:
        print_models(recipe, json_output)
        return
    cls = load_ref(recipe.predictor)
    if cls.kind == TEXT and (data is None or inputs or texts[0] is not None):
        from ptcli.inference.inputs import gather_texts, read_stdin_as

        file, column, encoding = texts
        if file is None and inputs and "-" in inputs:
            read_stdin_as(encoding)
        inputs = gather_texts(inputs, file, column, encoding, recipe.name)
    what = {IMAGE: "image file, folder or glob", AUDIO: "sound file, folder or glob"}.get(cls.kind, "input")
    if data is not None and inputs:
        raise UsageError("give inputs or --data DIR, not both")
    if not inputs and data is None:
        raise UsageError(f"give at least one {what}{', or --data DIR' if _takes_data(recipe) else ''} "
                         f"(see `ptcli {recipe.name} --help`)")
    options = options or {}
    if declared(cls):
        check_flags(declared(cls), options)
        try:  # before anything is read or loaded
            settle(declared(cls), options)
        except OptionError as exc:
            raise UsageError(str(exc)) from None
        cls.check_options(options)
    videos: list = []
    extensions = cls.extensions or (recipe.data_adapter.extensions if recipe.data else IMAGE_EXTENSIONS)
    output, overwrite = files
    if data is not None:
        inputs = []
        if not Path(data).is_dir():
            raise UsageError(f"data folder not found: {data}")
    elif cls.kind == IMAGE:
        from ptcli.video.sources import split_inputs

        inputs, videos = split_inputs(inputs, extensions)
    elif cls.kind == AUDIO:
        inputs = expand_inputs(inputs, extensions)
    given = CommandRun(settle(declared(cls), options) if declared(cls) else options, inputs, videos, data, output,
                       overwrite)
    cls.check_run(given)
    check_engine(cls, engine, given, replicas, address)
    if timings and engine == "ray":
        raise UsageError("--timings times the stages in this process; with --engine ray they run in the cluster's actors "
                         "(drop one of the two)")
    store = plan = None
    if results is not None:
        if data is not None:
            raise UsageError("--results holds per-input results; --data prints one report")
        store, plan = results_plan(recipe, results, given, source, dtype, video, overwrite)
        inputs, videos = split_units(plan.pending())
        overwrite = overwrite or bool(plan.committed)  # the interrupted run's own files
    if output is not None and data is None:
        from ptcli.inference.inputs import output_folder

        output_folder(output, cls.written)
    cls.check_source(recipe, source, device)
    if engine == "ray":  # the model loads on the cluster's nodes, for their devices
        import torch

        from ptcli.inference.options import Options

        target = torch.device("cuda" if device.startswith("cuda") else "cpu")
        predictor = cls.__new__(cls)  # to print results with: describe, command_results
        predictor.option_values = Options(given.options)
    else:
        target = resolve_device(device, recipe.devices.devices)
    if batch_size is None:
        batch_size = cls.batch_size_for(target, given)
    if engine == "ray":
        from ptcli.inference.ray_engine import ray_results

        found = ray_results(recipe, source, device=device, options=given.options, dtype=dtype, kind=cls.kind,
                            inputs=inputs, replicas=replicas, batch_size=batch_size, workers=workers, address=address)
        _finish(predictor, found, fmt_for(predictor, cls), given, store, plan, json_output, len(inputs), local=False)
        return
    with timed_run(timings, target, json_output):  # from here on, when --timings is given
        precision = check_dtype(recipe, dtype, target)
        with stage("load"):
            predictor = load_predictor(recipe, source, target, **options)
        predictor.precision, predictor.writing = precision, output is not None and data is None
        if data is not None:
            _report(predictor, data, batch_size, json_output)
            return
        words = cls.progress or recipe.name
        if plan is not None and plan.resumed:  # the bar counts what is left
            words = f"{words} (resumed after {plan.resumed} of {len(plan.units)})"
        if not inputs:
            found = ()
        elif output is not None:
            from ptcli.inference.runner import run_to_files

            found = run_to_files(predictor, inputs, output=output, suffix=predictor.file_suffix(), overwrite=overwrite,
                                   description=words, batch_size=batch_size, workers=workers)
        else:
            found = run(predictor, inputs, batch_size=batch_size, workers=workers, description=words)
        if videos:
            from ptcli.video.runner import VideoOptions, refuse_existing_videos, video_results

            if output is not None and not overwrite:  # a usage error before any frame, not a failed input
                refuse_existing_videos(videos, output, predictor.file_suffix())
            found = chain(found, video_results(predictor, videos, video or VideoOptions(), batch_size=batch_size,
                                                   output=output, suffix=predictor.file_suffix(), overwrite=overwrite,
                                                   annotate=predictor.video_annotation(),
                                                   render=predictor.video_drawing(), description=words))
        from ptcli.output import files_under_way

        with files_under_way() if output is not None else nullcontext():
            _finish(predictor, found, fmt_for(predictor, cls), given, store, plan, json_output, len(inputs) + len(videos))


def fmt_for(predictor, cls):
    """How the command prints a result: the predictor's ``describe``, or its fields as JSON."""
    from ptcli.inference.results import ResultFormat

    if cls.input_key == "text":  # a text is its own key: {"text": ..., fields}
        return ResultFormat(human=predictor.describe, fields=lambda item, result: result, key=lambda text: {"text": text},
                            label=lambda number, text: f"text {number}", noun="texts", failed=cls.failed)
    return ResultFormat(human=predictor.describe, fields=lambda item, result: result, failed=cls.failed)


def _finish(predictor, found, fmt, given, store, plan, json_output: bool, total: int, *, local: bool = True) -> None:
    """The results through the predictor's ``command_results``, printed or written to --results,
    then its closing ``summary`` (the local engine's: a cluster's predictors keep their own)."""
    from ptcli.cli.large_runs import write_results_of
    from ptcli.inference.results import emit_results

    found = predictor.command_results(found, given)

    def summary() -> None:
        from ptcli.output import warn

        said = predictor.summary(total) if local else None
        if said:
            warn(said)

    if store is not None:
        write_results_of(store, plan, found, fmt, json_output, summary)
        return
    emit_results(found, fmt, total=total, json_output=json_output, before_exit=summary)


def _takes_data(recipe) -> bool:
    return any(getattr(command, "data", None) for command in recipe.commands if command.target is None)


def _report(predictor, data: Path, batch_size: int, json_output: bool) -> None:
    """--data DIR: the predictor's report on the labelled data set, then its closing warning.
    A report that holds "interrupted" (Ctrl-C: the inputs done so far) is printed, and the
    command then ends as interrupted (exit 130)."""
    from ptcli.output import emit, emit_json, warn

    report = predictor.evaluate(data, batch_size=batch_size)
    report.pop("_pictures", None)  # what only `ptcli eval --plots` draws
    emit_json(report) if json_output else emit(predictor.format_evaluation(report))
    said = predictor.summary(0)
    if said:
        warn(said)
    if report.get("interrupted"):
        raise KeyboardInterrupt
