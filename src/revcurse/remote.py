"""Probe a model behind any OpenAI-compatible HTTP server (vLLM, llama.cpp's server, ``revcurse serve``, ...).

``OpenAICompatibleBackend`` answers the two requests of ``probe.ProbeBackend`` over the legacy completions API:

- ``loglikelihood``: one completions call with ``prompt=context + continuation, echo=true, max_tokens=0,
  logprobs=1`` returns every prompt token's log-prob; the continuation's tokens are those whose ``text_offset`` is
  at or past ``len(context)``, as lm-evaluation-harness's GGUF/OpenAI backends find them. Their log-probs are
  summed; ``is_greedy`` holds when each token's log-prob is the highest of its ``top_logprobs`` (lm-evaluation-
  harness compares values too: token texts can collide). A token that straddles the boundary counts as context,
  so keep the word-boundary space at the start of the continuation (" Daphne"), as the corpus does.
- ``generate``: greedy completions (``temperature=0``). ``sample``: ``n`` answers at a temperature, from the
  completions or the chat endpoint, each cut at its first newline like ``HFBackend.sample``.

vLLM counts the BOS token's text ("<s>") in ``text_offset`` (its offsets run ``[0, 3, 3, ...]``,
vllm-project/vllm#5334), so offsets are first shifted back by however far the last token's end overshoots the
prompt; offsets that already index the prompt (OpenAI, ``revcurse serve``) are left alone.

Requests go out ``batch_size`` prompts at a time, ``concurrency`` at once (threads over one pooled ``httpx``
client). Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (``Retry-After`` is
honoured); other 4xx are not: 401/403 says at once that the server refused the key in ``$api_key_env``. The key is
read from that environment variable at each request: it is never stored on the object, in a config, a log, a run
folder or an error message (a server echoing it back is redacted).

Use it from Python like any backend::

    from revcurse.config import load_config
    from revcurse.runner import build_trial
    from revcurse.probe import run_probes
    from revcurse.remote import backend_from_url

    # in another shell: revcurse serve runs/demo/seed-0/model   (or any vLLM server)
    corpus = build_trial(load_config("runs/demo/config.yaml"), seed=0).corpus
    with backend_from_url("http://127.0.0.1:8000/v1", api_key_env="REVCURSE_API_KEY") as backend:
        results = run_probes(backend, corpus)  # model=None: the server's only model
"""

from __future__ import annotations

import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from revcurse.errors import InputError, NotGivenError

RETRYABLE_STATUS = {408, 409, 425, 429}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class RemoteError(InputError):
    """The server could not be reached, refused the key or rejected a request (the CLI prints it, exit 2)."""


