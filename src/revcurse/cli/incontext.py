"""`revcurse incontext`: the in-context control."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AddressOption,
    AllowPickleOption,
    ApiKeyEnvOption,
    ConfigOption,
    ExecutorOption,
    GpusPerTaskOption,
    MaxRetriesOption,
    ModelNameOption,
    SetOption,
    SlurmOption,
    UrlOption,
    app,
    console,
    default_out,
    executor_from,
    remote_overrides,
    with_allow_pickle,
)
from revcurse.config import load_config
from revcurse.errors import InputError


@app.command()
def incontext(
    config: ConfigOption = None,
    set_: SetOption = None,
    episodes: Annotated[
        int | None,
        typer.Option(help="Training episodes (facts in the prompt, then a question) over made-up people; default "
                     "6000."),
    ] = None,
    facts_per_episode: Annotated[
        int | None, typer.Option(help="Facts in each episode's prompt (one is asked); the probes show as many.")
    ] = None,
    train: Annotated[
        bool, typer.Option(help="Train (tiny model, or fine-tune model.checkpoint); --no-train asks it as is.")
    ] = True,
    url: UrlOption = None,
    model_name: ModelNameOption = None,
    api_key_env: ApiKeyEnvOption = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds (95% intervals over seeds).")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Seeds in parallel processes (useful with --seeds 2 or more).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/incontext-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """In-context control: the reverse question with the fact in the prompt, against the same question asked of
    the weights.

    The tiny model trains on Experiment 1's corpus plus episodes over made-up people ("Facts: ... Question: Who
    is ...? Answer: ..."), so it learns to read its prompt. Then each fact under test is given in the prompt,
    stated in its trained direction, and asked in both directions; the same questions without the facts ask
    the weights. Any model, untrained: --no-train with --set model.checkpoint=DIR, or --url of a server. Writes a
    run folder (metrics.json records carry `setting`: in_context | in_weights), as `revcurse train --set
    experiment=incontext` does.

    Example: revcurse incontext --seeds 3 --out runs/incontext
    """
    from revcurse.experiments import get_experiment
    from revcurse.report import column_grid, grid_table
    from revcurse.runner import run_experiment

    overrides = ["experiment=incontext", *with_allow_pickle(list(set_ or []), allow_pickle)]
    given = {"incontext.episodes": episodes, "incontext.facts_per_episode": facts_per_episode, "seeds": seeds}
    overrides += [f"{key}={value}" for key, value in given.items() if value is not None]
    if not train:
        overrides.append("train.enabled=false")
    if url is not None and train:
        raise InputError("--url asks a server's model, which cannot be trained here: add --no-train")
    overrides += remote_overrides(url, model_name, api_key_env)
    run_config = load_config(config, overrides)
    if not train and run_config.model.checkpoint is None and run_config.probe.backend != "openai":
        raise InputError("--no-train needs a model to ask: --set model.checkpoint=DIR, or --url of a server")
    out = default_out(out, "incontext")
    outcome = run_experiment(run_config, out, overwrite=overwrite, show_progress=not quiet, log=console.print,
                             executor=executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm))
    if not outcome.records:  # a data-parallel helper process (torchrun): the main process reports
        return
    header, rows = column_grid(outcome.records, get_experiment("incontext").columns)
    title = f"In context vs in weights over {run_config.seeds} seed(s): accuracy"
    console.print(grid_table(title, header, rows))
    console.print(f"folder: {outcome.folder} (metrics.json, predictions.jsonl, report.md)")
