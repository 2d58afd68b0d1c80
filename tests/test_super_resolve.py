"""super-resolve inference through the CLI: tiling, formats, models and every user error."""

import json

import numpy as np
import pytest
import torch
from conftest import save_tiny_rrdbnet


def write_png(path, array):
    import cv2

    assert cv2.imwrite(str(path), array)
    return path


@pytest.fixture
def photo(tmp_path):
    """A smooth 40x30 colour image with some texture (BGR, as OpenCV writes)."""
    y, x = np.mgrid[0:30, 0:40]
    image = np.stack([x * 6, y * 8, (x + y) * 3 + 20 * np.sin(x)], axis=2).clip(0, 255).astype(np.uint8)
    return write_png(tmp_path / "photo.png", image)


def run(cli, *args):
    result = cli("super-resolve", *args, "--json")
    return result, [json.loads(line) for line in result.stdout.splitlines()]


def test_tiled_equals_untiled(tiny_rrdbnet):
    from ptcli.models.state_dicts import load_state_dict
    from ptcli_super_resolve.models import build_rrdbnet, rrdbnet_args
    from ptcli_super_resolve.tiling import tile_count, upscale

    state = load_state_dict(tiny_rrdbnet)
    model = build_rrdbnet(**rrdbnet_args(state))
    model.load_state_dict(state)
    model.eval()
    image = torch.rand(3, 45, 70)
    whole = upscale(image, model, scale=4, tile=None, overlap=0, device=torch.device("cpu"))
    tiled = upscale(image, model, scale=4, tile=24, overlap=8, device=torch.device("cpu"))
    assert whole.shape == tiled.shape == (3, 180, 280)
    assert tile_count(45, 70, 24, 8) == 2 * 3
    torch.testing.assert_close(tiled, whole, atol=5e-3, rtol=0)  # under 1.3 grey levels
    # Without overlap the tile borders show: the padding is what makes them equal.
    seams = upscale(image, model, scale=4, tile=24, overlap=0, device=torch.device("cpu"))
    assert (seams - whole).abs().max() > 10 * (tiled - whole).abs().max()


def _full_range_rrdbnet(scale, image, seed=0):
    """A random 1-block RRDBNet whose output on ``image`` spans the grey range (mean 0.5, std
    0.2): test nets output values near 0, where a tiling error hides under any tolerance."""
    from ptcli_super_resolve.models import build_rrdbnet
    from ptcli_super_resolve.tiling import _forward

    torch.manual_seed(seed)
    net = build_rrdbnet(scale=scale, num_feat=16, num_block=1, num_grow_ch=8).eval()
    with torch.inference_mode():
        out = _forward(net, image[None], scale)
        gain = 0.2 / out.std()
        net.conv_last.weight.mul_(gain)
        net.conv_last.bias.mul_(gain).add_(0.5 - out.mean() * gain)
    return net


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(150, 200), (149, 201)])
def test_tiles_do_not_show_on_a_full_range_network(scale, size):
    """Within one grey level of the untiled network at tile sizes 32, 64 and 128 (odd image
    sides too), at the default overlap; a cross-fade over the tiles' padding was off by 2 here
    (and by 10 on the 23-block network, bench/sr_seams.py)."""
    from ptcli.inference.contract import sample_image
    from ptcli_super_resolve.tiling import upscale

    from PIL import Image

    picture = Image.open(sample_image()).convert("RGB").resize((size[1], size[0]))
    image = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
    net = _full_range_rrdbnet(scale, image)
    whole = upscale(image, net, scale=scale, tile=None, overlap=16, device=torch.device("cpu"))
    assert 0.15 < whole.std() and 0.3 < whole.mean() < 0.7  # the range a real network's output spans
    for tile in (32, 64, 128):
        tiled = upscale(image, net, scale=scale, tile=tile, overlap=16, device=torch.device("cpu"))
        assert tiled.shape == whole.shape
        levels = ((tiled.clamp(0, 1) - whole.clamp(0, 1)).abs() * 255).max()
        assert levels <= 1, (tile, float(levels))


