"""classify-text's parts: file formats, tokenizers, augmentation and the recurrent network."""

import json

import pytest
import torch
from conftest import make_text_rows, write_text_csv

from ptcli.errors import CheckpointError, UsageError
from ptcli_classify_text.augment import Augmenter, read_synonyms
from ptcli_classify_text.nets import RecurrentClassifier
from ptcli.inference.textfiles import read_labelled, read_texts
from ptcli_classify_text.tokenization import TextEncoder, train_tokenizer
from ptcli_classify_text.training import stratified_split

# --- files ----------------------------------------------------------------------------------


def test_csv_tsv_and_jsonl_give_the_same_rows(tmp_path):
    rows = [("café au lait, please", "food"), ("offside again", "sports")]
    csv_path = write_text_csv(tmp_path / "a.csv", rows)
    tsv_path = write_text_csv(tmp_path / "a.tsv", rows, delimiter="\t")
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows) + "\n")
    expected = ([t for t, _ in rows], [l for _, l in rows], 0)
    for path in (csv_path, tsv_path, jsonl):
        assert read_labelled(path) == expected


def test_other_column_names_and_plain_lines(tmp_path):
    path = write_text_csv(tmp_path / "reviews.csv", [("5", "loved it"), ("1", "hated it")], columns=("stars", "review"))
    assert read_labelled(path, text_column="review", label_column="stars")[:2] == (["loved it", "hated it"], ["5", "1"])
    assert read_texts(path, column="review") == ["loved it", "hated it"]
    lines = tmp_path / "texts.txt"
    lines.write_text("first text\nsecond, with a comma\n")
    assert read_texts(lines) == ["first text", "second, with a comma"]


def test_unknown_column_names_the_columns_there(tmp_path):
    path = write_text_csv(tmp_path / "a.csv", [("x", "y")])
    with pytest.raises(UsageError, match=r"no column 'body' in .*a.csv; its columns: text, label"):
        read_texts(path, column="body")
    with pytest.raises(UsageError, match="no column 'sentiment'"):
        read_labelled(path, label_column="sentiment")
    with pytest.raises(UsageError, match="--column needs a CSV"):
        read_texts(tmp_path / "a.csv", column="body", fmt="lines")


def test_wrong_encoding_says_how_to_fix_it(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncr\u00e8me br\u00fbl\u00e9e,food\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"is not utf-8 text .*data.encoding=latin-1"):
        read_labelled(path)
    assert read_labelled(path, encoding="latin-1")[0] == ["cr\u00e8me br\u00fbl\u00e9e"]
    with pytest.raises(UsageError, match="unknown text encoding 'klingon'"):
        read_labelled(path, encoding="klingon")


def test_sentiment140_raw_format(tmp_path):
    # No header, latin-1, label 0/4 in column 0, text in column 5 (the published file's layout).
    raw = ('"0","1467810369","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","user1","is upset, can\'t update caf\xe9"\n'
           '"4","1467822272","Mon Apr 06 22:22:45 PDT 2009","NO_QUERY","user2","I love my new phone"\n'
           '"2","1467822273","Mon Apr 06 22:22:46 PDT 2009","NO_QUERY","user3","it is a phone"\n')
    path = tmp_path / "training.1600000.processed.noemoticon.csv"
    path.write_bytes(raw.encode("latin-1"))
    texts, labels, _ = read_labelled(path, fmt="sentiment140")
    assert texts == ["is upset, can't update caf\xe9", "I love my new phone", "it is a phone"]
    assert labels == ["negative", "positive", "neutral"]
    short = tmp_path / "short.csv"
    short.write_text('"0","1","2"\n')
    with pytest.raises(UsageError, match="has 3 columns; Sentiment140 rows have 6"):
        read_labelled(short, fmt="sentiment140")


def test_bad_labelled_files(tmp_path):
    empty_text = write_text_csv(tmp_path / "e.csv", [("", "food"), ("soup", "food")])
    assert read_labelled(empty_text) == (["soup"], ["food"], 1)
    with pytest.raises(UsageError, match="empty label"):
        read_labelled(write_text_csv(tmp_path / "l.csv", [("soup", "")]))
    with pytest.raises(UsageError, match="no labelled texts"):
        read_labelled(write_text_csv(tmp_path / "n.csv", []))
    with pytest.raises(UsageError, match="is empty: a CSV file needs a header row"):
        (tmp_path / "blank.csv").write_text("")
        read_labelled(tmp_path / "blank.csv")
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text('{"text": "a", "label": "b"}\n{oops\n')
    with pytest.raises(UsageError, match=r"b.jsonl:2 is not valid JSON"):
        read_labelled(bad_json)
    with pytest.raises(UsageError, match="has no label column"):
        read_labelled(tmp_path / "b.jsonl", fmt="lines")
    with pytest.raises(UsageError, match="text file not found"):
        read_labelled(tmp_path / "missing.csv")


