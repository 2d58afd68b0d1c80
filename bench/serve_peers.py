"""`ptcli serve` against LitServe, serving the same thing: ptcli's classify-image Predictor
(decode, preprocessing, EfficientNet-Lite0, top-5) inside a LitServe LitAPI (max_batch_size 16,
batch_timeout 5 ms) and inside `ptcli serve --max-batch 16`. Closed-loop clients on 127.0.0.1
post `{"image": BASE64}` of one photo for --seconds at 32 and then 8 clients; the servers take
turns, one at a time, for --rounds rounds (the median round is kept).

Each server twice: as it starts by default (ptcli: the model in the server's process; LitServe:
one worker), and with one model process per core (ptcli `--replicas N`, which gives each
replica cores/N torch threads; LitServe `workers_per_device=N` with torch.set_num_threads(1)
written into its setup by hand, without which its N workers each take every core). Then, for
what is left when the processes' memory is set alike, LitServe once more with ptcli's malloc
settings given by hand (GLIBC_TUNABLES, as ptcli.allocator sets them: one arena, no mmap, 1 GiB
kept), without which each forward pass faults its activations in again. Goals on 2
CPU cores: ptcli's requests/s >= LitServe's at both levels, like for like (default against
default, a process a core against a process a core), p99 no worse than 1.2x LitServe's, no
errors; batching >= 1.3x --max-batch 1 at 32. LitServe is a bench-only dependency: pip install
litserve.

    python bench/serve_peers.py [--photo ../shared/data/images/cat.jpg] [--seconds 25] [--rounds 3]
"""

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import report
from serve_load import timed_post

from ptcli.allocator import TRIM_THRESHOLD

REPO = Path(__file__).resolve().parents[1]
LEVELS = (32, 8)
LITSERVE_MALLOC = "LitServe, ptcli's malloc"

LITSERVE_APP = r'''
import sys
import litserve as ls

class PtcliClassifier(ls.LitAPI):
    """ptcli's own Predictor, step by step, where LitServe calls its hooks."""

    def setup(self, device):
        import torch

        if len(sys.argv) > 3:
            torch.set_num_threads(int(sys.argv[3]))  # by hand: LitServe leaves each worker every core
        from ptcli.inference.contract import Source
        from ptcli.inference.runner import load_predictor
        from ptcli.plugins import get_plugins

        self.torch = torch
        self.predictor = load_predictor(get_plugins().recipe("classify-image"), Source(None, None, None), torch.device("cpu"))

    def decode_request(self, request):
        from ptcli.serving.requests import b64decode

        return self.predictor.decode(b64decode(request["image"], "image")).data

    def batch(self, inputs):
        return self.predictor.preprocess(inputs)

    def predict(self, x):
        with self.torch.inference_mode():
            return self.predictor.forward(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return self.predictor.postprocess(output, None)

if __name__ == "__main__":
    server = ls.LitServer(PtcliClassifier(max_batch_size=16, batch_timeout=0.005), accelerator="cpu",
                          workers_per_device=int(sys.argv[2]), timeout=120)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False, log_level="warning")
'''


