"""--engine ray: a derived command's inputs through its Predictor on a Ray cluster, with Ray
Data. The inputs are a dataset; Ray tasks read those in object storage (``--workers`` of them
at once, default as many as the cluster has CPUs); each of ``--replicas`` actors loads the
predictor once (its options, precision and device as the command was given them: a GPU each
with --device cuda) and runs batches through the same loop as the local engine (preprocess, the
one step composition, postprocess; an unreadable input fails alone). Results come back in input
order, to be printed or written by the resumable writer (--results) like the local engine's.

Where inputs decode: in Ray tasks apart from the model when the predictor gives a decoder
(``Predictor.decoder``: one that ships without the model) and either the actors hold GPUs or
``--workers N`` asks for N decode tasks; else beside the model, in the actors. On CPU actors
decoding apart costs more than it frees: the tasks and the actors share the same CPUs, and the
decoded pixels cross processes (2 actors on a node of 2 CPUs, three runs of bench/scale.py: 76,
93 and 113 images/s decoding in tasks, 110, 116 and 118 beside the model). A predictor whose
decode needs its model (a text recipe's tokenizer, a third party's) always decodes in the
actors. The decoder comes from one task that loads the predictor on the cluster, before the
actors start. Decode tasks reserve no CPU of their own, as the local engine's decode workers
share the machine with the model: an actor pool that held every CPU would otherwise leave them
none, and the job would wait for ever. A cluster is joined with ``--address`` (or RAY_ADDRESS);
without one, Ray starts a local one.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

from ptcli.errors import PtcliError, UsageError


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (None: RAY_ADDRESS, else a new local one), quietly."""
    import logging
    import os

    # Ray's C++ core logs to stderr at start (a probe of 8.8.8.8 for the host's address, actor
    # settings); what goes wrong reaches ptcli as an exception, said in one line.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'ptcli[ray]'") from None
    if ray.is_initialized():
        return
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False,
                 logging_level=logging.WARNING, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        from ptcli.errors import flatten

        raise UsageError(f"cannot join the Ray cluster at {address or os.environ.get('RAY_ADDRESS') or 'a new local one'}: "
                         f"{flatten(exc, 200)}") from None
    context = _data_context()
    context.execution_options.preserve_order = True  # results in input order, as the local engine gives them
    context.enable_progress_bars = False


def _data_context():
    import ray.data

    return ray.data.DataContext.get_current()


class _Prepare:
    """A Ray task's step: an input in object storage read to its bytes, then decoded where the
    recipe has a decoder: the Sample, pickled for the actor (local paths and texts as given)."""

    def __init__(self, decoder) -> None:
        self.decoder = decoder

    def __call__(self, batch: dict) -> dict:
        rows = [self.prepared(row) for row in _rows(batch)]
        return {key: [row[key] for row in rows] for key in batch}

    def prepared(self, row: dict) -> dict:
        from ptcli.errors import InputError
        from ptcli.storage import is_url, read_bytes

        try:
            if row["kind"] != "text" and is_url(row["input"]):
                row["data"] = read_bytes(row["input"])
            if self.decoder is not None:
                row["sample"] = pickle.dumps(self.decoder(_item(row)))
                row["data"] = b""  # decoded: the file's bytes need not travel on
        except InputError as exc:
            row["error"] = str(exc)
        return row


def _load_decoder(recipe_name: str, source: tuple, options: dict):
    """The predictor's decoder (or None), from a predictor loaded on the CPU for it alone."""
    import torch

    from ptcli.inference.contract import Source
    from ptcli.inference.runner import load_predictor
    from ptcli.plugins import get_plugins

    torch.set_num_threads(1)
    predictor = load_predictor(get_plugins().recipe(recipe_name), Source(*source), torch.device("cpu"), **options)
    return predictor.decoder()


