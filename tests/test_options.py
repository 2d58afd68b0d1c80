"""Core v4: a recipe's options, declared once on its Predictor, set by the command's flags, by
models.yaml's ``options:`` and by a request (/predict's "options", an upload's query
parameters, OIP v2 "parameters"), and answered alike; a wrong one is a usage error or a 400
naming it."""

import base64
import json
from pathlib import Path

import httpx
import pytest
import typer.testing
from PIL import Image

from ptcli.errors import UsageError
from ptcli.inference.contract import TEXT, Predictor, Sample
from ptcli.inference.options import Option, OptionError, settle
from test_serve import Server


def test_an_option_checks_its_type_range_and_choices():
    top_k = Option("top_k", int, 5, "Predictions.", min=1, request=True)
    merge = Option("merge", str, "greedy", "How.", choices=("greedy", "nms"))
    flag = Option("window", bool, False, "Windows.")
    assert top_k.check("3") == 3 and top_k.check(2.0) == 2 and flag.check("yes") is True and merge.check("nms") == "nms"
    for option, value, words in ((top_k, 0, "outside 1.."), (top_k, "many", "not a whole number"), (top_k, True, "whole"),
                                 (top_k, 2.5, "whole"), (merge, "soft", "not one of greedy, nms"), (flag, "maybe", "true or false"),
                                 (Option("p", float, 0.5, "", min=0, max=1), float("nan"), "NaN")):
        with pytest.raises(OptionError, match=words) as caught:
            option.check(value)
        assert caught.value.name == option.name
    declaration = (top_k, merge)
    assert settle(declaration, {"top_k": "2"}) == {"top_k": 2, "merge": "greedy"}
    assert settle(declaration, {"top_k": 2}, requested=True) == {"top_k": 2}
    with pytest.raises(OptionError, match="'merge' may not be set by a request; the options are top_k"):
        settle(declaration, {"merge": "nms"}, requested=True)
    with pytest.raises(OptionError, match="'topk' is not an option of this model; the options are top_k, merge"):
        settle(declaration, {"topk": 2})
    with pytest.raises(TypeError):
        Option("bad", list, [], "a list is no option type")


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory):
    """A detector with random weights drawn so that its features do not vanish (torchvision's
    own draw gives every box one score): its scores spread, so that thresholds keep some boxes
    and drop others."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in")
    weights = tmp_path_factory.mktemp("detector") / "mobilenet.safetensors"
    save_file(model.state_dict(), weights)
    return weights


def _post_json(url, payload):
    response = httpx.post(url, json=payload, timeout=60)
    return response.status_code, response.json()


def test_served_options_answer_as_the_commands_flags(cli, tmp_path, random_detector):
    """models.yaml's options are the flags' defaults for that model; a request's own override
    them for that request alone, over /predict (JSON and query parameters) and /v2 (the
    classifier through replica processes); an unknown, ill-typed or model-fixed option is a 400 naming it."""
    from conftest import REPO, write_yaml

    cat = REPO / "examples" / "cat.jpg"
    detector = ("--model", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", random_detector)

    def detect(threshold):
        return json.loads(cli("detect", cat, *detector, "--threshold", str(threshold), "--json", "--device", "cpu").stdout)

    scores = sorted({d["score"] for d in detect(0.0)["detections"] if d["score"] > 0})
    assert len(scores) >= 4
    low, high = scores[0], scores[len(scores) // 2]
    at_low, at_high = detect(low), detect(high)
    assert len(at_low["detections"]) > len(at_high["detections"]) > 0  # the thresholds tell answers apart
    classified = {k: json.loads(cli("classify-image", cat, "-k", str(k), "--json", "--device", "cpu").stdout) for k in (2, 4)}

    config = write_yaml(tmp_path / "models.yaml", {"models": [
        {"name": "det", "recipe": "detect", "model": "fasterrcnn_mobilenet_v3_large_fpn", "weights": str(random_detector),
         "options": {"threshold": low}},
        {"name": "cls", "recipe": "classify-image", "options": {"top_k": 2}, "replicas": 2}]})
    server = Server("--config", config, "--device", "cpu", "--max-wait-ms", "2")
    try:
        server.wait_ready()
        image = {"image": base64.b64encode(cat.read_bytes()).decode()}
        det, cls = f"{server.url}/predict/det", f"{server.url}/predict/cls"
        assert _post_json(det, image) == (200, {k: v for k, v in at_low.items() if k != "input"})
        assert _post_json(det, {**image, "options": {"threshold": high}}) == (200, {k: v for k, v in at_high.items() if k != "input"})
        upload = httpx.post(det, params={"threshold": str(high)}, files={"file": ("cat.jpg", cat.read_bytes())}, timeout=60)
        assert upload.json() == {**at_high, "input": "cat.jpg"}
        # A form's "options" part, as the schema documents it: honoured, and checked like any other.
        form = httpx.post(det, data={"options": json.dumps({"threshold": high})}, files={"file": ("cat.jpg", cat.read_bytes())},
                          timeout=60)
        assert form.json() == {**at_high, "input": "cat.jpg"}
        wrong = httpx.post(det, data={"options": json.dumps({"threshold": "high"})}, files={"file": ("cat.jpg", b"x")}, timeout=60)
        assert wrong.status_code == 400 and "threshold" in wrong.json()["error"], wrong.text
        assert _post_json(det, image)[1]["detections"] == at_low["detections"]  # the request's own stayed its own

        def same_predictions(got, want):  # replicas run on fewer threads: sums add up in another order
            assert [p["label"] for p in got] == [p["label"] for p in want], (got, want)
            assert all(abs(p["score"] - q["score"]) < 1e-4 for p, q in zip(got, want))

        same_predictions(_post_json(cls, image)[1]["predictions"], classified[2]["predictions"])
        same_predictions(_post_json(cls, {**image, "options": {"top_k": 4}})[1]["predictions"], classified[4]["predictions"])

        def infer(name, parameters):
            body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image["image"]]}],
                    "parameters": parameters}
            return httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=60)

        answer = infer("det", {"threshold": high}).json()
        outputs = {output["name"]: output for output in answer["outputs"]}
        assert json.loads(outputs["result"]["data"][0])["detections"] == at_high["detections"]
        assert outputs["width"] == {"name": "width", "datatype": "INT64", "shape": [1], "data": [at_high["width"]]}
        outputs = {o["name"]: o for o in infer("cls", {"top_k": 4}).json()["outputs"]}
        same_predictions(json.loads(outputs["result"]["data"][0])["predictions"], classified[4]["predictions"])
        assert outputs["label"]["data"] == [classified[4]["predictions"][0]["label"]] and outputs["score"]["datatype"] == "FP32"

        for status, body in (_post_json(det, {**image, "options": {"thresold": 0.3}}),
                             _post_json(det, {**image, "options": {"threshold": "high"}}),
                             _post_json(cls, {**image, "options": {"defense": "jpeg:75"}}),
                             (lambda r: (r.status_code, r.json()))(infer("cls", {"top_k": 0})),
                             (lambda r: (r.status_code, r.json()))(httpx.post(cls, params={"top_k": "x"}, content=cat.read_bytes(),
                                                                             headers={"Content-Type": "image/jpeg"}, timeout=30))):
            assert status == 400, body
        messages = [m for m in (_post_json(det, {**image, "options": {"thresold": 0.3}})[1]["error"],
                                _post_json(det, {**image, "options": {"threshold": "high"}})[1]["error"],
                                _post_json(cls, {**image, "options": {"defense": "jpeg:75"}})[1]["error"])]
        assert "'thresold' is not an option" in messages[0] and "threshold, max_detections" in messages[0]
        assert "option 'threshold': 'high' is not a number" in messages[1]
        assert "'defense' may not be set by a request; the options are top_k" in messages[2]

        schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        query = {p["name"]: p["schema"] for p in schema["paths"]["/predict/det"]["post"]["parameters"] if p["in"] == "query"}
        assert query["threshold"]["minimum"] == 0 and query["threshold"]["maximum"] == 1 and "classes" not in query
        assert query["threshold"]["default"] == low  # what this model is served with
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-3000:]


def test_a_wrong_option_in_models_yaml_stops_the_server_before_it_loads(cli, tmp_path):
    from conftest import write_yaml

    for options, words in (({"tops": 3}, "models[0]: 'tops' is not an option of this model; the options are top_k, defense"),
                           ({"top_k": "x"}, "models[0]: option 'top_k': 'x' is not a whole number"),
                           ({"defense": "blur:3"}, "--defense 'blur:3'")):
        config = write_yaml(tmp_path / "models.yaml", {"models": [{"recipe": "classify-image", "options": options}]})
        result = cli("serve", "--config", config, "--json")
        assert result.exit_code == 2, result.stdout
        assert words in json.loads(result.stdout)["error"]


def test_one_model_takes_its_options_on_the_command_line(cli):
    from conftest import REPO

    for args, words in ((("--option", "top_k"), "--option 'top_k': give NAME=VALUE"),
                        (("--option", "top_k=many"), "option 'top_k': 'many' is not a whole number"),
                        (("--option", "tops=1"), "'tops' is not an option of this model; the options are top_k, defense")):
        result = cli("serve", "--recipe", "classify-image", *args)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    server = Server("--recipe", "classify-image", "--option", "top_k=1", "--device", "cpu")
    try:
        server.wait_ready()
        cat = (REPO / "examples" / "cat.jpg").read_bytes()
        answer = httpx.post(f"{server.url}/predict", content=cat, headers={"Content-Type": "image/jpeg"}, timeout=30).json()
        assert [p["label"] for p in answer["predictions"]] == ["Egyptian cat"]
    finally:
        code, _, err = server.stop()
    assert code == 0, err[-2000:]


def test_an_option_named_like_a_shared_one_is_the_plugins_error():
    from ptcli.cli.derived import predictor_command
    from ptcli.errors import PluginError
    from ptcli.inference.contract import TEXT, Predictor
    from ptcli.plugins.recipe import Command, Recipe

    class Clashing(Predictor):
        kind = TEXT
        options = (Option("device", str, "x", "A device of its own."),)

    recipe = Recipe(name="clashing", help="", predictor=Clashing, commands=(Command(name="clashing", help="x"),))
    with pytest.raises(PluginError, match="recipe clashing: option device is one every command has; rename it"):
        predictor_command(recipe, recipe.commands[0])


def test_a_batch_with_requests_of_other_options_runs_each_with_its_own():
    """The server's batches mix requests: each runs on a copy of the predictor holding its own
    values (grouped, one forward a group), and the loaded predictor keeps its own."""
    import torch

    from ptcli.inference.contract import TEXT, Predictor, Requested, Sample
    from ptcli.inference.options import Options

    class Repeat(Predictor):
        kind = TEXT
        options = (Option("times", int, 1, "Repeat the text.", min=1, request=True),)
        forwards: list = []

        def decode(self, item):
            return Sample(torch.tensor(float(len(item))), item)

        def forward(self, batch):
            self.forwards.append((self.option_values.times, len(batch)))
            return batch

        def postprocess(self, row, meta):
            return {"text": meta * self.option_values.times, "length": int(row)}

    loaded = Repeat()
    loaded.device, loaded.option_values = torch.device("cpu"), Options({"times": 2})
    items = [Requested(loaded.decode("ab"), (("times", 3),)), loaded.decode("c"), Requested(loaded.decode("de"), (("times", 3),)),
             Requested(loaded.decode("f"), (("times", 2),))]
    assert loaded.predict(items) == [{"text": "ababab", "length": 2}, {"text": "cc", "length": 1},
                                     {"text": "dedede", "length": 2}, {"text": "ff", "length": 1}]
    assert sorted(Repeat.forwards) == [(2, 2), (3, 2)]  # its own values (and the same as its own) share a pass
    assert loaded.option_values.times == 2


def test_a_derived_exports_state_cannot_reach_the_predictors_own_settings():
    """The state is read from an untrusted file: it sets plain attributes only, never the
    contract's (where files go, chunking, the device) or the class's methods."""
    import torch

    from ptcli.inference.contract import IMAGE, Predictor

    class Sized(Predictor):
        kind = IMAGE
        size = 32

    crafted = {"labels": ["a", "b"], "file_ending": "/../../escaped", "chunked": True, "decode": "x", "size": 10**9,
               "_option_values": {"x": 1}, "device": "cuda:7", "not an identifier": 1}
    predictor = Sized.from_export(crafted, torch.device("cpu"))
    assert vars(predictor) == {"labels": ["a", "b"]}
    assert predictor.file_ending == ".png" and predictor.chunked is False and predictor.size == 32


def test_a_command_only_option_stays_with_the_command(cli, tmp_path):
    """detect's --track and --mot are the command's: a served detector has neither (models.yaml,
    --option, its listed options), and --mot without --track, or --track on images, is refused
    before anything loads."""
    from conftest import write_yaml

    from ptcli.inference.options import declared
    from ptcli.refs import load_ref
    from ptcli_detect import RECIPE

    served = [o.name for o in declared(load_ref(RECIPE.predictor), served=True)]
    assert "threshold" in served and "track" not in served and "mot" not in served
    config = write_yaml(tmp_path / "models.yaml", {"models": [{"recipe": "detect", "options": {"track": "bytetrack"}}]})
    result = cli("serve", "--config", config, "--json")
    assert result.exit_code == 2 and "'track' is not an option of this model; the options are threshold" in result.stdout
    result = cli("serve", "--recipe", "detect", "--option", "mot=x.txt")
    assert result.exit_code == 2 and "'mot' is not an option of this model" in result.stderr
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert "--mot writes tracks: add --track" in cli("detect", image, "--mot", tmp_path / "t.txt").stderr
    assert "give only videos (1 image given)" in cli("detect", image, "--track", "botsort").stderr


class _Count(Predictor):
    """A text recipe using the derived command's hooks: a batch size chosen per run, a side
    file written as results pass, a check of the run, and --data."""

    kind = TEXT
    collate = "list"
    default_batch_size = None
    options = (Option("times", int, 1, "Count each character this often.", min=1),
               Option("log", str, None, "Also write each text to FILE.", optional=True, command_only=True, metavar="FILE"))
    batches: list = []

    @classmethod
    def load(cls, source, device, **options):
        return cls()

    @classmethod
    def batch_size_for(cls, device, run):
        return 7 if run.data is not None else 3

    @classmethod
    def check_run(cls, run):
        if run.options["log"] is not None and run.data is not None:
            raise UsageError("--log goes with texts")

    def decode(self, item):
        return Sample(item)

    def forward(self, batch):
        type(self).batches.append(len(batch))
        return batch

    def postprocess(self, row, meta):
        return {"length": len(row) * self.option_values.times}

    def command_results(self, results, run):
        if run.options["log"] is None:
            return results

        def logged():
            with open(run.options["log"], "w") as handle:
                for item, result in results:
                    handle.write(f"{item}\n")
                    yield item, result

        return logged()

    def evaluate(self, data, *, batch_size):
        return {"files": len(list(Path(data).iterdir())), "batch_size": batch_size}

    def format_evaluation(self, report):
        return f"{report['files']} files"

    def summary(self, count):
        return "a data set was counted" if count == 0 else None


def test_the_derived_commands_hooks_and_data_set_runs(tmp_path, capsys):
    import typer

    from ptcli.cli.derived import predictor_command
    from ptcli.plugins.recipe import Command, Recipe

    recipe = Recipe(name="count", help="", predictor=_Count,
                    commands=(Command(name="count", help="Count characters.", data="Count the files of DIR instead."),))
    app = typer.Typer()
    app.command("count")(predictor_command(recipe, recipe.commands[0]))
    app.command("other")(lambda: None)

    def run(*args):
        _Count.batches.clear()
        try:
            app(["count", *map(str, args)], standalone_mode=False)
        except SystemExit:
            pass
        return capsys.readouterr()

    out = run("a", "bb", "ccc", "d", "--times", "2", "--json", "--device", "cpu")
    assert [json.loads(line)["length"] for line in out.out.splitlines()] == [2, 4, 6, 2]
    assert _Count.batches == [3, 1]  # batch_size_for, where --batch-size is not given
    run("a", "bb", "--batch-size", "1", "--log", tmp_path / "log.txt", "--device", "cpu")
    assert _Count.batches == [1, 1] and (tmp_path / "log.txt").read_text() == "a\nbb\n"
    data = tmp_path / "data"
    data.mkdir()
    for name in ("x", "y"):
        (data / name).write_text(name)
    out = run("--data", data, "--json", "--device", "cpu")
    assert json.loads(out.out) == {"files": 2, "batch_size": 7} and "warning: a data set was counted" in out.err
    assert run("--data", data, "--device", "cpu").out.strip() == "2 files"
    for args, words in ((("--data", data, "a"), "give inputs or --data DIR, not both"),
                        (("--data", data, "--log", "x"), "--log goes with texts"),
                        (("--data", tmp_path / "nowhere"), "data folder not found"),
                        ((), "give at least one text")):
        with pytest.raises(UsageError, match=words):
            app(["count", *map(str, args)], standalone_mode=False)
    help_text = typer.testing.CliRunner().invoke(app, ["count", "--help"]).output
    assert "--data" in help_text and "Count the files of DIR instead." in help_text and "--log" in help_text
