"""Experiment trackers (revcurse.trackers), for real and offline: one tiny run logs into TensorBoard, wandb
(offline), MLflow (a local file store) and trackio at once, and each is read back with that tracker's own reader:
every step's loss equals seed-N/train_log.jsonl, the final metrics equal the metrics.json files, the report is
report.md. Nothing may reach a network, and an API key in the environment appears in no file of the run."""

import ipaddress
import json
import math
import socket
import struct
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.runner import run_experiment
from revcurse.sections import TrainConfig
from revcurse.trackers import MLFLOW_TAG_LIMIT, TRACKERS, check_trackers, final_metrics, run_name, shortened

SECRET = "sk-test-SECRET-5c1e0a7f"  # an API key in the environment: it must appear in no file of the run
TRACKED = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=2", "model.hidden_size=32", "model.intermediate_size=64",
    "model.heads=2", "model.vocab_size=600", "train.report_to=tensorboard,wandb,mlflow,trackio",
]


class ConnectionRecorder:
    """A local TCP port that counts connections: wandb's server URL and the HTTP(S) proxies point here, so any
    request a tracker makes, from Python or from wandb's own service process, is seen instead of sent."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=5)


@dataclass
class TrackedRun:
    folder: Path
    trackio_dir: Path
    connections: int  # to the recorder: wandb's server URL or a proxy
    outbound: list  # non-loopback addresses Python code tried to connect to

    @property
    def steps(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "seed-0" / "train_log.jsonl").read_text().splitlines()]

    def metrics(self, seed_folder: str = "") -> dict[str, float]:
        return final_metrics(json.loads((self.folder / seed_folder / "metrics.json").read_text()))

    @property
    def report(self) -> str:
        return (self.folder / "report.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> TrackedRun:
    """One run into all four trackers, with a key in the environment and every network path watched."""
    root = tmp_path_factory.mktemp("trackers")
    recorder = ConnectionRecorder()
    outbound: list = []
    connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                outbound.append(address)
                raise OSError(f"test: no network ({address})")
        return connect(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_API_KEY", SECRET)
        patch.setenv("WANDB_BASE_URL", recorder.url)
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            patch.setenv(proxy, recorder.url)
        for unset in ("WANDB_MODE", "MLFLOW_TRACKING_URI", "NO_PROXY", "no_proxy"):
            patch.delenv(unset, raising=False)
        patch.setenv("TRACKIO_DIR", str(root / "trackio"))  # read when trackio is first imported: here
        patch.setattr(socket.socket, "connect", guarded_connect)
        run_experiment(load_config(None, TRACKED), root / "run", show_progress=False, log=lambda *_: None)
    recorder.close()
    return TrackedRun(root / "run", root / "trackio", recorder.connections, outbound)


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_tensorboard_event_files_hold_each_steps_loss_then_the_metrics_and_the_report(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def events(run: str) -> EventAccumulator:
        accumulator = EventAccumulator(str(tracked.folder / "trackers" / "tensorboard" / run),
                                       size_guidance={"scalars": 0, "tensors": 0})
        return accumulator.Reload()

    seed = events("seed-0")
    steps = tracked.steps
    assert len(steps) == 4
    # float32 in the event file: the loss is a float32 already (exact), the learning rate is rounded
    assert [(e.step, e.value) for e in seed.Scalars("train/loss")] == [(s["step"], s["loss"]) for s in steps]
    assert [e.value for e in seed.Scalars("train/lr")] == pytest.approx([s["lr"] for s in steps], rel=1e-6)
    assert all(e.value > 0 for e in seed.Scalars("train/tokens_per_second"))
    seed_metrics = tracked.metrics("seed-0")
    assert seed.Scalars("final/Both/name_to_description/accuracy")[0].step == len(steps)
    for key, value in seed_metrics.items():
        assert seed.Scalars(key)[0].value == pytest.approx(value, rel=1e-6, abs=1e-6)
    summary = events("summary")
    for key, value in tracked.metrics().items():
        assert summary.Scalars(key)[0].value == pytest.approx(value, rel=1e-6, abs=1e-6)
    report = summary.Tensors("report/text_summary")[0].tensor_proto.string_val[0].decode("utf-8")
    assert report == tracked.report


def wandb_records(path: Path) -> list:
    """The records of an offline wandb run file (``run-ID.wandb``): wandb's LevelDB-log framing (a 7-byte file
    header, then in 32 KiB blocks chunks of crc32, length, type; full, first, middle or last) around protobuf
    ``Record`` messages. wandb 0.31 has no Python reader of its own; each chunk's checksum is checked here."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if (checksum, length, kind) == (0, 0, 0):
            position += block - position % block
            continue
        chunk = data[position + 7 : position + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"corrupt chunk at byte {position}"
        pending += chunk
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_runs(folder: Path) -> dict[str, dict]:
    """Each offline run under ``folder`` by its name: its history rows ({key: value}) and its config."""
    runs = {}
    for path in folder.glob("offline-run-*/run-*.wandb"):
        name, history, config = None, [], {}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name = record.run.display_name
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "config":
                config.update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "history":
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
        runs[name] = {"history": history, "config": config}
    return runs


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_wandb_offline_runs_hold_each_steps_loss_then_the_metrics_and_the_report(tracked):
    runs = wandb_runs(tracked.folder / "trackers" / "wandb")
    assert set(runs) == {"seed-0", "summary"}
    rows = {row["_step"]: row for row in runs["seed-0"]["history"]}
    steps = tracked.steps
    assert [rows[s["step"]]["train/loss"] for s in steps] == [s["loss"] for s in steps]
    assert [rows[s["step"]]["train/lr"] for s in steps] == [s["lr"] for s in steps]
    last = rows[len(steps)]
    assert {key: last[key] for key in tracked.metrics("seed-0")} == tracked.metrics("seed-0")
    summary = runs["summary"]["history"]
    assert {key: summary[0][key] for key in tracked.metrics()} == tracked.metrics()
    assert summary[0]["report"] == tracked.report
    assert runs["summary"]["config"]["train.report_to"] == "[tensorboard, wandb, mlflow, trackio]"


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_mlflow_file_store_holds_each_steps_loss_then_the_metrics_and_the_report(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 asks it of a file store
    client = MlflowClient(tracking_uri=(tracked.folder / "trackers" / "mlflow").as_uri())
    experiment = client.get_experiment_by_name(tracked.folder.name)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"seed-0", "summary"}
    seed = runs["seed-0"].info.run_id
    steps = tracked.steps
    assert [(m.step, m.value) for m in client.get_metric_history(seed, "train/loss")] == [
        (s["step"], s["loss"]) for s in steps]
    assert [m.value for m in client.get_metric_history(seed, "train/lr")] == [s["lr"] for s in steps]
    assert {key: runs["seed-0"].data.metrics[key] for key in tracked.metrics("seed-0")} == tracked.metrics("seed-0")
    summary = runs["summary"].data
    assert {key: summary.metrics[key] for key in tracked.metrics()} == tracked.metrics()
    assert summary.tags["mlflow.note.content"] == shortened(tracked.report, MLFLOW_TAG_LIMIT)  # its description
    assert summary.params["train.epochs"] == "2.0"
    assert runs["seed-0"].info.status == runs["summary"].info.status == "FINISHED"


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_trackio_holds_each_steps_loss_then_the_metrics_and_the_report(tracked):
    import trackio.utils
    from trackio.sqlite_storage import SQLiteStorage

    assert trackio.utils.TRACKIO_DIR == tracked.trackio_dir  # the fixture's folder, not the user's
    logs = SQLiteStorage.get_logs(tracked.folder.name, "seed-0")
    steps = tracked.steps
    assert [(row["step"], row["train/loss"]) for row in logs if "train/loss" in row] == [
        (s["step"], s["loss"]) for s in steps]
    final = next(row for row in logs if "final/Both/name_to_description/accuracy" in row)
    assert {key: final[key] for key in tracked.metrics("seed-0")} == tracked.metrics("seed-0")
    summary = SQLiteStorage.get_logs(tracked.folder.name, "summary")
    values = {key: value for row in summary for key, value in row.items()}
    assert {key: values[key] for key in tracked.metrics()} == tracked.metrics()
    assert values["report"]["_value"] == tracked.report


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_tracker_files_stay_in_the_run_folder_and_nothing_reached_a_network(tracked):
    assert sorted(p.name for p in (tracked.folder / "trackers").iterdir()) == ["mlflow", "tensorboard", "wandb"]
    assert all(p.name.startswith("offline-run-") for p in (tracked.folder / "trackers" / "wandb").glob("*run-*"))
    assert tracked.connections == 0
    assert tracked.outbound == []


@pytest.mark.slow  # the tracked run (module fixture) trains and probes, ~20 s
def test_an_api_key_in_the_environment_is_in_no_file_of_the_run(tracked):
    files = [p for folder in (tracked.folder, tracked.trackio_dir) for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 20 and tracked.folder / "config.yaml" in files and tracked.folder / "run.json" in files
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_report_to_takes_none_a_name_a_comma_separated_list_or_a_yaml_list():
    def report_to(*overrides: str) -> list[str]:
        return load_config(None, list(overrides)).train.report_to

    assert report_to() == []
    assert report_to("train.report_to=none") == []
    assert report_to("train.report_to=wandb") == ["wandb"]
    assert report_to("train.report_to=tensorboard,mlflow") == ["tensorboard", "mlflow"]
    assert report_to("train.report_to=[trackio, wandb, trackio]") == ["trackio", "wandb"]


@pytest.mark.parametrize("value", ["comet", "[tensorboard, aim]", "{a: 1}", "3"])
def test_an_unknown_tracker_is_an_input_error_naming_the_setting(value):
    with pytest.raises(InputError, match=r"train\.report_to"):
        load_config(None, [f"train.report_to={value}"])


def test_a_missing_tracker_package_names_the_extra_that_installs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now fails, as when it is not installed
    with pytest.raises(InputError, match=r"train\.report_to=wandb needs the wandb package: pip install "
                                         r"'revcurse\[wandb\]'"):
        check_trackers(["tensorboard", "wandb"])
    config = load_config(None, [*TRACKED[:-1], "train.report_to=wandb"])
    with pytest.raises(InputError, match=r"revcurse\[wandb\]"):
        run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []  # refused before any folder was made


def test_every_tracker_the_setting_takes_is_one_this_module_opens():
    assert set(get_args(get_args(TrainConfig.model_fields["report_to"].annotation)[0])) == set(TRACKERS)


def test_a_trackers_project_is_the_run_folders_name():
    assert run_name(Path("/runs/.demo.partial")) == "demo"
    assert run_name(Path("/runs/demo")) == "demo"
    assert run_name(Path("/runs/.cmp.partial/cure-none")) == "cmp-cure-none"  # a comparison's arm
    assert run_name(Path("/runs/size=s seed:1")) == "size=s-seed-1"


def test_final_metrics_are_the_finite_means_by_setting_subset_direction_and_metric():
    records = [
        {"subset": "Both", "asked": "name_to_description", "metric": "accuracy", "mean": 0.5},
        {"setting": "in-context", "subset": "Both", "asked": "name_to_description", "metric": "accuracy",
         "mean": 1},
        {"subset": "Both", "asked": "name_to_description", "metric": "likelihood_p", "mean": math.nan},
        {"subset": "Both", "asked": "name_to_description", "metric": "rank1", "mean": None},
    ]
    assert final_metrics(records) == {"final/Both/name_to_description/accuracy": 0.5,
                                      "final/in-context/Both/name_to_description/accuracy": 1.0}


def test_a_report_too_long_for_an_mlflow_tag_is_shortened_and_says_where_the_whole_one_is():
    assert shortened("short", 100) == "short"
    long = shortened("x" * 9000, MLFLOW_TAG_LIMIT)
    assert len(long) == MLFLOW_TAG_LIMIT and long.endswith("the whole report is report.md in the run folder)")
