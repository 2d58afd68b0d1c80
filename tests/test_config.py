import json

import pytest
import yaml
from conftest import write_yaml

from ptcli.training.config import apply_overrides, closest_key, parse_overrides
from ptcli.errors import UsageError


def test_overrides_parse_yaml_scalars_and_collections():
    parsed = dict((".".join(k), v) for k, v in parse_overrides(
        ["trainer.epochs=5", "trainer.lr=0.01", "trainer.freeze=[backbone]", "run.name=", "model.name=resnet50"]))
    assert parsed == {"trainer.epochs": 5, "trainer.lr": 0.01, "trainer.freeze": ["backbone"], "run.name": None, "model.name": "resnet50"}


@pytest.mark.parametrize("bad", ["trainer.epochs", "=3", "trainer..lr=1"])
def test_override_without_key_or_value_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_overrides([bad])


def test_override_into_a_value_is_refused():
    with pytest.raises(UsageError, match="trainer.epochs is a value"):
        apply_overrides({"trainer": {"epochs": 3}}, parse_overrides(["trainer.epochs.max=4"]))


def test_overrides_do_not_change_the_file_data():
    data = {"trainer": {"epochs": 3}}
    assert apply_overrides(data, parse_overrides(["trainer.epochs=4"]))["trainer"]["epochs"] == 4
    assert data["trainer"]["epochs"] == 3


def test_closest_key_prefers_the_same_section_then_the_same_leaf():
    from ptcli_classify_image.training import ClassifyImageConfig

    assert closest_key("trainer.epoch", ClassifyImageConfig) == "trainer.epochs"
    assert closest_key("epochs", ClassifyImageConfig) == "trainer.epochs"
    assert closest_key("data.augmentation", ClassifyImageConfig) == "data.augment"


def test_precedence_defaults_file_overrides(cli, simplenet_config):
    result = cli("train", simplenet_config, "trainer.epochs=7", "--print-config")
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["trainer"]["epochs"] == 7  # override beats the file's 2
    assert config["trainer"]["batch_size"] == 8  # the file beats the default 32
    assert config["trainer"]["seed"] == 0  # the default
    assert config["data"]["augment"] == "none"
    assert config["recipe"] == "classify-image"


def test_unknown_key_names_the_closest_valid_one(cli, simplenet_config):
    result = cli("train", simplenet_config, "trainer.epoch=3")
    assert result.exit_code == 2
    assert "unknown key trainer.epoch; did you mean trainer.epochs?" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_in_the_file_is_found_too(cli, tmp_path, simplenet_config):
    data = yaml.safe_load(simplenet_config.read_text())
    data["model"]["nmae"] = "simplenet"
    result = cli("train", write_yaml(tmp_path / "typo.yaml", data))
    assert result.exit_code == 2
    assert "unknown key model.nmae; did you mean model.name?" in result.stderr


def test_wrong_type_names_the_key_and_value(cli, simplenet_config):
    result = cli("train", simplenet_config, "trainer.epochs=many")
    assert result.exit_code == 2
    assert "trainer.epochs" in result.stderr and "'many'" in result.stderr


def test_value_out_of_range_and_bad_choice(cli, simplenet_config):
    assert "trainer.epochs" in cli("train", simplenet_config, "trainer.epochs=0").stderr
    result = cli("train", simplenet_config, "data.augment=heavy")
    assert result.exit_code == 2 and "data.augment" in result.stderr and "book" in result.stderr


def test_missing_data_root_is_required(cli, tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"recipe": "classify-image", "model": {"name": "simplenet"}})
    result = cli("train", config)
    assert result.exit_code == 2
    assert "data is required" in result.stderr


def test_config_errors_in_json_mode(cli, simplenet_config):
    result = cli("train", simplenet_config, "trainer.epoch=3", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["exit_code"] == 2 and "trainer.epochs" in error["error"]
    # The file is valid: the message blames the override, not the file.
    assert error["error"].startswith("override trainer.epoch=3: unknown key trainer.epoch")


def test_config_file_problems(cli, tmp_path):
    assert "config file not found" in cli("train", tmp_path / "nope.yaml").stderr
    folder = cli("train", tmp_path)
    assert folder.exit_code == 2 and f"{tmp_path} is a folder, not a config file" in folder.stderr
    from conftest import REPO

    checkpoint = cli("classify-image", REPO / "examples" / "cat.jpg", "--checkpoint", tmp_path)
    assert checkpoint.exit_code == 2 and f"{tmp_path} is a folder, not a checkpoint" in checkpoint.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("recipe: [classify-image\n")
    result = cli("train", broken)
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    listing = write_yaml(tmp_path / "list.yaml", ["a", "b"])
    assert "must hold a mapping" in cli("train", listing).stderr
    norecipe = write_yaml(tmp_path / "norecipe.yaml", {"data": {"root": "x"}})
    assert "names no recipe" in cli("train", norecipe).stderr


def test_unknown_recipe_and_recipe_without_training(cli, tmp_path):
    result = cli("train", write_yaml(tmp_path / "a.yaml", {"recipe": "classify-imgae", "data": {"root": "x"}}))
    assert result.exit_code == 2 and "unknown recipe 'classify-imgae'" in result.stderr

    import types

    from ptcli import hookimpl
    from ptcli.plugins.recipe import Recipe

    module = types.ModuleType("infer_only")
    module.register_recipes = hookimpl(lambda register: register(Recipe(name="infer-only", help="x")))
    result = cli("train", write_yaml(tmp_path / "b.yaml", {"recipe": "infer-only"}), plugins=[module])
    assert result.exit_code == 2 and "recipe infer-only has no training" in result.stderr
