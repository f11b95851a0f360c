"""`revcurse probe-hidden`: why a cure works, not only whether (the linear probe on a run's hidden states)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import app, console
from revcurse.records import write_record

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
    write_record(run / "hidden_probe.md", grid_markdown(title, HEADER, rows))
    console.print(grid_table(title, HEADER, rows))
    console.print(f"written: {run / 'hidden_probe.json'}, {run / 'hidden_probe.md'}")


@app.command("curve")
def curve(
    run: Annotated[Path, typer.Argument(help="A run folder trained with the curve (seed-N/curve.jsonl).")],
) -> None:
    """The likelihood curve of a run: each probe group's gap (log p target - distractors) before training, at its
    peak and at the end, mean over seeds [95% CI], and a paired t-test over seeds of end against start."""
    from revcurse.curve import CURVE_FILE, curve_summary, read_curve
    from revcurse.errors import InputError
    from revcurse.report import ASKED_LABEL, grid_table

    curves = {folder.name: read_curve(folder / CURVE_FILE) for folder in sorted(run.glob("seed-*"))}
    curves = {name: rows for name, rows in curves.items() if rows}
    if not curves:
        raise InputError(f"no seed-N/{CURVE_FILE} here (a run with probe.curve_points > 0 writes one)", run)
    header = ["subset", "asked", "trained", "seeds", "gap at step 0", "peak (step)", "gap at end [95% CI]",
              "end vs start: t, p"]
    rows = []
    for r in curve_summary(curves):
        low, high = r["gap_end_ci95"]
        rows.append([" ".join(filter(None, (r["setting"], r["subset"]))), ASKED_LABEL.get(r["asked"], r["asked"]),
                     "yes" if r["trained"] else "no", str(r["seeds"]), f"{r['gap_start']:+.2f}",
                     f"{r['gap_peak']:+.2f} ({r['peak_step']})", f"{r['gap_end']:+.2f} [{low:+.2f}, {high:+.2f}]",
                     f"t={r['moved_t']:.2f} p={r['moved_p']:.3g}"])
    console.print(grid_table(f"Likelihood gap while training: {run}", header, rows))
