import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Every test runs offline with empty caches and the installed plugins only."""
    from ptcli.plugins.testing import offline_environment

    offline_environment(monkeypatch, tmp_path / "caches")
    for name in ("PTCLI_PLUGINS", "PTCLI_STRICT_PLUGINS", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PTCLI_PROGRESS_SECONDS", "0")  # no lines that depend on the clock (tests that want them set it)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C as Python sets it up: code an earlier test ran in this process may have left
        # SIGINT ignored, and a test that sends itself one would then see nothing happen.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from ptcli.plugins import reset_plugins

    reset_plugins()
    yield
    reset_plugins()


# --- the suite on every core -----------------------------------------------------------------------
#
# pytest-xdist (-n auto in pyproject.toml) runs whole test files on each worker, so module
# fixtures are built once. Each worker gets its share of the cores as threads, for torch and for
# the processes its tests start: on 2 cores, two workers of two OpenMP threads each spent 67%
# more CPU than the serial suite and finished later (1587 s against 1344 s); with one thread
# each they took 1042 s.

#: Test files that take longest (pytest --durations), handed out first under xdist: a long file
#: that starts last is the suite's tail, run on one core while the other idles.
LONGEST_FIRST = (
    "tests/test_detect_training.py", "tests/test_export.py", "tests/test_reliability.py", "tests/test_adversarial.py",
    "tests/security/test_half_written.py", "tests/test_scale_ray.py", "tests/test_results.py",
    "tests/test_generate_text_training.py", "tests/test_plugin_kit.py", "tests/test_serve.py",
)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """-n auto: a worker per core, at most 4 (each holds its own torch and models); none when
    the run is one file or tests of one file, which a single worker would run anyway."""
    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(next(iter(files))).is_file():
        return 0
    return min(_cores(), 4)


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = str(max(1, _cores() // int(workers)))
        os.environ["OMP_NUM_THREADS"] = threads  # read by torch when it loads, and by every process a test starts
        os.environ["MKL_NUM_THREADS"] = threads
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {str(REPO / name): place for place, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # a stable sort: each file's tests stay together


# --- the detector's fine-tune, in the background from the session's start ----------------------
#
# The real fine-tune of the offline detector (test_detect_training.py's `fine_tuned`) takes
# two to three minutes of CPU. Run serially (-n 0), the suite keeps two cores busy only part of
# the time, so the run starts, on one thread, as soon as the tests are collected, and the module
# waits for it when it gets there: the same training, out of the way of the clock. On xdist's
# workers the module comes first (LONGEST_FIRST) and its fixture starts the run then.

FINE_TUNE = {}


def fine_tune_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ptcli", "train", "recipes/coco-fasterrcnn.yaml", f"data.root={SHARED / 'detection'}",
            "trainer.epochs=10", f"run.dir={run_dir}", "run.tensorboard=false", "--json"]


def _start_fine_tune(**env) -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ptcli-fine-tune-"))
    caches = folder / "caches"
    env = {**os.environ, "PTCLI_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PTCLI_CACHE": str(caches / "ptcli"),
           "TORCH_HOME": str(caches / "torch"), "HF_HOME": str(caches / "hf"), **env}
    with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
        FINE_TUNE["process"] = subprocess.Popen(fine_tune_command(folder / "runs"), cwd=REPO, env=env, stdout=out,
                                                stderr=err, stdin=subprocess.DEVNULL)
    FINE_TUNE["folder"] = folder


def pytest_collection_finish(session):
    if not (SHARED / "detection" / "train.json").is_file() or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # (under xdist a worker cannot know the file will be its own: the fixture trains it then)
    if any(item.path.name == "test_detect_training.py" and "fine_tuned" in getattr(item, "fixturenames", ())
           for item in session.items):
        _start_fine_tune(OMP_NUM_THREADS="1")  # one core: the other stays the tests'


def fine_tuned_detector(timeout: float = 1500) -> dict:
    """The fine-tune's summary (its --json line): the background run's, waited for, or one run now."""
    if not (SHARED / "detection" / "train.json").is_file():
        pytest.skip(f"shared detection data not found at {SHARED / 'detection'}")
    if FINE_TUNE.get("process") is None:
        _start_fine_tune()
    process, folder = FINE_TUNE["process"], FINE_TUNE["folder"]
    process.wait(timeout=timeout)
    assert process.returncode == 0, (folder / "stderr").read_text()[-3000:]
    return __import__("json").loads((folder / "stdout").read_text().strip().splitlines()[-1])


def pytest_sessionfinish(session):
    process = FINE_TUNE.get("process")
    if process is not None:
        if process.poll() is None:
            process.kill()
            process.wait()
        import shutil

        shutil.rmtree(FINE_TUNE["folder"], ignore_errors=True)


# --- Ctrl-C stops the suite ----------------------------------------------------------------------
#
# ptcli turns Ctrl-C into a clean stop and exit 130, so a command run in this process (the `cli`
# fixture) takes the user's Ctrl-C for its own, and the suite would go on to the next test.
# Python writes each signal's number to its wakeup file descriptor whatever handler a command has
# installed: a SIGINT there that no test sent itself (interrupts.ctrl_c_to_self) is the user's,
# and the session stops after the test it landed in.

WAKEUP = {}


def pytest_sessionstart(session):
    import socket
    import threading

    if threading.current_thread() is threading.main_thread():
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        WAKEUP.update(reader=reader, writer=writer)


def _ctrl_c_received() -> int:
    import signal

    count = 0
    while True:
        try:
            count += WAKEUP["reader"].recv(4096).count(signal.SIGINT)
        except BlockingIOError:
            return count


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not WAKEUP:
        return (yield)
    import signal

    from interrupts import SENT_TO_SELF

    # Armed before each test: an event loop that a test closed may have taken it away.
    signal.set_wakeup_fd(WAKEUP["writer"].fileno(), warn_on_full_buffer=False)
    _ctrl_c_received()
    sent = SENT_TO_SELF[0]
    try:
        return (yield)
    finally:
        if _ctrl_c_received() > SENT_TO_SELF[0] - sent:
            item.session.shouldstop = f"Ctrl-C during {item.nodeid}"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture
def cli():
    """Run ptcli in-process; returns a Result (exit_code, stdout, stderr)."""
    from ptcli.cli import app
    from ptcli.plugins import reset_plugins

    def invoke(*args: str, plugins=None, input=None):
        """``plugins``: load these modules as plugins as well as the installed ones; ``input``:
        standard input."""
        reset_plugins()
        if plugins is not None:
            from ptcli import plugins as plugin_manager

            plugin_manager._cache = plugin_manager.load_plugins(plugins)
        return CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False, prog_name="ptcli")

    return invoke


def run_ptcli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ptcli ...` in a fresh process (for start-up, plugin discovery, exit codes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ptcli", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=300,
    )


COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def make_imagefolder(root: Path, per_class: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """root/<split>/<colour>/NN.png: noisy squares of one colour per class (learnable in seconds)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(rgb, 40, size=(size, size, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def save_simplenet(path: Path, *, image_size: int, classes: list[str], seed: int = 0) -> Path:
    """An untrained classify-image SimpleNet checkpoint (``path``.safetensors and its sidecar)."""
    import torch

    from ptcli.models.checkpoints import save_checkpoint
    from ptcli_classify_image.models import _build_simplenet

    torch.manual_seed(seed)
    model = _build_simplenet(num_classes=len(classes), image_size=image_size)
    pre = {"resize": image_size, "crop": image_size, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    return save_checkpoint(path, model.state_dict(), recipe="classify-image", model="simplenet", classes=list(classes),
                           preprocessing=pre, extra={"model_args": {"image_size": image_size}})


@pytest.fixture
def tiny_imagefolder(tmp_path) -> Path:
    return make_imagefolder(tmp_path / "colours", {"train": 12, "val": 4})


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def simplenet_config(tmp_path, tiny_imagefolder) -> Path:
    """A classify-image config that trains SimpleNet on tiny_imagefolder in about a second."""
    return write_yaml(tmp_path / "tiny.yaml", {
        "recipe": "classify-image",
        "data": {"root": str(tiny_imagefolder), "image_size": 16, "augment": "none"},
        "model": {"name": "simplenet"},
        "trainer": {"epochs": 2, "batch_size": 8, "lr": 0.003, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs")},
    })


def torchrun(*args):
    """`ptcli train ... --json` in two CPU processes under torchrun (DDP over gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "ptcli", "train", *map(str, args), "trainer.device=cpu", "--json"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="session")
def two_process_training(tmp_path_factory) -> tuple[Path, dict]:
    """A SimpleNet config (as simplenet_config's) and the summary of its training by two
    torchrun processes on one node: what training across nodes or on Ray must match."""
    import json

    tmp = tmp_path_factory.mktemp("two_processes")
    folder = make_imagefolder(tmp / "colours", {"train": 12, "val": 4})
    config = write_yaml(tmp / "tiny.yaml", {
        "recipe": "classify-image", "data": {"root": str(folder), "image_size": 16, "augment": "none"},
        "model": {"name": "simplenet"}, "trainer": {"epochs": 2, "batch_size": 8, "lr": 0.003, "optimizer": "adam"},
        "run": {"dir": str(tmp / "runs")}})
    done = torchrun(config, "run.name=torchrun")
    assert done.returncode == 0, done.stderr[-3000:]
    return config, json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][0])


def assert_trains_alike(summary: dict, expected: dict) -> None:
    """The same metrics (rel 1e-4) and last weights (rtol 1e-4) as ``expected``'s run: DDP's
    tolerance, its all-reduce order aside."""
    import pytest
    import torch
    from safetensors.torch import load_file

    for key, value in expected["metrics"].items():
        if isinstance(value, float) and "time" not in key:
            assert summary["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    ours, theirs = load_file(summary["last_checkpoint"]), load_file(expected["last_checkpoint"])
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-6)


def fit_full_batch(model, x, y, steps: int, lr: float = 0.01):
    """``model`` trained by Adam on all of (x, y) at once for ``steps`` steps, then in eval mode:
    a small network ready for attacks in seconds."""
    import torch

    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


def colour_simplenet_config(tmp: Path, root: Path, name: str, epochs: int = 4, **sections) -> Path:
    """A config that trains SimpleNet on make_imagefolder's colours (16 px) in seconds, with
    extra top-level ``sections`` (adversarial, distill...)."""
    return write_yaml(tmp / f"{name}.yaml", {
        "recipe": "classify-image", "data": {"root": str(root), "image_size": 16, "augment": "none"},
        "model": {"name": "simplenet"}, "trainer": {"epochs": epochs, "batch_size": 8, "lr": 0.003, "optimizer": "adam"},
        "run": {"dir": str(tmp / "runs"), "name": name, "tensorboard": False}, **sections})


def train_once(config: Path) -> dict:
    """`ptcli train CONFIG --json` in-process for a module-scoped fixture (no `cli` there)."""
    import json

    from typer.testing import CliRunner

    from ptcli.cli import app
    from ptcli.plugins import reset_plugins

    reset_plugins()
    result = CliRunner().invoke(app, ["train", str(config), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def train_json(cli, *args):
    """`ptcli train ... --json` in-process; returns the run summary."""
    import json

    result = cli("train", *args, "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- text ------------------------------------------------------------------------------------

TOPIC_WORDS = {
    "food": "bread cheese soup apple pasta dinner bake salad pepper butter".split(),
    "sports": "goal match team ball score coach race player win league".split(),
    "tech": "computer code bug server keyboard screen program data network disk".split(),
}
FILLER = "the a of and to it is was very quite really then".split()


def make_text_rows(per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label): a few topic words mixed with filler, learnable in seconds."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(per_class):
        for label, words in TOPIC_WORDS.items():
            picked = rng.sample(words, 3) + rng.sample(FILLER, 4)
            rng.shuffle(picked)
            rows.append((" ".join(picked), label))
    return rows


def write_text_csv(path: Path, rows, columns=("text", "label"), delimiter=",") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny_text(tmp_path) -> Path:
    """A folder with train.csv (30 per class) and val.csv (6 per class), 3 topics."""
    root = tmp_path / "topics"
    write_text_csv(root / "train.csv", make_text_rows(30, seed=1))
    write_text_csv(root / "val.csv", make_text_rows(6, seed=2))
    return root


@pytest.fixture
def lstm_config(tmp_path, tiny_text) -> Path:
    """A classify-text config that trains a small LSTM on tiny_text in a few seconds."""
    return write_yaml(tmp_path / "lstm.yaml", {
        "recipe": "classify-text",
        "data": {"root": str(tiny_text), "max_length": 16},
        "model": {"name": "lstm", "embed_dim": 16, "hidden": 16, "dropout": 0.0},
        "trainer": {"epochs": 6, "batch_size": 8, "lr": 0.02, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })


def _bert_tokenizer(texts):
    """A WordPiece tokenizer with BERT's special tokens and [CLS] ... [SEP] template. Its vocabulary
    is the sorted set of words: tokenizers' WordPieceTrainer numbers tokens differently from run
    to run, which changed the model's random start and made fine-tuning tests flaky."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = sorted({word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(WordPiece({token: i for i, token in enumerate(specials + words)}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                             special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def make_tiny_bert(folder: Path, *, with_head: bool, labels=("negative", "positive"), seed: int = 0) -> Path:
    """A 2-layer BERT-style model folder (config.json, tokenizer.json, model.safetensors) with a
    tokenizer trained here: an encoder to fine-tune, or (with_head) a sequence classifier."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

    texts = [text for text, _ in make_text_rows(20, seed=9)] + ["good great fine bad awful poor"]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_bert_tokenizer(texts), unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if with_head else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_encoder(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "encoder", with_head=False)


@pytest.fixture(scope="session")
def tiny_bert_classifier(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "classifier", with_head=True)


def make_tiny_translator(folder: Path) -> Path:
    """A 1-layer BART folder with a word-level tokenizer: random, but it generates text, which
    is all that back-translation's plumbing needs."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    tokenizer = Tokenizer(WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([t for t, _ in make_text_rows(10)],
                                  WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"], show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")
    config = BartConfig(vocab_size=fast.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=12, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                        decoder_start_token_id=3, forced_eos_token_id=3)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    model.generation_config.min_new_tokens = 3  # a random model would often stop at once
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def make_tiny_gpt2(folder: Path, texts: list[str], *, vocab_size: int = 400, n_positions: int = 64, seed: int = 0) -> Path:
    """A 2-layer GPT-2 folder with a byte-level BPE tokenizer trained here on ``texts``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ptcli_generate_text.textdata import train_byte_level_bpe

    tokenizer = train_byte_level_bpe(texts, vocab_size)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    texts = [text for text, _ in make_text_rows(40, seed=5)]
    return make_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2", texts)


@pytest.fixture
def topic_corpus(tmp_path) -> Path:
    """A plain text file of topic sentences, about 2,000 words."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(text + "." for text, _ in make_text_rows(100, seed=6)) + "\n")
    return path


def save_tiny_rrdbnet(path: Path, scale: int = 4, seed: int = 0, nested: str | None = "params_ema") -> Path:
    """A 1-block RRDBNet state dict with random weights, saved as basicsr does."""
    import torch

    from ptcli_super_resolve.models import build_rrdbnet

    torch.manual_seed(seed)
    state = build_rrdbnet(scale=scale, num_feat=16, num_block=1, num_grow_ch=8).state_dict()
    torch.save({nested: state} if nested else state, path)
    return path


@pytest.fixture
def tiny_rrdbnet(tmp_path) -> Path:
    return save_tiny_rrdbnet(tmp_path / "tiny_rrdbnet.pth")
