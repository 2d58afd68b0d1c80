"""--engine ray: a derived command on a real Ray cluster of two nodes, inside a network
namespace that has only a loopback interface (made by the test: Ray binds the machine's own
address otherwise, which tests must never use). Its results equal the local engine's."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, assert_trains_alike, make_imagefolder, save_simplenet

HERE = Path(__file__).parent


def _in_namespace(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def namespace():
    pytest.importorskip("ray.data", reason="Ray Data (the ray extra) is a dev dependency: --engine ray needs it")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) make the test's own network namespace")
    probe = _in_namespace("ip", "-o", "link")
    if probe.returncode != 0:
        pytest.skip(f"no network namespace can be made here (unshare -n: {probe.stderr.strip()[:120]})")
    links = [line.split(":")[1].strip() for line in probe.stdout.splitlines()]
    assert links == ["lo"], links  # nothing but the loopback: Ray cannot reach this machine's address


@pytest.fixture(scope="module")
def on_ray(namespace, tmp_path_factory, two_process_training, tiny_bert_classifier):
    """One two-node cluster for the module: a classification with --engine ray (its images
    decoded in two Ray tasks: --workers 2), then a training with --engine ray, a copy of its run resumed, and a
    text classification (decoded in the actors: a tokenizer's recipe gives no decoder); what
    each printed, and what they were given."""
    tmp = tmp_path_factory.mktemp("on_ray")
    images = make_imagefolder(tmp / "images", {"all": 10}, size=16)
    (images / "all" / "red" / "broken.png").write_bytes(b"not a png")
    checkpoint = save_simplenet(tmp / "net", image_size=32, classes=["red", "green", "blue"])
    classify = ("classify-image", images, "--checkpoint", checkpoint, "--batch-size", "4", "--device", "cpu")
    texts = ("classify-text", "good bread", "", "bad soup", "fine", "--model", tiny_bert_classifier, "--json")
    config, _ = two_process_training
    run_dir = tmp / "runs" / "classify-image" / "ray"
    train = [sys.executable, "-m", "ptcli", "train", config, "trainer.device=cpu", f"run.dir={tmp / 'runs'}",
             "--engine", "ray", "--replicas", "2", "--json"]
    report = _on_cluster([sys.executable, "-m", "ptcli", *classify, "--engine", "ray", "--replicas", "2", "--workers", "2",
                          "--results", tmp / "ray.jsonl", "--json"],
                         [*train, "run.name=ray"],
                         ["cp", "-r", run_dir, f"{run_dir}-resumed"],  # resume a copy: keep the first to compare
                         [*train, f"resume={run_dir}-resumed", "trainer.epochs=3"],
                         [sys.executable, "-m", "ptcli", *texts, "--engine", "ray", "--replicas", "2", "--batch-size", "2"])
    return report["runs"], {"classify": classify, "results": tmp / "ray.jsonl", "run_dir": run_dir, "texts": texts}


def _on_cluster(*commands) -> dict:
    """The commands run in turn beside a two-node Ray cluster in the test's namespace."""
    ran = _in_namespace(sys.executable, str(HERE / "ray_cluster.py"), json.dumps([list(map(str, c)) for c in commands]))
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert [(n["alive"], n["cpus"], n["address"]) for n in report["nodes"]] == [(True, 1.0, "127.0.0.1")] * 2
    return report


def test_engine_ray_on_two_nodes_answers_as_the_local_engine(on_ray, cli):
    runs, given = on_ray
    local = cli(*given["classify"], "--json")
    assert local.exit_code == 1  # the broken file
    expected = [json.loads(line) for line in local.stdout.splitlines()]
    run = runs[0]
    # Two replicas of one CPU each on two nodes of one CPU: one on each node.
    assert run["returncode"] == 1, run["stderr"][-3000:]
    assert json.loads(run["stdout"]) == {"results": str(given["results"]), "inputs": 31, "rows": 31, "resumed": 0,
                                         "failed": 1}
    assert [json.loads(line) for line in given["results"].read_text().splitlines()] == expected
    assert "Traceback" not in run["stderr"]


def test_a_recipe_that_decodes_beside_its_model_answers_on_ray_as_locally(on_ray, cli):
    runs, given = on_ray
    local = cli(*given["texts"])
    assert local.exit_code == 1  # the empty text
    run = runs[4]
    assert run["returncode"] == 1, run["stderr"][-3000:]
    assert [json.loads(line) for line in run["stdout"].splitlines()] == [json.loads(line) for line in local.stdout.splitlines()]


def test_built_in_decoders_pickle_without_the_model_and_decode_as_decode_does(tmp_path):
    """What --engine ray's decode tasks get: the predictor's decoder, shipped without the model."""
    import pickle

    import torch
    from PIL import Image
    from ptcli.inference.contract import Source
    from ptcli.inference.runner import load_predictor
    from ptcli.plugins import get_plugins
    from ptcli_classify_audio.predictor import AudioClassifier
    from ptcli_detect.predictor import Detector
    from test_classify_audio import write_wav

    photo = REPO / "examples" / "cat.jpg"
    checkpoint = save_simplenet(tmp_path / "net", image_size=32, classes=["red", "green", "blue"])
    classifier = load_predictor(get_plugins().recipe("classify-image"), Source(checkpoint=checkpoint), torch.device("cpu"))
    shipped = pickle.dumps(classifier.decoder())
    assert len(shipped) < 4000 < len(pickle.dumps(classifier.net))  # the preprocessing, not the network
    assert pickle.loads(shipped)(photo).data.tobytes() == classifier.decode(photo).data.tobytes()
    assert classifier.decode(photo).data.size == (32, 32)
    for writing in (False, True):
        detector = Detector.__new__(Detector)  # its decoder needs nothing of a loaded model
        detector.writing = writing
        decoded, expected = pickle.loads(pickle.dumps(detector.decoder()))(photo), detector.decode(photo)
        assert decoded.meta.keys() == expected.meta.keys() and ("image" in decoded.meta) == writing
        assert decoded.data.tobytes() == expected.data.tobytes() == Image.open(photo).convert("RGB").tobytes()
    wav = write_wav(tmp_path / "tone.wav", rate=8000, seconds=0.5, freq=440.0)
    listener = AudioClassifier.__new__(AudioClassifier)
    audio = pickle.loads(pickle.dumps(listener.decoder()))(wav)
    assert (audio.data[0] == listener.decode(wav).data[0]).all() and audio.data[1] == 8000


def test_what_ray_tasks_decode_the_actors_run_as_the_local_engine_does(tmp_path):
    """The two steps of --engine ray without the cluster: a task's _Prepare decodes (or fails) an
    input with the predictor's decoder, shipped pickled; an actor's _Replica runs the decoded
    Samples; the answers are the local engine's."""
    import pickle

    import torch
    from ptcli.inference.contract import Source
    from ptcli.inference.ray_engine import _Prepare, _Replica, decodes_in_tasks
    from ptcli.inference.results import Failed
    from ptcli.inference.runner import load_predictor, run
    from ptcli.plugins import get_plugins

    plugins = get_plugins()
    image, detect, text = (plugins.recipe(name) for name in ("classify-image", "detect", "classify-text"))
    # In tasks with GPU actors, or when --workers asks for decode tasks; beside CPU actors else.
    assert [decodes_in_tasks(image, workers=workers, gpus=gpus) for workers, gpus in ((None, 1), (2, 0), (None, 0), (0, 1))] == [
        True, True, False, False]
    assert decodes_in_tasks(detect, workers=None, gpus=1)
    assert not decodes_in_tasks(text, workers=4, gpus=1)  # no decoder: its tokenizer stays with the model
    checkpoint = save_simplenet(tmp_path / "net", image_size=32, classes=["red", "green", "blue"])
    predictor = load_predictor(plugins.recipe("classify-image"), Source(checkpoint=checkpoint), torch.device("cpu"), top_k=2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    inputs = [REPO / "examples" / "cat.jpg", broken, REPO / "examples" / "cat.jpg"]
    prepare = _Prepare(pickle.loads(pickle.dumps(predictor.decoder())))
    rows = [prepare.prepared({"index": index, "input": str(path), "kind": "image", "data": b"", "sample": b"", "error": ""})
            for index, path in enumerate(inputs)]
    assert [bool(row["sample"]) for row in rows] == [True, False, True] and "broken.png" in rows[1]["error"]
    replica = _Replica.__new__(_Replica)  # what its __init__ sets, without the Ray runtime
    replica.predictor, replica.decoded = predictor, True
    answers = replica({key: [row[key] for row in rows] for key in rows[0]})
    local = [({"error": result.message} if isinstance(result, Failed) else {"result": result})
             for _, result in run(predictor, inputs, batch_size=3, workers=0, description="")]
    assert answers["index"] == [0, 1, 2] and [json.loads(answer) for answer in answers["answer"]] == local
    assert len(local[0]["result"]["predictions"]) == 2 and "error" in local[1]


def test_train_engine_ray_trains_as_torchrun_does_and_resumes(on_ray, two_process_training):
    """Two Ray Train workers (one a node) train as two torchrun processes on one node, write the
    run folder, and resume=RUN_DIR goes on from its state."""
    runs, given = on_ray
    first, _, resumed = runs[1:4]
    assert first["returncode"] == 0, first["stderr"][-3000:]
    summary = json.loads(first["stdout"].strip().splitlines()[-1])
    assert summary["run_dir"] == str(given["run_dir"])
    assert_trains_alike(summary, two_process_training[1])
    assert resumed["returncode"] == 0, resumed["stderr"][-3000:]
    again = json.loads(resumed["stdout"].strip().splitlines()[-1])
    assert again["run_dir"] == f"{given['run_dir']}-resumed"
    records = [json.loads(line) for line in open(f"{again['run_dir']}/metrics.jsonl")]
    assert [r["epoch"] for r in records] == [1, 2, 3]


def test_engine_ray_is_refused_where_it_cannot_run_yet(cli, tmp_path):
    from video_files import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=3)
    for args, words in ((("classify-image", clip, "--engine", "ray"), "videos run with the local engine"),
                        (("classify-image", REPO / "examples" / "cat.jpg", "--replicas", "2"), "go with --engine ray"),
                        (("classify-image", REPO / "examples" / "cat.jpg", "--engine", "spark"), "--engine must be one of"),
                        (("explain", REPO / "examples" / "cat.jpg", "--engine", "ray"), "returns results, not files")):
        result = cli(*args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.stderr)
    config = REPO / "recipes" / "esc50-spectrogram.yaml"
    for args, words in ((("--replicas", "2"), "--replicas and --address go with --engine ray"),
                        (("--engine", "slurm"), "--engine must be one of local, ray")):
        result = cli("train", config, *args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.stderr)


def test_without_ray_the_engine_is_one_line(monkeypatch):
    from ptcli.errors import UsageError
    from ptcli.inference.ray_engine import connect

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"--engine ray needs Ray Data: pip install 'ptcli\[ray\]'"):
        connect("127.0.0.1:1")