def test_cli_writes_outputs_with_the_models_scale(cli, tiny_rrdbnet, photo, tmp_path):
    import cv2

    result, rows = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out" / "photo_x4.png"
    assert rows == [{"input": str(photo), "output": str(out), "size": [160, 120], "scale": 4, "seconds": rows[0]["seconds"]}]
    assert cv2.imread(str(out)).shape == (120, 160, 3)
    tiled, _ = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path / "out", "--tile", "16", "--tile-overlap", "6",
                   "--suffix", "_tiled")
    assert tiled.exit_code == 0
    a = cv2.imread(str(out)).astype(int)
    b = cv2.imread(str(tmp_path / "out" / "photo_tiled.png")).astype(int)
    assert np.abs(a - b).max() <= 2


def test_other_scale_extension_and_overwrite(cli, tiny_rrdbnet, photo, tmp_path):
    import cv2

    result, rows = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path, "--scale", "3", "--ext", "jpg")
    assert result.exit_code == 0 and rows[0]["size"] == [120, 90]
    assert cv2.imread(str(tmp_path / "photo_x3.jpg")).shape == (90, 120, 3)
    again, rows = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path, "--scale", "3", "--ext", "jpg")
    assert again.exit_code == 1 and "exists; pass --overwrite" in rows[0]["error"]
    forced, _ = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path, "--scale", "3", "--ext", "jpg", "--overwrite")
    assert forced.exit_code == 0


