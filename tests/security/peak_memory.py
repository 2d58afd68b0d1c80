"""Peak memory of a ptcli process: it runs as the only child of a small Python parent, which
reports the child's resource.getrusage high-water mark (so earlier children of the test
process do not count)."""

import json
import os
import subprocess
import sys

_PARENT = ("import json, resource, subprocess, sys\n"
           "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
           "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
           "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'err': done.stderr, 'peak_mb': peak}))\n")


def run_measured(*args, env: dict | None = None, cwd=None, timeout: float = 300) -> dict:
    """``python -m ptcli ARGS``: {"code", "out", "err", "peak_mb"}."""
    done = subprocess.run([sys.executable, "-c", _PARENT, sys.executable, "-m", "ptcli", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)
