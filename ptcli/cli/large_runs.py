"""What a derived command does for large runs: --results (resumable parts, ptcli.inference.
resumable) planned against what an earlier run committed and written as results come, and
--engine's checks (what a Ray run cannot do yet, said before anything loads)."""

from __future__ import annotations

from pathlib import Path

from ptcli.inference.contract import Source


def check_engine(cls, engine: str, run, replicas: int, address: str | None) -> None:
    """--engine, --replicas and --address, before anything loads: what a Ray run cannot do yet."""
    from ptcli.errors import UsageError

    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be one of local, ray (got {engine!r})")
    if engine == "local":
        if replicas != 1 or address is not None:
            raise UsageError("--replicas and --address go with --engine ray")
        return
    if run.videos:
        raise UsageError("--engine ray runs files and texts; videos run with the local engine")
    if run.data is not None:
        raise UsageError("--engine ray runs inputs; --data runs with the local engine")
    if cls.writes is not None and run.output is not None:
        raise UsageError(f"--engine ray returns results, not files: drop -o (the results' files are {cls.written})"
                         if cls.default_output is None else
                         f"--engine ray returns results, not files, and {cls.written} are files: run it locally")


def results_plan(recipe, results: str, run, source: Source, dtype: str, video, overwrite: bool):
    """--results: the store, checked against what an earlier run left there, and what is left
    to do (ptcli.inference.resumable), before any model loads."""
    import hashlib

    from ptcli import distributed
    from ptcli.errors import UsageError
    from ptcli.inference.resumable import Plan, ResultsStore, part_size_for
    from ptcli.video.sources import FILE, VideoSource

    if distributed.world_size() > 1:
        raise UsageError("--results is written by one process; under torchrun print --json instead")
    if any(isinstance(v, VideoSource) and v.kind != FILE for v in run.videos):
        raise UsageError("--results needs inputs that end: a stream or webcam never does; print --json instead")
    units, seen = [], set()
    for unit in [*run.inputs, *run.videos]:  # each input once
        if str(unit) not in seen:
            seen.add(str(unit))
            units.append(unit)
    listing = "\n".join(map(str, units)).encode()
    checkpoint = source.checkpoint
    identity = {
        "ptcli_results": 1, "command": recipe.name,
        "model": {"checkpoint": None if checkpoint is None else str(checkpoint), "model": source.model,
                  "weights": None if source.weights is None else str(source.weights),
                  "checkpoint_bytes": Path(checkpoint).stat().st_size if checkpoint and Path(checkpoint).is_file() else None},
        "options": dict(run.options), "dtype": dtype, "output": None if run.output is None else str(run.output),
        "inputs": len(units), "inputs_sha256": hashlib.sha256(listing).hexdigest(),
        "part_size": part_size_for(len(units)),
    }
    if run.videos:
        identity["video"] = [video.stride, video.start, video.end] if video is not None else None
    store = ResultsStore(results, overwrite=overwrite)
    identity["format"] = store.format
    committed = store.open(identity)
    return store, Plan(units, identity["part_size"], committed)


def split_units(units: list) -> tuple[list, list]:
    from ptcli.video.sources import VideoSource

    return [u for u in units if not isinstance(u, VideoSource)], [u for u in units if isinstance(u, VideoSource)]


def write_results_of(store, plan, found, fmt, json_output: bool, summary) -> None:
    """The run's results into --results, then its counts on stdout (exit 1 if any input failed)."""
    import typer

    from ptcli.inference.resumable import write_results
    from ptcli.inference.results import Failed
    from ptcli.output import emit, emit_json, error_line

    def row_of(item, result):
        key = fmt.key(item)
        fields = {"error": result.message} if isinstance(result, Failed) else fmt.fields(item, result)
        return str(next(iter(key.values()))), {**key, **fields}

    counts = write_results(store, plan, found, row_of)
    if json_output:
        emit_json(counts)
    else:
        emit(f"{counts['rows']} results of {counts['inputs']} inputs in {counts['results']} "
             f"({counts['resumed']} resumed, {counts['failed']} failed)")
    summary()
    if counts["failed"]:
        if not json_output:
            error_line(f"{counts['failed']} of {counts['inputs']} inputs {fmt.failed}; their rows in --results say why")
        raise typer.Exit(1)
