"""`revcurse export --format inspect`: the task folder's content, the prompt reaching inspect's hf provider as
HFBackend encodes it, and `inspect eval` itself, offline, on a run's saved model: the same completions and the same
accuracy, per direction and per cell, as the run's own probing of the same probes."""

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from revcurse.cli import main
from revcurse.config import load_config
from revcurse.export import export_world, probe_rows
from revcurse.inspect_export import inspect_model_args, inspect_rows
from revcurse.metrics import lookup
from revcurse.probe import HFBackend, generation_budget, is_correct
from revcurse.runner import build_trial

# A celebrities run that trains in ~20 s on 2 cores and still answers some held-out forward probes (none reversed).
RUN = [
    "world.facts_per_subset=2", "world.background=4", "corpus.train_phrasings=20", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=6", "train.learning_rate=0.005", "train.batch_size=16",
    "model.hidden_size=64", "model.intermediate_size=128", "model.heads=2", "model.vocab_size=500",
]  # fmt: skip
TASK_SOURCE = Path(__file__).parent.parent / "src" / "revcurse" / "inspect_task.py"


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_task_module(folder: Path):
    assert importlib.util.find_spec("inspect_ai"), "inspect_ai is not installed: pip install -e '.[dev]'"
    spec = importlib.util.spec_from_file_location("exported_inspect_task", folder / "task.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config():
    return load_config(None, RUN)


@pytest.fixture(scope="module")
def corpus(config):
    return build_trial(config, 0).corpus


@pytest.fixture(scope="module")
def exported(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "inspect"
    export_world(config, "inspect", out, seed=0)
    return out


# --------------------------------------------------------------------------------------------- the task folder


def test_inspect_export_holds_every_probe_once_with_its_direction_and_cell(exported, corpus):
    rows = read_jsonl(exported / "probes.jsonl")
    assert len(rows) == len(corpus.probes) == 3 * 2 * 2 * 2
    # the lm-eval export's rows, plus what the task reads
    assert [{k: r[k] for k in probe_rows(corpus)[0]} for r in rows] == probe_rows(corpus)
    for row, probe in zip(rows, corpus.probes):
        assert row["direction"] == ("forward" if probe.trained else "reverse")
        assert row["cell"] == f"{probe.subset.value} asked {probe.asked.value} ({row['direction']})"
    assert Counter(r["direction"] for r in rows) == {"forward": 16, "reverse": 8}
    assert len({r["cell"] for r in rows}) == 6
    assert (exported / "task.py").read_text() == TASK_SOURCE.read_text()
    model_args = yaml.safe_load((exported / "hf_model_args.yaml").read_text())
    assert model_args == inspect_model_args() and model_args["do_sample"] is False
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["format"] == "inspect" and manifest["rows"] == {"probes.jsonl": len(rows)}
    assert manifest["generation_budget"].startswith("longest target in characters")  # no --model, no tokenizer


def test_generation_budget_is_probings_own(corpus, tiny_model_and_tokenizer):
    """Without a tokenizer: the longest target in characters + 2, as run_probes does for a backend without one;
    with one: in its tokens; probe.max_new_tokens wins over both."""
    _, tokenizer = tiny_model_and_tokenizer
    longest_chars = max(len(p.target) for p in corpus.probes)
    assert {r["max_new_tokens"] for r in inspect_rows(corpus, probe_rows(corpus))} == {longest_chars + 2}
    by_tokens = generation_budget(corpus.probes, tokenizer)
    assert by_tokens == 2 + max(len(tokenizer(p.target)["input_ids"]) for p in corpus.probes)
    assert {r["max_new_tokens"] for r in inspect_rows(corpus, probe_rows(corpus), tokenizer=tokenizer)} == {by_tokens}
    assert {r["max_new_tokens"] for r in inspect_rows(corpus, probe_rows(corpus), 7, tokenizer)} == {7}


def sentencepiece_style(texts: list[str]) -> PreTrainedTokenizerFast:
    """Metaspace ("▁") BPE with byte fallback and a post-processor that adds BOS, as Llama-2 and Mistral ship."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")  # fmt: skip


def test_model_args_make_the_hf_provider_encode_prompts_as_hf_backend(corpus, tiny_model_and_tokenizer):
    """inspect's hf provider renders the messages with `chat_template`, then tokenizes with `tokenizer_call_args`:
    the ids must be HFBackend's (BOS, then the prompt) for a BOS the tokenizer does not add (revcurse's tiny
    tokenizer, GPT-2), no BOS at all, and a BOS its post-processor adds (SentencePiece style), where a BOS written
    into the text would split the first word differently."""
    model, tiny = tiny_model_and_tokenizer
    prompts = [probe.prompt for probe in corpus.probes[:6]]
    without_bos = type(tiny)(tokenizer_object=tiny.backend_tokenizer, eos_token="</s>", pad_token="<pad>")
    sentencepiece = sentencepiece_style([p.prompt + p.target for p in corpus.probes])
    for tokenizer, adds_bos in ((tiny, False), (without_bos, False), (sentencepiece, True)):
        model_args = inspect_model_args(tokenizer)
        assert model_args["tokenizer_call_args"] == {"add_special_tokens": adds_bos}
        backend = HFBackend(model, tokenizer)
        for prompt in prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], chat_template=model_args["chat_template"],
                add_generation_prompt=True, tokenize=False,
            )  # fmt: skip
            ids = tokenizer(text, **model_args["tokenizer_call_args"])["input_ids"]
            assert ids == backend.encode(prompt), tokenizer.convert_ids_to_tokens(ids)
            assert (ids[0] == tokenizer.bos_token_id) == (tokenizer.bos_token_id is not None)
    # the case the choice exists for: BOS written into the text, "Did" loses its "▁" and splits
    written = inspect_model_args(None)
    text = sentencepiece.apply_chat_template([{"role": "user", "content": prompts[0]}], add_generation_prompt=True,
                                             chat_template=written["chat_template"], tokenize=False)  # fmt: skip
    assert sentencepiece(text, add_special_tokens=False)["input_ids"] != HFBackend(model, sentencepiece).encode(
        prompts[0]
    )


@pytest.mark.parametrize(
    ("completion", "target"),
    [
        (" Daphne Barrington.", " Daphne Barrington"),
        ("  DAPHNE BARRINGTON", " Daphne Barrington"),
        (" Daphne", " Daphne Barrington"),
        ("", " Daphne Barrington"),
        (" the director of the film Journey Through Time, who", " the director of the film Journey Through Time"),
    ],
)
def test_the_tasks_scorer_is_revcurses_accuracy(exported, completion, target):
    assert load_task_module(exported).is_correct(completion, target) == is_correct(completion, target)


def test_model_is_refused_for_other_formats_and_must_hold_a_tokenizer(tmp_path, capsys):
    sets = [arg for item in RUN for arg in ("--set", item)]
    assert run_cli(["export", "--format", "trl", "--out", str(tmp_path / "a"), "--model", str(tmp_path), *sets]) == 2
    assert "--model" in capsys.readouterr().err
    assert run_cli(["export", "--format", "inspect", "--out", str(tmp_path / "b"), "--model", str(tmp_path),
                    *sets]) == 2  # fmt: skip
    assert "tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------ inspect eval, for real


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "celebrities"
    assert run_cli(["train", "--quiet", "--out", str(out), *[a for item in RUN for a in ("--set", item)]]) == 0
    return out


@pytest.mark.slow  # ~20 s training, ~10 s inspect eval
def test_inspect_eval_on_the_saved_model_gives_revcurses_accuracy(trained_run, tmp_path, capsys):
    model = trained_run / "seed-0" / "model"
    out = tmp_path / "inspect"
    code = run_cli(["export", "--format", "inspect", "--config", str(trained_run / "config.yaml"),
                    "--model", str(model), "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"-M model_path={model.resolve()}" in printed  # the next step names the model folder
    assert json.loads((out / "export.json").read_text())["generation_budget"].startswith("longest target in tokens")

    inspect_cli = Path(sys.executable).parent / "inspect"
    assert inspect_cli.is_file(), "inspect_ai is not installed: pip install -e '.[dev]'"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),  # inspect's traces and control sockets, not the user's home
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    # task.py@name: inspect globs a bare task path against the working directory (absolute paths fail on 3.11)
    command = [
        str(inspect_cli), "eval", f"{out / 'task.py'}@revcurse_probes",
        "--model", "hf/local", "--model-config", str(out / "hf_model_args.yaml"), "-M", f"model_path={model}",
        "--log-dir", str(tmp_path / "logs"), "--display", "none",
    ]  # fmt: skip
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Warning" not in finished.stderr, finished.stderr[-3000:]

    from inspect_ai.log import list_eval_logs, read_eval_log

    (log_info,) = list_eval_logs(str(tmp_path / "logs"))
    log = read_eval_log(log_info)
    assert log.status == "success" and log.eval.task == "revcurse_probes"

    # Sample by sample: the same correctness, and the same text wherever revcurse generated (a probe whose target is
    # the greedy continuation is recorded as the target without generating: see run_probes).
    predictions = {(p["fact_key"], p["subset"], p["asked"], p["phrasing"]): p
                   for p in read_jsonl(trained_run / "predictions.jsonl")}  # fmt: skip
    assert len(log.samples) == len(predictions)
    counts: Counter = Counter()
    generated = 0
    for sample in log.samples:
        meta = sample.metadata
        ours = predictions[meta["fact_key"], meta["subset"], meta["asked"], meta["phrasing"]]
        theirs = sample.scores["starts_with_target"].value == "C"
        assert theirs == ours["correct"], (sample.output.completion, ours)
        if not ours["is_greedy"]:
            assert sample.output.completion == ours["completion"]
            generated += 1
        counts[meta["direction"], "correct"] += theirs
        counts[meta["direction"], "probes"] += 1
    assert generated > 0

    # The log's metrics: per direction the pooled fraction, per cell revcurse's accuracy record.
    (score,) = log.results.scores
    metrics = {name: metric.value for name, metric in score.metrics.items()}
    forward = counts["forward", "correct"] / counts["forward", "probes"]
    assert metrics["forward"] == forward > 0  # the comparison is not between two zeros
    assert metrics["reverse"] == counts["reverse", "correct"] / counts["reverse", "probes"]
    assert metrics["accuracy"] == sum(p["correct"] for p in predictions.values()) / len(predictions)
    records = json.loads((trained_run / "metrics.json").read_text())
    cells = {(r["subset"], r["asked"], r["direction"]) for r in read_jsonl(out / "probes.jsonl")}
    for subset, asked, direction in cells:
        ours = lookup(records, subset, asked, "accuracy")["mean"]  # mean over facts, equal probes per fact
        assert metrics[f"{subset} asked {asked} ({direction})"] == pytest.approx(ours, abs=1e-12)
