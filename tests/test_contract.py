"""The one inference contract (ptcli.inference): a toy Predictor alone gives a working command
(with the shared options), `ptcli eval` without any training, and a servable; chunked inputs go
through forward in same-shape passes and merge back."""

import json
import types

import pytest
import torch

from ptcli import hookimpl
from ptcli.errors import InputError
from ptcli.inference.contract import TEXT, Predictor, Sample, Source
from ptcli.plugins.recipe import Command, Recipe


class Lengths(Predictor):
    """Texts to their length, doubled: "bad" cannot be read."""

    kind = TEXT

    @classmethod
    def load(cls, source: Source, device):
        from ptcli.errors import UsageError

        if source.model not in (None, "double"):
            raise UsageError(f"unknown model {source.model!r}")
        predictor = cls()
        predictor.device, predictor.title = device, "lengths"
        return predictor

    def decode(self, item):
        if item == "bad":
            raise InputError("cannot read bad")
        return Sample(torch.tensor(float(len(item))), item)

    def forward(self, batch):
        return batch * 2

    def postprocess(self, row, meta) -> dict:
        return {"text": meta, "double": int(row)}

    def evaluate(self, data, *, batch_size: int) -> dict:
        from ptcli.inference.evaluation import output_rows

        rows = [line.split(",") for line in data.read_text().splitlines()]
        got = dict(output_rows(self, [text for text, _ in rows], batch_size=batch_size))
        right = sum(int(got[text]) == int(want) for text, want in rows)
        return {"checkpoint": self.source.describe(), "accuracy": right / len(rows)}


def _plugin(recipe):
    module = types.ModuleType(f"contract_plugin_{recipe.name}")
    module.register_recipes = hookimpl(lambda register: register(recipe))
    return module


LENGTHS = _plugin(Recipe(name="lengths", help="", predictor=Lengths,
                         commands=(Command(name="lengths", help="Double the length of each text."),)))


def test_a_predictor_alone_gives_the_command_with_the_shared_options(cli):
    result = cli("lengths", "ab", "bad", "abcd", "--json", "--batch-size", "2", plugins=[LENGTHS])
    assert result.exit_code == 1  # one input failed, in its place
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"input": "ab", "text": "ab", "double": 4}, {"input": "bad", "error": "cannot read bad"},
        {"input": "abcd", "text": "abcd", "double": 8}]
    human = cli("lengths", "abc", plugins=[LENGTHS])
    assert human.exit_code == 0 and human.stdout.splitlines() == ["abc", '  text: "abc"', "  double: 6"]
    helped = cli("lengths", "--help", plugins=[LENGTHS])
    for option in ("--model", "--weights", "--checkpoint", "--batch-size", "--workers", "--device", "--json", "--list-models"):
        assert option in helped.stdout
    assert "Double the length of each text." in helped.stdout
    assert cli("lengths", plugins=[LENGTHS]).exit_code == 2
    unknown = cli("lengths", "x", "--model", "triple", "--json", plugins=[LENGTHS])
    assert unknown.exit_code == 2 and json.loads(unknown.stdout)["error"] == "unknown model 'triple'"


def test_a_recipe_without_training_evaluates_through_its_predictor(cli, tmp_path):
    from ptcli.models.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "lengths", {"w": torch.zeros(1)}, recipe="lengths", model="double")
    (tmp_path / "labelled.csv").write_text("ab,4\nabc,5\n")
    result = cli("eval", ckpt, tmp_path / "labelled.csv", "--json", plugins=[LENGTHS])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"checkpoint": str(ckpt), "accuracy": 0.5}
    assert '"accuracy": 0.5' in cli("eval", ckpt, tmp_path / "labelled.csv", plugins=[LENGTHS]).stdout


def test_the_servable_of_a_predictor_answers_as_its_command(cli):
    from ptcli.serving.spec import servable_from

    served = servable_from(Lengths.load(Source(), torch.device("cpu")))
    assert served.kind == TEXT and served.title == "lengths" and served.warmup is None
    assert served.predict([served.decode("ab"), served.decode("abc")]) == [{"text": "ab", "double": 4}, {"text": "abc", "double": 6}]
    with pytest.raises(InputError):
        served.decode("bad")


def test_a_command_without_target_needs_a_predictor():
    from ptcli.plugins import load_plugins

    module = _plugin(Recipe(name="hollow", help="", commands=(Command(name="hollow", help="nothing behind it"),)))
    info = load_plugins([module]).infos[-1]
    assert info.status == "error" and "command 'hollow' names no target" in info.error


class Pieces(Predictor):
    """An input of N items is chunked into N rows of its own width; merge sums them."""

    kind = TEXT
    collate = "list"
    chunked = True

    def __init__(self):
        self.passes, self.device = [], torch.device("cpu")

    def decode(self, item):
        return Sample(item)

    def preprocess(self, datas):
        return [torch.ones(n) for n in datas]

    def chunks(self, data):
        # one chunk per item, then the whole input (another shape: it gets a pass of its own)
        return [torch.ones(1) * (i + 1) for i in range(len(data))] + [data]

    def forward(self, batch):
        self.passes.append([tuple(x.shape) for x in batch])
        return [x.sum() for x in batch]

    def merge(self, data, outputs):
        return sum(outputs)

    def postprocess(self, row, meta):
        return {"sum": float(row)}


def test_chunks_go_through_forward_in_same_shape_passes_and_merge_per_input():
    from ptcli.inference.runner import run

    predictor = Pieces()
    results = list(run(predictor, [3, 1], batch_size=8, chunk_batch=2, workers=0))
    assert [r for _, r in results] == [{"sum": 1 + 2 + 3 + 3}, {"sum": 1 + 1}]
    assert predictor.passes == [[(1,), (1,)], [(1,)], [(3,)], [(1,), (1,)]]
    served = Pieces()  # the server chunks too, as many pieces a pass as its batch has inputs
    assert served.predict([Sample(3), Sample(1)]) == [{"sum": 9.0}, {"sum": 2.0}]
    assert served.passes == [[(1,), (1,)], [(1,)], [(3,)], [(1,), (1,)]]
