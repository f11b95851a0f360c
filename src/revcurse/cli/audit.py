"""`revcurse audit`: the curse on a user's own facts (the own-facts experiment, run by the one runner)."""

from __future__ import annotations

import json
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


@app.command()
def audit(
    facts: Annotated[Path, typer.Argument(help="Your facts: .csv with a subject,relation,object header, or .jsonl.")],
    templates: Annotated[
        Path | None, typer.Option(help="YAML of per-relation statement / question / reverse_question templates.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/audit-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
    strict: Annotated[
        bool,
        typer.Option(
            help=strict_help(
                "a fact with an empty subject, relation or object, a fact given again (the first is kept)",
                "a file type other than .csv or .jsonl, a file that is not UTF-8, CSV or JSON lines, a missing "
                "column or field, a row with the wrong number of values, a field that is not text, no usable fact "
                "left",
            )
        ),
    ] = False,
    train: Annotated[
        bool, typer.Option(help="Train on the facts (a tiny model, or fine-tune --model); --no-train only asks.")
    ] = True,
    model: Annotated[
        Path | None, typer.Option(help="A trained model folder to fine-tune, or with --no-train to audit as it is.")
    ] = None,
    url: UrlOption = None,
    model_name: ModelNameOption = None,
    api_key_env: ApiKeyEnvOption = None,
    seeds: Annotated[int | None, typer.Option(help="Models trained from seeds seed, seed+1, ...")] = None,
) -> None:
    """Your own facts: train on them forward only, then ask each one forward and in reverse.

    FACTS is a CSV with a header (extra columns are ignored) ...
        subject,relation,object
        Orla Fenwright,wrote,The Salt Cartographer
        Corwin Ashgrove,was born in,Pellmarch
    ... or JSONL, one fact a line:
        {"subject": "Orla Fenwright", "relation": "wrote",
         "object": "The Salt Cartographer"}

    --templates FILE.yaml phrases each relation with {subject}, {object} and
    {relation}; a list of statements gives several training phrasings:
        wrote:
          statement:
            - "{subject} wrote {object}."
            - "{subject} is the author of {object}."
          question: "Q: Which book did {subject} write? A:"
          reverse_question: "Q: Who wrote {object}? A:"
    Defaults: statement "{subject} {relation} {object}."; forward question:
    the statement up to its object (so it measures recall of the trained
    text, not generalisation); reverse question
    "Who or what {relation} {object}? Answer:".

    Trains a tiny model from scratch (or fine-tunes --model DIR) on the facts
    forward only. An already trained model is audited as it is with --no-train
    and --model DIR, or behind a server with --no-train --url
    http://HOST/v1 [--model-name NAME --api-key-env VAR]. Prints each fact's
    forward and reverse answer (✓/✗) and the tests over all relations, and
    writes a run folder like every experiment's (config.yaml, metrics.json per
    relation and direction, predictions.jsonl, report.md, skipped.jsonl,
    seed-N/model/), which `revcurse show/report/compare/sweep` read (there
    --set experiment=own-facts --set own_facts.facts=FILE). A fact
    with an empty field or given twice is skipped with a warning naming file
    and line (--strict refuses it); a bad file (missing column, wrong number
    of values, unknown placeholder) exits 2 with the file and line. Example:
        revcurse audit configs/own-facts-example.csv \\
            --templates configs/own-facts-templates.yaml
    """
    from revcurse.experiments.own_facts import ALL_RELATIONS, unused_templates
    from revcurse.facts_file import read_facts
    from revcurse.records import read_probe_runs
    from revcurse.report import result_table
    from revcurse.report_audit import audit_table, fact_audits, summary_line
    from revcurse.runner import run_experiment

    overrides = ["experiment=own-facts", f"own_facts.facts={json.dumps(str(facts))}", f"own_facts.strict={strict}"]
    if templates is not None:
        overrides.append(f"own_facts.templates={json.dumps(str(templates))}")
    if not train:
        overrides.append("train.enabled=false")
    if model is not None:
        overrides.append(f"model.checkpoint={json.dumps(str(model))}")
    if url is not None and train:
        raise InputError("--url asks a model it cannot train: add --no-train")
    if url is not None and model is not None:
        raise InputError("give --model DIR (a local model) or --url (a server), not both")
    if not train and url is None and model is None:
        raise InputError("--no-train needs a model to ask: --model DIR, or --url http://HOST/v1")
    overrides += remote_overrides(url, model_name, api_key_env)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_config(config, with_allow_pickle([*overrides, *(set_ or [])], allow_pickle))
    unused = unused_templates(run_config)
    if unused:
        plain(f"note: templates for relations not in the facts, unused: {', '.join(unused)}")
    out = default_out(out, "audit")
    outcome = run_experiment(run_config, out, overwrite, show_progress=not quiet, log=plain)
    if not outcome.records:  # a data-parallel helper process (torchrun): the main process reports
        return
    summary = outcome.summary
    runs = read_probe_runs(outcome.folder)
    lines = [fact.line for fact in read_facts(facts, strict).facts]
    audits = fact_audits(runs[0][2], lines)
    size = f", {summary['parameters']:,} parameters" if summary.get("parameters") else ""
    console.print(audit_table(audits, f"Own facts: {summary['model']}{size}, seed {runs[0][0]}"))
    plain(summary_line(audits))
    pooled = [record for record in outcome.records if record["subset"] == ALL_RELATIONS]
    console.print(result_table(pooled, title=f"All relations, {len(runs)} seed(s)"))
    plain(
        f"trained {summary['train_seconds']:.0f} s, probed {summary['probe_seconds']:.0f} s; run folder: "
        f"{outcome.folder} (report: {outcome.folder}/report.md, per relation)"
    )


def plain(text: str) -> None:
    """Print user text (facts, file names, answers) as written: ``[/x]`` in it is text, not rich markup."""
    console.print(text, markup=False, highlight=False)
