"""`revcurse audit`: the curse on a user's own facts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AllowPickleOption,
    ConfigOption,
    SetOption,
    app,
    console,
    strict_help,
    with_allow_pickle,
)
from revcurse.config import load_config


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

    Trains a tiny model from scratch, or fine-tunes --set model.checkpoint=DIR.
    Prints each fact's forward and reverse answer (✓/✗) and writes a run
    folder: audit.jsonl, audit.md, config.yaml, skipped.jsonl, model/. A fact
    with an empty field or given twice is skipped with a warning naming file
    and line (--strict refuses it); a bad file (missing column, wrong number
    of values, unknown placeholder) exits 2 with the file and line. Example:
        revcurse audit configs/own-facts-example.csv \\
            --templates configs/own-facts-templates.yaml
    """
    from rich.table import Table

    from revcurse.own_facts import FORWARD, REVERSE, run_audit, summary_line

    run_config = load_config(config, with_allow_pickle(list(set_ or []), allow_pickle))
    out = out or Path("runs") / f"audit-{datetime.now():%Y%m%d-%H%M%S}"
    result = run_audit(
        facts, templates, run_config, out, overwrite, show_progress=not quiet, log=console.print, strict=strict
    )
    summary = result.summary
    table = Table(title=f"Own facts: {summary['model']}, {summary['parameters']:,} parameters")
    for column in ("line", "fact", "forward answer", "reverse answer"):
        table.add_column(column)
    by_fact: dict[int, dict] = {}
    for row in result.rows:
        by_fact.setdefault(row.line, {})[row.direction] = row
    for line, pair in by_fact.items():
        cells = [
            f"[green]✓[/] {pair[d].answer.strip()}" if pair[d].correct else f"[red]✗[/] {pair[d].answer.strip()}"
            for d in (FORWARD, REVERSE)
        ]
        fact = pair[FORWARD]
        table.add_row(str(line), f"{fact.subject} | {fact.relation} | {fact.object}", *cells, end_section=False)
    console.print(table)
    console.print(summary_line(summary))
    console.print(
        f"trained {summary['train_seconds']:.0f} s on {summary['documents']} documents, probed "
        f"{summary['probe_seconds']:.0f} s; run folder: {result.folder} (report: {result.folder}/audit.md)"
    )
