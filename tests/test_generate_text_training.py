"""generate-text fine-tuning through `ptcli train`, the checkpoint round trip, --export-hf and eval."""

import json
import math

import pytest
from conftest import REPO, train_json, write_yaml

from ptcli.models.checkpoints import load_checkpoint


def lm_config(tmp_path, root, **model):
    return write_yaml(tmp_path / "lm.yaml", {
        "recipe": "generate-text",
        "data": {"root": str(root), "block_size": 32, "val_fraction": 0.1},
        "model": model,
        "sample": {"every": 10, "prompt": "bread", "max_new_tokens": 5},
        "trainer": {"epochs": 2, "batch_size": 8, "lr": 0.003, "optimizer": "adamw"},
        "run": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    })


def test_fine_tune_a_local_model_then_generate_and_export(cli, tmp_path, tiny_gpt2, topic_corpus):
    result = cli("train", lm_config(tmp_path, topic_corpus, pretrained=str(tiny_gpt2)), "--json")
    assert result.exit_code == 0, result.stderr
    assert "sample at step 10: bread" in result.stderr  # samples go to stderr, never stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in (tmp_path / "runs" / "generate-text" / "lm" / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["val/perplexity"] < lines[0]["val/perplexity"]
    assert lines[1]["val/perplexity"] == pytest.approx(math.exp(lines[1]["val/loss"]), rel=1e-4)

    best = summary["best_checkpoint"]
    ckpt = load_checkpoint(best, recipe="generate-text")
    assert ckpt.model == "causal-lm" and ckpt.meta["model_args"]["config"]["n_layer"] == 2
    assert ckpt.meta["tokenizer"]["special_tokens"]["eos_token"] == "<|endoftext|>"
    args = ("--max-new-tokens", "10", "--seed", "5", "--json", "the coach")
    from_checkpoint = json.loads(cli("generate-text", "--checkpoint", best, *args).stdout)
    assert from_checkpoint["generations"][0]

    exported = tmp_path / "exported"
    done = cli("generate-text", "--checkpoint", best, "--export-hf", exported)
    assert done.exit_code == 0 and {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in exported.iterdir()}
    from_folder = json.loads(cli("generate-text", "--model", exported, *args).stdout)
    assert from_folder["generations"] == from_checkpoint["generations"]
    again = cli("generate-text", "--checkpoint", best, "--export-hf", exported)
    assert again.exit_code == 2 and "is not empty" in again.stderr

    report = json.loads(cli("eval", best, topic_corpus, "--json").stdout)
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]), rel=1e-3) and report["blocks"] > 0


def test_the_from_scratch_recipe_writes_words(cli, tmp_path, shared_data):
    """recipes/gpt-scratch.yaml with its own learning rate and schedule (3 epochs of its 8, for
    time): a GPT-2 and a byte-level BPE tokenizer learnt from the real corpus, whose
    samples are mostly the corpus's own words, where the fine-tuning rate left it writing newlines."""
    import re

    corpus = shared_data / "text" / "corpus.txt"
    summary = train_json(cli, REPO / "recipes" / "gpt-scratch.yaml", f"data.root={corpus}", "trainer.epochs=3",
                         "sample.every=0", f"run.dir={tmp_path / 'runs'}", "run.tensorboard=false")
    # An untrained model is about as perplexed as the vocabulary is large.
    assert summary["metrics"]["val/perplexity"] < 4000 / 10
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.meta["model_args"]["source"] == "scratch" and ckpt.meta["model_args"]["config"]["vocab_size"] == 4000
    result = cli("generate-text", "--checkpoint", summary["best_checkpoint"], "--seed", "0", "--temperature", "0.8",
                 "--max-new-tokens", "60", "--json", "It was")
    text = json.loads(result.stdout)["generations"][0]
    vocabulary = set(re.findall(r"[a-z]+", corpus.read_text().lower()))
    words = re.findall(r"[a-z]+", text.lower())
    assert len(words) >= 20 and sum(w in vocabulary for w in words) / len(words) >= 0.8, text


@pytest.mark.parametrize("override, message", [
    (["data.block_size=128"], "longer than the model's context (64 tokens)"),
    (["data.block_size=4"], "data.block_size"),
    (["data.root=/nowhere.txt"], "text data not found"),
    (["data.stride=0"], "data.stride"),
])
def test_config_errors(cli, tmp_path, tiny_gpt2, topic_corpus, override, message):
    result = cli("train", lm_config(tmp_path, topic_corpus, pretrained=str(tiny_gpt2)), *override)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_data_errors(cli, tmp_path, tiny_gpt2):
    short = tmp_path / "short.txt"
    short.write_text("bread and soup\n")
    result = cli("train", lm_config(tmp_path, short, pretrained=str(tiny_gpt2)))
    assert result.exit_code == 2 and "is too short for blocks of 32 tokens" in result.stderr
    (tmp_path / "empty").mkdir()
    assert "no .txt files under" in cli("train", lm_config(tmp_path, tmp_path / "empty", pretrained=str(tiny_gpt2))).stderr
    scratch = cli("train", lm_config(tmp_path, short, pretrained=None, scratch={"n_embd": 30, "n_head": 4}))
    assert scratch.exit_code == 2


def test_checkpoint_of_another_recipe(cli, tmp_path, lstm_config):
    best = train_json(cli, lstm_config)["best_checkpoint"]
    result = cli("generate-text", "--checkpoint", best, "hello")
    assert result.exit_code == 2 and "was made by classify-text, not generate-text" in result.stderr


def test_folder_of_text_files(tmp_path, topic_corpus):
    from ptcli_generate_text.textdata import blocks, read_corpus

    folder = tmp_path / "books"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text("first")
    (folder / "b" / "c.txt").write_text("second")
    (folder / "notes.md").write_text("ignored")
    assert read_corpus(folder) == ["first", "second"]
    assert blocks(list(range(10)), 4, 3) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
