"""--results: a command's results in committed parts that a run killed at any moment resumes,
to a file, a folder, Parquet or an S3 bucket (moto's server on 127.0.0.1), with --inputs-from."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, make_imagefolder, save_simplenet

#: 1002 images in parts of 16: 63 parts.
PER_CLASS = 334


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A thousand small images and a classifier slow enough (128 px inputs, one a batch) that a
    run can be killed between its parts."""
    root = tmp_path_factory.mktemp("results_job")
    images = make_imagefolder(root / "images", {"all": PER_CLASS}, size=16)
    checkpoint = save_simplenet(root / "net", image_size=128, classes=["red", "green", "blue"])
    return images, checkpoint


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory):
    """The rows of one uninterrupted run, printed with --json (what --results must hold)."""
    images, checkpoint = job
    done = _ptcli("classify-image", images, "--checkpoint", checkpoint, "--json", "--batch-size", "1", "--workers", "0",
                  "--device", "cpu")  # as the killed runs batch: a batch's size moves the last digit of a score
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _command(*args):
    return [sys.executable, "-m", "ptcli", *map(str, args)]


def _ptcli(*args, env=None):
    return subprocess.run(_command(*args), capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, **(env or {})})


def _committed(parts: Path) -> int:
    try:
        return sum(1 for name in os.listdir(parts) if name.startswith("part-"))
    except FileNotFoundError:
        return 0


