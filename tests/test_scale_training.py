"""Training across nodes: `torchrun --nnodes 2` (two launchers as two nodes, c10d rendezvous on
127.0.0.1) trains as `--nproc-per-node 2` on one node does, and resumes. The launchers run in a
network namespace that has only a loopback interface (made by the test), so that gloo and the
rendezvous can reach nothing but 127.0.0.1."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, assert_trains_alike

pytestmark = pytest.mark.slow


def _namespace_or_skip():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) make the test's own network namespace")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace can be made here (unshare -n: {probe.stderr.strip()[:120]})")


def test_two_nodes_train_as_two_processes_on_one_and_resume(tmp_path, two_process_training):
    _namespace_or_skip()
    from ptcli.models.checkpoints import load_checkpoint

    config, expected = two_process_training
    outputs = _launch(tmp_path, config, f"run.dir={tmp_path / 'runs'}", "run.name=two-nodes")
    summaries = [json.loads(line) for out in outputs for line in out.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, outputs  # only the first rank reports
    summary = summaries[0]
    assert_trains_alike(summary, expected)
    resumed_out = _launch(tmp_path, config, f"resume={summary['run_dir']}", "trainer.epochs=3")
    resumed = [json.loads(line) for out in resumed_out for line in out.splitlines() if line.startswith("{")][0]
    records = [json.loads(line) for line in open(f"{resumed['run_dir']}/metrics.jsonl")]
    assert [r["epoch"] for r in records] == [1, 2, 3] and resumed["run_dir"] == summary["run_dir"]
    assert load_checkpoint(resumed["last_checkpoint"], recipe="classify-image").classes == ["blue", "green", "red"]


def _launch(tmp_path, *args) -> list[str]:
    """`ptcli train ... --json` under two torchrun launchers, one a node; each node's stdout."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:29517", "--rdzv-id", "ptcli-test",
                "--local-addr", "127.0.0.1", "-m", "ptcli", "train", *map(str, args), "trainer.device=cpu", "--json"]
    script = ('ip link set lo up && export GLOO_SOCKET_IFNAME=lo && '
              '"$@" > "$OUT/node0.out" 2> "$OUT/node0.err" & "$@" > "$OUT/node1.out" 2> "$OUT/node1.err" & '
              'wait %1; first=$?; wait %2; exit $((first + $?))')
    done = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", *launcher], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "OUT": str(tmp_path)})
    errors = [(tmp_path / f"node{i}.err").read_text() for i in (0, 1)]
    assert done.returncode == 0, (done.stderr + "".join(e[-2000:] for e in errors))
    return [(tmp_path / f"node{i}.out").read_text() for i in (0, 1)]
