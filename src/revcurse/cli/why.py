"""`revcurse probe-hidden`: why a cure works, not only whether (the linear probe on a run's hidden states)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import app, console

HEADER = ["layer", "group", "accuracy [95% CI]", "chance", "permutation test"]


@app.command("probe-hidden")
def probe_hidden(
    run: Annotated[Path, typer.Argument(help="A finished Experiment 1 run folder (demo, train, a compare arm).")],
    placebo_draws: Annotated[
        int, typer.Option(min=1, help="Sets of never-seen names given the reverse facts' labels (false positives).")
    ] = 40,
) -> None:
    """From a name's hidden state, can a linear probe tell its description's class, trained and reverse?

    Fits a logistic regression on the background people's hidden states (each seed's saved model, every layer),
    tests it on NameToDescription, Both and DescriptionToName facts it never saw, and on never-seen names (the
    placebo). Writes RUN/hidden_probe.json and RUN/hidden_probe.md.
    """
    from revcurse.hidden_probe import hidden_probe_rows, run_hidden_probe
    from revcurse.report import grid_markdown, grid_table

    result = run_hidden_probe(run, placebo_draws)
    rows = hidden_probe_rows(result)
    title = (f"Linear probe on the name's hidden state: description class, {len(result['seeds'])} seed(s) "
             f"(headline layer {result['headline_layer']}: best background cross-validation)")
    (run / "hidden_probe.md").write_text(grid_markdown(title, HEADER, rows), encoding="utf-8")
    console.print(grid_table(title, HEADER, rows))
    console.print(f"written: {run / 'hidden_probe.json'}, {run / 'hidden_probe.md'}")
