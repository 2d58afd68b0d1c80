"""`ptcli serve` under load: a load generator in a second process on 127.0.0.1 posts the shared
photos to /predict at 1, 8 and 32 concurrent clients (bounded in count and time), against a
server with batching (--max-batch 16) and without (--max-batch 1), each with the model in the
server's process (1 replica) and in 2 replica processes (--replicas 2): requests/s, p50/p99
latency, errors, lost requests. Goals (CPU): no errors and none lost at any level; at 32 clients batching
gives >= 1.3x the requests/s of unbatched; at 1 client, p50 within 15 ms of classify-image's own
per-image model time (EfficientNet-Lite0, measured here in-process). Both servers run at once
and each level alternates between them for --rounds rounds; each figure is the median round.

    python bench/serve_load.py [--data ../shared/data] [--requests-per-client 12] [--seconds 60]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import record, report

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
TARGET = 1.3


async def timed_post(client, url: str, body: bytes, content_type: str, latencies: list, errors: list) -> None:
    """One request: its seconds into ``latencies`` when it is answered with predictions, else
    its status or exception into ``errors``."""
    import httpx

    start = time.perf_counter()
    try:
        response = await client.post(url, content=body, headers={"Content-Type": content_type})
        if response.status_code == 200 and "predictions" in response.json():
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(response.status_code)
    except httpx.HTTPError as exc:
        errors.append(type(exc).__name__)


def client_main(url: str, concurrency: int, count: int, seconds: float, photos: list[str]) -> None:
    """The load generator: ``concurrency`` clients, ``count`` requests each or until ``seconds``."""
    import asyncio

    import httpx

    bodies = [Path(p).read_bytes() for p in photos]
    latencies, errors = [], []

    async def one_client(index: int, client, deadline: float) -> int:
        sent = 0
        for n in range(count):
            if time.perf_counter() > deadline:
                break
            body = bodies[(index + n) % len(bodies)]
            sent += 1
            await timed_post(client, f"{url}/predict", body, "image/jpeg", latencies, errors)
        return sent

    async def main():
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            start = time.perf_counter()
            sent = await asyncio.gather(*(one_client(i, client, start + seconds) for i in range(concurrency)))
            return sum(sent), time.perf_counter() - start

    sent, elapsed = asyncio.run(main())
    lat = sorted(latencies)
    print(json.dumps({"sent": sent, "ok": len(lat), "errors": len(errors), "lost": sent - len(lat) - len(errors),
                      "rps": len(lat) / elapsed, "p50_ms": statistics.median(lat) * 1000 if lat else None,
                      "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(max_batch: int, replicas: int = 1):
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ptcli", "serve", "--recipe", "classify-image", "--port", str(port),
                               "--max-batch", str(max_batch), "--device", "cpu", "--replicas", str(replicas)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server never became ready")


def model_ms(photos: list[str]) -> float:
    """classify-image's per-image model time: Lite0 forward at batch 1, median of 30."""
    import torch

    from ptcli_classify_image.data import ImageFiles, Preprocess
    from ptcli_classify_image.models import load_classifier

    net, _, pre = load_classifier(None)
    net.eval()
    x = Preprocess(pre)(ImageFiles().read(Path(photos[0])))[None]
    times = []
    with torch.inference_mode():
        for i in range(35):
            start = time.perf_counter()
            net(x).softmax(-1).topk(5)
            if i >= 5:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--requests-per-client", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level and server, alternating (the median is kept)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--photos", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.concurrency, args.requests_per_client, args.seconds, args.photos)
        return
    photos = sorted(str(p) for p in (args.data / "imagefolder_photos").rglob("*.jpg"))[:32] or [str(REPO / "examples" / "cat.jpg")]
    figures, rows = {}, []
    batched = args.max_batch
    servers = {(size, replicas): start_server(size, replicas) for size in (batched, 1) for replicas in (1, 2)}
    try:
        for level in LEVELS:
            runs = {size: [] for size in servers}
            for _ in range(args.rounds):  # alternating, so that machine drift hits both alike
                for size, (_, url) in servers.items():
                    done = subprocess.run([sys.executable, __file__, "--client", url, "--concurrency", str(level),
                                           "--requests-per-client", str(args.requests_per_client), "--seconds", str(args.seconds),
                                           "--photos", *photos], capture_output=True, text=True, check=True,
                                          env={**os.environ, "PYTHONPATH": str(REPO / "bench")})
                    runs[size].append(json.loads(done.stdout.strip().splitlines()[-1]))
            for size, results in runs.items():
                middle = sorted(results, key=lambda r: r["rps"])[len(results) // 2]  # the median round
                middle = {**middle, "errors": sum(r["errors"] for r in results), "lost": sum(r["lost"] for r in results),
                          "ok": sum(r["ok"] for r in results), "sent": sum(r["sent"] for r in results)}
                figures[(size, level)] = middle
                rows.append((f"max-batch {size[0]:>2}, {size[1]} replica{'s' if size[1] > 1 else ' '}, {level:>2} clients",
                             f"{middle['rps']:6.1f} req/s  p50 {middle['p50_ms']:7.1f} ms  p99 {middle['p99_ms']:7.1f} ms  "
                             f"errors {middle['errors']}  lost {middle['lost']}  ({middle['ok']}/{middle['sent']} in {args.rounds} rounds)"))
                print(rows[-1][0], rows[-1][1], flush=True)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(60)
    own = model_ms(photos)
    p50 = figures[((batched, 1), 1)]["p50_ms"]
    clean = all(f["errors"] == 0 and f["lost"] == 0 for f in figures.values())
    rows.append(("classify-image model time per image", f"{own:.1f} ms"))
    rows.append(("1 client p50 over model time", f"{p50 - own:+.1f} ms (goal <= 15): {'OK' if p50 - own <= 15 else 'MISSED'}"))
    rows.append(("errors and lost requests", f"{'none' if clean else 'SOME'} (goal: none): {'OK' if clean else 'MISSED'}"))
    ratio = figures[((batched, 1), 32)]["rps"] / figures[((1, 1), 32)]["rps"]
    replicas = figures[((batched, 2), 32)]["rps"] / figures[((batched, 1), 32)]["rps"]
    rows.append(("32 clients, batched: 2 replicas / 1", f"{replicas:.2f}x"))
    record("serve p50 at 1 client, over model time", f"{p50:.1f} ms", f"{own:.1f} ms", None, "<= +15 ms", p50 - own <= 15)
    record("serve errors and lost requests", "0" if clean else "some", "", None, "none", clean)
    report(rows, ratio, TARGET, figure="serve req/s at 32 clients, batched / --max-batch 1",
           ours=f"{figures[((batched, 1), 32)]['rps']:.1f}", baseline=f"{figures[((1, 1), 32)]['rps']:.1f}")


if __name__ == "__main__":
    main()
