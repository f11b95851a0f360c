import json

import pytest
import yaml

from revcurse.config import load_config
from revcurse.corpus import default_templates
from revcurse.experiments import get_experiment
from revcurse.experiments.incontext import (
    FACTS_HEADER,
    IN_CONTEXT,
    IN_WEIGHTS,
    in_context_probes,
    make_episodes,
    question,
)
from revcurse.report import column_grid
from revcurse.runner import build_trial
from revcurse.world import Direction, Subset, make_celebrities
from tests.test_cli import SMALL as CLI_SMALL
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def world():
    return make_celebrities(facts_per_subset=5, background=10, seed=2)


def test_episodes_never_mention_a_fact_under_test(world):
    train, _ = default_templates()
    episodes = make_episodes(world, 300, 3, train, seed=0)
    text = "\n".join(e.text for e in episodes)
    for fact in world.facts_under_test:
        assert fact.name not in text
        assert fact.description not in text
    assert all(e.text.startswith(FACTS_HEADER) for e in episodes)
    who_is_a_name = sum(
        any(e.text.split("Question: Who is ")[1].startswith(n) for n in e.entities[::2]) for e in episodes
    )
    assert 100 < who_is_a_name < 200  # both directions asked, about equally
    assert make_episodes(world, 300, 3, train, seed=0) == episodes
    assert make_episodes(world, 300, 3, train, seed=1) != episodes


def test_episode_answers_come_from_the_prompt(world):
    train, _ = default_templates()
    for episode in make_episodes(world, 50, 2, train, seed=3):
        prompt, answer = episode.text[: episode.prompt_chars], episode.text[episode.prompt_chars :]
        assert answer.startswith(" ") and answer.endswith(".")
        assert answer.strip(" .") in prompt.split("Question:")[0]


def test_in_context_probe_gives_the_fact_and_a_distractor_in_its_trained_direction(world):
    probes = in_context_probes(world, 30, 10, seed=0)
    in_context = [p for p in probes if p.setting == IN_CONTEXT]
    in_weights = [p for p in probes if p.setting == IN_WEIGHTS]
    assert len(in_context) == len(in_weights) == 2 * len(world.facts_under_test) == len(probes) / 2
    facts = {f.name: f for f in world.facts_under_test}
    for with_facts, alone in zip(in_context, in_weights):
        fact = facts[with_facts.fact_key]
        assert with_facts.target == alone.target == " " + fact.target(Direction(with_facts.asked))
        assert alone.prompt == question(fact, with_facts.asked)
        assert with_facts.prompt.endswith(alone.prompt)
        stated = with_facts.prompt.split("Question:")[0]
        assert fact.name in stated and fact.description in stated
        if fact.subset is Subset.NAME_TO_DESCRIPTION:
            assert stated.index(fact.name) < stated.index(fact.description)
        if fact.subset is Subset.DESCRIPTION_TO_NAME:
            assert stated.index(fact.description) < stated.index(fact.name)
        others = [f for f in world.subset(fact.subset) if f != fact and f.name in stated]
        assert len(others) == 1  # one distractor of the same subset


def test_the_trial_trains_on_experiment_1_plus_episodes_and_nothing_without_training():
    overrides = ["experiment=incontext", "world.facts_per_subset=3", "world.background=10",
                 "incontext.episodes=25", "incontext.facts_per_episode=2"]
    trial = build_trial(load_config(None, overrides), seed=1)
    experiment1 = build_trial(load_config(None, overrides[1:3]), seed=1)
    assert trial.corpus.documents[: len(experiment1.corpus.documents)] == experiment1.corpus.documents
    assert len(trial.corpus.documents) == len(experiment1.corpus.documents) + 25
    assert {p.setting for p in trial.corpus.probes} == {IN_CONTEXT, IN_WEIGHTS}
    untrained = build_trial(load_config(None, [*overrides, "train.enabled=false"]), seed=1)
    assert untrained.corpus.documents == [] and untrained.corpus.probes == trial.corpus.probes


