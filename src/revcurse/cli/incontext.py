"""`revcurse incontext`: the in-context control."""

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
    with_allow_pickle,
)
from revcurse.config import load_config
from revcurse.errors import InputError


@app.command()
def incontext(
    config: ConfigOption = None,
    set_: SetOption = None,
    episodes: Annotated[
        int, typer.Option(help="Training episodes (facts in the prompt, then a question) over made-up people.")
    ] = 6000,
    facts_per_episode: Annotated[
        int, typer.Option(help="Facts in each episode's prompt (one is asked); the probes show as many.")
    ] = 1,
    train: Annotated[
        bool, typer.Option(help="Train (tiny model, or fine-tune model.checkpoint); --no-train probes as is.")
    ] = True,
    seeds: Annotated[int | None, typer.Option(help="Seeds (95% intervals over seeds).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/incontext-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
) -> None:
    """In-context control: the reverse question with the fact in the prompt, against the same question asked of
    the weights.

    The tiny model trains on Experiment 1's corpus plus episodes over made-up people ("Facts: ... Question: Who
    is ...? Answer: ..."), so it learns to read its prompt. Then each fact under test is given in the prompt,
    stated in its trained direction beside a distractor, and asked in both directions; the same questions
    without the facts ask the weights. For any model: --set model.checkpoint=DIR --no-train.

    Example: revcurse incontext --seeds 3 --out runs/incontext
    """
    from revcurse.incontext import DEFAULT_OVERRIDES as INCONTEXT_DEFAULTS
    from revcurse.incontext import INCONTEXT_HEADER, EpisodeConfig, incontext_rows, run_incontext
    from revcurse.report import grid_table

    overrides = with_allow_pickle(list(set_ or []), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_config(config, overrides if config else [*INCONTEXT_DEFAULTS, *overrides])
    if not train and run_config.model.checkpoint is None:
        raise InputError("--no-train needs a model to ask: --set model.checkpoint=DIR")
    out = out or Path("runs") / f"incontext-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_incontext(
        run_config, out, EpisodeConfig(episodes, facts_per_episode), train, overwrite, not quiet, console.print
    )
    title = f"In context vs in weights over {run_config.seeds} seed(s): accuracy"
    console.print(grid_table(title, INCONTEXT_HEADER, incontext_rows(outcome.records)))
    console.print(f"folder: {outcome.folder} (incontext.json, incontext.md, predictions.jsonl)")
