"""ptcli.plugins.testing, used as a third-party plugin's tests use it: through pytester, in a folder
with only a conftest.py naming it."""

import pytest

from conftest import REPO

pytest_plugins = ["pytester"]

PLUGIN_TEST = f'''
import json, sys
sys.path.insert(0, {str(REPO / "examples" / "ptcli-hello")!r})
import ptcli_hello


def test_the_plugin_runs_without_being_installed(ptcli):
    result = ptcli("hello", "Ada", "--device", "cpu", "--json", plugins=[ptcli_hello])
    assert result.exit_code == 0, result.stderr
    assert result.json["greeting"] == "Hello, Ada!"
    assert ptcli("hello", "--device", "cuda:7", plugins=[ptcli_hello]).exit_code == 2


def test_offline_mode_is_on(ptcli, ptcli_offline):
    import os
    assert os.environ["PTCLI_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert str(ptcli_offline) in os.environ["TORCH_HOME"]


def test_tiny_inputs(tiny_image, tiny_clip, tiny_text, tiny_coco):
    from PIL import Image
    import soundfile
    assert Image.open(tiny_image).size == (32, 24)
    assert soundfile.info(str(tiny_clip)).samplerate == 16000
    assert tiny_text
    assert json.loads((tiny_coco / "train.json").read_text())["annotations"]


def test_a_real_recipe_on_a_tiny_input(ptcli, tiny_coco):
    result = ptcli("detect", tiny_coco / "images" / "1.png", "--json")
    assert result.exit_code == 1 and "offline" in result.json["error"]
'''


def test_a_plugins_tests_use_the_kit(pytester):
    pytester.makeconftest('pytest_plugins = ["ptcli.plugins.testing"]\n')
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    outcome = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=4)


def test_result_parses_json_lines():
    from ptcli.plugins.testing import Result

    result = Result(0, '{"a": 1}\n{"b": 2}\n', "")
    assert result.lines == [{"a": 1}, {"b": 2}] and result.json == {"b": 2}
    with pytest.raises(IndexError):
        Result(0, "", "").json
