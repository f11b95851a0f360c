"""`revcurse families`: the synthetic Experiment 2."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    ConfigOption,
    SetOption,
    app,
    console,
)
from revcurse.config import load_config
from revcurse.errors import InputError


@app.command()
def families(
    config: ConfigOption = None,
    set_: SetOption = None,
    fractions: Annotated[
        str, typer.Option(help="Comma-separated fractions r of families that also get parent-side text.")
    ] = "0,0.01,0.05,0.1,0.25,0.5",
    count: Annotated[int, typer.Option("--families", help="Test families (probed).")] = 100,
    background: Annotated[int, typer.Option(help="Background families, stated both ways; never probed.")] = 100,
    seeds: Annotated[int | None, typer.Option(help="Seeds per fraction (95% intervals over seeds).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/families-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Synthetic Experiment 2: how much parent-side text does a model need to name a parent's child?

    Every family's text names the parent from the child's side ("Ada Vale's mother is Mira Holt."); a fraction r
    of families also gets parent-side text ("Mira Holt has a child named Ada Vale."). A tiny model is trained
    from scratch per r and seed, then asked both ways with held-out questions. Writes families.json (tidy
    records with `fraction`), families.md, families.png (reverse accuracy against r) and predictions.jsonl.
    Without --config the model is a d64 tiny Llama trained 30 epochs (as configs/families.yaml).

    Example: revcurse families --seeds 3 --out runs/families
    """
    from revcurse.families import DEFAULT_OVERRIDES, SWEEP_HEADER, run_sweep, sweep_rows
    from revcurse.report import grid_table

    try:
        values = tuple(float(x) for x in fractions.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--fractions expects numbers like 0,0.1,0.5, got {fractions!r}") from None
    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_config(config, overrides if config else [*DEFAULT_OVERRIDES, *overrides])
    out = out or Path("runs") / f"families-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_sweep(run_config, out, values, count, background, overwrite=overwrite, log=console.print)
    title = f"Synthetic Experiment 2 over {run_config.seeds} seed(s): accuracy [95% CI]"
    console.print(grid_table(title, SWEEP_HEADER, sweep_rows(outcome.records)))
    console.print(f"folder: {outcome.folder} (families.json, families.md, families.png)")