def test_stratified_split_holds_out_each_label():
    labels = ["a"] * 10 + ["b"] * 20 + ["c"]
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(31))
    assert [labels[i] for i in val].count("a") == 2 and [labels[i] for i in val].count("b") == 4
    assert "c" not in [labels[i] for i in val]  # a lone example stays in training
    assert (train, val) == stratified_split(labels, 0.2, seed=0)


# --- tokenizers -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_trained_tokenizer_pads_truncates_and_round_trips(kind):
    texts = [t for t, _ in make_text_rows(10)]
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=1000)
    assert tokenizer.token_to_id("[PAD]") == 0 and tokenizer.token_to_id("[UNK]") == 1
    encoder = TextEncoder(tokenizer, max_length=5, pad_id=0)
    batch, truncated = encoder(["Bread and", "goal " * 20, "\u00a7\u00a7"])
    assert truncated == 1
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].tolist()[0] == [1, 1, 0, 0, 0]
    assert batch["input_ids"][0, 2:].tolist() == [0, 0, 0]
    assert 1 in batch["input_ids"][2].tolist()  # unknown word -> [UNK]
    again = TextEncoder.from_state(json.loads(json.dumps(encoder.state())), "test")
    assert torch.equal(again(["Bread and cheese"])[0]["input_ids"], encoder(["Bread and cheese"])[0]["input_ids"])
    assert again.max_length == 5 and again.vocab_size == encoder.vocab_size


def test_truncation_keeps_the_closing_special_token(tiny_bert_encoder):
    from ptcli_classify_text.tokenization import folder_tokenizer

    tokenizer, pad_id, model_max = folder_tokenizer(tiny_bert_encoder)
    encoder = TextEncoder(tokenizer, max_length=6, pad_id=pad_id)
    batch, truncated = encoder(["bread " * 30])
    ids = batch["input_ids"][0].tolist()
    assert truncated == 1 and len(ids) == 6 and model_max == 64
    assert ids[0] == tokenizer.token_to_id("[CLS]") and ids[-1] == tokenizer.token_to_id("[SEP]")


def test_checkpoint_without_tokenizer_is_refused():
    with pytest.raises(CheckpointError, match="holds no tokenizer"):
        TextEncoder.from_state(None, "checkpoint x")
    with pytest.raises(CheckpointError, match="its tokenizer cannot be read"):
        TextEncoder.from_state({"tokenizer": {"nonsense": 1}, "max_length": 4, "pad_id": 0}, "checkpoint x")


# --- augmentation ---------------------------------------------------------------------------


def test_augmentation_is_seeded_and_never_empties_a_text():
    augment = Augmenter(insert=0.2, delete=0.3, swap=0.2)
    text = "one two three four five six seven eight"
    torch.manual_seed(0)
    first = [augment(text) for _ in range(20)]
    torch.manual_seed(0)
    assert [augment(text) for _ in range(20)] == first
    assert any(out != text for out in first)
    assert all(set(out.split()) <= set(text.split()) for out in first)  # no synonyms: words of the text only
    delete_all = Augmenter(delete=0.99)
    assert all(len(delete_all(text).split()) >= 1 for _ in range(20))
    assert Augmenter()("unchanged text") == "unchanged text"


def test_synonym_replacement(tmp_path):
    words = tmp_path / "synonyms.txt"
    words.write_text("# groups\nhappy, glad, cheerful\nfilm, movie\n")
    table = read_synonyms(words)
    assert table["happy"] == ["glad", "cheerful"] and table["movie"] == ["film"]
    augment = Augmenter(replace=1.0, synonyms=table)
    torch.manual_seed(0)
    out = augment("a happy film").split()
    assert out[0] == "a" and out[1] in ("glad", "cheerful") and out[2] == "movie"
    with pytest.raises(UsageError, match="needs a word list"):
        Augmenter(replace=0.5)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UsageError, match="holds no synonyms"):
        read_synonyms(tmp_path / "empty.txt")


# --- the recurrent network ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "bilstm", "gru"])
def test_padding_does_not_change_a_texts_logits(kind):
    torch.manual_seed(0)
    net = RecurrentClassifier(vocab_size=20, num_classes=3, kind=kind, embed_dim=8, hidden=6, layers=2).eval()
    alone = net(torch.tensor([[5, 6, 7]]), torch.tensor([[1, 1, 1]]))
    padded = net(torch.tensor([[5, 6, 7, 0, 0], [4, 4, 4, 4, 4]]), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert padded.shape == (2, 3)
    torch.testing.assert_close(padded[0], alone[0])