def test_the_kuberay_job_runs_a_ptcli_command_that_fits_its_cluster(cli):
    """deploy/ray/rayjob.yaml: a RayJob whose entrypoint is a ptcli command this ptcli takes
    (every flag it gives exists), on --engine ray with --results, asking for no more replicas
    than its workers have CPUs, from the image the Dockerfile builds with the ray extra."""
    import shlex

    import yaml

    job = yaml.safe_load((REPO / "deploy" / "ray" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[0] == "ptcli" and "--address" not in words  # KubeRay gives RAY_ADDRESS
    assert words[2].startswith("s3://")
    options = dict(zip(words[3::2], words[4::2]))
    assert options["--engine"] == "ray" and options["--results"].startswith("s3://")
    help_text = cli(words[1], "--help").stdout
    assert all(flag in help_text for flag in words if flag.startswith("--"))
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    cpus = sum(int(group["rayStartParams"]["num-cpus"]) * group["replicas"] for group in cluster["workerGroupSpecs"])
    assert int(options["--replicas"]) <= cpus
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        spec = group["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["containers"][0]["image"] == "ptcli-ray:latest"
    assert options["--results"].endswith("/")  # a prefix of parts: a resubmitted job goes on
    assert "--build-arg EXTRAS=ray,s3" in (REPO / "deploy" / "ray" / "rayjob.yaml").read_text()
    assert "ARG EXTRAS" in (REPO / "deploy" / "Dockerfile").read_text()
