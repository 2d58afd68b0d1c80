"""classify-text training through `ptcli train`, the checkpoint round trip and `ptcli eval`."""

import json

import pytest
import torch
from conftest import REPO, make_text_rows, make_tiny_translator, torchrun, train_json, write_text_csv, write_yaml

from ptcli.models.checkpoints import load_checkpoint


def test_lstm_trains_and_its_checkpoint_is_self_contained(cli, lstm_config, tiny_text):
    summary = train_json(cli, lstm_config)
    assert summary["metrics"]["val/accuracy"] >= 0.9
    ckpt = load_checkpoint(summary["best_checkpoint"], recipe="classify-text")
    assert ckpt.model == "lstm" and ckpt.classes == ["food", "sports", "tech"]
    assert ckpt.meta["model_args"]["embed_dim"] == 16 and ckpt.meta["model_args"]["pad_id"] == 0
    assert ckpt.meta["tokenizer"]["max_length"] == 16
    assert ckpt.meta["data"] == {"format": "auto", "text_column": "text", "label_column": "label", "encoding": "utf-8"}

    # The checkpoint alone classifies: move it away from its run and the training data.
    moved = tiny_text.parent / "elsewhere"
    moved.mkdir()
    for suffix in (".safetensors", ".json"):
        (moved / f"model{suffix}").write_bytes(ckpt.path.with_suffix(suffix).read_bytes())
    result = cli("classify-text", "--checkpoint", moved / "model.safetensors", "--json", "-k", "1", "soup dinner salad")
    assert json.loads(result.stdout)["predictions"][0]["label"] == "food"