def _rss_mb(pid: int) -> float:
    """A running process's resident memory (Linux's /proc); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_killed_at_ten_moments_ends_as_an_uninterrupted_one(job, reference, tmp_path):
    images, checkpoint = job
    out = tmp_path / "out.jsonl"
    parts = tmp_path / ".out.jsonl.parts"
    args = _command("classify-image", images, "--checkpoint", checkpoint, "--results", out, "--batch-size", "1",
                    "--workers", "0", "--device", "cpu")
    # Kill once this many parts are committed (-1: while it starts, before anything is written).
    moments, kills, seen = [-1, 0, 3, 9, 16, 24, 32, 40, 48, 55], 0, []
    for target in moments:
        target = max(target, _committed(parts) + 1) if target >= 0 else target
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            if target < 0:
                time.sleep(0.3)
            while target >= 0 and _committed(parts) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            running = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert running, f"the run ended before its kill at {target} parts: {proc.stderr.read()[-500:]}"
        kills += 1
        seen.append(_committed(parts))
        for part in parts.glob("part-*"):  # every committed part is whole: its rows, as its name says
            assert len(_rows(part)) == int(part.name.split("-")[2])
        assert not out.exists()
    assert kills == 10 and seen == sorted(seen) and seen[-1] < 63, seen
    finished = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(reference)} results of {len(reference)} inputs in {out} ({seen[-1] * 16} resumed, 0 failed)" in finished.stdout
    assert _rows(out) == reference
    assert not parts.exists()
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def test_another_command_on_the_same_results_says_what_differs(cli, job, tmp_path):
    images, checkpoint = job
    few = sorted((images / "all" / "red").glob("*.png"))[:20]
    out = tmp_path / "results"
    common = ("--checkpoint", checkpoint, "--results", f"{out}/", "--device", "cpu")
    first = cli("classify-image", *few, *common, "-k", "1", "--json")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout) == {"results": f"{out}/", "inputs": 20, "rows": 20, "resumed": 0, "failed": 0}
    assert (out / "_SUCCESS").exists() and (out / "part-000000-16-0.jsonl").exists() and (out / "part-000001-4-0.jsonl").exists()
    again = cli("classify-image", *few, *common, "-k", "1")
    assert again.exit_code == 0 and "(20 resumed, 0 failed)" in again.stdout
    for args, words in ((("-k", "2"), "options.top_k 1 there, 2 here"),
                        (("-k", "1", "--dtype", "bf16"), 'dtype "fp32" there, "bf16" here')):
        changed = cli("classify-image", *few, *common, *args)
        assert changed.exit_code == 2 and words in changed.stderr and "pass --overwrite to start over" in changed.stderr, changed.stderr
    fewer = cli("classify-image", *few[:-1], *common, "-k", "1")
    assert fewer.exit_code == 2 and "inputs 20 there, 19 here" in fewer.stderr
    other = cli("classify-image", *few[:-1], sorted((images / "all" / "blue").glob("*.png"))[0], *common, "-k", "1")
    assert other.exit_code == 2 and "other inputs" in other.stderr
    restarted = cli("classify-image", *few, *common, "-k", "2", "--overwrite", "--json")
    assert restarted.exit_code == 0 and json.loads(restarted.stdout)["resumed"] == 0
    rows = [json.loads(line) for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()]
    assert [row["input"] for row in rows] == [str(path) for path in few]
    assert all(len(row["predictions"]) == 2 for row in rows)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = cli("classify-image", *few, "--checkpoint", checkpoint, "--results", tmp_path / "busy", "--device", "cpu")
    assert busy.exit_code == 2 and "holds other files" in busy.stderr
    (tmp_path / "busy" / "notes.txt").unlink()
    for manifest in ("[" * 100000, '{"ptcli_results": 2}', "not json"):  # whatever a stranger's folder holds
        (tmp_path / "busy" / "_ptcli_results.json").write_text(manifest)
        odd = cli("classify-image", *few, "--checkpoint", checkpoint, "--results", tmp_path / "busy", "--device", "cpu")
        assert odd.exit_code == 2 and "_ptcli_results.json that is not ptcli's" in odd.stderr, odd.stderr
    (tmp_path / "file").write_text("x")
    unusable = cli("classify-image", *few, "--checkpoint", checkpoint, "--results", f"{tmp_path / 'file'}/out/",
                   "--device", "cpu")
    assert unusable.exit_code in (1, 2) and "\n" not in unusable.stderr.strip() and "file" in unusable.stderr


def test_parquet_inputs_from_a_list_and_failed_inputs(cli, job, tmp_path):
    import pyarrow.parquet as pq

    images, checkpoint = job
    few = sorted((images / "all" / "green").glob("*.png"))[:5]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    listing = tmp_path / "inputs.txt"
    listing.write_text("# a comment\n" + "\n".join(map(str, [few[0], broken, *few[1:], tmp_path / "missing.png"])) + "\n\n")
    printed = cli("classify-image", "--inputs-from", listing, "--checkpoint", checkpoint, "--json", "--device", "cpu")
    expected = [json.loads(line) for line in printed.stdout.splitlines()]
    assert printed.exit_code == 1 and [("error" in row) for row in expected] == [False, True, False, False, False, False, True]
    for target in (tmp_path / "out.parquet", tmp_path / "parts.parquet"):
        given = f"{target}/" if target.name == "parts.parquet" else target
        result = cli("classify-image", "--inputs-from", listing, "--checkpoint", checkpoint, "--results", given, "--device", "cpu")
        assert result.exit_code == 1 and "2 of 7 inputs could not be read; their rows in --results say why" in result.stderr
        assert "7 results of 7 inputs" in result.stdout and "2 failed" in result.stdout
        files = [target] if target.is_file() else sorted(target.glob("part-*.parquet"))
        rows = [row for file in files for row in pq.read_table(file).to_pylist()]
        assert [{key: value for key, value in row.items() if value is not None} for row in rows] == expected
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert "lists no inputs" in cli("classify-image", "--inputs-from", empty).stderr
    assert "--inputs-from" in cli("classify-image", "--inputs-from", tmp_path / "nope.txt").stderr


def test_a_store_whose_package_is_missing_is_one_line(monkeypatch, cli, tmp_path):
    from ptcli.errors import UsageError
    from ptcli.storage import filesystem

    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(UsageError, match=r"gs:// needs gcsfs: pip install 'ptcli\[gcs\]'"):
        filesystem("gs://bucket/photos/")
    result = cli("classify-image", "gs://bucket/photos/", "--device", "cpu")
    assert result.exit_code == 2 and "gs:// needs gcsfs" in result.stderr
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "pyarrow" else object())
    result = cli("classify-image", REPO / "examples" / "cat.jpg", "--results", tmp_path / "x.parquet", "--device", "cpu")
    assert result.exit_code == 2 and "needs pyarrow: pip install 'ptcli[parquet]'" in result.stderr


# --- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch):
    """A real S3 API on 127.0.0.1 (moto's server), and the environment that points s3fs at it."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency: the S3 tests need it")
    pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is a dev dependency: the S3 tests need it")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # One attempt a request: botocore's retries (with back-off) would make an outage minutes long.
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]), env, server
    server.stop()


def _outage(server) -> None:
    """The S3 server gone: its socket closed, so that a connection is refused (its buckets
    stay in this process, for when it comes back)."""
    server.stop()
    server._server.server_close()