class _Replica:
    """One actor of the pool: the predictor, loaded once, and the local engine's loop."""

    def __init__(self, recipe_name: str, source: tuple, device: str, options: dict, dtype: str, decoded: bool) -> None:
        import ray
        import torch

        from ptcli.devices import resolve_device
        from ptcli.inference.contract import Source
        from ptcli.inference.precision import check_dtype
        from ptcli.inference.runner import load_predictor
        from ptcli.plugins import get_plugins

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))  # the actor's own CPUs, not the machine's
        recipe = get_plugins().recipe(recipe_name)
        target = resolve_device(device, recipe.devices.devices)  # the node's devices, not the driver's
        precision = check_dtype(recipe, dtype, target)
        self.predictor = load_predictor(recipe, Source(*source), target, **options)
        self.predictor.precision = precision
        self.decoded = decoded

    def __call__(self, batch: dict) -> dict:
        from ptcli.inference.results import Failed
        from ptcli.inference.runner import run

        rows = _rows(batch)
        readable = [row for row in rows if not row["error"]]
        if self.decoded:  # by the tasks: the pickled Samples
            items, load = [bytes(row["sample"]) for row in readable], pickle.loads
        else:
            items, load = [_item(row) for row in readable], None
        answers = dict(zip((row["index"] for row in readable),
                           (result for _, result in run(self.predictor, items, batch_size=max(1, len(items)), workers=0,
                                                        description="", load=load)) if items else ()))
        out = []
        for row in rows:
            result = answers[row["index"]] if row["index"] in answers else Failed(row["error"] or "not run")
            out.append(json.dumps({"error": result.message} if isinstance(result, Failed) else {"result": result},
                                  ensure_ascii=False))
        return {"index": [row["index"] for row in rows], "answer": out}


def _rows(batch: dict) -> list[dict]:
    keys = list(batch)
    return [{key: _plain(batch[key][i]) for key in keys} for i in range(len(batch[keys[0]]))]


def _plain(value):
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else value


def _item(row: dict):
    """The input as decode takes it: the bytes read from object storage, else the text given
    or the local path."""
    from pathlib import Path

    if len(row["data"]):
        return bytes(row["data"])
    return row["input"] if row["kind"] == "text" else Path(row["input"])


def decodes_in_tasks(recipe, *, workers: int | None, gpus: int) -> bool:
    """Whether inputs decode in Ray tasks (see the module's docstring). The predictor's class
    is asked whether it has a decoder: no model is loaded only to learn that it has none."""
    from ptcli.inference.contract import Predictor
    from ptcli.refs import load_ref

    if load_ref(recipe.predictor).decoder is Predictor.decoder:
        return False
    return workers > 0 if workers is not None else gpus > 0


def ray_results(recipe, source, *, device: str, options: dict, dtype: str, kind: str, inputs: Sequence[Any],
                replicas: int, batch_size: int, workers: int | None, address: str | None) -> Iterator[tuple[Any, Any]]:
    """(input, result fields or Failed) for every input, in input order, computed on the cluster."""
    import ray
    import ray.data

    from ptcli.inference.results import Failed
    from ptcli.storage import is_url

    if not inputs:
        return
    connect(address)
    source_args = (source.checkpoint, source.model, source.weights)
    gpus = 1 if str(device).startswith("cuda") else 0
    decoder = None
    if decodes_in_tasks(recipe, workers=workers, gpus=gpus):
        try:
            decoder = ray.get(ray.remote(num_cpus=1)(_load_decoder).remote(recipe.name, source_args, dict(options)))
        except ray.exceptions.RayError as exc:
            raise PtcliError(f"the Ray job failed: {_cause(exc)}") from None
    # Empty bytes and text, not None: a column of nulls reaches a batch as NaN.
    dataset = ray.data.from_items([{"index": index, "input": _absolute(item, kind), "kind": kind, "data": b"",
                                    "sample": b"", "error": ""} for index, item in enumerate(inputs)])
    if decoder is not None or any(is_url(str(item)) for item in inputs):
        tasks = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = dataset.map_batches(_Prepare(decoder), batch_size=batch_size, batch_format="default",
                                      compute=ray.data.TaskPoolStrategy(size=tasks), num_cpus=0)
    dataset = dataset.map_batches(
        _Replica, fn_constructor_args=(recipe.name, source_args, str(device), dict(options), dtype, decoder is not None),
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=replicas), num_cpus=1, num_gpus=gpus,
        batch_format="default")
    try:
        for row in dataset.iter_rows():
            answer = json.loads(row["answer"])
            item = inputs[int(row["index"])]
            yield item, Failed(answer["error"]) if "error" in answer else answer["result"]
    except ray.exceptions.RayError as exc:
        raise PtcliError(f"the Ray job failed: {_cause(exc)}") from None


def _absolute(item, kind: str) -> str:
    """A local path as every node finds it (on a shared file system): absolute, since an actor's
    working folder is not the command's. URLs and texts as they are."""
    from pathlib import Path

    from ptcli.storage import is_url

    text = str(item)
    return text if kind == "text" or is_url(text) else str(Path(text).absolute())


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong inside an actor or task (a model that would not load)."""
    from ptcli.errors import flatten

    cause = getattr(exc, "cause", None) or exc
    return flatten(cause, 300)
