"""Commands that serve a model over HTTP and probe a model behind an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AllowPickleOption,
    app,
    console,
    default_out,
)
from revcurse.config import load_config
from revcurse.errors import InputError


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A local causal-LM folder (config.json, *.safetensors).")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 is reachable by others.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).")] = 8000,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key; when set, requests must carry it.")
    ] = "REVCURSE_API_KEY",
    model_name: Annotated[str | None, typer.Option(help="Model id in the API; default: the folder's name.")] = None,
    allow_pickle: AllowPickleOption = False,
) -> None:
    """Serve a model folder over an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions).

    Completions give prompt log-probs with echo=true, max_tokens=0, logprobs=N, so any OpenAI-compatible client
    (revcurse.remote, lm-evaluation-harness's local-completions) can probe it. Ctrl-C stops it.
    """
    import logging

    from revcurse.serve import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_server(
        model_dir, host=host, port=port, api_key_env=api_key_env, model_name=model_name, log=console.print,
        allow_pickle=allow_pickle,
    )


@app.command(name="probe-remote")
def probe_remote(
    run: Annotated[Path, typer.Argument(help="A run folder (its config.yaml) or a YAML config: what to probe.")],
    url: Annotated[str, typer.Option(help="The OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str | None, typer.Option(help="Model id on the server; default: its only model.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    seed: Annotated[int, typer.Option(help="Which seed's world to probe.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Greedy answer length; default: the config's probe.max_new_tokens, else 32.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/remote-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Probe a model behind any OpenAI-compatible server on a run's facts, print the table, write a run folder.

    The same run as the config describes, asked of the server instead of trained here (probe.backend=openai,
    train.enabled=false): the folder has the usual files, so show, report and calibrate read it. The server must
    give prompt log-probs (completions with echo=true, max_tokens=0, logprobs=1), as vLLM and `revcurse serve`
    do. config.yaml records the URL and the *name* of the key's environment variable, never the key.
    """
    from revcurse.report import result_table
    from revcurse.runner import run_experiment

    config_file = run / "config.yaml" if run.is_dir() else run
    if not config_file.is_file():
        raise InputError("expected a run folder with config.yaml, or a YAML config", run)
    answer_tokens = max_new_tokens or load_config(config_file).probe.max_new_tokens or 32
    overrides = [
        "probe.backend=openai", f"probe.url={url}", f"probe.api_key_env={api_key_env}",
        f"probe.concurrency={concurrency}", f"probe.max_new_tokens={answer_tokens}", "train.enabled=false",
        f"seed={seed}", "seeds=1", *([f"probe.model_name={model}"] if model else []),
    ]
    out = default_out(out, "remote")
    outcome = run_experiment(load_config(config_file, overrides), out, overwrite=overwrite, show_progress=not quiet,
                             log=console.print if not quiet else lambda *_: None)
    served = outcome.summary["per_seed"][0].get("served_model") or model
    console.print(result_table(outcome.records, title=f"Reversal curse: {served} at {url}"))
    console.print(f"probed in {outcome.summary['probe_seconds']:.0f} s; run folder: {out}")