def test_inputs_and_results_in_a_bucket_that_goes_away_mid_run(s3, job, reference, tmp_path):
    client, env, server = s3
    images, checkpoint = job
    import s3fs

    client.create_bucket(Bucket="photos")
    client.create_bucket(Bucket="out")
    local = sorted(images.rglob("*.png"))
    s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"]).pipe(
        {f"photos/set/{path.relative_to(images).as_posix()}": path.read_bytes() for path in local})
    by_name = {Path(row["input"]).relative_to(images).as_posix(): row for row in reference}
    args = ("classify-image", "s3://photos/set/**/*.png", "--checkpoint", checkpoint, "--results", "s3://out/run/",
            "--device", "cpu")
    proc = subprocess.Popen(_command(*args), cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            listed = client.list_objects_v2(Bucket="out", Prefix="run/").get("Contents", [])
            if sum("part-" in item["Key"] for item in listed) >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read()[-500:]
        _outage(server)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if not line.startswith("results:")]
    # Whichever it met first: an input it could not read, or a part it could not store.
    assert len(lines) == 1 and "run the same command again" in lines[0] and "Traceback" not in lines[0], err
    assert "the store did not answer" in lines[0] or "could not write part" in lines[0] and "s3://out/run/" in lines[0]
    server.start()  # back, with what it held
    done = _ptcli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resumed"] >= 3 * 16
    names = [item["Key"] for item in client.list_objects_v2(Bucket="out", Prefix="run/")["Contents"]]
    assert "run/_SUCCESS" in names and "run/_ptcli_results.json" in names
    rows = []
    for name in sorted(n for n in names if "/part-" in n):
        rows += [json.loads(line) for line in client.get_object(Bucket="out", Key=name)["Body"].read().decode().splitlines()]
    assert len(rows) == len(local)
    for row in rows:  # as the local run gave (batches of 16 here, of 1 there: scores to the last digit)
        expected = by_name[row["input"].removeprefix("s3://photos/set/")]["predictions"]
        assert [p["index"] for p in row["predictions"]] == [p["index"] for p in expected]
        assert row["predictions"][0]["score"] == pytest.approx(expected[0]["score"], abs=2e-6)
    # One file in the bucket, resumed after a kill like a local one.
    single = _ptcli("classify-image", "s3://photos/set/all/red/", "--checkpoint", checkpoint, "--results",
                    "s3://out/red.jsonl", "--device", "cpu", "--json", env=env)
    assert single.returncode == 0 and json.loads(single.stdout)["rows"] == PER_CLASS, single.stderr
    body = client.get_object(Bucket="out", Key="red.jsonl")["Body"].read().decode().splitlines()
    assert [json.loads(line)["input"] for line in body] == sorted(f"s3://photos/set/all/red/{p.name}" for p in local
                                                                  if p.parent.name == "red")
    assert not client.list_objects_v2(Bucket="out", Prefix=".red.jsonl.parts/").get("Contents")
    missing = _ptcli("classify-image", "s3://photos/nothing/", "--device", "cpu", env=env)
    assert missing.returncode == 2 and "no such object or prefix: s3://photos/nothing/" in missing.stderr


def test_videos_frames_go_with_their_video_and_ctrl_c_keeps_what_was_committed(cli, job, tmp_path):
    from video_files import make_video

    images, checkpoint = job
    clips = [make_video(tmp_path / f"clip{i}.mp4", frames=6 + i) for i in range(3)]
    photos = sorted((images / "all" / "blue").glob("*.png"))[:20]
    given = ("--checkpoint", checkpoint, "--device", "cpu", "-k", "1")
    printed = cli("classify-image", *photos, *clips, *given, "--json")
    assert printed.exit_code == 0, printed.stderr
    expected = [json.loads(line) for line in printed.stdout.splitlines()]
    assert len(expected) == 20 + 6 + 7 + 8
    result = cli("classify-image", *photos, *clips, *given, "--results", tmp_path / "out.jsonl", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {
        "results": str(tmp_path / "out.jsonl"), "inputs": 23, "rows": 41, "resumed": 0, "failed": 0}
    assert _rows(tmp_path / "out.jsonl") == expected
    changed = cli("classify-image", *photos, *clips, *given, "--vid-stride", "2", "--results", tmp_path / "out.jsonl")
    assert changed.exit_code == 2 and "exists; pass --overwrite" in changed.stderr
    # Ctrl-C (SIGINT) between parts: exit 130, the committed parts kept, and the same command finishes.
    out = tmp_path / "big"
    args = _command("classify-image", images, "--checkpoint", checkpoint, "--results", f"{out}/", "--batch-size", "1",
                    "--workers", "0", "--device", "cpu")
    for moment in (-1, 5, 20):  # while it starts (nothing written yet), then between parts
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while moment < 0 and _rss_mb(proc.pid) < 150 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # its start-up is past the command line (torch loads), and nothing is written yet
        while _committed(out) < moment and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip().splitlines()[-1].startswith(("results: interrupted", "interrupted",
                                                                                   "error: interrupted")), err
        assert _committed(out) >= max(moment, 0) and not (out / "_SUCCESS").exists()
    assert "the same command goes on from there" in err
    finished = _ptcli(*args[3:], "--json")
    assert finished.returncode == 0 and json.loads(finished.stdout)["resumed"] >= 20 * 16, finished.stderr
    assert (out / "_SUCCESS").exists() and not list(out.glob(".*.tmp"))
