"""What every command shares: the Typer app, the console, the options declared once, small helpers."""


from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from revcurse.errors import InputError
from revcurse.experiments import EXPERIMENTS

app = typer.Typer(
    help=(
        "Reproduce, measure and cure the Reversal Curse: train a model on 'A is B' facts and probe whether it "
        "can answer 'B is A'.\n\nStart with `revcurse demo`; every command takes --config FILE.yaml and "
        "--set section.key=value overrides (see configs/)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the result table when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config; defaults when omitted.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set train.epochs=8 (repeatable)."),
]
AllowPickleOption = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Load a checkpoint's pickle weights (.bin, .pt) when it has no safetensors. Unpickling can run code: "
        "only for files you trust (same as --set model.allow_pickle=true).",
    ),
]
ExperimentOption = Annotated[
    str | None,
    typer.Option(help=f"The experiment to run: {', '.join(EXPERIMENTS)} (same as --set experiment=NAME)."),
]
NameOption = Annotated[
    str | None,
    typer.Option(help="Run name: the folder runs/NAME (a plain name: no '/', '..', leading '.'); or use --out."),
]


def strict_help(skipped: str, refused: str) -> str:
    """The help of a reader's --strict: what it skips as one unusable line, and what it refuses as a bad file."""
    return (
        f"Refuse an unusable line (exit 2, naming file and line) instead of skipping it. Skipped otherwise, with a "
        f"warning naming file and line, and listed in the run folder's skipped.jsonl: {skipped}. Refused either way "
        f"(the file is not in the expected format): {refused}."
    )


def refuse_beside_resume(**given: object) -> None:
    """``--resume`` continues a run with the config and folder it was started with: other options would not."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False, [], ())]
    if named:
        raise InputError(f"--resume continues a run with its own config and folder: drop {', '.join(named)}")


StrictOption = Annotated[
    bool,
    typer.Option(
        help="Refuse a data folder with any unusable line (an empty completion, a duplicate, a description asked of "
        "no known name). Default: such a line is skipped with a warning naming its file and line, and listed in "
        "the run folder's skipped.jsonl; a file that is not in the expected format is refused either way."
    ),
]


def default_out(out: Path | None, command: str, name: str | None = None) -> Path:
    """The folder a command writes: ``--out``, ``--name`` under runs/, else ``runs/COMMAND-<date>-<time>``."""
    from revcurse.paths import output_folder

    return output_folder(out, name, f"{command}-{datetime.now():%Y%m%d-%H%M%S}")


def with_experiment(overrides: list[str] | None, experiment: str | None) -> list[str]:
    """``--experiment NAME`` as the override it stands for, first, so that ``--set experiment=...`` wins."""
    return [*([f"experiment={experiment}"] if experiment else []), *(overrides or [])]


def with_allow_pickle(overrides: list[str], allow_pickle: bool) -> list[str]:
    """``--allow-pickle`` as the config override it stands for (recorded in the run's config.yaml)."""
    return [*overrides, "model.allow_pickle=true"] if allow_pickle else overrides





UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Ask a model behind an OpenAI-compatible server (vLLM, `revcurse serve`, a hosted "
                 "API), e.g. http://127.0.0.1:8000/v1; nothing is trained (probe.backend=openai)."),
]  # fmt: skip
ModelNameOption = Annotated[
    str | None, typer.Option("--model-name", help="With --url: the model id on the server; default its only one.")
]
ApiKeyEnvOption = Annotated[
    str | None,
    typer.Option("--api-key-env", help="With --url: the environment variable holding the API key (never the key)."),
]


def remote_overrides(url: str | None, model_name: str | None, api_key_env: str | None) -> list[str]:
    """``--url``, ``--model-name`` and ``--api-key-env`` as the config overrides they stand for."""
    if url is None:
        if model_name is not None or api_key_env is not None:
            raise InputError("--model-name and --api-key-env go with --url (a server to ask)")
        return []
    overrides = ["probe.backend=openai", f"probe.url={json.dumps(url)}"]
    if model_name is not None:
        overrides.append(f"probe.model_name={json.dumps(model_name)}")
    if api_key_env is not None:
        overrides.append(f"probe.api_key_env={json.dumps(api_key_env)}")
    return overrides


EXECUTOR_PANEL = "Where the runs run (local processes, Ray, SLURM)"
ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor", rich_help_panel=EXECUTOR_PANEL,
        help="local: --jobs processes here (default). ray: each run a Ray task asking train.threads CPUs (and a GPU "
        "with train.device=cuda), on --address or a Ray started here. slurm: each run a SLURM job (submitit). "
        "slurm-local: the same jobs through submitit on this machine. Folders must be on a shared file system.",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option("--address", rich_help_panel=EXECUTOR_PANEL,
                 help="With --executor ray: the cluster to join (HOST:PORT of its head, or ray://HOST:10001); "
                 "default a Ray started here and stopped at the end."),
]
GpusPerTaskOption = Annotated[
    float | None,
    typer.Option("--gpus-per-task", min=0, rich_help_panel=EXECUTOR_PANEL,
                 help="With ray or slurm: GPUs each run asks; default 1 when train.device=cuda (ray: also 'auto' on "
                 "a cluster with GPUs), else 0."),
]
MaxRetriesOption = Annotated[
    int,
    typer.Option("--max-retries", min=0, rich_help_panel=EXECUTOR_PANEL,
                 help="With ray or slurm: times a run whose worker died is started again (it resumes from its "
                 "checkpoint)."),
]
SlurmOption = Annotated[
    list[str] | None,
    typer.Option("--slurm", rich_help_panel=EXECUTOR_PANEL,
                 help="With --executor slurm: a job parameter KEY=VALUE (repeatable): time=MINUTES (default 60), "
                 "partition=NAME, account=NAME, qos=..., mem_gb=...; other keys pass to submitit as slurm_KEY."),
]


def executor_from(kind: str, jobs: int, address: str | None, gpus_per_task: float | None, max_retries: int,
                  slurm: list[str] | None):
    """The --executor options as one ``revcurse.executors.Executor`` (refusing options of another executor)."""
    from revcurse.executors import Executor, parse_slurm_options

    return Executor(kind=kind, jobs=jobs, address=address, gpus_per_task=gpus_per_task, max_retries=max_retries,
                    slurm=parse_slurm_options(slurm))
