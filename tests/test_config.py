"""Config loading, overrides and their errors."""

import re

import pytest

from revcurse.config import RunConfig, dump_config, load_config
from revcurse.errors import InputError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\ntrain:\n  epochs: 3\n")
    config = load_config(path, ["train.batch_size=16", "world.background=0", "model.checkpoint=null"])
    assert config.seed == 4 and config.train.epochs == 3 and config.train.batch_size == 16
    assert config.world.background == 0 and config.model.checkpoint is None
    assert RunConfig.model_validate(__import__("yaml").safe_load(dump_config(config))) == config


def test_every_preset_loads():
    from pathlib import Path

    presets = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert presets
    for preset in presets:
        if preset.name.endswith("-templates.yaml"):  # relation templates for `revcurse audit`, not a run config
            from revcurse.facts_file import read_templates

            assert read_templates(preset)
        elif preset.name.startswith("accelerate-"):  # for `accelerate launch --config_file`, not a run config
            from accelerate.commands.config.config_args import load_config_from_file

            assert load_config_from_file(str(preset)).distributed_type
        else:
            load_config(preset)


@pytest.mark.parametrize(
    ("text", "overrides", "fragment"),
    [
        ("train: [1, 2\n", [], "not valid YAML"),
        ("- 1\n", [], "expected a mapping"),
        ("train:\n  epoch: 3\n", [], "train.epoch"),
        ("train:\n  epochs: -1\n", [], "train.epochs"),
        ("", ["train.epochs"], "key=value"),
        ("", ["train.loss=middle"], "train.loss"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path, text, overrides, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment.replace("[", r"\[")) as error:
        load_config(path, overrides)
    if not overrides:
        assert str(path) in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def load_instructions_config(path=None, overrides=()):
    """The config `revcurse instructions` loads: the one root, its experiment chosen."""
    return load_config(path, ["experiment=instructions", *overrides])


LOADERS = {"run": load_config, "instructions": load_instructions_config}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("seed: 0\nseeds: 3\nseeds: 4\n", 3, "key 'seeds' given twice (first on line 2)"),
        ("train:\n  epochs: 3\n  batch_size: 8\n  epochs: 4\n", 4, "key 'train.epochs' given twice (first on line 2)"),
        ("train: {epochs: 3, epochs: 4}\n", 1, "key 'train.epochs' given twice"),
        ("train:\n  epochs: 3\ntrain:\n  batch_size: 8\n", 3, "key 'train' given twice (first on line 1)"),
        ("train:\n  learning_rate: .inf\n", 2, "train.learning_rate: '.inf' is not a finite number"),
        ("train:\n  learning_rate: -.inf\n", 2, "train.learning_rate: '-.inf' is not a finite number"),
        ("seed: 0\ntrain:\n  weight_decay: .NaN\n", 3, "train.weight_decay: '.NaN' is not a finite number"),
        ("train:\n  epochs: !!float inf\n", 2, "train.epochs: 'inf' is not a finite number"),
    ],
)  # fmt: skip
def test_a_key_given_twice_or_a_non_finite_number_is_refused_naming_file_line_and_key(
    tmp_path, loader, text, line, fragment
):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        LOADERS[loader](path)
    assert str(error.value).startswith(f"{path}, line {line}: {fragment}")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.learning_rate=.inf", "--set train.learning_rate: '.inf' is not a finite number"),
        ("train.learning_rate=.nan", "--set train.learning_rate: '.nan' is not a finite number"),
        ("train.learning_rate=inf", "train.learning_rate: Input should be a finite number"),  # text, to pydantic
        ("train.learning_rate=1e400", "train.learning_rate: Input should be a finite number"),
        ("train={epochs: 3, epochs: 4}", "--set train: key 'epochs' given twice"),
    ],
)
def test_overrides_refuse_non_finite_numbers_and_keys_given_twice(override, fragment):
    for loader in LOADERS.values():
        with pytest.raises(InputError, match=re.escape(fragment)):
            loader(None, [override])


def test_a_merge_key_may_be_overridden_and_finite_numbers_pass(tmp_path):
    path = tmp_path / "c.yaml"
    assert load_config(None, ["train.learning_rate=1.0e+3"]).train.learning_rate == 1000
    from revcurse.config import load_user_yaml

    merged = load_user_yaml("base: &b {epochs: 3, batch_size: 8}\ntrain:\n  <<: *b\n  epochs: 4\n", path)
    assert merged["train"] == {"epochs": 4, "batch_size": 8}  # a key beside a merge overrides it: no error
