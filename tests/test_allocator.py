"""ptcli.allocator: the memory a forward pass frees is there for the next, without page faults."""

import json
import os
import subprocess
import sys

import pytest

from ptcli.allocator import _glibc

pytestmark = pytest.mark.skipif(not _glibc(), reason="glibc's malloc only (Linux); elsewhere ptcli leaves malloc as it is")

# Four forward passes of a small network on a thread of its own, as a server's model thread
# runs them: the first activation is 34 MB, over the size glibc maps afresh; the page faults of
# each pass.
_PASSES = r"""
import json, resource, sys, threading
from ptcli.allocator import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
if sys.argv[1] == "cli":  # as the `ptcli` command starts, whatever it is asked
    from ptcli.cli.app import _main
    sys.argv = ["ptcli", "--version"]
    try:
        _main()
    except SystemExit:
        pass
import torch
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU()).eval()
x = torch.rand(4, 3, 256, 256)
faults = []
def passes():
    with torch.inference_mode():
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            net(x)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=passes)
thread.start(); thread.join()
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _passes(how: str, **env) -> dict:
    done = subprocess.run([sys.executable, "-c", _PASSES, how], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PTCLI_MALLOC": "", "GLIBC_TUNABLES": "", **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_pass_reuses_what_the_last_freed_in_every_ptcli_command():
    glibc = _passes("glibc")
    reused = _passes("reuse")
    assert reused["applied"] is True
    # glibc's defaults map the large activations afresh each pass: about 35,000 faults of 4 KB
    # pages here (fewer where huge pages are always on); kept, the later passes fault (almost)
    # nothing in.
    assert min(glibc["faults"][1:]) > 0
    assert max(reused["faults"][1:]) * 10 <= min(glibc["faults"][1:])
    command = _passes("cli")  # every ptcli command sets it first thing
    assert max(command["faults"][1:]) * 10 <= min(glibc["faults"][1:])


@pytest.mark.parametrize("env", [{"PTCLI_MALLOC": "system"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}],
                         ids=["PTCLI_MALLOC=system", "the user's own GLIBC_TUNABLES"])
def test_the_user_can_keep_glibcs_own_settings(env):
    kept = _passes("reuse", **env)
    assert kept["applied"] is False
    assert min(kept["faults"][1:]) > 0
