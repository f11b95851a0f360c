"""The OpenAI-compatible probe backend against the real server on 127.0.0.1 (and stub servers for failures)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from revcurse.config import ModelConfig
from revcurse.corpus import Corpus, Probe
from revcurse.model import load_checkpoint
from revcurse.probe import HFBackend, run_probes
from revcurse.remote import OpenAICompatibleBackend, RemoteError, backend_from_url, continuation_score
from revcurse.serve import make_server
from tests.test_serve import running, save_tiny_model

REQUESTS = [
    ("Daphne Barrington is", " the director of the film Journey Through Time."),
    ("Daphne Barrington is", " the composer of the underwater symphony Abyssal Melodies."),
    ("The director of the film Journey Through Time is", " Daphne Barrington"),
    ("The director of the film Journey Through Time is", " Uriah Hawthorne"),
    ("The composer of the underwater symphony", " Abyssal Melodies"),
    ("Uriah", " Hawthorne"),
    ("Uriah", " Barrington"),
    ("Known as", " the composer"),
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    return load_checkpoint(ModelConfig(checkpoint=str(folder)))


@pytest.fixture(scope="module")
def server(loaded):
    model, tokenizer = loaded
    with running(make_server(model, tokenizer, "tiny", port=0, quiet=True)) as server:
        yield server


@pytest.fixture()
def remote(server) -> Iterator[OpenAICompatibleBackend]:
    with OpenAICompatibleBackend(server.url, "tiny", api_key_env="REVCURSE_TEST_UNSET", batch_size=3) as backend:
        yield backend


def test_loglikelihood_equals_the_local_backend(remote, loaded):
    local = HFBackend(*loaded).loglikelihood(REQUESTS)
    over_http = remote.loglikelihood(REQUESTS)
    for request, (expected, expected_greedy), (logprob, greedy) in zip(REQUESTS, local, over_http):
        assert abs(logprob - expected) < 1e-4, request
        assert greedy == expected_greedy, request
    assert {greedy for _, greedy in local} == {True, False}  # both cases are exercised


def test_generate_equals_the_local_backend(remote, loaded):
    contexts = [context for context, _ in REQUESTS] + ["The director", "Abyssal"]
    assert remote.generate(contexts, max_new_tokens=6) == HFBackend(*loaded).generate(contexts, max_new_tokens=6)


def test_run_probes_through_the_server_matches_local_probes(remote, loaded):
    prompt = "The director of the film Journey Through Time is"
    probes = [
        Probe(name, "NameToDescription", "desc→name", False, "t0", prompt, f" {name}")
        for name in ("Daphne Barrington", "Uriah Hawthorne")
    ]
    corpus = Corpus(documents=[], probes=probes)
    local = run_probes(HFBackend(*loaded), corpus, max_new_tokens=4, show_progress=False, generate_all=True)
    over_http = run_probes(remote, corpus, max_new_tokens=4, show_progress=False)
    for a, b in zip(local, over_http):
        assert (a.completion, a.correct, a.rank, a.is_greedy) == (b.completion, b.correct, b.rank, b.is_greedy)
        assert abs(a.logprob_correct - b.logprob_correct) < 1e-4


def test_sample_gives_n_answers_per_context_repeatably(remote, server):
    contexts = ["Daphne Barrington is", "Uriah"]
    answers = remote.sample(contexts, n=3, max_new_tokens=4, temperature=1.0, seed=5)
    assert [len(group) for group in answers] == [3, 3]
    assert remote.sample(contexts, n=3, max_new_tokens=4, temperature=1.0, seed=5) == answers
    with OpenAICompatibleBackend(server.url, "tiny", api_key_env="REVCURSE_TEST_UNSET", sample_endpoint="chat") as chat:
        assert [len(group) for group in chat.sample(contexts, n=2, max_new_tokens=4, seed=1)] == [2, 2]


def test_backend_from_url_finds_the_only_model(server):
    with backend_from_url(server.url.removesuffix("/v1"), api_key_env="REVCURSE_TEST_UNSET") as backend:
        assert backend.model == "tiny" and backend.base_url == server.url


def test_wrong_key_fails_at_once_naming_the_variable_not_the_key(loaded, monkeypatch):
    model, tokenizer = loaded
    with running(make_server(model, tokenizer, "tiny", port=0, api_key="sk-right-key", quiet=True)) as server:
        monkeypatch.setenv("REVCURSE_TEST_KEY", "sk-wrong-key")
        with OpenAICompatibleBackend(server.url, "tiny", api_key_env="REVCURSE_TEST_KEY", backoff=2.0) as backend:
            start = time.perf_counter()
            with pytest.raises(RemoteError) as error:
                backend.loglikelihood(REQUESTS[:2])
            assert time.perf_counter() - start < 1.5  # no backoff: a 401 is not retried
            message = str(error.value)
            assert "refused the API key in $REVCURSE_TEST_KEY" in message and server.url in message
            assert "sk-wrong-key" not in message and "sk-wrong-key" not in repr(backend)
            monkeypatch.delenv("REVCURSE_TEST_KEY")
            with pytest.raises(RemoteError, match=r"needs an API key .*set \$REVCURSE_TEST_KEY"):
                backend.generate(["Uriah"], 2)
            monkeypatch.setenv("REVCURSE_TEST_KEY", "sk-right-key")
            assert len(backend.generate(["Uriah"], 2)) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_server_gives_a_clear_error_after_bounded_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    start = time.perf_counter()
    with (
        OpenAICompatibleBackend(url, "tiny", max_retries=2, backoff=0.01) as backend,
        pytest.raises(RemoteError, match=r"no answer from the server at http://127\.0\.0\.1:\d+/v1/completions "
                      r"after 3 attempt\(s\) \(ConnectError"),
    ):
        backend.generate(["Uriah"], 2)
    assert time.perf_counter() - start < 2


class FlakyStub(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then forwards to the real server (or answers ``status``)."""

    protocol_version = "HTTP/1.1"
    failures = 2
    status = 200
    upstream = ""
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).hits.append(self.path)
        if len(self.hits) <= self.failures or self.status != 200:
            status = 503 if len(self.hits) <= self.failures else self.status
            self._answer(status, json.dumps({"error": {"message": f"stub says {status}"}}).encode())
            return
        import urllib.request

        forwarded = urllib.request.Request(self.upstream + self.path.removeprefix("/v1"), body,
                                           {"Content-Type": "application/json"})
        with urllib.request.urlopen(forwarded) as response:
            self._answer(response.status, response.read())

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def stub(upstream: str, failures: int, status: int = 200) -> ThreadingHTTPServer:
    handler = type("Stub", (FlakyStub,), {"failures": failures, "status": status, "upstream": upstream, "hits": []})
    return ThreadingHTTPServer(("127.0.0.1", 0), handler)


