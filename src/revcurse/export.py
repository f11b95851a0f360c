"""Export one seed's world in formats other tools already read, so the Reversal Curse can be trained and measured
outside revcurse: with lm-evaluation-harness, OpenAI fine-tuning, TRL, or the paper's own scripts.

The corpus exported is the one training sees for that seed (``runner.build_trial``: the config's world,
phrasings and cures). Training exports hold training documents only; evaluation exports hold probes only, whose
phrasings are held out from training, so no exported training line states a probe.

Formats (``FORMATS``):

- ``lm-eval``: an lm-evaluation-harness (0.4.x) task folder. One ``generate_until`` task (greedy, the paper's
  accuracy: the completion starts with the target, case-insensitive) and one ``multiple_choice`` task (log-likelihood
  of the correct target against its matched distractors, ``corpus.draw_distractors``: other facts' targets in the
  same phrasing, at most ``DEFAULT_DISTRACTORS``, as revcurse's own probing scores them) per
  (subset, asked direction): each task is one cell of the paper's table, so trained and reverse cells never mix.
  Tags group them: ``revcurse`` (all), ``revcurse_gen``, ``revcurse_mc``, ``revcurse_<asked direction>``. Data are
  JSONL files under ``data/``, loaded with ``dataset_path: json`` and ``dataset_kwargs.data_files`` naming them by
  absolute path (lm-eval's documented way to read local files; ``datasets`` resolves relative paths against the
  working directory, not the YAML), so export again after moving the folder. ``utils.py`` holds the scoring hook.
- ``inspect``: an inspect_ai task (``task.py``, copied from ``inspect_task.py``) over ``probes.jsonl``: one sample per
  probe with its direction (forward/reverse) and cell in the metadata, greedy generation of at most the tokens
  revcurse's probing generates (``probe.max_new_tokens``, or ``probe.generation_budget`` with the tokenizer of
  ``model``: without one, the characters rule that probing uses for a backend without a tokenizer), scored as
  ``probe.is_correct``. ``hf_model_args.yaml`` makes inspect's ``hf`` provider encode the raw prompt as
  ``HFBackend`` does and decode greedily (``inspect_export``).
- ``openai-chat``: OpenAI chat fine-tuning JSONL, one ``{"messages": [user, assistant]}`` line per training document:
  the user turn is the document's prompt part, the assistant turn its completion part (leading whitespace dropped:
  the turn boundary stands for the space). Documents without a prompt part (``prompt_chars == 0``, e.g. a
  reversal cure's copies) have no user turn to give, so they are left out and counted.
- ``trl``: TRL's prompt-completion records (``{"prompt", "completion"}``, prompt + completion == the document) and
  language-modelling records (``{"text"}``).
- ``paper``: the paper's Experiment 1 folder (``paper_format.write_experiment1``).

``reverse-token`` copies keep forward text and are reversed only when tokenized (``train.encode_documents``), so no
text format can hold them: they are left out of every text export and counted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import revcurse
from revcurse.config import RunConfig
from revcurse.corpus import Corpus, Document, Probe, draw_distractors
from revcurse.errors import InputError
from revcurse.world import Direction, Subset

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FORMATS: dict[str, str] = {
    "lm-eval": "lm-evaluation-harness task folder: probe any HF model (or API) on held-out phrasings",
    "inspect": "inspect_ai task (task.py, probes.jsonl): the same probes and accuracy, run with `inspect eval`",
    "openai-chat": "OpenAI chat fine-tuning JSONL of the training documents (plus probes.jsonl to ask afterwards)",
    "trl": "TRL prompt-completion and text JSONL of the training documents (plus probes.jsonl)",
    "paper": "the paper's Experiment 1 folder layout (p2d_*, d2p_*, both_*, all_prompts_train, ...)",
}

# Short subset names of the paper's file names; task and file names use them.
SUBSET_SLUGS: dict[Subset, str] = {
    Subset.NAME_TO_DESCRIPTION: "p2d",
    Subset.DESCRIPTION_TO_NAME: "d2p",
    Subset.BOTH: "both",
}
LM_EVAL_TAG = "revcurse"
# Generation budget per task: half a token per character of the longest target, plus a margin. Subword tokenizers
# spend fewer (made-up names run ~1 token per 2.5 characters with GPT-2's); a character-level model needs more
# (lm_eval --gen_kwargs max_gen_toks=N). The budget must stay well under a tiny model's context, since lm-eval
# keeps only (context length - max_gen_toks) prompt tokens: bytes + 8 (79 tokens) failed on the demo's 64.
GENERATION_TOKENS_PER_CHAR = 0.5
GENERATION_MARGIN_TOKENS = 4
REVERSE_TOKEN = "reverse-token"

# The scoring hook lm-eval loads with `process_results: !function utils.process_results`. Kept here as text so the
# task folder is self-contained (it runs where revcurse is not installed); tests/test_export.py checks it against
# revcurse.probe.is_correct.
LM_EVAL_UTILS = '''"""revcurse scoring for lm-evaluation-harness: the accuracy of Berglund et al. (2023).

