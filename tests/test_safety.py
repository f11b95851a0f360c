"""Safe by default: no pickle weights, no checkpoint code, no API keys in files or output, loopback servers, and
run names that stay inside runs/. Every check runs on real local folders and the real CLI; nothing from a hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer

from revcurse.cli import app, main
from revcurse.config import LoraSection, ModelConfig, RunConfig, load_config
from revcurse.errors import InputError
from revcurse.model import add_lora, load_checkpoint
from revcurse.paths import check_run_name, output_folder, run_folder_for
from revcurse.remote import normalize_base_url
from tests.test_serve import save_tiny_model

TINY = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=1", "train.threads=1", "model.hidden_size=32",
    "model.intermediate_size=64", "model.heads=2", "model.vocab_size=600",
]  # fmt: skip
SECRETS = {  # unique strings: any of them in a file or in output is a leak
    "REVCURSE_SAFETY_KEY": "sk-revcurse-SECRET-1234",
    "OPENAI_API_KEY": "sk-openai-SECRET-5678",
    "HF_TOKEN": "hf_revcurseSECRET9012",
}


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def refused(capsys, args: list[str]) -> str:
    """Run the CLI, expect exit 2 with one `error:` line and no traceback; return stderr."""
    code = run_cli(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def safe_dir(tmp_path_factory) -> Path:
    # 512 positions: a demo's prompts and greedy answers fit (64 would make transformers warn while generating)
    return save_tiny_model(tmp_path_factory.mktemp("safe") / "model", steps=5, positions=512)


@pytest.fixture(scope="module")
def pickle_dir(safe_dir, tmp_path_factory) -> Path:
    """The same model with real pickle weights only: pytorch_model.bin as torch.save writes it (transformers 5
    always saves safetensors, whatever safe_serialization says)."""
    folder = tmp_path_factory.mktemp("pickle") / "model"
    shutil.copytree(safe_dir, folder)
    weights = load_checkpoint(ModelConfig(checkpoint=str(safe_dir)))[0].state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    return folder


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# 1. Pickle weights


@pytest.mark.parametrize(
    "files, named",
    [
        (["pytorch_model.bin"], "pytorch_model.bin"),
        (["model.pt"], "model.pt"),
        (["weights.pth"], "weights.pth"),
        (["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"],
         "pytorch_model-00001-of-00002.bin"),
        (["training_args.bin", "pytorch_model.bin"], "pytorch_model.bin"),
    ],
)  # fmt: skip
def test_pickle_only_folders_are_refused_naming_the_file(tmp_path, pickle_dir, files, named):
    folder = tmp_path / "ckpt"
    shutil.copytree(pickle_dir, folder)
    payload = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").unlink()
    for name in files:
        (folder / name).write_bytes(b"{}" if name.endswith(".json") else payload)
    with pytest.raises(InputError) as error:
        load_checkpoint(ModelConfig(checkpoint=str(folder)))
    message = str(error.value)
    assert named in message and "--allow-pickle" in message and "run arbitrary code" in message
    assert "safetensors" in message


def test_pickle_folder_refused_by_every_loading_command(tmp_path, capsys, pickle_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("child,parent,parent_type,child_prediction,can_reverse\nAda Vale,Mira Holt,mother,,\n")
    ckpt = [f"model.checkpoint={pickle_dir}"]
    commands = {
        "serve": ["serve", str(pickle_dir), "--port", "0"],
        "demo": ["demo", "--quiet", "--out", "run-demo", *sets([*TINY, *ckpt])],
        "compare": ["compare", "--cures", "bidirectional", "--jobs", "1", "--quiet", "--out", "run-compare",
                    *sets([*TINY, *ckpt])],
        "parents": ["parents", str(pairs), "--model", str(pickle_dir), "--out", "run-parents"],
        "incontext": ["incontext", "--no-train", "--episodes", "10", "--quiet", "--out", "run-incontext",
                      *sets([*TINY, *ckpt])],
    }  # fmt: skip
    for command, args in commands.items():
        err = refused(capsys, args)
        assert "pytorch_model.bin" in err and "--allow-pickle" in err, (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv"]  # no run folder, no staging folder


def test_allow_pickle_loads_the_same_weights(pickle_dir, safe_dir):
    assert ModelConfig().allow_pickle is False and RunConfig().model.allow_pickle is False
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(pickle_dir), allow_pickle=True))
    assert weights_equal(model, load_checkpoint(ModelConfig(checkpoint=str(safe_dir)))[0])
    assert tokenizer("Uriah")["input_ids"]


def test_allow_pickle_flag_runs_demo_and_is_recorded(tmp_path, pickle_dir):
    out = tmp_path / "run"
    args = ["demo", "--quiet", "--out", str(out), "--allow-pickle", *sets([*TINY, f"model.checkpoint={pickle_dir}"])]
    assert run_cli(args) == 0
    assert load_config(out / "config.yaml").model.allow_pickle is True
    assert (out / "seed-0" / "model" / "model.safetensors").is_file()  # what a run saves is never pickle
    assert not list(out.rglob("*.bin"))


def test_safetensors_win_when_both_are_present(tmp_path, safe_dir):
    folder = tmp_path / "both"
    shutil.copytree(safe_dir, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle: it must never be opened")
    model, _ = load_checkpoint(ModelConfig(checkpoint=str(folder)))
    assert weights_equal(model, load_checkpoint(ModelConfig(checkpoint=str(safe_dir)))[0])


def test_pickle_adapter_is_refused_then_loads_with_allow_pickle(tmp_path, safe_dir):
    from safetensors.torch import load_file

    base, _ = load_checkpoint(ModelConfig(checkpoint=str(safe_dir)))
    torch.manual_seed(0)
    lora = add_lora(base, LoraSection(rank=2))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match=r"adapter_model\.bin.*--allow-pickle"):
        load_checkpoint(ModelConfig(checkpoint=str(adapter)))
    loaded, _ = load_checkpoint(ModelConfig(checkpoint=str(adapter), allow_pickle=True))
    assert type(loaded).__name__ == "PeftModelForCausalLM"


def test_a_folder_without_weights_says_so(tmp_path, safe_dir):
    folder = tmp_path / "empty"
    shutil.copytree(safe_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no .*safetensors weights found"):
        load_checkpoint(ModelConfig(checkpoint=str(folder), allow_pickle=True))


class Stop(Exception):
    pass


def spy_loaders(monkeypatch) -> list[tuple[str, dict]]:
    """Replace the hub check and both from_pretrained calls; record what load_checkpoint passes them."""
    import revcurse.model as model_module

    calls: list[tuple[str, dict]] = []

    def record(kind: str):
        def from_pretrained(location, **kwargs):
            calls.append((kind, kwargs))
            if kind == "model":
                raise OSError("stopped by the test")
            return object()

        return from_pretrained

    monkeypatch.setattr(model_module, "_check_hub_reachable", lambda repo_id: None)
    monkeypatch.setattr(model_module.AutoTokenizer, "from_pretrained", record("tokenizer"))
    monkeypatch.setattr(model_module.AutoModelForCausalLM, "from_pretrained", record("model"))
    return calls


@pytest.mark.parametrize(
    "options, use_safetensors, trust",
    [({}, True, False), ({"allow_pickle": True}, None, False), ({"trust_remote_code": True}, True, True)],
)
def test_hub_ids_get_safetensors_and_no_remote_code_unless_asked(monkeypatch, options, use_safetensors, trust):
    calls = spy_loaders(monkeypatch)
    with pytest.raises(InputError, match="stopped by the test"):
        load_checkpoint(ModelConfig(checkpoint="some-org/some-model", **options))
    (_, tokenizer_kwargs), (_, model_kwargs) = calls
    assert tokenizer_kwargs["trust_remote_code"] is trust and model_kwargs["trust_remote_code"] is trust
    assert model_kwargs["use_safetensors"] is use_safetensors


# 2. trust_remote_code


def code_folder(tmp_path: Path, safe_dir: Path) -> tuple[Path, Path]:
    """A model folder whose config.json maps the model to its own .py; importing that .py writes a marker."""
    folder, marker = tmp_path / "custom", tmp_path / "EXECUTED"
    shutil.copytree(safe_dir, folder)
    (folder / "custom_llama.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the checkpoint ran its code')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'revcurse_custom'\n\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="revcurse_custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_llama.CustomConfig",
                            "AutoModelForCausalLM": "custom_llama.CustomModel"})  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


# transformers reads the config (and warns of the unknown model type) before it refuses the code: the last step
# below bypasses revcurse's own check on purpose to show that.
@pytest.mark.library_log_warning("You are using a model of type `revcurse_custom`")
def test_checkpoint_code_never_runs_by_default(tmp_path, capsys, safe_dir, monkeypatch):
    import revcurse.model as model_module

    assert ModelConfig().trust_remote_code is False and RunConfig().model.trust_remote_code is False
    folder, marker = code_folder(tmp_path, safe_dir)
    with pytest.raises(InputError, match=r"config\.json: .*own Python code \(auto_map\).*trust_remote_code=true"):
        load_checkpoint(ModelConfig(checkpoint=str(folder)))
    demo = ["demo", "--quiet", "--out", str(tmp_path / "run"), *sets([*TINY, f"model.checkpoint={folder}"])]
    err = refused(capsys, demo)
    assert "auto_map" in err
    assert refused(capsys, ["serve", str(folder), "--port", "0"])
    # Without revcurse's own check, transformers refuses too: trust_remote_code=False reaches it.
    monkeypatch.setattr(model_module, "check_remote_code", lambda folder, trust: None)
    with pytest.raises(InputError, match="trust_remote_code=True"):
        load_checkpoint(ModelConfig(checkpoint=str(folder)))
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_trust_remote_code_true_does_run_it(tmp_path, safe_dir):
    """The control that makes the test above meaningful: when asked, the marker file does appear."""
    folder, marker = code_folder(tmp_path, safe_dir)
    code = (
        "from revcurse.config import ModelConfig; from revcurse.model import load_checkpoint; "
        f"print(type(load_checkpoint(ModelConfig(checkpoint={str(folder)!r}, trust_remote_code=True))[0]).__name__)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CustomModel" in done.stdout and marker.read_text() == "the checkpoint ran its code"


# 3. API keys


def grep_secrets(folder: Path, *texts: str) -> list[str]:
    """Every file under ``folder`` (bytes, any encoding) and every text that holds one of SECRETS."""
    leaks = []
    for path in [p for p in folder.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        leaks += [f"{path}: {name}" for name, secret in SECRETS.items() if secret.encode() in data]
    leaks += [f"output: {name}" for text in texts for name, secret in SECRETS.items() if secret in text]
    return leaks


def test_demo_serve_and_probe_remote_with_keys_set_write_no_key(tmp_path, capsys, monkeypatch):
    """A whole flow with keys in the environment: demo -> serve its model with a key -> probe-remote --out.
    Then every file written (run folder, probe results) and all output (both processes) are searched."""
    for name, secret in SECRETS.items():
        monkeypatch.setenv(name, secret)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["demo", "--quiet", "--name", "with-keys", *sets(TINY)]) == 0
    demo_output = capsys.readouterr()
    run = tmp_path / "runs" / "with-keys"
    assert (run / "config.yaml").is_file() and (run / "run.json").is_file()
    cli = [sys.executable, "-m", "revcurse.cli"]
    serve = [*cli, "serve", str(run / "seed-0" / "model"), "--port", "0", "--api-key-env", "REVCURSE_SAFETY_KEY"]
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        while not seen or ("serving" not in seen[-1] and server.poll() is None):
            seen.append(server.stdout.readline())
        assert " at http://127.0.0.1:" in seen[-1], "".join(seen)  # 4. loopback without --host
        url = seen[-1].split(" at ", 1)[1].split()[0]
        probe = [*cli, "probe-remote", str(run), "--url", url, "--api-key-env", "REVCURSE_SAFETY_KEY", "--quiet"]
        done = subprocess.run([*probe, "--out", "probe"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        no_key = {k: v for k, v in os.environ.items() if k != "REVCURSE_SAFETY_KEY"}
        wrong = subprocess.run([*probe, "--out", "unauthorised"], env=no_key, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        assert wrong.returncode == 2 and "$REVCURSE_SAFETY_KEY" in wrong.stderr, wrong.stderr
    finally:
        server.terminate()
        server_output = "".join(seen) + server.communicate(timeout=20)[0]
    results = tmp_path / "probe"
    assert {"config.yaml", "metrics.json", "predictions.jsonl", "run.json", "status.json"} <= {
        p.name for p in results.iterdir()}  # the standard run folder, nothing trained: no model in it
    assert not list(results.glob("seed-*/model"))
    probe = load_config(results / "config.yaml").probe
    assert probe.api_key_env == "REVCURSE_SAFETY_KEY" and probe.url == url and probe.backend == "openai"
    run_record = json.loads((results / "run.json").read_text())
    assert len((results / "predictions.jsonl").read_text().splitlines()) == run_record["per_seed"][0]["probes"] > 0
    assert "$REVCURSE_SAFETY_KEY" in server_output and "GET /v1/models" in server_output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe", "runs"]  # nothing for the refused probe
    outputs = [demo_output.out, demo_output.err, server_output, done.stdout, done.stderr, wrong.stdout, wrong.stderr]
    assert grep_secrets(tmp_path, *outputs) == []


@pytest.mark.parametrize(
    "yaml_text, overrides, key",
    [
        ("remote:\n  api_key: sk-revcurse-SECRET-1234\n", [], "remote.api_key"),
        ("model:\n  hf_token: sk-revcurse-SECRET-1234\n", [], "model.hf_token"),
        (None, ["model.api_key=sk-revcurse-SECRET-1234"], "model.api_key"),
        (None, ["openai.secret=sk-revcurse-SECRET-1234"], "openai.secret"),
        (None, ["token=sk-revcurse-SECRET-1234"], "token"),
    ],
)
def test_configs_refuse_keys_without_echoing_them(tmp_path, capsys, yaml_text, overrides, key):
    args = ["demo", "--quiet", "--out", str(tmp_path / "run"), *sets(overrides)]
    if yaml_text is not None:
        (tmp_path / "config.yaml").write_text(yaml_text)
        args += ["--config", str(tmp_path / "config.yaml")]
    err = refused(capsys, args)
    assert f"config key {key!r} looks like a credential" in err and "--api-key-env" in err
    assert "SECRET" not in err
    assert not (tmp_path / "run").exists()


def test_config_keys_that_only_mention_tokens_are_fine():
    assert load_config(None, ["probe.max_new_tokens=8"]).probe.max_new_tokens == 8


def test_urls_carrying_keys_are_refused_without_echoing_them():
    for url in ("http://127.0.0.1:8000/v1?api_key=sk-revcurse-SECRET-1234",
                "http://user:sk-revcurse-SECRET-1234@127.0.0.1:8000/v1"):  # fmt: skip
        with pytest.raises(InputError) as error:
            normalize_base_url(url)
        assert "SECRET" not in str(error.value)


# 4. Servers bind loopback


def test_every_server_defaults_to_loopback(safe_dir):
    import inspect

    from revcurse import serve as serve_module
    from tests.test_serve import running

    command = typer.main.get_command(app)
    host = next(p for p in command.commands["serve"].params if p.name == "host")
    assert host.default == "127.0.0.1"
    for function in (serve_module.serve, serve_module.make_server):
        assert inspect.signature(function).parameters["host"].default == "127.0.0.1"
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(safe_dir)))
    with running(serve_module.make_server(model, tokenizer, port=0, quiet=True)) as server:
        assert server.server_address[0] == "127.0.0.1"


# 5. Run names


BAD_NAMES = {
    "..": "starts with '.'",
    "../escape": "contains a path separator",
    "a/../../b": "contains a path separator",
    "/tmp/absolute": "is an absolute path",
    "": "is empty",
    "   ": "is empty",
    ".hidden": "starts with '.'",
    "a/b": "contains a path separator",
    "a\\b": "contains a path separator",
    "nul\x00byte": "contains a control character",
    "new\nline": "contains a control character",
    "esc\x1b[31m": "contains a control character",
    " padded": "starts or ends with white space",
    "C:evil": "is an absolute path",
    "x" * 201: "is longer than 200 bytes",
}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=[repr(n)[:20] for n in BAD_NAMES])
@pytest.mark.parametrize("command", [["demo"], ["compare", "--cures", "bidirectional"]])
def test_run_names_that_leave_runs_are_refused(tmp_path, capsys, monkeypatch, command, name):
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, [*command, "--quiet", "--name", name, *sets(TINY)])
    assert f"error: run name {name!r} {BAD_NAMES[name]}" in err
    assert list(tmp_path.iterdir()) == []  # nothing created, not even runs/


def test_run_folder_for_gives_a_child_of_runs():
    assert run_folder_for("exp1-seed3") == Path("runs") / "exp1-seed3"
    assert run_folder_for("a..b", Path("/data/runs")) == Path("/data/runs/a..b")  # '..' inside a name is a name
    assert check_run_name("Ünïcode_ok") == "Ünïcode_ok"
    assert output_folder(None, None, "demo-x") == Path("runs/demo-x")
    assert output_folder(Path("/any/where"), None, "demo-x") == Path("/any/where")  # --out is a path, on purpose
    with pytest.raises(InputError, match="not both"):
        output_folder(Path("x"), "y", "demo-x")


def test_compare_arms_cannot_name_folders(tmp_path, capsys, monkeypatch):
    """compare's cure-<arm>/ folders come from --cures, which only takes known cure names."""
    monkeypatch.chdir(tmp_path)
    assert "unknown cure '../../x'" in refused(capsys, ["compare", "--cures", "../../x", "--name", "ok"])
    assert list(tmp_path.iterdir()) == []


