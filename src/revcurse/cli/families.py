"""`revcurse families`: the synthetic Experiment 2, a sweep over the fraction r of families with parent-side text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AddressOption,
    ConfigOption,
    ExecutorOption,
    GpusPerTaskOption,
    MaxRetriesOption,
    SetOption,
    SlurmOption,
    app,
    console,
    default_out,
    executor_from,
)
from revcurse.errors import InputError
from revcurse.experiments.families import DEFAULT_FRACTIONS

FRACTION_KEY = "families.fraction"


@app.command()
def families(
    config: ConfigOption = None,
    set_: SetOption = None,
    fractions: Annotated[
        str, typer.Option(help="Comma-separated fractions r of families that also get parent-side text.")
    ] = ",".join(f"{r:g}" for r in DEFAULT_FRACTIONS),
    count: Annotated[int | None, typer.Option("--families", help="Test families (probed); default 100.")] = None,
    background: Annotated[
        int | None, typer.Option(help="Background families, stated both ways; never probed; default 100.")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per fraction (95% intervals over seeds).")] = None,
    jobs: Annotated[int, typer.Option(help="Fractions side by side in processes.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/families-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Synthetic Experiment 2: how much parent-side text does a model need to name a parent's child?

    Every family's text names the parent from the child's side ("Ada Vale's mother is Mira Holt."); a fraction r
    of families also gets parent-side text ("Mira Holt has a child named Ada Vale."). A tiny model is trained
    from scratch per r and seed, then asked both ways with held-out questions. A sweep of the families
    experiment over families.fraction (as `revcurse sweep --set experiment=families --grid
    families.fraction=...`): one run folder per r under cells/, sweep.csv, and families.md and families.png
    (reverse accuracy against r). Rerun the same command to resume. The model is a d64 tiny Llama trained 30
    epochs unless the config says otherwise (the experiment's defaults).

    Example: revcurse families --seeds 3 --out runs/families
    """
    from revcurse.experiments import get_experiment
    from revcurse.report import column_grid, grid_markdown, grid_table, plot_column_grid
    from revcurse.sweep import run_sweep
    from revcurse.sweep_tables import write_text

    values = [x.strip() for x in fractions.split(",") if x.strip()]
    try:
        [float(x) for x in values]
    except ValueError:
        raise InputError(f"--fractions expects numbers like 0,0.1,0.5, got {fractions!r}") from None
    overrides = ["experiment=families", *(set_ or [])]
    for key, value in (("families.families", count), ("families.background", background), ("seeds", seeds)):
        if value is not None:
            overrides.append(f"{key}={value}")
    out = default_out(out, "families")
    outcome = run_sweep(config, overrides, [f"{FRACTION_KEY}={','.join(values)}"], out,
                        executor=executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm),
                        overwrite=overwrite, show_progress=not quiet, log=console.print)
    experiment = get_experiment("families")
    header, rows = column_grid(outcome.rows, experiment.columns, by=FRACTION_KEY, by_header="r")
    title = "Synthetic Experiment 2: reverse accuracy against the fraction r of families with parent-side text"
    write_text(out / "families.md", grid_markdown(title, header, rows))  # atomic, as the sweep's own tables
    plot_column_grid(outcome.rows, experiment.columns, FRACTION_KEY, out / "families.png",
                     "r: fraction of families with parent-side text", "How much reverse-direction text does a "
                     "model need?")
    seeds_per_cell = outcome.cells[0].config.seeds
    console.print(grid_table(f"Synthetic Experiment 2 over {seeds_per_cell} seed(s): accuracy [95% CI]", header,
                             rows))
    console.print(f"folder: {out} (cells/ one run per r, sweep.csv, families.md, families.png)")
