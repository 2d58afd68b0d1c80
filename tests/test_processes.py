"""map_shared: work done once across the processes of a distributed run."""

import torch.distributed as dist
import torch.multiprocessing as mp

from ptcli.training.processes import map_shared


def _tag(items):
    return [(dist.get_rank() if dist.is_initialized() else None, item * 10) for item in items]


def _worker(rank, world, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results[rank] = map_shared(_tag, range(7))
    finally:
        dist.destroy_process_group()


def test_alone_it_is_the_function():
    assert map_shared(_tag, range(3)) == [(None, 0), (None, 10), (None, 20)]


def test_two_processes_share_the_items_and_both_get_all_in_order(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(2, tmp_path / "init", results), nprocs=2, join=True)
        results = dict(results)
    expected = [(i % 2, i * 10) for i in range(7)]  # item i done by process i mod 2
    assert results[0] == expected and results[1] == expected