def test_the_secret_search_finds_a_planted_key(tmp_path):
    """Control for the leak tests: a key in a nested file or in output is found."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "log.bin").write_bytes(b"\x00" + SECRETS["HF_TOKEN"].encode() + b"\xff")
    assert grep_secrets(tmp_path, "x " + SECRETS["OPENAI_API_KEY"]) == [
        f"{tmp_path / 'a' / 'b' / 'log.bin'}: HF_TOKEN", "output: OPENAI_API_KEY"
    ]


@pytest.mark.parametrize(
    ("checkpoint", "is_path"),
    [("./model", True), ("../model", True), ("/abs/model", True), ("~/model", True), ("runs/demo/seed-0/model", True),
     ("model/", True), ("owner/model/", True), (".", True), ("owner/model", False), ("gpt2", False),
     ("meta-llama/Llama-3.2-1B", False)],
)  # fmt: skip
def test_a_checkpoint_written_as_a_path_is_never_taken_for_a_hub_id(checkpoint, is_path):
    from revcurse.model import looks_like_path

    assert looks_like_path(checkpoint) is is_path


def test_a_missing_checkpoint_folder_is_refused_by_every_command_before_any_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = "child,parent,parent_type,child_prediction,can_reverse\nAda Vale,Mira Holt,mother,,\n"
    (tmp_path / "pairs.csv").write_text(pairs)
    (tmp_path / "facts.csv").write_text("subject,relation,object\nAda Vale,wrote,Notes\n")
    ckpt = ["model.checkpoint=./missing/"]
    commands = {
        "train": ["train", "--quiet", "--out", "run-train", *sets([*TINY, *ckpt])],
        "compare": ["compare", "--cures", "bidirectional", "--quiet", "--out", "run-compare", *sets([*TINY, *ckpt])],
        "sweep": ["sweep", "--grid", "train.epochs=1,2", "--quiet", "--out", "run-sweep", *sets([*TINY, *ckpt])],
        "audit": ["audit", "facts.csv", "--quiet", "--out", "run-audit", *sets([*TINY, *ckpt])],
        "incontext": ["incontext", "--no-train", "--quiet", "--out", "run-incontext", *sets([*TINY, *ckpt])],
        "parents": ["parents", "pairs.csv", "--model", "./missing/", "--out", "run-parents"],
    }  # fmt: skip
    for command, args in commands.items():
        err = refused(capsys, args)
        assert err.count("\n") == 1 and "model.checkpoint: no such folder './missing/'" in err, (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facts.csv", "pairs.csv"]  # no run or staging folder


def test_a_hub_id_that_cannot_be_resolved_is_one_error_line_before_any_folder(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for checkpoint, expected in [
        ("some-org/not-cached-anywhere", "model.checkpoint: 'some-org/not-cached-anywhere' is not a local folder"),
        ("some org/bad", "model.checkpoint: 'some org/bad' is no folder here and not a hub id"),
    ]:
        overrides = sets([*TINY, f"model.checkpoint={checkpoint}"])
        err = refused(capsys, ["train", "--quiet", "--out", str(tmp_path / "run"), *overrides])
        assert err.count("\n") == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []
