"""The OpenAI-compatible server, over real HTTP on 127.0.0.1, for a tiny model saved to a folder and loaded back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from revcurse.config import ModelConfig
from revcurse.model import build_tiny_model, load_checkpoint, train_tokenizer
from revcurse.serve import ApiServer, host_warning, make_server

SENTENCES = [
    "Daphne Barrington is the director of the film Journey Through Time.",
    "The director of the film Journey Through Time is Daphne Barrington.",
    "Uriah Hawthorne is the composer of the underwater symphony Abyssal Melodies.",
    "The composer of the underwater symphony Abyssal Melodies is Uriah Hawthorne.",
] * 3


def save_tiny_model(folder: Path, steps: int = 40, positions: int = 64) -> Path:
    """A tiny Llama and its tokenizer, trained a few steps on SENTENCES (so some continuations are greedy);
    ``positions``: its max_position_embeddings (rotary: the weights do not depend on it)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = train_tokenizer(SENTENCES, vocab_size=400)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, positions)
    batch = tokenizer([tokenizer.bos_token + s for s in SENTENCES[:4]], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def running(server: ApiServer) -> Iterator[ApiServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_checkpoint(ModelConfig(checkpoint=str(model_dir)))


@pytest.fixture(scope="module")
def server(loaded) -> Iterator[ApiServer]:
    model, tokenizer = loaded
    with running(make_server(model, tokenizer, "tiny", port=0, quiet=True)) as server:
        yield server


def call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    """One request with the standard library: (status, JSON body), errors included."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_binds_loopback_by_default_and_lists_its_model(server):
    assert server.server_address[0] == "127.0.0.1"
    status, body = call(server.url + "/models")
    assert status == 200
    assert body["object"] == "list" and [card["id"] for card in body["data"]] == ["tiny"]


def test_echo_gives_prompt_logprobs_in_the_legacy_shape(server, loaded):
    prompt = "The director of the film Journey Through Time is Daphne Barrington."
    status, body = call(
        server.url + "/completions",
        {"model": "tiny", "prompt": [prompt, "Uriah"], "echo": True, "max_tokens": 0, "logprobs": 2},
    )
    assert status == 200 and body["object"] == "text_completion"
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    choice = body["choices"][0]
    assert choice["text"] == prompt
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    n = len(logprobs["tokens"])
    assert n == len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == len(logprobs["text_offset"])
    assert logprobs["tokens"][0] == "<s>"  # BOS first, as the model sees it; nothing predicts it
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    for i in range(1, n):  # offsets index the prompt; top_logprobs: the 2 likeliest and the token itself
        end = logprobs["text_offset"][i + 1] if i + 1 < n else len(prompt)
        assert prompt[logprobs["text_offset"][i] : end] == logprobs["tokens"][i]
        top = logprobs["top_logprobs"][i]
        assert 2 <= len(top) <= 3 and top[logprobs["tokens"][i]] == logprobs["token_logprobs"][i]
        assert logprobs["token_logprobs"][i] <= max(top.values())
    assert body["usage"]["prompt_tokens"] == n + len(body["choices"][1]["logprobs"]["tokens"])


def test_greedy_completion_and_stop(server):
    body = {"prompt": "Daphne Barrington is", "max_tokens": 8, "temperature": 0}
    status, body = call(server.url + "/completions", body)
    assert status == 200
    text = body["choices"][0]["text"]
    assert text.startswith(" the director")
    status, body = call(
        server.url + "/completions",
        {"prompt": "Daphne Barrington is", "max_tokens": 8, "temperature": 0, "stop": [" director"]},
    )
    assert body["choices"][0]["text"] == " the" and body["choices"][0]["finish_reason"] == "stop"
    # max_tokens past the model's 64 positions is cut to what fits, as a "length" finish
    status, body = call(server.url + "/completions", {"prompt": "Uriah", "max_tokens": 1000, "temperature": 0})
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    status, body = call(server.url + "/completions", {"prompt": "Uriah " * 70, "max_tokens": 1})
    assert status == 400 and "limit is 64" in body["error"]["message"]


def test_chat_completions_sample_n_answers_by_seed(server):
    body = {"messages": [{"role": "user", "content": "Who directed Journey Through Time?"}], "n": 3, "seed": 7,
            "temperature": 1.0, "max_tokens": 5}
    status, first = call(server.url + "/chat/completions", body)
    assert status == 200 and first["object"] == "chat.completion"
    answers = [choice["message"]["content"] for choice in first["choices"]]
    assert len(answers) == 3 and all(c["message"]["role"] == "assistant" for c in first["choices"])
    assert [c["message"]["content"] for c in call(server.url + "/chat/completions", body)[1]["choices"]] == answers
    assert server.app.render_chat([{"role": "user", "content": "Hi"}]) == "user: Hi\nassistant:"  # no template


def test_bad_requests_get_openai_style_errors(server):
    status, body = call(server.url + "/completions", {"max_tokens": 1})
    assert status == 400 and "prompt" in body["error"]["message"] and body["error"]["type"] == "invalid_request_error"
    status, body = call(server.url + "/completions", {"model": "other", "prompt": "x"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body = call(server.url + "/completions", {"prompt": "x", "logprobs": 99})
    assert status == 400
    status, body = call(server.url + "/nowhere", {})
    assert status == 404


def test_refuses_requests_without_the_key(loaded):
    model, tokenizer = loaded
    key = "sk-test-secret-1234"
    with running(make_server(model, tokenizer, "tiny", port=0, api_key=key, quiet=True)) as server:
        status, body = call(server.url + "/models")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, body = call(server.url + "/completions", {"prompt": "x"}, key="sk-wrong")
        assert status == 401 and key not in json.dumps(body)
        assert call(server.url + "/models", key=key)[0] == 200


def test_warns_about_a_non_loopback_host():
    assert host_warning("127.0.0.1", "REVCURSE_API_KEY", has_key=False) is None
    assert host_warning("localhost", "REVCURSE_API_KEY", has_key=False) is None
    message = host_warning("0.0.0.0", "REVCURSE_API_KEY", has_key=False)
    assert "WARNING" in message and "0.0.0.0" in message and "$REVCURSE_API_KEY" in message


def test_cli_serves_a_model_folder_with_a_key_and_never_prints_it(model_dir):
    key = "sk-cli-secret-5678"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "REVCURSE_TEST_KEY": key}
    command = [sys.executable, "-m", "revcurse.cli", "serve", str(model_dir), "--port", "0",
               "--api-key-env", "REVCURSE_TEST_KEY", "--model-name", "cli-model"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []  # the weight-loading bar first, then "serving 'cli-model' at http://127.0.0.1:PORT/v1 (...)"
        while not seen or ("serving" not in seen[-1] and process.poll() is None):
            seen.append(process.stdout.readline())
        line = "".join(seen)
        assert "http://127.0.0.1:" in seen[-1], line
        url = seen[-1].split(" at ", 1)[1].split()[0]
        assert call(url + "/models")[0] == 401
        status, body = call(url + "/models", key=key)
        assert status == 200 and body["data"][0]["id"] == "cli-model"
    finally:
        process.terminate()
        output = line + process.communicate(timeout=10)[0]
    assert "$REVCURSE_TEST_KEY" in output and key not in output


def test_cli_refuses_a_missing_folder(tmp_path, capsys):
    from revcurse.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(tmp_path / "missing")])
    assert exit_info.value.code == 2 and "no such model folder" in capsys.readouterr().err


def test_server_answers_while_busy(server):
    """Concurrent requests queue on the model lock and all come back."""
    results: list[int] = []

    def ask() -> None:
        results.append(call(server.url + "/completions", {"prompt": "Uriah", "max_tokens": 2, "temperature": 0})[0])

    threads = [threading.Thread(target=ask) for _ in range(6)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 6 and time.perf_counter() - start < 30