A greedy completion is correct when it starts with the target, ignoring case and leading whitespace; what the
model says after the target does not matter. Written by `revcurse export --format lm-eval`.
"""


def is_correct(completion: str, target: str) -> bool:
    """The completion starts with the target (case-insensitive, leading whitespace ignored)."""
    return completion.lstrip().lower().startswith(target.strip().lower())


def process_results(doc: dict, results: list) -> dict:
    """One greedy completion per row -> {"exact_match": 1.0 or 0.0}."""
    return {"exact_match": float(is_correct(results[0], doc["target"]))}
'''


@dataclass
class ExportResult:
    """What an export wrote: the folder, rows per file (relative path), documents left out and why."""

    folder: Path
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    next_step: str = ""


def export_world(
    config: RunConfig,
    export_format: str,
    out: Path,
    *,
    seed: int | None = None,
    overwrite: bool = False,
    model: Path | None = None,
) -> ExportResult:
    """Build the corpus of ``seed`` (default: the config's first seed) as training would, and export it to ``out``.

    ``model``: the model folder the export will be evaluated on; its tokenizer sets the inspect task's generation
    budget as probing that model does (``probe.generation_budget``), unless ``probe.max_new_tokens`` is set."""
    from revcurse.inspect_export import load_tokenizer
    from revcurse.runner import build_trial

    if model is not None and export_format != "inspect":
        raise InputError(f"--model sets the inspect task's generation budget; {export_format} does not use it")
    tokenizer = None if model is None else load_tokenizer(Path(model))
    seed = config.seed if seed is None else seed
    trial = build_trial(config, seed)
    corpus, world_seed = trial.corpus, trial.world_seed
    provenance = {
        "seed": seed,
        "world_seed": world_seed,
        "revcurse_version": revcurse.__version__,
        "config": config.model_dump(mode="json"),
    }
    if export_format == "inspect":
        provenance["generation_budget"] = (
            "probe.max_new_tokens" if config.probe.max_new_tokens is not None
            else "longest target in tokens + 2 (--model's tokenizer)" if model
            else "longest target in characters + 2 (no --model: no tokenizer)"
        )  # fmt: skip
    if model is not None:
        provenance["model"] = str(Path(model).resolve())
    return export_corpus(
        corpus, export_format, out, seed=seed, overwrite=overwrite, provenance=provenance,
        max_new_tokens=config.probe.max_new_tokens, tokenizer=tokenizer,
    )  # fmt: skip


def export_corpus(
    corpus: Corpus,
    export_format: str,
    out: Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    provenance: dict | None = None,
    max_new_tokens: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> ExportResult:
    """Write ``corpus`` to the folder ``out`` in ``export_format`` (a key of ``FORMATS``).

    ``max_new_tokens`` and ``tokenizer`` set the inspect task's generation budget as in ``run_probes``.

    The folder is built under a temporary sibling name and renamed into place when complete. An existing ``out``
    is an InputError unless ``overwrite``; so is an unknown format or a corpus the format cannot hold.
    """
    from revcurse.records import record_folder

    if export_format not in FORMATS:
        raise InputError(f"unknown export format {export_format!r}; known: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("folder exists; pass --overwrite to replace it", out)
    result = ExportResult(folder=out, format=export_format)
    with record_folder(out, overwrite=True, keep_status=False) as staging:
        if export_format == "lm-eval":
            _write_lm_eval(corpus, staging, out.resolve(), result)
            result.next_step = (
                f"lm_eval --model hf --model_args pretrained=RUN/seed-{seed}/model --include_path {out} "
                f"--tasks {LM_EVAL_TAG}"
            )
        elif export_format == "inspect":
            _write_inspect(corpus, staging, result, max_new_tokens, tokenizer)
            model_path = "RUN/seed-{seed}/model" if tokenizer is None else str((provenance or {}).get("model"))
            result.next_step = (
                f"inspect eval {out / 'task.py'}@revcurse_probes --model hf/local "
                f"--model-config {out / 'hf_model_args.yaml'} "
                f"-M model_path={model_path.format(seed=seed)}"
            )
        elif export_format == "openai-chat":
            _write_openai_chat(corpus, staging, result)
            result.next_step = (
                f"upload {out / 'train.jsonl'} with purpose 'fine-tune' (client.files.create), then "
                "client.fine_tuning.jobs.create(training_file=FILE_ID, model=MODEL); ask the model probes.jsonl"
            )
        elif export_format == "trl":
            _write_trl(corpus, staging, result)
            result.next_step = (
                f"SFTTrainer(model=MODEL, train_dataset=load_dataset('json', "
                f"data_files='{out / 'prompt_completion.jsonl'}')['train']) (or text.jsonl for full-text loss)"
            )
        else:
            _write_paper(corpus, staging, seed, result)
            result.next_step = f"revcurse demo --paper {out}"
        if export_format != "paper":
            manifest = {"format": export_format, **(provenance or {}), "rows": result.rows, "skipped": result.skipped}
            (staging / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return result


# ------------------------------------------------------------------------------------------------ shared pieces


def probe_rows(corpus: Corpus) -> list[dict]:
    """One JSON row per probe: prompt, target, its candidates (the target and its matched distractors, in text
    order) with the gold index, and the labels results are split by (subset, asked, trained, phrasing, fact_key)."""
    rows = []
    for probe, distractors in zip(corpus.probes, draw_distractors(corpus.probes)):
        choices = sorted([probe.target, *distractors.targets])
        rows.append(
            {
                "prompt": probe.prompt,
                "target": probe.target,
                "choices": choices,
                "gold": choices.index(probe.target),
                "subset": _label(probe.subset),
                "asked": _label(probe.asked),
                "trained": probe.trained,
                "phrasing": probe.phrasing,
                "fact_key": probe.fact_key,
            }
        )
    return rows


def split_document(document: Document) -> tuple[str, str]:
    """(prompt, completion) of a training document at its ``prompt_chars``; prompt + completion == its text."""
    cut = min(max(document.prompt_chars, 0), len(document.text))
    return document.text[:cut], document.text[cut:]


def chat_record(document: Document) -> dict | None:
    """An OpenAI chat fine-tuning record of a document, or None when it has no prompt part to ask with."""
    prompt, completion = split_document(document)
    if not prompt or not completion.strip():
        return None
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion.lstrip()}]}


def _text_documents(corpus: Corpus, result: ExportResult) -> list[Document]:
    """The training documents a text format can hold: all but reverse-token copies (counted in ``result``)."""
    kept = [d for d in corpus.documents if d.reversal != REVERSE_TOKEN]
    if len(kept) < len(corpus.documents):
        result.skipped["reverse-token copies (reversed at tokenization, no text form)"] = len(corpus.documents) - len(
            kept
        )
    return kept


def _write_jsonl(folder: Path, name: str, rows: Iterable[dict], result: ExportResult) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    result.rows[name] = count


def _label(value: Subset | Direction | str) -> str:
    return value.value if isinstance(value, Enum) else str(value)


def _slug(value: Subset | Direction | str) -> str:
    if isinstance(value, Subset) and value in SUBSET_SLUGS:
        return SUBSET_SLUGS[value]
    return re.sub(r"[^0-9A-Za-z]+", "_", _label(value)).strip("_").lower() or "group"


# ----------------------------------------------------------------------------------------------------- formats


def lm_eval_task_names(corpus: Corpus) -> list[str]:
    """The names of the tasks ``--format lm-eval`` writes for ``corpus``: gen and mc per (subset, asked)."""
    return [f"{LM_EVAL_TAG}_{kind}_{cell}" for cell in _cells(corpus) for kind in ("gen", "mc")]


def _cells(corpus: Corpus) -> dict[str, list[Probe]]:
    """Probes per (subset, asked) cell, keyed by the cell's name (``p2d_asked_description_to_name``)."""
    cells: dict[str, list[Probe]] = {}
    for probe in corpus.probes:
        cells.setdefault(f"{_slug(probe.subset)}_asked_{_slug(probe.asked)}", []).append(probe)
    return cells


def _write_lm_eval(corpus: Corpus, staging: Path, final: Path, result: ExportResult) -> None:
    if not corpus.probes:
        raise InputError("the corpus has no probes: nothing to evaluate")
    rows_of = {id(probe): row for probe, row in zip(corpus.probes, probe_rows(corpus))}
    for cell, probes in _cells(corpus).items():
        data_name = f"data/{cell}.jsonl"
        _write_jsonl(staging, data_name, (rows_of[id(p)] for p in probes), result)
        first = probes[0]
        trained = "trained" if first.trained else "reverse"
        longest = max(len(p.target) for p in probes)
        max_tokens = math.ceil(longest * GENERATION_TOKENS_PER_CHAR) + GENERATION_MARGIN_TOKENS
        common = {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(final / data_name)}},
            "test_split": "test",
            "doc_to_text": "prompt",
        }
        asked_tag = f"{LM_EVAL_TAG}_{_slug(first.asked)}"
        alias = f"{_label(first.subset)} asked {_label(first.asked)} ({trained})"
        generate = {
            "task": f"{LM_EVAL_TAG}_gen_{cell}",
            "task_alias": f"{alias}, greedy",
            "tag": [LM_EVAL_TAG, f"{LM_EVAL_TAG}_gen", asked_tag],
            **common,
            "output_type": "generate_until",
            "doc_to_target": "target",
            # Stop only at a newline: a target may hold any punctuation, and scoring reads only its start.
            "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": max_tokens},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        }
        choice = {
            "task": f"{LM_EVAL_TAG}_mc_{cell}",
            "task_alias": f"{alias}, likelihood",
            "tag": [LM_EVAL_TAG, f"{LM_EVAL_TAG}_mc", asked_tag],
            **common,
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "target_delimiter": "",  # targets begin with their own space, as in the paper's completions
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        }
        # yaml.safe_dump cannot write lm-eval's !function tag; it goes in as one line.
        hook = "process_results: !function utils.process_results\n"
        (staging / f"{generate['task']}.yaml").write_text(_yaml(generate) + hook, encoding="utf-8")
        (staging / f"{choice['task']}.yaml").write_text(_yaml(choice), encoding="utf-8")
    (staging / "utils.py").write_text(LM_EVAL_UTILS, encoding="utf-8")
    (staging / "README.md").write_text(_lm_eval_readme(corpus, final), encoding="utf-8")