def client_main(url: str, concurrency: int, seconds: float, photo: str) -> None:
    """Closed-loop clients: each posts, waits for the answer, posts again, until ``seconds``."""
    import asyncio

    import httpx

    body = json.dumps({"image": base64.b64encode(Path(photo).read_bytes()).decode()}).encode()
    latencies, errors = [], []

    async def one_client(client, deadline: float) -> None:
        while time.perf_counter() < deadline:
            await timed_post(client, url, body, "application/json", latencies, errors)

    async def main():
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            start = time.perf_counter()
            await asyncio.gather(*(one_client(client, start + seconds) for _ in range(concurrency)))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    lat = sorted(latencies)
    print(json.dumps({"ok": len(lat), "errors": len(errors), "rps": len(lat) / elapsed,
                      "p50_ms": statistics.median(lat) * 1000 if lat else None,
                      "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], url: str, body: bytes, env: dict | None = None):
    """A server started and warmed (one answered request)."""
    import httpx

    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                              start_new_session=True, env={**os.environ, **(env or {})})
    for _ in range(900):
        try:
            if httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"{' '.join(command[:4])} exited {server.returncode} before it answered")
        time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{' '.join(command[:4])} never answered")


def stop(server) -> None:
    import signal

    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


def load(url: str, clients: int, seconds: float, photo: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--client", url, "--concurrency", str(clients), "--seconds",
                           str(seconds), "--photo", photo], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", default=str(REPO.parent / "shared" / "data" / "images" / "cat.jpg"))
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.concurrency, args.seconds, args.photo)
        return
    try:
        import litserve  # noqa: F401
    except ImportError:
        sys.exit("this benchmark compares with LitServe: pip install litserve")
    body = json.dumps({"image": base64.b64encode(Path(args.photo).read_bytes()).decode()}).encode()
    app = Path(os.environ.get("TMPDIR", "/tmp")) / "ptcli_litserve_app.py"
    app.write_text(LITSERVE_APP)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    servers = {}
    for name, batch, replicas in (("ptcli", 16, 1), (f"ptcli --replicas {cores}", 16, cores), ("ptcli --max-batch 1", 1, 1)):
        port = free_port()
        servers[name] = ([sys.executable, "-m", "ptcli", "serve", "--recipe", "classify-image", "--port", str(port),
                          "--max-batch", str(batch), "--replicas", str(replicas), "--device", "cpu"],
                         f"http://127.0.0.1:{port}/predict")
    for name, extra in (("LitServe", ["1"]), (f"LitServe {cores} workers", [str(cores), "1"]), (LITSERVE_MALLOC, ["1"])):
        port = free_port()
        servers[name] = ([sys.executable, str(app), str(port), *extra], f"http://127.0.0.1:{port}/predict")
    environments = {LITSERVE_MALLOC: {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                                                        f"glibc.malloc.trim_threshold={TRIM_THRESHOLD}"}}
    env_path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path  # the LitServe app imports ptcli's Predictor as installed or from here
    rounds: dict = {(name, level): [] for name in servers for level in LEVELS}
    for round_ in range(args.rounds):
        for name, (command, url) in servers.items():  # one server at a time: they would share the 2 cores
            server = start(command, url, body, environments.get(name))
            try:
                for level in LEVELS:
                    if name == "ptcli --max-batch 1" and level != 32:
                        continue
                    rounds[(name, level)].append(load(url, level, args.seconds, args.photo))
                    print(f"round {round_ + 1}: {name}, {level} clients: {json.dumps(rounds[(name, level)][-1])}",
                          file=sys.stderr, flush=True)
            finally:
                stop(server)

    def median(name, level):
        runs = rounds[(name, level)]
        return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2] if runs else None

    rows, ratios, p99s = [], [], []
    for ours_name, theirs_name, how in (("ptcli", "LitServe", "by default"),
                                        (f"ptcli --replicas {cores}", f"LitServe {cores} workers", "a process a core"),
                                        ("ptcli", LITSERVE_MALLOC, "memory set alike (not a goal)")):
        for level in LEVELS:
            ours, theirs = median(ours_name, level), median(theirs_name, level)
            for name, run in ((ours_name, ours), (theirs_name, theirs)):
                rows.append((f"{level} clients, {name}", f"{run['rps']:.1f} req/s, p50 {run['p50_ms']:.0f} ms, "
                                                         f"p99 {run['p99_ms']:.0f} ms, {run['errors']} errors"))
            ratio, p99 = ours["rps"] / theirs["rps"], ours["p99_ms"] / theirs["p99_ms"]
            if theirs_name != LITSERVE_MALLOC:
                ratios.append(ratio)
                p99s.append(p99)
            rows.append((f"{level} clients, ptcli / LitServe, {how}", f"{ratio:.2f}x req/s, p99 {p99:.2f}x"))
    unbatched = median("ptcli --max-batch 1", 32)
    rows.append(("32 clients, ptcli --max-batch 1", f"{unbatched['rps']:.1f} req/s ({median('ptcli', 32)['rps'] / unbatched['rps']:.2f}x "
                                                    "batched over it; goal >= 1.3)"))
    rows.append(("rounds", f"{args.rounds} of {args.seconds:g} s each, the median kept; photo {Path(args.photo).name}"))
    rows.append(("worst p99 ratio", f"{max(p99s):.2f}x (goal <= 1.2)"))
    report(rows, min(ratios), 1.0, figure="serve req/s: ptcli / LitServe (worst of 8 and 32 clients, like for like)",
           ours=f"{median('ptcli', 32)['rps']:.1f}/s", baseline=f"{median('LitServe', 32)['rps']:.1f}/s")


if __name__ == "__main__":
    main()