def _record(setting, subset, asked, trained, mean):
    return {"setting": setting, "subset": subset, "asked": asked, "trained": trained, "metric": "accuracy",
            "mean": mean, "ci95_low": mean - 0.05, "ci95_high": mean + 0.05}


def test_table_puts_the_two_settings_side_by_side():
    records = [
        _record(IN_CONTEXT, "NameToDescription", "description_to_name", False, 0.95),
        _record(IN_WEIGHTS, "NameToDescription", "description_to_name", False, 0.0),
    ]
    header, rows = column_grid(records, get_experiment("incontext").columns)
    assert header == ["subset", "asked", "trained", "in context [95% CI]", "in weights [95% CI]"]
    assert rows == [["NameToDescription", "desc→name", "no", "0.95 [0.90, 1.00]", "0.00 [-0.05, 0.05]"]]


SMALL = ["--set", "world.facts_per_subset=4", "--set", "world.background=20", "--set", "model.hidden_size=32",
         "--set", "model.layers=1", "--set", "model.heads=2", "--set", "model.intermediate_size=64",
         "--set", "train.epochs=2", "--set", "train.batch_size=32", "--set", "train.threads=1"]


def test_tiny_run_writes_both_settings_in_a_standard_run_folder(tmp_path):
    out = tmp_path / "run"
    assert run_cli(["incontext", "--episodes", "40", "--quiet", "--out", str(out), *SMALL]) == 0
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "run.json", "status.json"):
        assert (out / name).is_file()
    records = json.loads((out / "metrics.json").read_text())
    assert {r["setting"] for r in records} == {IN_CONTEXT, IN_WEIGHTS}
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 12  # settings x directions x facts under test
    assert json.loads((out / "run.json").read_text())["per_seed"][0]["documents"] > 40
    assert "in context [95% CI]" in (out / "report.md").read_text()
    assert run_cli(["show", str(out)]) == 0
    assert run_cli(["report", str(out), "--out", str(tmp_path / "page.html")]) == 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.test_serve import save_tiny_model

    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    settings = json.loads((folder / "config.json").read_text())  # in-context prompts outrun its 64 positions;
    settings["max_position_embeddings"] = 512  # rotary positions: the weights do not depend on it
    (folder / "config.json").write_text(json.dumps(settings))
    return folder


def _predictions(folder):
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    fields = ("setting", "fact_key", "asked", "correct", "rank")  # a garbage completion's length may differ
    return [{k: p[k] for k in fields} | {"logp": round(p["logprob_correct"], 3)} for p in map(json.loads, lines)]


def test_any_model_is_asked_with_and_without_the_facts_without_training(tmp_path, checkpoint):
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = ["incontext", "--no-train", "--quiet", *CLI_SMALL]
    assert run_cli([*args, "--out", str(local), "--set", f"model.checkpoint={checkpoint}"]) == 0
    summary = json.loads((local / "run.json").read_text())
    assert "train_seconds" not in summary["per_seed"][0] and summary["per_seed"][0]["documents"] == 0
    assert {p["setting"] for p in _predictions(local)} == {IN_CONTEXT, IN_WEIGHTS}

    from revcurse.model import load_checkpoint
    from revcurse.sections import ModelConfig
    from revcurse.serve import make_server
    from tests.test_serve import running

    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(checkpoint)))
    with running(make_server(model, tokenizer, "tiny", port=0, quiet=True)) as server:
        url_args = ["--url", server.url, "--model-name", "tiny", "--api-key-env", "REVCURSE_TEST_UNSET"]
        assert run_cli([*args, *url_args, "--out", str(remote)]) == 0
    config = yaml.safe_load((remote / "config.yaml").read_text())
    assert config["probe"]["backend"] == "openai" and config["train"]["enabled"] is False
    assert _predictions(remote) == _predictions(local)  # the server answers as the model in this process


def test_no_train_without_a_model_and_url_with_training_are_refused(tmp_path, capsys):
    assert run_cli(["incontext", "--no-train", "--out", str(tmp_path / "run")]) == 2
    assert "model.checkpoint" in capsys.readouterr().err
    assert run_cli(["incontext", "--url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "run")]) == 2
    assert "--no-train" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