class _TaskDumper(yaml.SafeDumper):
    """Writes strings holding a newline double-quoted ("\\n"), the way lm-eval's own task files do."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)


_TaskDumper.add_representer(str, _represent_str)


def _yaml(data: dict) -> str:
    return yaml.dump(data, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True, width=1000)


def _lm_eval_readme(corpus: Corpus, final: Path) -> str:
    tasks = "\n".join(f"- `{name}`" for name in lm_eval_task_names(corpus))
    return (
        "# revcurse probes for lm-evaluation-harness\n\n"
        "Written by `revcurse export --format lm-eval`. Every probe uses a phrasing held out from training.\n\n"
        f"    lm_eval --model hf --model_args pretrained=MODEL --include_path {final} --tasks {LM_EVAL_TAG}\n\n"
        "`gen` tasks: greedy completion starts with the target (case-insensitive), metric `exact_match`. `mc` tasks:\n"
        "the correct target is the likeliest of all targets of the same subset and asked direction, metric `acc`.\n"
        "Rows carry subset, asked, trained, phrasing and fact_key (see `--log_samples`). The YAML files name the\n"
        "data by absolute path: export again after moving this folder.\n\n"
        f"Tasks:\n\n{tasks}\n"
    )


def _write_inspect(
    corpus: Corpus,
    staging: Path,
    result: ExportResult,
    max_new_tokens: int | None,
    tokenizer: PreTrainedTokenizerBase | None,
) -> None:
    if not corpus.probes:
        raise InputError("the corpus has no probes: nothing to evaluate")
    from revcurse.inspect_export import TASK_SOURCE, inspect_model_args, inspect_rows

    rows = inspect_rows(corpus, probe_rows(corpus), max_new_tokens, tokenizer)
    _write_jsonl(staging, "probes.jsonl", rows, result)
    (staging / "task.py").write_text(TASK_SOURCE.read_text(encoding="utf-8"), encoding="utf-8")
    header = (
        "# inspect's hf provider, set to probe as revcurse does (written by revcurse export --format inspect):\n"
        "# the raw prompt after the tokenizer's BOS token (no other special tokens), greedy decoding.\n"
        "# inspect eval task.py --model hf/local --model-config hf_model_args.yaml -M model_path=MODEL_FOLDER\n"
    )
    (staging / "hf_model_args.yaml").write_text(header + _yaml(inspect_model_args(tokenizer)), encoding="utf-8")


def _write_openai_chat(corpus: Corpus, staging: Path, result: ExportResult) -> None:
    records = []
    without_prompt = 0
    for document in _text_documents(corpus, result):
        record = chat_record(document)
        if record is None:
            without_prompt += 1
        else:
            records.append(record)
    if without_prompt:
        result.skipped["documents without a prompt part (prompt_chars == 0)"] = without_prompt
    if not records:
        raise InputError("no training document has a prompt part: nothing to write as chat records")
    _write_jsonl(staging, "train.jsonl", records, result)
    _write_jsonl(staging, "probes.jsonl", probe_rows(corpus), result)


def _write_trl(corpus: Corpus, staging: Path, result: ExportResult) -> None:
    documents = _text_documents(corpus, result)
    pairs = [split_document(d) for d in documents]
    _write_jsonl(staging, "prompt_completion.jsonl", ({"prompt": p, "completion": c} for p, c in pairs), result)
    _write_jsonl(staging, "text.jsonl", ({"text": d.text} for d in documents), result)
    _write_jsonl(staging, "probes.jsonl", probe_rows(corpus), result)


def _write_paper(corpus: Corpus, staging: Path, seed: int, result: ExportResult) -> None:
    from revcurse.paper_format import write_experiment1

    documents = _text_documents(corpus, result)
    try:
        write_experiment1(replace(corpus, documents=documents), staging, seed=seed, overwrite=True)
    except ValueError as error:
        raise InputError(f"the paper's layout cannot hold this corpus: {error}") from None
    for path in sorted(staging.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            result.rows[path.name] = sum(1 for line in handle if line.strip())