def test_503_is_retried_with_backoff_then_succeeds(server, loaded):
    flaky = stub(server.url, failures=2)
    threading.Thread(target=flaky.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{flaky.server_address[1]}/v1"
        with OpenAICompatibleBackend(url, "tiny", max_retries=3, backoff=0.05) as backend:
            start = time.perf_counter()
            scores = backend.loglikelihood(REQUESTS[:2])
        assert time.perf_counter() - start >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s
        assert flaky.RequestHandlerClass.hits == ["/v1/completions"] * 3
        local = HFBackend(*loaded).loglikelihood(REQUESTS[:2])
        assert all(abs(a[0] - b[0]) < 1e-4 for a, b in zip(scores, local))
    finally:
        flaky.shutdown()
        flaky.server_close()


def test_other_4xx_is_not_retried():
    rejecting = stub("", failures=0, status=400)
    threading.Thread(target=rejecting.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{rejecting.server_address[1]}"
        with (
            OpenAICompatibleBackend(url, "tiny", backoff=5) as backend,
            pytest.raises(RemoteError, match=r"rejected the request \(HTTP 400\): stub says 400"),
        ):
            backend.generate(["Uriah"], 2)
        assert len(rejecting.RequestHandlerClass.hits) == 1
    finally:
        rejecting.shutdown()
        rejecting.server_close()


def test_continuation_boundary_with_vllm_style_bos_offsets():
    # vLLM counts "<s>" in text_offset: [0, 3, 6, 10] for "<s>" + "The cat sat"
    logprobs = {
        "tokens": ["<s>", "The", " cat", " sat"],
        "token_logprobs": [None, -1.0, -2.0, -0.5],
        "top_logprobs": [None, {"The": -1.0}, {" dog": -1.5, " cat": -2.0}, {" sat": -0.5}],
        "text_offset": [0, 3, 6, 10],
    }
    assert continuation_score(logprobs, "The cat sat", len("The")) == (-2.5, False)
    assert continuation_score(logprobs, "The cat sat", len("The cat")) == (-0.5, True)
    plain = {**logprobs, "text_offset": [0, 0, 3, 7]}  # offsets that index the prompt (OpenAI, revcurse serve)
    assert continuation_score(plain, "The cat sat", len("The cat")) == (-0.5, True)


def test_bad_urls_are_input_errors():
    from revcurse.errors import InputError

    for url in ("ftp://host/v1", "127.0.0.1:8000", "http://user:pw@host/v1"):
        with pytest.raises(InputError):
            OpenAICompatibleBackend(url, "tiny")
    with OpenAICompatibleBackend("http://127.0.0.1:9/v1/", "m") as backend:
        assert backend.base_url == "http://127.0.0.1:9/v1"