def normalize_base_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` ending in ``/v1`` (added when missing), without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"not an http(s) URL: {url!r} (expected e.g. http://127.0.0.1:8000/v1)")
    if parts.username or parts.password:
        raise InputError("put no credentials in the URL; set the API key's environment variable instead")
    if parts.query or parts.fragment:  # a key in ?api_key=... would be printed and written with the URL
        raise InputError("put no query string in the URL (keys go in the API key's environment variable)")
    base = url.strip().rstrip("/")
    for endpoint in ("/completions", "/chat/completions"):
        base = base.removesuffix(endpoint)
    return base if base.endswith("/v1") else base + "/v1"


def continuation_score(logprobs: dict[str, Any], prompt: str, context_length: int) -> tuple[float, bool]:
    """Sum of the continuation's token log-probs and whether each was the top-1 token, from an echoed prompt.

    The continuation starts at the first token whose offset is at or past ``context_length``.
    """
    tokens = logprobs["tokens"]
    offsets = list(logprobs["text_offset"])
    token_logprobs = logprobs["token_logprobs"]
    top_logprobs = logprobs.get("top_logprobs") or [None] * len(tokens)
    if not tokens or len(offsets) != len(tokens) or len(token_logprobs) != len(tokens):
        raise ValueError("logprobs need tokens, token_logprobs and text_offset of one length")
    overshoot = offsets[-1] + len(tokens[-1]) - len(prompt)  # > 0: leading special tokens counted as text
    if overshoot > 0:
        offsets = [offset - overshoot for offset in offsets]
    first = next((i for i, offset in enumerate(offsets) if offset >= context_length), len(tokens))
    if first == len(tokens):
        raise ValueError("no token of the continuation in the echoed prompt")
    total, greedy = 0.0, True
    for i in range(first, len(tokens)):
        if token_logprobs[i] is None:
            raise ValueError("the server gave no log-prob for the continuation's first token (no BOS token?)")
        total += token_logprobs[i]
        top = top_logprobs[i]
        if top and token_logprobs[i] < max(top.values()):
            greedy = False
    return total, greedy


class OpenAICompatibleBackend:
    """A ``ProbeBackend`` over an OpenAI-compatible server's ``/v1/completions`` (and ``/v1/chat/completions``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        batch_size: int = 16,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sample_endpoint: Literal["completions", "chat"] = "completions",
    ) -> None:
        if concurrency < 1 or batch_size < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise InputError("concurrency and batch_size must be >= 1, max_retries >= 0, timeout > 0, backoff >= 0")
        if sample_endpoint not in ("completions", "chat"):
            raise InputError(f"sample_endpoint must be 'completions' or 'chat', got {sample_endpoint!r}")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sample_endpoint = sample_endpoint
        self._client = httpx.Client(
            timeout=timeout, limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        )
        self._warned = threading.Event()

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend({self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Log-prob of each continuation after its context and whether greedy decoding gives exactly it."""
        if any(not continuation for _, continuation in requests):
            raise ValueError("every continuation needs at least one token")
        unique = list(dict.fromkeys(requests))

        def score(batch: list[tuple[str, str]]) -> list[tuple[float, bool]]:
            prompts = [context + continuation for context, continuation in batch]
            body = {"prompt": prompts, "echo": True, "max_tokens": 0, "logprobs": 1, "temperature": 0}
            choices = self._choices(self._post("/completions", body), len(batch))
            scores = []
            for (context, _), prompt, choice in zip(batch, prompts, choices):
                if not choice.get("logprobs"):
                    raise NotGivenError(f"the server at {self.base_url} returned no prompt logprobs (echo=true)")
                try:
                    scores.append(continuation_score(choice["logprobs"], prompt, len(context)))
                except (KeyError, TypeError, ValueError) as error:
                    raise RemoteError(f"unusable logprobs from the server at {self.base_url}: {error}") from None
            return scores

        found = dict(zip(unique, self._batched(unique, score)))
        return [found[request] for request in requests]

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations of at most ``max_new_tokens`` tokens."""

        def complete(batch: list[str]) -> list[str]:
            body = {"prompt": batch, "max_tokens": max_new_tokens, "temperature": 0}
            return [choice["text"] for choice in self._choices(self._post("/completions", body), len(batch))]

        return self._batched(list(contexts), complete)

    def sample(
        self, contexts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0
    ) -> list[list[str]]:
        """``n`` sampled answers per context, each cut at its first newline (``seed + i`` for context i; how far a
        server honours a seed is its own affair)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if temperature <= 0:
            raise ValueError("temperature must be > 0; greedy answers come from generate()")

        def draw(item: tuple[int, str]) -> list[str]:
            index, context = item
            body = {"n": n, "max_tokens": max_new_tokens, "temperature": temperature, "seed": seed + index}
            if self.sample_endpoint == "chat":
                body["messages"] = [{"role": "user", "content": context}]
                choices = self._choices(self._post("/chat/completions", body), n)
                texts = [choice["message"]["content"] or "" for choice in choices]
            else:
                body["prompt"] = context
                texts = [choice["text"] for choice in self._choices(self._post("/completions", body), n)]
            return [text.split("\n", 1)[0].strip() for text in texts]

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(draw, enumerate(contexts)))

    def sample_chat(
        self, conversations: list[list[dict[str, str]]], n: int, max_new_tokens: int, temperature: float = 1.0,
        seed: int = 0,
    ) -> list[list[str]]:
        """``n`` answers per conversation from ``/chat/completions`` (the server applies its own chat template),
        each cut at its first newline; temperature 0 answers greedily (``n`` copies of one answer)."""
        if n < 1:
            raise ValueError("n must be at least 1")

        def draw(item: tuple[int, list[dict[str, str]]]) -> list[str]:
            index, messages = item
            body = {"messages": messages, "n": 1 if temperature <= 0 else n, "max_tokens": max_new_tokens,
                    "temperature": max(temperature, 0.0), "seed": seed + index}
            choices = self._choices(self._post("/chat/completions", body), body["n"])
            texts = [(choice["message"]["content"] or "").split("\n", 1)[0].strip() for choice in choices]
            return texts * n if temperature <= 0 else texts

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(draw, enumerate(conversations)))

    def list_models(self) -> list[str]:
        """The model ids the server offers (``GET /v1/models``)."""
        return [card["id"] for card in self._request("GET", "/models", None).get("data", [])]

    def _batched(self, items: list, work: Callable[[list], list]) -> list:
        """``work`` over batches of ``batch_size`` items, ``concurrency`` at once, results in order."""
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return [result for batch in pool.map(work, batches) for result in batch]

    def _choices(self, response: dict[str, Any], expected: int) -> list[dict[str, Any]]:
        choices = sorted(response.get("choices") or [], key=lambda choice: choice.get("index", 0))
        if len(choices) != expected:
            raise RemoteError(f"the server at {self.base_url} returned {len(choices)} choices, expected {expected}")
        return choices

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, {"model": self.model, **body})

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One call, retried on connection errors, timeouts, 429 and 5xx with exponential backoff."""
        url = self.base_url + path
        key = os.environ.get(self.api_key_env) or None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._warn_if_plain_http(key)
        problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self._client.request(method, url, json=body, headers=headers)
            except httpx.TransportError as error:  # refused, reset, DNS, timeouts
                problem = f"{type(error).__name__}: {_redact(str(error), key)}"
            else:
                status = response.status_code
                if status < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise RemoteError(f"the server at {url} answered HTTP {status} with no JSON") from None
                if status in (401, 403):
                    where = f"${self.api_key_env}"
                    raise RemoteError(
                        f"the server at {url} refused the API key in {where} (HTTP {status})"
                        if key
                        else f"the server at {url} needs an API key (HTTP {status}): set {where}"
                    )
                message = _redact(_error_message(response), key)
                if status < 500 and status not in RETRYABLE_STATUS:
                    raise RemoteError(f"the server at {url} rejected the request (HTTP {status}): {message}")
                problem = f"HTTP {status}: {message}"
                retry_after = _retry_after(response)
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (1 + 0.1 * random.random())
                time.sleep(min(self.max_backoff, max(delay, retry_after or 0)))
        raise RemoteError(
            f"no answer from the server at {url} after {self.max_retries + 1} attempt(s) ({problem}); is it running?"
        )

    def _warn_if_plain_http(self, key: str | None) -> None:
        host = urlsplit(self.base_url).hostname
        if key and self.base_url.startswith("http://") and host not in LOCAL_HOSTS and not self._warned.is_set():
            self._warned.set()
            warnings.warn(f"sending ${self.api_key_env} to {host} over plain http", stacklevel=3)


def _error_message(response: httpx.Response) -> str:
    """The server's error message (OpenAI's ``{"error": {"message"}}``, or the text), cut to 300 characters."""
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message", error) if isinstance(error, dict) else error
        text = str(message)
    except ValueError:
        text = response.text
    return text[:300] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text


def backend_from_url(
    url: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY", **options: Any
) -> OpenAICompatibleBackend:
    """A backend for the server at ``url``; without ``model``, the server's only model (from ``/v1/models``)."""
    backend = OpenAICompatibleBackend(url, model or "", api_key_env=api_key_env, **options)
    if not model:
        try:
            names: Sequence[str] = backend.list_models()
        except BaseException:
            backend.close()  # its pooled connection, else an unclosed socket (ResourceWarning)
            raise
        if len(names) != 1:
            backend.close()
            raise InputError(f"the server at {backend.base_url} offers {len(names)} models {list(names)}: name one")
        backend.model = names[0]
    return backend
