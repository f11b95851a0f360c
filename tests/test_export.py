"""Exports: each format's content on a small world, the CLI's refusal to overwrite, and lm-evaluation-harness itself
run on the exported task folder with a tiny local model (offline)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from revcurse.cli import main
from revcurse.config import ModelConfig, load_config
from revcurse.corpus import default_templates
from revcurse.errors import InputError
from revcurse.export import (
    LM_EVAL_UTILS,
    chat_record,
    export_corpus,
    export_world,
    lm_eval_task_names,
)
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.paper_format import read_experiment1
from revcurse.probe import is_correct
from revcurse.runner import build_trial

TRAIN_PHRASINGS, HELD_OUT_PHRASINGS = 4, 2
SMALL = [
    "world.facts_per_subset=3",
    "world.background=4",
    f"corpus.train_phrasings={TRAIN_PHRASINGS}",
    f"corpus.held_out_phrasings={HELD_OUT_PHRASINGS}",
    "corpus.background_phrasings=2",
]


@pytest.fixture(scope="module")
def config():
    return load_config(None, SMALL)


@pytest.fixture(scope="module")
def corpus(config):
    return build_trial(config, 0).corpus


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class TaskLoader(yaml.SafeLoader):
    """Reads lm-eval task YAML, keeping `!function x.y` as its text."""


TaskLoader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


# ------------------------------------------------------------------------------------------------------ lm-eval


@pytest.fixture(scope="module")
def lm_eval_folder(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "lm-eval"
    result = export_world(config, "lm-eval", out, seed=0)
    assert result.folder == out
    return out


def test_lm_eval_export_holds_every_probe_once_and_nothing_else(lm_eval_folder, corpus):
    rows = [row for path in sorted((lm_eval_folder / "data").glob("*.jsonl")) for row in read_jsonl(path)]
    assert len(rows) == len(corpus.probes) == 3 * 3 * 2 * HELD_OUT_PHRASINGS
    exported = sorted((r["prompt"], r["target"], r["subset"], r["asked"], r["phrasing"]) for r in rows)
    expected = sorted((p.prompt, p.target, p.subset.value, p.asked.value, p.phrasing) for p in corpus.probes)
    assert exported == expected
    _, held_out = default_templates(TRAIN_PHRASINGS, HELD_OUT_PHRASINGS)
    assert {r["phrasing"] for r in rows} == {t.id for t in held_out}


def test_lm_eval_gold_index_points_at_the_correct_target_among_its_matched_distractors(lm_eval_folder, corpus):
    targets = {(p.fact_key, p.subset.value, p.asked.value, p.phrasing): p.target for p in corpus.probes}
    for path in (lm_eval_folder / "data").glob("*.jsonl"):
        rows = read_jsonl(path)
        assert len({(r["subset"], r["asked"], r["trained"]) for r in rows}) == 1, path.name  # one table cell
        for row in rows:
            assert row["choices"][row["gold"]] == row["target"]
            assert len(row["choices"]) == 3  # the target and the other two facts of the subset
            # the others are other facts' targets in the same phrasing
            same_slot = {t for (fact, s, a, ph), t in targets.items()
                         if (s, a, ph) == (row["subset"], row["asked"], row["phrasing"]) and fact != row["fact_key"]}
            assert set(row["choices"]) - {row["target"]} == same_slot
            assert row["fact_key"] in row["prompt"] or row["fact_key"] == row["target"].strip()


def test_lm_eval_task_files_name_their_data_and_tags(lm_eval_folder, corpus):
    configs = {p.stem: yaml.load(p.read_text(), Loader=TaskLoader) for p in lm_eval_folder.glob("*.yaml")}
    assert sorted(configs) == sorted(lm_eval_task_names(corpus))
    assert len(configs) == 12  # gen and mc for 3 subsets x 2 asked directions
    for name, task in configs.items():
        assert task["task"] == name
        assert "revcurse" in task["tag"]
        data = Path(task["dataset_kwargs"]["data_files"]["test"])
        assert data.is_absolute() and data.is_file() and data.parent.parent == lm_eval_folder.resolve()
        if task["output_type"] == "generate_until":
            assert task["generation_kwargs"]["until"] == ["\n"]
            assert task["process_results"] == "!function utils.process_results"
            longest = max(len(r["target"]) for r in read_jsonl(data))
            assert longest / 2 < task["generation_kwargs"]["max_gen_toks"] < longest
        else:
            assert task["output_type"] == "multiple_choice"
            assert task["target_delimiter"] == ""  # the choices carry their leading space
            assert (task["doc_to_choice"], task["doc_to_target"]) == ("choices", "gold")


def load_utils(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("completion", "target"),
    [
        (" Daphne Barrington.", " Daphne Barrington"),
        ("daphne barrington is", " Daphne Barrington"),
        ("  DAPHNE BARRINGTON", " Daphne Barrington"),
        (" Daphne", " Daphne Barrington"),
        (" Uriah Hawthorne", " Daphne Barrington"),
        ("", " Daphne Barrington"),
        (" the director of the film Journey Through Time, who", " the director of the film Journey Through Time"),
        (" the director of the film", " the director of the film Journey Through Time"),
    ],
)
def test_exported_scoring_hook_is_the_papers_accuracy(lm_eval_folder, completion, target):
    utils = load_utils(lm_eval_folder)
    assert (lm_eval_folder / "utils.py").read_text() == LM_EVAL_UTILS
    expected = float(is_correct(completion, target))
    assert utils.process_results({"target": target}, [completion]) == {"exact_match": expected}


@pytest.mark.slow  # ~15 s: lm-eval's imports and model loading
def test_lm_eval_runs_offline_on_the_exported_folder(lm_eval_folder, corpus, tmp_path):
    """lm-evaluation-harness itself, hf backend, a tiny untrained local model, every task, a few samples each."""
    assert importlib.util.find_spec("lm_eval"), "lm-eval is not installed: pip install -e '.[dev]'"
    torch.manual_seed(0)
    tokenizer = train_tokenizer(corpus.texts_seen(), vocab_size=400)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 128)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
        "OMP_NUM_THREADS": "1",
    }
    limit = 2
    command = [
        sys.executable, "-m", "lm_eval",
        "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
        "--include_path", str(lm_eval_folder), "--tasks", "revcurse",
        "--device", "cpu", "--batch_size", "8", "--limit", str(limit),
        "--output_path", str(tmp_path / "results"), "--log_samples",
    ]  # fmt: skip
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    (results_file,) = (tmp_path / "results").rglob("results_*.json")
    results = json.loads(results_file.read_text())
    names = lm_eval_task_names(corpus)
    assert set(results["results"]) == set(names)
    cell_size = 3 * HELD_OUT_PHRASINGS
    for name in names:
        metric = "exact_match,none" if "_gen_" in name else "acc,none"
        assert 0.0 <= results["results"][name][metric] <= 1.0, (name, results["results"][name])
        assert results["n-samples"][name] == {"original": cell_size, "effective": limit}

    # Logged samples: lm-eval read our rows (labels included) and scored greedy answers with our hook.
    samples = [json.loads(line) for path in (tmp_path / "results").rglob("samples_revcurse_gen_*.jsonl") for line in
               path.read_text().splitlines()]  # fmt: skip
    assert len(samples) == 6 * limit
    for sample in samples:
        assert {"subset", "asked", "trained", "phrasing", "fact_key"} <= sample["doc"].keys()
        answer = sample["filtered_resps"][0]
        assert sample["exact_match"] == float(is_correct(answer, sample["doc"]["target"]))


# ------------------------------------------------------------------------------------------- training exports


@pytest.fixture(scope="module")
def cured_config():
    """The small world with a reversal cure: documents without a prompt part, as training sees them."""
    return load_config(None, [*SMALL, "cures=[reverse-entity]"])


def test_trl_records_reassemble_every_training_document(config, corpus, tmp_path):
    result = export_world(config, "trl", tmp_path / "trl", seed=0)
    pairs = read_jsonl(tmp_path / "trl" / "prompt_completion.jsonl")
    texts = read_jsonl(tmp_path / "trl" / "text.jsonl")
    assert [p["prompt"] + p["completion"] for p in pairs] == [d.text for d in corpus.documents]
    assert [t["text"] for t in texts] == [d.text for d in corpus.documents]
    assert all(p["prompt"] and p["completion"].startswith(" ") for p in pairs)  # forward documents split at target
    assert result.rows["prompt_completion.jsonl"] == len(corpus.documents)
    assert len(read_jsonl(tmp_path / "trl" / "probes.jsonl")) == len(corpus.probes)
    manifest = json.loads((tmp_path / "trl" / "export.json").read_text())
    assert manifest["seed"] == 0 and manifest["config"]["world"]["facts_per_subset"] == 3


def test_openai_chat_records_split_each_document_into_user_and_assistant(config, corpus, tmp_path):
    export_world(config, "openai-chat", tmp_path / "chat", seed=0)
    records = read_jsonl(tmp_path / "chat" / "train.jsonl")
    assert len(records) == len(corpus.documents)
    for record, document in zip(records, corpus.documents):
        user, assistant = record["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert user["content"] + " " + assistant["content"] == document.text
        assert not assistant["content"].startswith(" ")


def test_no_probe_prompt_appears_in_any_training_export(config, corpus, tmp_path):
    export_world(config, "trl", tmp_path / "trl", seed=0)
    export_world(config, "openai-chat", tmp_path / "chat", seed=0)
    training_texts = [r["text"] for r in read_jsonl(tmp_path / "trl" / "text.jsonl")]
    training_texts += [r["prompt"] for r in read_jsonl(tmp_path / "trl" / "prompt_completion.jsonl")]
    training_texts += [m["content"] for r in read_jsonl(tmp_path / "chat" / "train.jsonl") for m in r["messages"]]
    assert corpus.probes
    for probe in corpus.probes:
        assert not any(probe.prompt in text for text in training_texts), probe.prompt


def test_cured_documents_without_a_prompt_are_counted_not_chatted(cured_config, tmp_path):
    corpus = build_trial(cured_config, 0).corpus
    reversed_documents = [d for d in corpus.documents if d.prompt_chars == 0]
    assert reversed_documents and len(reversed_documents) == len(corpus.documents) // 2
    assert chat_record(reversed_documents[0]) is None
    chat = export_world(cured_config, "openai-chat", tmp_path / "chat", seed=0)
    assert chat.rows["train.jsonl"] == len(corpus.documents) - len(reversed_documents)
    assert list(chat.skipped.values()) == [len(reversed_documents)]
    trl = export_world(cured_config, "trl", tmp_path / "trl", seed=0)  # TRL keeps them: empty prompt, all completion
    assert trl.rows["prompt_completion.jsonl"] == len(corpus.documents) and not trl.skipped
    pairs = read_jsonl(tmp_path / "trl" / "prompt_completion.jsonl")
    assert {"prompt": "", "completion": reversed_documents[0].text} in pairs


def test_reverse_token_copies_have_no_text_form_and_are_counted(config, tmp_path):
    cured = load_config(None, [*SMALL, "cures=[reverse-token]"])
    corpus = build_trial(cured, 0).corpus
    result = export_world(cured, "trl", tmp_path / "trl", seed=0)
    assert result.rows["text.jsonl"] == len(corpus.documents) // 2
    assert list(result.skipped.values()) == [len(corpus.documents) // 2]


def test_paper_export_reads_back_as_the_same_corpus(config, corpus, tmp_path):
    result = export_world(config, "paper", tmp_path / "paper", seed=0)
    back = read_experiment1(tmp_path / "paper")
    assert sorted(d.text for d in back.documents) == sorted(d.text for d in corpus.documents)
    assert sorted((p.prompt, p.target) for p in back.probes) == sorted((p.prompt, p.target) for p in corpus.probes)
    assert result.rows["all_prompts_train.jsonl"] == len(corpus.documents)


# ----------------------------------------------------------------------------------------------- refusals, CLI


def test_cli_refuses_an_existing_folder_with_exit_2_and_keeps_it(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    sets = [arg for item in SMALL for arg in ("--set", item)]
    assert run_cli(["export", "--format", "trl", "--out", str(out), *sets]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    assert run_cli(["export", "--format", "trl", "--out", str(out), "--overwrite", *sets]) == 0
    assert not (out / "mine.txt").exists() and (out / "text.jsonl").is_file()
    printed = capsys.readouterr().out
    assert "prompt_completion.jsonl" in printed and "rows" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_cli_rejects_an_unknown_format_with_exit_2(tmp_path, capsys):
    assert run_cli(["export", "--format", "csv", "--out", str(tmp_path / "x")]) == 2
    assert "lm-eval" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_export_corpus_rejects_an_unknown_format(corpus, tmp_path):
    with pytest.raises(InputError, match="unknown export format"):
        export_corpus(corpus, "jsonl", tmp_path / "x")
