"""Commands that serve a model over HTTP and probe a model behind an OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AllowPickleOption,
    app,
    console,
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
    batch_size: Annotated[int, typer.Option(help="Prompts per request.")] = 16,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Greedy answer length; default: the config's probe.max_new_tokens, else 32.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write a results folder: config.yaml, metrics.json, predictions.jsonl, remote.json."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Probe a model behind any OpenAI-compatible server on a run's facts and print the table.

    The server must give prompt log-probs (completions with echo=true, max_tokens=0, logprobs=1), as vLLM and
    `revcurse serve` do. With --out the results are written too; remote.json records the URL and the *name* of
    the key's environment variable, never the key.
    """
    import time

    from revcurse.config import dump_config
    from revcurse.metrics import aggregate
    from revcurse.probe import run_probes
    from revcurse.records import record_folder
    from revcurse.remote import backend_from_url
    from revcurse.report import result_table
    from revcurse.runner import build_trial

    config_file = run / "config.yaml" if run.is_dir() else run
    if not config_file.is_file():
        raise InputError("expected a run folder with config.yaml, or a YAML config", run)
    if out is not None and out.exists() and not overwrite:  # refuse before probing, not after
        raise InputError("folder exists; pass --overwrite to replace it", out)
    run_config = load_config(config_file)
    trial = build_trial(run_config, seed)
    corpus, world_seed = trial.corpus, trial.world_seed
    start = time.perf_counter()
    with backend_from_url(url, model, api_key_env, concurrency=concurrency, batch_size=batch_size) as backend:
        # No tokenizer here to size answers by their targets' tokens: a fixed length, enough for names and roles.
        answer_tokens = max_new_tokens or run_config.probe.max_new_tokens or 32
        results = run_probes(
            backend, corpus, answer_tokens, show_progress=not quiet,
            distractors=run_config.probe.distractors, seed=world_seed,
        )
        name, base_url = backend.model, backend.base_url
    seconds = time.perf_counter() - start
    records = aggregate([(seed, world_seed, results)])
    console.print(result_table(records, title=f"Reversal curse: {name} at {url}"))
    console.print(f"{len(results)} probes in {seconds:.0f} s" + (f"; results: {out}" if out else ""))
    if out is None:
        return
    remote = {"url": base_url, "model": name, "api_key_env": api_key_env, "seed": seed, "world_seed": world_seed,
              "probes": len(results), "max_new_tokens": answer_tokens, "seconds": seconds}  # fmt: skip
    with record_folder(out, overwrite) as staging:
        (staging / "config.yaml").write_text(dump_config(run_config), encoding="utf-8")
        (staging / "metrics.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps({"seed": seed, **result.to_json()}, ensure_ascii=False) + "\n")
        (staging / "remote.json").write_text(json.dumps(remote, indent=1), encoding="utf-8")
