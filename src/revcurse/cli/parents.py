"""`revcurse parents`: Experiment 2 on real celebrities and their parents, asked of a local model or a server."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AllowPickleOption,
    ApiKeyEnvOption,
    ConfigOption,
    ModelNameOption,
    SetOption,
    UrlOption,
    app,
    console,
    default_out,
    remote_overrides,
    strict_help,
    with_allow_pickle,
)
from revcurse.config import load_config
from revcurse.errors import InputError

HEADER = ["style", "parent type", "asked", "any correct", "fraction correct", "log p rank-1", "log p gap"]
TEST_HEADER = ["style", "parent type", "any correct: McNemar", "fraction correct: paired t", "log p gap: paired t"]


@app.command()
def parents(
    pairs: Annotated[Path, typer.Argument(help="The paper's parent_child_pairs.csv (child,parent,parent_type,...).")],
    model: Annotated[str | None, typer.Option(help="A local causal LM folder (transformers, safetensors).")] = None,
    url: UrlOption = None,
    model_name: ModelNameOption = None,
    api_key_env: ApiKeyEnvOption = None,
    samples: Annotated[int, typer.Option(min=1, help="Sampled answers per question.")] = 10,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 answers greedily.")] = 1.0,
    style: Annotated[list[str] | None, typer.Option(help="chat and/or completion (repeatable); default both.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N rows (the file still counts).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest sampled answer, in tokens.")] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of the distractor draw.")] = 0,
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/parents-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
    strict: Annotated[
        bool,
        typer.Option(
            help=strict_help(
                "a row with an empty child or parent, a parent_type other than mother or father, a row repeating "
                "an earlier one (the first is kept)",
                "a file that is not UTF-8 or CSV, an empty file, a missing column, a row with the wrong number of "
                "fields, a can_reverse other than True, False or empty, no usable row left",
            )
        ),
    ] = False,
) -> None:
    """Experiment 2: ask "Who is X's mother/father?" and "Name a child of Y." of a model, in chat and completion
    style, by sampling and by log-prob; parent vs child with 95% intervals and paired tests over rows.

    Nothing is trained: --model DIR asks a local model, --url URL (--model-name NAME) any OpenAI-compatible server
    (vLLM, `revcurse serve`, a hosted API; chat questions then go to its chat endpoint, which gives no log-probs).
    Writes a standard run folder (config.yaml, metrics.json, predictions.jsonl with every sampled answer, run.json,
    report.md, skipped.jsonl) that show, report and status read.

    Example: revcurse parents parent_child_pairs.csv --url http://127.0.0.1:8000/v1 --samples 10
    """
    from revcurse.runner import run_experiment

    if (model is None) == (url is None):
        raise InputError("give the model to ask: --model DIR (a local folder) or --url URL (a server), not both")
    overrides = [f"parents.pairs={json.dumps(str(pairs))}", f"probe.samples={samples}",
                 f"probe.temperature={temperature}", f"probe.max_new_tokens={max_new_tokens}", f"seed={seed}"]
    if model is not None:
        overrides.append(f"model.checkpoint={json.dumps(model)}")
    overrides += remote_overrides(url, model_name, api_key_env)
    if style:
        overrides.append(f"parents.styles=[{','.join(style)}]")
    if limit:
        overrides.append(f"parents.limit={limit}")
    if strict:
        overrides.append("parents.strict=true")
    overrides = with_allow_pickle(["experiment=parents", *overrides, *(set_ or [])], allow_pickle)
    run_config = load_config(config, overrides)
    out = default_out(out, "parents")
    outcome = run_experiment(run_config, out, overwrite, show_progress=not quiet, log=console.print)
    rows, tests = parents_rows(outcome.records)
    console.print(_grid(f"Parent vs child: {outcome.summary['model']}", HEADER, rows))
    console.print(_grid("Parent vs child, paired over rows", TEST_HEADER, tests))
    stats = outcome.summary["per_seed"][0]
    for note in stats.get("not_given", []):
        console.print(f"not given by this backend (NaN in the records): {note}", markup=False)
    rendering = f"chat prompts: {stats['chat_rendering']}; " if stats.get("chat_rendering") else ""
    console.print(f"{rendering}run folder: {outcome.folder} (report: {outcome.folder}/report.md)", markup=False)


def parents_rows(records: list[dict]) -> tuple[list[list[str]], list[list[str]]]:
    """The result rows (one per style, parent type and asked direction) and the paired-test rows."""
    get = {(r.get("setting", ""), r["subset"], r["asked"], r["metric"]): r for r in records}
    groups = dict.fromkeys(key[:3] for key in get if key[3] == "any_correct")
    shown = (("any_correct", True), ("fraction_correct", True), ("rank1", True), ("likelihood_diff", False))
    rows = [[*group, *(_value(get.get((*group, metric)), percent) for metric, percent in shown)] for group in groups]
    tests = []
    for setting, subset, asked in groups:
        diff = get.get((setting, subset, asked, "any_correct_diff"))
        if diff is None:
            continue
        p = get[(setting, subset, asked, "any_correct_mcnemar_p")]["mean"]
        mcnemar = f"{diff['discordant'][0]}:{diff['discordant'][1]} p={p:.2g}"
        tests.append([setting, subset, mcnemar, *(_t(get, (setting, subset, asked), m) for m in
                                                  ("fraction_correct", "logprob_gap"))])
    return rows, tests


def _value(record: dict | None, percent: bool) -> str:
    if record is None or math.isnan(record["mean"]):
        return "n/a"
    mean, low, high = record["mean"], record["ci95_low"], record["ci95_high"]
    if percent:
        return f"{100 * mean:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def _t(get: dict, group: tuple[str, str, str], metric: str) -> str:
    diff, p = get[(*group, f"{metric}_diff")], get[(*group, f"{metric}_t_p")]["mean"]
    if math.isnan(diff["t"]):
        return "n/a"
    return f"{diff['mean']:+.2f} t({diff['n_facts'] - 1})={diff['t']:.2f} p={p:.2g}"


def _grid(title: str, header: list[str], rows: list[list[str]]):
    from revcurse.report import grid_table

    return grid_table(title, header, rows)