def test_grey_rgba_and_16_bit_keep_their_format(cli, tmp_path):
    import cv2

    grey = write_png(tmp_path / "grey.png", (np.arange(20 * 24).reshape(20, 24) % 256).astype(np.uint8))
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[..., 3] = np.linspace(0, 255, 24).astype(np.uint8)[None, :]
    rgba_path = write_png(tmp_path / "rgba.png", rgba)
    deep = write_png(tmp_path / "deep.png", (np.arange(20 * 24 * 3).reshape(20, 24, 3) * 50).astype(np.uint16))
    result, rows = run(cli, grey, rgba_path, deep, "-m", "bicubic", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    grey_out = cv2.imread(str(tmp_path / "out" / "grey_x4.png"), cv2.IMREAD_UNCHANGED)
    rgba_out = cv2.imread(str(tmp_path / "out" / "rgba_x4.png"), cv2.IMREAD_UNCHANGED)
    deep_out = cv2.imread(str(tmp_path / "out" / "deep_x4.png"), cv2.IMREAD_UNCHANGED)
    assert grey_out.shape == (80, 96) and grey_out.dtype == np.uint8
    assert rgba_out.shape == (80, 96, 4)
    assert rgba_out[:, 0, 3].max() < 20 and rgba_out[:, -1, 3].min() > 235  # the alpha ramp survives
    assert deep_out.dtype == np.uint16 and deep_out.shape == (80, 96, 3) and deep_out.max() > 255


def test_broken_inputs_are_per_file_errors(cli, tiny_rrdbnet, photo, shared_data, tmp_path):
    result, rows = run(cli, photo, shared_data / "images" / "corrupt.jpg", shared_data / "images" / "not-an-image.jpg",
                       "--weights", tiny_rrdbnet, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "output" in rows[0] and all("cannot read image" in row["error"] for row in rows[1:])


def test_usage_errors(cli, tiny_rrdbnet, photo, tmp_path):
    def fails(*args, code=2):
        result = cli("super-resolve", *args)
        assert result.exit_code == code, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        return result.stderr

    assert "--half needs a CUDA device" in fails(photo, "--half", "--device", "cpu", "--weights", tiny_rrdbnet)
    assert "--tile must be" in fails(photo, "--tile", "big", "--weights", tiny_rrdbnet)
    assert "give at least one image" in fails()
    assert "no such file or folder" in fails(tmp_path / "missing.png")
    assert "did you mean" in fails(photo, "-m", "realesrgan-x4")
    text = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, text)
    assert "not an RRDBNet state dict" in fails(photo, "--weights", text)
    assert "drop --model" in fails(photo, "-m", "realesrgan-x2plus", "--weights", tiny_rrdbnet)
    x2 = save_tiny_rrdbnet(tmp_path / "x2.pth", scale=2, nested=None)
    ok = cli("super-resolve", photo, "--weights", x2, "-o", tmp_path, "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["size"] == [80, 60]


def test_offline_published_weights(cli, photo):
    result = cli("super-resolve", photo)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "weights 'realesrgan-x4plus' are not on this machine: offline mode" in result.stderr
    assert "RealESRGAN_x4plus.pth" in result.stderr


def test_published_weights_from_the_cache_are_sha256_checked(cli, tmp_path, tiny_rrdbnet, photo):
    from ptcli.models import weights
    from ptcli_super_resolve.models import PUBLISHED

    spec = next(s for s in PUBLISHED if s.name == "realesrgan-x4plus").weights
    assert spec.sha256 == "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"
    with pytest.raises(Exception, match="sha256 mismatch"):
        weights.download(tiny_rrdbnet.as_uri(), tmp_path / "x.pth", sha256=spec.sha256)
    assert not (tmp_path / "x.pth").exists()


def test_checkpoint_of_another_recipe(cli, lstm_config, photo):
    from conftest import train_json

    best = train_json(cli, lstm_config)["best_checkpoint"]
    result = cli("super-resolve", photo, "--checkpoint", best)
    assert result.exit_code == 2 and "was made by classify-text, not super-resolve" in result.stderr


def test_tile_auto_halves_on_out_of_memory(cli, tiny_rrdbnet, photo, tmp_path, monkeypatch):
    """A device that runs out of memory above 16-pixel tiles: auto tiling retries smaller."""
    from ptcli_super_resolve import tiling

    real_grid, real_forward, tried = tiling.grid, tiling._forward, []

    def recording_grid(height, width, tile, overlap):
        tried.append(tile)
        return real_grid(height, width, tile, overlap)

    def small_memory(model, x, scale):
        if tried[-1] is None or tried[-1] > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(model, x, scale)

    monkeypatch.setattr(tiling, "auto_tile", lambda device, height, width, num_feat=64: 64)
    monkeypatch.setattr(tiling, "grid", recording_grid)
    monkeypatch.setattr(tiling, "_forward", small_memory)
    result, rows = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert tried == [64, 32, 16] and rows[0]["size"] == [160, 120]
    fixed, rows = run(cli, photo, "--weights", tiny_rrdbnet, "-o", tmp_path, "--tile", "32", "--overwrite")
    assert fixed.exit_code == 1  # a tile size the user chose is not changed behind their back
    assert "out of cpu memory with tiles of 32 px; use a smaller --tile" in rows[0]["error"]


def test_bf16_runs_and_stays_close_to_fp32(cli, tiny_rrdbnet, tmp_path):
    """--bf16 (the CUDA path, exercised here on the CPU): same image within a few grey levels,
    tiled or not; --half with --bf16 is refused."""
    import numpy as np
    from PIL import Image

    from ptcli.plugins.tiny_inputs import write_image

    image = write_image(tmp_path / "in.png", size=(40, 28))
    outputs = {}
    for name, extra in (("fp32", []), ("bf16", ["--bf16"]), ("bf16-tiled", ["--bf16", "--tile", "16"])):
        result = cli("super-resolve", image, "--weights", tiny_rrdbnet, "-o", tmp_path / name, "--device", "cpu", *extra)
        assert result.exit_code == 0, result.stderr
        outputs[name] = np.asarray(Image.open(tmp_path / name / "in_x4.png"), dtype=int)
    assert outputs["fp32"].shape == (112, 160, 3)
    assert np.abs(outputs["bf16"] - outputs["fp32"]).max() <= 8
    assert np.abs(outputs["bf16-tiled"] - outputs["fp32"]).max() <= 8
    result = cli("super-resolve", image, "--weights", tiny_rrdbnet, "-o", tmp_path / "x", "--half", "--bf16", "--device", "cpu")
    assert result.exit_code == 2