def test_eval_on_a_file_and_on_a_folder(cli, lstm_config, tiny_text):
    best = train_json(cli, lstm_config)["best_checkpoint"]
    result = cli("eval", best, tiny_text / "val.csv", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["samples"] == 18 and report["classes"] == ["food", "sports", "tech"]
    assert report["accuracy"] >= 0.9
    assert [row["support"] for row in report["per_class"]] == [6, 6, 6]
    assert sum(map(sum, report["confusion_matrix"])) == 18
    write_text_csv(tiny_text / "test.csv", make_text_rows(4, seed=7))
    folder = cli("eval", best, tiny_text)  # a folder: its test file first
    assert folder.exit_code == 0 and "samples   12" in folder.stdout and "confusion matrix" in folder.stdout


def test_eval_refuses_labels_the_checkpoint_does_not_know(cli, lstm_config, tmp_path):
    best = train_json(cli, lstm_config)["best_checkpoint"]
    other = write_text_csv(tmp_path / "other.csv", [("bread", "food"), ("vote", "politics")])
    result = cli("eval", best, other)
    assert result.exit_code == 2
    assert "labels the checkpoint does not know: 'politics'; it knows food, sports, tech" in result.stderr
    missing = cli("eval", best, tmp_path / "nowhere")
    assert missing.exit_code == 2 and "data not found" in missing.stderr
    (tmp_path / "empty").mkdir()
    assert "no test or val file" in cli("eval", best, tmp_path / "empty").stderr


def test_bpe_gru_augmentation_and_a_held_out_fraction(cli, tmp_path):
    rows = [(label, text) for text, label in make_text_rows(30, seed=3)]
    data = tmp_path / "tsv"
    write_text_csv(data / "all.tsv", rows, columns=("topic", "sentence"), delimiter="\t")
    config = write_yaml(tmp_path / "gru.yaml", {
        "recipe": "classify-text",
        "data": {"root": str(data), "train": "all.tsv", "val": None, "val_fraction": 0.2, "text_column": "sentence",
                 "label_column": "topic", "max_length": 24, "augment": {"delete": 0.1, "swap": 0.1, "insert": 0.1}},
        "model": {"name": "gru", "embed_dim": 16, "hidden": 16, "tokenizer": {"kind": "bpe", "vocab_size": 300}},
        "trainer": {"epochs": 6, "batch_size": 8, "lr": 0.02, "optimizer": "adam"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })
    summary = train_json(cli, config)
    assert summary["metrics"]["val/accuracy"] >= 0.8
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.model == "gru" and ckpt.meta["tokenizer"]["tokenizer"]["model"]["type"] == "BPE"
    report = json.loads(cli("eval", summary["best_checkpoint"], data / "all.tsv", "--json").stdout)
    assert report["samples"] == 90  # the columns come from the checkpoint's sidecar


def test_transformer_fine_tunes_from_a_local_folder(cli, tmp_path, tiny_text, tiny_bert_encoder):
    config = write_yaml(tmp_path / "bert.yaml", {
        "recipe": "classify-text",
        "data": {"root": str(tiny_text), "max_length": 32},
        "model": {"name": "transformer", "pretrained": str(tiny_bert_encoder)},
        "trainer": {"epochs": 12, "batch_size": 8, "lr": 0.002, "optimizer": "adamw", "scheduler": {"name": "one-cycle"}},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })
    summary = train_json(cli, config)
    assert summary["metrics"]["val/accuracy"] >= 0.8
    assert "val/accuracy" in summary["metrics"]
    ckpt = load_checkpoint(summary["best_checkpoint"], recipe="classify-text")
    assert ckpt.model == "transformer"
    config_args = ckpt.meta["model_args"]["config"]
    assert config_args["architectures"] == ["BertForSequenceClassification"] and config_args["num_hidden_layers"] == 2
    assert ckpt.meta["model_args"]["source"] == str(tiny_bert_encoder)
    assert ckpt.meta["tokenizer"]["max_length"] == 32
    result = cli("classify-text", "--checkpoint", summary["best_checkpoint"], "--json", "-k", "1", "coach league goal")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == "sports"
    report = json.loads(cli("eval", summary["best_checkpoint"], tiny_text / "val.csv", "--json").stdout)
    assert report["accuracy"] == pytest.approx(summary["metrics"]["val/accuracy"], abs=1e-6)


def test_frozen_encoder_only_trains_the_head(cli, tmp_path, tiny_text, tiny_bert_encoder):
    from safetensors.torch import load_file

    config = write_yaml(tmp_path / "frozen.yaml", {
        "recipe": "classify-text",
        "data": {"root": str(tiny_text), "max_length": 16},
        "model": {"name": "transformer", "pretrained": str(tiny_bert_encoder)},
        "trainer": {"epochs": 1, "batch_size": 16, "lr": 0.01, "freeze": ["encoder"]},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })
    trained = load_file(train_json(cli, config)["last_checkpoint"])
    original = load_file(tiny_bert_encoder / "model.safetensors")
    key = "bert.encoder.layer.0.attention.self.query.weight"
    stored = original.get(key, original.get(key.removeprefix("bert.")))
    torch.testing.assert_close(trained[key], stored)
    assert not torch.equal(trained["classifier.weight"], torch.zeros_like(trained["classifier.weight"]))


@pytest.mark.parametrize("override, message", [
    (["data.txt_column=x"], "did you mean data.text_column"),
    (["data.val=null"], "set data.val (a validation file) or data.val_fraction"),
    (["data.val=missing.csv"], "text file not found"),
    (["model.name=transformers"], "model.name"),
    (["data.augment.replace=0.3"], "needs a word list"),
    (["data.augment.synonyms=nowhere.txt", "data.augment.replace=0.2"], "synonym file not found"),
    (["model.name=transformer", "model.pretrained=./nowhere"], "model folder not found"),
])
def test_config_errors_are_one_line_usage_errors(cli, lstm_config, override, message, tmp_path):
    result = cli("train", lstm_config, *override)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing written before the run could start


def test_label_sets_that_cannot_train(cli, tmp_path):
    data = tmp_path / "bad"
    write_text_csv(data / "train.csv", [("a b", "x"), ("c d", "x")])
    write_text_csv(data / "val.csv", [("a b", "x")])
    config = write_yaml(tmp_path / "c.yaml", {"recipe": "classify-text", "data": {"root": str(data)}})
    assert "a classifier needs at least two" in cli("train", config).stderr
    write_text_csv(data / "train.csv", [("a b", "x"), ("c d", "y")])
    write_text_csv(data / "val.csv", [("a b", "z")])
    result = cli("train", config)
    assert result.exit_code == 2 and "validation labels 'z' do not occur in the training data (x, y)" in result.stderr


def test_back_translation_offline_says_what_is_missing(cli, lstm_config):
    result = cli("train", lstm_config, "data.augment.back_translation.to=Helsinki-NLP/opus-mt-en-de",
                 "data.augment.back_translation.back=Helsinki-NLP/opus-mt-de-en")
    assert result.exit_code == 1
    assert "weights 'Helsinki-NLP/opus-mt-en-de' are not on this machine: offline mode" in result.stderr


def test_back_translation_adds_paraphrases_before_training(tmp_path, tiny_text):
    import yaml

    from ptcli_classify_text.training import ClassifyTextConfig, ClassifyTextTask

    translator = str(make_tiny_translator(tmp_path / "translator"))
    config = ClassifyTextConfig.model_validate({
        "recipe": "classify-text",
        "data": {"root": str(tiny_text), "augment": {"back_translation": {"to": translator, "back": translator, "fraction": 0.5}}},
        "trainer": {"device": "cpu"},
    })
    task = ClassifyTextTask(config)
    task.device = torch.device("cpu")  # as the trainer sets it
    task.setup()
    texts, targets = task.train
    assert len(texts) == 90 + 45 and len(targets) == len(texts)
    originals = {text for text, _ in make_text_rows(30, seed=1)}
    added = texts[90:]
    assert all(text.strip() for text in added) and not originals.issuperset(added)
    assert yaml.safe_dump(config.model_dump(mode="json"))  # the config stays serialisable for config.yaml


@pytest.mark.slow
def test_back_translation_under_ddp_shares_the_work(tmp_path, lstm_config):
    translator = make_tiny_translator(tmp_path / "translator")
    done = torchrun(lstm_config, f"data.augment.back_translation.to={translator}",
                    f"data.augment.back_translation.back={translator}", "data.augment.back_translation.fraction=0.5",
                    "trainer.epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # 90 texts + 45 paraphrases, split between 2 processes in batches of 8: 9 steps. Had each
    # process kept only its own share of paraphrases (90 + 23 texts), 8 steps.
    assert summary["metrics"]["step"] == 9


def test_sentiment140_recipe_trains_on_the_raw_format(cli, tmp_path):
    positive, negative = "love great happy awesome fun", "hate awful sad terrible bored"
    lines = []
    for i in range(40):
        label, words = ("4", positive) if i % 2 else ("0", negative)
        text = " ".join(words.split()[j % 5] for j in range(i % 3, i % 3 + 3))
        lines.append(f'"{label}","{1000 + i}","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","user{i}","{text} @friend"')
    data = tmp_path / "s140"
    data.mkdir()
    (data / "training.1600000.processed.noemoticon.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    summary = train_json(cli, REPO / "recipes" / "sentiment140-bilstm.yaml", f"data.root={data}", "trainer.epochs=3",
                         "model.embed_dim=8", "model.hidden=8", f"run.dir={tmp_path / 'runs'}", "trainer.batch_size=8",
                         "data.val_fraction=0.25")
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.classes == ["negative", "positive"] and ckpt.meta["data"]["format"] == "sentiment140"


def test_every_text_recipe_validates(cli):
    for name in ("text-bilstm", "text-transformer", "sentiment140-bilstm"):
        result = cli("train", REPO / "recipes" / f"{name}.yaml", "--print-config")
        assert result.exit_code == 0, (name, result.stderr)
        assert "recipe: classify-text" in result.stdout


def test_lr_find_on_a_text_recipe(cli, lstm_config, tmp_path):
    result = cli("lr-find", lstm_config, "--iterations", "12", "--plot", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "lr.png").is_file() and len(json.loads(result.stdout)["losses"]) >= 5


def test_real_minilm_fine_tunes_offline(cli, shared_data, tmp_path):
    """The packaged all-MiniLM-L6-v2 fine-tuned on real quotes for one short epoch."""
    summary = train_json(cli, REPO / "recipes" / "text-transformer.yaml", f"data.root={shared_data / 'text'}",
                         "trainer.epochs=1", "data.max_length=40", "trainer.lr=0.0003", f"run.dir={tmp_path / 'runs'}",
                         "run.tensorboard=false")
    report = json.loads(cli("eval", summary["best_checkpoint"], shared_data / "text" / "test.csv", "--json").stdout)
    assert report["samples"] == 60
    assert report["accuracy"] >= 0.5  # chance is 0.2; a full run reaches about 0.9
