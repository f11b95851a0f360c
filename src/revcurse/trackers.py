"""Experiment trackers (``train.report_to``): TensorBoard, Weights & Biases, MLflow and trackio, through
accelerate's tracker API, writing into the run folder and sending nothing anywhere.

Two kinds of tracker run per run folder, so that every number lands where it is known:

- ``seed-N``, one per trained model: the training loop logs each optimizer step into it (the loop's own
  ``Accelerator(log_with=...)``, ``init_trackers`` and ``log``: the numbers of ``seed-N/train_log.jsonl`` and
  tokens/s); the runner keeps it open while that model is probed, logs its final metrics (``seed-N/metrics.json``,
  flattened to scalars) and closes it (``seed_trackers``).
- ``summary``, one per run folder, opened once ``records.write_run`` has written the run's metrics.json and
  report.md: those metrics, flattened, and the report as text (``log_run_summary``).

Why not the run's report in the seed's tracker run: seeds may train in other processes (``--jobs``, torchrun)
and end before the run is aggregated, and an offline wandb run cannot be resumed later. Trackers are finished
with ``GeneralTracker.finish``, not ``Accelerator.end_training``, which would also end a torchrun process group
that later seeds still use.

Where each tracker writes (RUN is the run folder; nothing needs a server):

- tensorboard: ``RUN/trackers/tensorboard/<seed-N|summary>/`` (event files: ``tensorboard --logdir``)
- wandb: ``RUN/trackers/wandb/offline-run-*/``, offline unless ``WANDB_MODE`` is set (``wandb sync`` uploads
  a finished run later); no git, code or system sampling
- mlflow: a file store at ``RUN/trackers/mlflow/`` (``mlflow ui --backend-store-uri RUN/trackers/mlflow`` with
  ``MLFLOW_ALLOW_FILE_STORE=true``); ``MLFLOW_TRACKING_URI``, when set, wins
- trackio: trackio's own folder (``TRACKIO_DIR``, else ``~/.cache/huggingface/trackio``): trackio reads it once,
  when it is imported, so it cannot follow each run folder

API keys come from the environment only (``WANDB_API_KEY`` ...): nothing here reads, logs or writes one.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from accelerate.tracking import GeneralTracker, TensorBoardTracker, TrackioTracker, WandBTracker, on_main_process

from revcurse.config import RunConfig, dump_config
from revcurse.errors import InputError
from revcurse.paths import destination_name, is_partial

# Each tracker: the module it needs (``pip install 'revcurse[NAME]'`` installs it).
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
FOLDER = "trackers"  # RUN/trackers/<tracker>/...
SUMMARY = "summary"  # the tracker run of the run as a whole (its metrics.json and report.md)
REPORT_KEY = "report"
MLFLOW_TAG_LIMIT = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH


@dataclass
class TrackerRun:
    """The tracker runs one trained model logs into, not started yet: the training loop's Accelerator starts
    them (``init_trackers``) and logs each step; whoever made them finishes them."""

    project: str
    trackers: list[GeneralTracker]
    hparams: dict = field(default_factory=dict)


def check_trackers(names: Sequence[str]) -> None:
    """Import each chosen tracker's package: a missing one is an InputError naming the extra that installs it."""
    for name in names:
        try:
            importlib.import_module(TRACKERS[name])
        except ImportError:
            raise InputError(
                f"train.report_to={name} needs the {TRACKERS[name]} package: pip install 'revcurse[{name}]'"
            ) from None


def run_name(run_folder: Path) -> str:
    """The project name of a run: its folder's name (``.NAME.partial`` while it runs: NAME), with the enclosing
    run's in front for a comparison's arm; characters trackers refuse in names become '-'."""
    parts = [destination_name(run_folder)]
    if is_partial(run_folder.parent):
        parts.insert(0, destination_name(run_folder.parent))
    name = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", name).strip("-") or "revcurse"


def make_trackers(names: Sequence[str], run_folder: Path, project: str, run: str) -> list[GeneralTracker]:
    """Tracker objects (not started) for one tracker run named ``run`` of ``project``, writing into
    ``run_folder/trackers``."""
    check_trackers(names)
    root = run_folder / FOLDER
    made: list[GeneralTracker] = []
    for name in names:
        if name == "tensorboard":
            made.append(TensorBoardTracker(run, root / "tensorboard"))
        elif name == "wandb":
            made.append(wandb_tracker(project, run, root))
        elif name == "mlflow":
            made.append(MLflowFileTracker(project, run, root / "mlflow"))
        elif name == "trackio":
            made.append(TrackioTracker(project, name=run, group=project, auto_log_cpu=False, auto_log_gpu=False,
                                       embed=False))
    return made


def wandb_tracker(project: str, run: str, root: Path) -> GeneralTracker:
    """accelerate's WandBTracker, offline unless the user set ``WANDB_MODE``; no git state (a remote URL can hold
    a token), no code, no system sampling (it can probe a cloud metadata address), no console capture."""
    import wandb

    settings = wandb.Settings(silent=True, console="off", disable_git=True, save_code=False, x_disable_stats=True,
                              x_disable_meta=True)
    mode = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
    return WandBTracker(project, name=run, group=project, job_type="summary" if run == SUMMARY else "train",
                        dir=str(root), settings=settings, **mode)


