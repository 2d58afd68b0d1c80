"""A plugin written against Core v3's documented contract, kept as it was: a Predictor that
declares no options (its ``load`` takes a keyword of its own, and it keeps a ``settings``
attribute of its own), an ``Exportable`` of its own. Under Core v4 its command, video, serve,
/v2 and export work unchanged."""

import base64
import json
import types

import numpy as np
import torch

from ptcli import hookimpl
from ptcli.inference.contract import IMAGE, Predictor, Sample, Source
from ptcli.plugins.recipe import Command, Recipe


class MeanColour(Predictor):
    kind = IMAGE

    @classmethod
    def load(cls, source: Source, device, *, top_k: int = 2):
        predictor = cls()
        predictor.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).to(device)
        predictor.device, predictor.title = device, "v3-colours"
        predictor.settings = {"top_k": top_k}  # its own: Core v4's values are option_values
        return predictor

    def decode(self, item):
        from ptcli.vision.imaging import read_image

        return Sample(read_image(item).convert("RGB").resize((8, 8)))

    def preprocess(self, images):
        return torch.stack([torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) for image in images])

    def forward(self, batch):
        return self.net(batch)

    def postprocess(self, row, meta) -> dict:
        names = ("red", "green", "blue")
        order = row.argsort(descending=True)[: self.settings["top_k"]]
        return {"colours": [names[i] for i in order], "red": round(float(row[0]), 4)}


def exportable(*, checkpoint, model, weights, samples):
    from ptcli.exporting.spec import Exportable, sidecar

    def sample(n: int):
        return (torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(n)),)

    net = MeanColour.load(Source(), torch.device("cpu")).net
    return Exportable(module=net, input_names=("pixels",), output_names=("means",), sample=sample,
                      meta=sidecar("v3-colours", checkpoint, model="mean"), output="image")


RECIPE = Recipe(name="v3-colours", help="", predictor=MeanColour, export=exportable,
                commands=(Command(name="v3-colours", help="The strongest colours of images."),))
PLUGIN = types.ModuleType("v3_colours_plugin")
PLUGIN.register_recipes = hookimpl(lambda register: register(RECIPE))


def test_a_v3_plugin_keeps_its_command_video_serve_v2_and_export(cli, tmp_path):
    from PIL import Image

    from test_serve import run_app
    from video_files import make_video

    Image.new("RGB", (20, 10), (200, 40, 90)).save(tmp_path / "pink.png")
    result = cli("v3-colours", tmp_path / "pink.png", "--json", plugins=[PLUGIN])
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"input": str(tmp_path / "pink.png"), "colours": ["red", "blue"], "red": round(200 / 255, 4)}

    frames = cli("v3-colours", make_video(tmp_path / "clip.mp4", frames=4), "--json", plugins=[PLUGIN])
    assert frames.exit_code == 0, frames.stderr
    assert [json.loads(line)["frame"] for line in frames.stdout.splitlines()] == [0, 1, 2, 3]

    from ptcli.serving.spec import load_servable

    async def checks(client, app):
        png = (tmp_path / "pink.png").read_bytes()
        served = await client.post("/predict", content=png, headers={"Content-Type": "image/png"})
        assert served.status_code == 200 and served.json() == {k: v for k, v in answer.items() if k != "input"}
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(png).decode()]}]}
        outputs = {o["name"]: o for o in (await client.post("/v2/models/model/infer", json=body)).json()["outputs"]}
        assert json.loads(outputs["result"]["data"][0]) == served.json()
        assert outputs["red"] == {"name": "red", "datatype": "FP32", "shape": [1], "data": [answer["red"]]}
        refused = await client.post("/predict", content=png, headers={"Content-Type": "image/png"}, params={"top_k": "1"})
        assert refused.status_code == 400 and "it has no options" in refused.json()["error"]

    run_app(lambda: load_servable(RECIPE, device=torch.device("cpu")), checks)

    exported = cli("export", "--recipe", "v3-colours", "-o", tmp_path / "colours.onnx", "--json", plugins=[PLUGIN])
    assert exported.exit_code == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert report["check"]["passed"] and report["exporter"].startswith("torch.onnx")
