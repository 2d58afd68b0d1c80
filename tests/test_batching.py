import torch

from ptcli.inference.batching import Failed, default_workers, run_batched
from ptcli.errors import InputError


def load(value):
    if value < 0:
        raise InputError(f"cannot read {value}")
    return torch.tensor([float(value)])


def run(inputs, **kwargs):
    return list(run_batched(inputs, load=load, forward=lambda b: b * 10, postprocess=lambda row: float(row[0]),
                            device=torch.device("cpu"), **kwargs))


def test_results_in_input_order_with_failures_in_place():
    inputs = [1, -1, 2, 3, -2, 4, 5]
    results = run(inputs, batch_size=3)
    assert [i for i, _ in results] == inputs
    assert [r for _, r in results] == [10.0, Failed("cannot read -1"), 20.0, 30.0, Failed("cannot read -2"), 40.0, 50.0]


def test_a_batch_of_only_failures():
    assert run([-1, -2], batch_size=2) == [(-1, Failed("cannot read -1")), (-2, Failed("cannot read -2"))]


def test_worker_processes_give_the_same_results():
    inputs = list(range(10)) + [-3]
    assert run(inputs, batch_size=4, workers=2) == run(inputs, batch_size=4, workers=0)


def test_default_workers():
    assert default_workers(5, batch_size=16) == 0
    assert 1 <= default_workers(500, batch_size=16) <= 4