class MLflowFileTracker(GeneralTracker):
    """MLflow through its own client on a local store. accelerate's MLflowTracker logs through mlflow's
    process-global state (tracking URI, active run) and, with no URI set, into ./mlruns of the working folder."""

    name = "mlflow"
    requires_logging_directory = False

    def __init__(self, experiment: str, run_name: str, store: Path) -> None:
        super().__init__()
        self.experiment, self.run_name, self.store = experiment, run_name, store
        self.client = None
        self.run_id: str | None = None

    @property
    def tracker(self):
        return self.client if self.run_id is not None else None

    @on_main_process
    def start(self) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.store.resolve().as_uri()
        with file_store_allowed():
            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(self.experiment)
            if experiment is None:
                try:
                    self.client.create_experiment(self.experiment)
                except MlflowException:  # made by a seed in another process (--jobs) meanwhile
                    pass
                experiment = self.client.get_experiment_by_name(self.experiment)
            self.run_id = self.client.create_run(experiment.experiment_id, run_name=self.run_name).info.run_id

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in values.items()]
        for start in range(0, len(params), 100):  # mlflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        """Numbers become metrics at ``step``; text becomes tags, the report the run's description."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step or 0) for key, value in values.items()
                   if isinstance(value, int | float)]
        for start in range(0, len(metrics), 1000):  # mlflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])
        for key, value in values.items():
            if isinstance(value, str):
                self.client.set_tag(self.run_id, "mlflow.note.content" if key == REPORT_KEY else key,
                                    shortened(value, MLFLOW_TAG_LIMIT))

    @on_main_process
    def finish(self) -> None:
        self.client.set_terminated(self.run_id)


@contextmanager
def file_store_allowed() -> Iterator[None]:
    """mlflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set (its database store needs
    sqlalchemy, which mlflow-skinny lacks); it is set while the store is opened (mlflow keeps it, by URI)."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = before or "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MLFLOW_ALLOW_FILE_STORE"]


def shortened(text: str, limit: int) -> str:
    note = "\n\n... (shortened: the whole report is report.md in the run folder)"
    return text if len(text) <= limit else text[: limit - len(note)] + note


def hyperparameters(config: RunConfig) -> dict[str, str | int | float | bool]:
    """The resolved run config (``config.yaml``) flattened to dotted keys of scalars; None and lists as text
    (TensorBoard's hparams take scalars only)."""
    flat: dict[str, str | int | float | bool] = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}{key}.", inner)
        elif isinstance(value, bool | int | float | str):
            flat[prefix[:-1]] = value
        else:
            flat[prefix[:-1]] = yaml.safe_dump(value, default_flow_style=True).strip()

    visit("", yaml.safe_load(dump_config(config)))
    return flat


def step_metrics(entry: dict, tokens_per_second: float) -> dict[str, float]:
    """What each optimizer step logs: its train_log.jsonl entry (loss, lr, epoch, tokens so far) and tokens/s."""
    return {"train/loss": entry["loss"], "train/lr": entry["lr"], "train/epoch": entry["epoch"],
            "train/tokens": entry["tokens"], "train/tokens_per_second": tokens_per_second}


def final_metrics(records: list[dict]) -> dict[str, float]:
    """A metrics.json as scalars: ``final/[setting/]subset/asked/metric`` -> the mean over seeds (finite only)."""
    flat = {}
    for record in records:
        parts = [record.get("setting") or "", record["subset"], record["asked"], record["metric"]]
        key = "/".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", str(part)) for part in parts if part)
        value = record.get("mean")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"final/{key}"] = float(value)
    return flat


@contextmanager
def seed_trackers(config: RunConfig, seed_folder: Path, main_process: bool = True) -> Iterator[TrackerRun | None]:
    """The tracker runs of one seed's model (None when ``train.report_to`` is empty or in a helper process of a
    distributed launch); the trackers that were started are finished when the block ends, failed or not."""
    if not config.train.report_to or not main_process:
        yield None
        return
    project = run_name(seed_folder.parent)
    tracking = TrackerRun(project, make_trackers(config.train.report_to, seed_folder.parent, project,
                                                 seed_folder.name), hyperparameters(config))
    try:
        yield tracking
    finally:
        for tracker in tracking.trackers:
            if getattr(tracker, "tracker", None) is not None:  # started by the training loop
                tracker.finish()


def log_seed_metrics(tracking: TrackerRun | None, records: list[dict], step: int) -> None:
    """A probed seed's final metrics into its started tracker runs, at its training's last ``step`` (wandb drops
    a step lower than one it has)."""
    if tracking is None:
        return
    for tracker in tracking.trackers:
        if getattr(tracker, "tracker", None) is not None:
            tracker.log(final_metrics(records), step=step)


def log_run_summary(config: RunConfig, run_folder: Path, records: list[dict], report: str) -> None:
    """The ``summary`` tracker run of a written run folder: its config, metrics.json flattened and report.md."""
    if not config.train.report_to:
        return
    project = run_name(run_folder)
    trackers = make_trackers(config.train.report_to, run_folder, project, SUMMARY)
    for tracker in trackers:
        tracker.start()
        try:
            tracker.store_init_configuration(hyperparameters(config))
            tracker.log(final_metrics(records), step=0)
            tracker.log({REPORT_KEY: report_value(tracker, report)}, step=0)
        finally:
            tracker.finish()


def report_value(tracker: GeneralTracker, report: str):
    """The report as the tracker shows Markdown: trackio's Markdown type; text elsewhere (TensorBoard's text tab
    renders it, mlflow makes it the run's description)."""
    if tracker.name == "trackio":
        import trackio

        return trackio.Markdown(report)
    return report
