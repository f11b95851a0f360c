"""Serve a local causal LM over a small OpenAI-compatible HTTP API, so remote-style probes can reach it.

``revcurse serve MODEL_DIR`` answers ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions`` for one model folder (safetensors only, no remote code), computed by
``probe.HFBackend``: the same token boundaries, batching and greedy decoding as local probes, so a probe through
the server gives what a local probe gives.

Prompt log-probs follow OpenAI's legacy completions API, as vLLM answers it: with ``echo=true, max_tokens=0,
logprobs=k`` each choice's ``logprobs`` holds ``tokens`` (each token's text), ``token_logprobs`` (``None`` for the
first token, which nothing predicts), ``top_logprobs`` (per token the ``k`` likeliest tokens and the token itself,
so up to ``k + 1`` entries; ``None`` for the first) and ``text_offset``. Offsets are character positions in
prompt + completion, taken from the tokenizer's offset mapping; the BOS token the model is given first sits at 0
(vLLM instead counts BOS's text "<s>", so its later offsets run 3 ahead; ``remote`` corrects for either).

Why the standard library's ``ThreadingHTTPServer`` and not FastAPI + uvicorn: the model answers one request at a
time under a lock (torch's global RNG and one set of weights), so an async framework buys no throughput; the
server needs no dependency beyond the package's own (requests are validated with pydantic, already a core
dependency); and it binds port 0 and shuts down in-process, which keeps the tests fast. The ``serve`` extra is
therefore empty. HTTP/1.1 keep-alive is on, so a client's connection pool is reused.

Safe by default: binds 127.0.0.1 (another host is warned about, loudly); when the environment variable named by
``--api-key-env`` is set, every request needs ``Authorization: Bearer <key>`` (401 with an OpenAI-style error
otherwise). The key is compared in constant time and never logged or written; request bodies are not logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.errors import InputError
from revcurse.probe import HFBackend

logger = logging.getLogger(__name__)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_TOP_LOGPROBS = 20


class ApiError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}`` with a status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (top_p, user, ...)

    model: str | None = None
    max_tokens: int = Field(16, ge=0, le=4096)
    temperature: float = Field(1.0, ge=0, le=2)
    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False


class CompletionRequest(_Request):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)


class ModelServer:
    """One model behind the API: request bodies in, response bodies out (no HTTP here)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_name: str) -> None:
        self.backend = HFBackend(model, tokenizer)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.lock = threading.Lock()  # one request at a time on the model (and torch's global RNG)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.created = int(time.time())

    def models(self) -> dict[str, Any]:
        card = {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "revcurse"}
        return {"object": "list", "data": [card]}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        request = _parse(CompletionRequest, body)
        self._check_model(request)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise ApiError(400, "prompt must not be empty")
        encoded = [self._encode(prompt) for prompt in prompts]
        room = self._room(max(len(ids) for ids, _ in encoded))
        request = request.model_copy(update={"max_tokens": min(request.max_tokens, room)})
        with self.lock:
            texts, finish = self._complete(prompts, request)
            logprobs: list[dict[str, Any] | None] = [None] * (len(prompts) * request.n)
            if request.logprobs is not None:
                logprobs = self._logprobs(prompts, encoded, texts, request)
        choices = []
        completion_tokens = 0
        for index, prompt in enumerate(prompts):
            for j, text in enumerate(texts[index]):
                choices.append(
                    {
                        "index": index * request.n + j,
                        "text": prompt + text if request.echo else text,
                        "logprobs": logprobs[index * request.n + j],
                        "finish_reason": finish[index][j],
                    }
                )
                completion_tokens += self._count(text)
        return {
            "id": f"cmpl-{secrets.token_hex(12)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": _usage(sum(len(ids) for ids, _ in encoded), completion_tokens),
        }

    def chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        request = _parse(ChatRequest, body)
        self._check_model(request)
        prompt = self.render_chat([m.model_dump() for m in request.messages])
        ids, _ = self._encode(prompt)
        request = request.model_copy(update={"max_tokens": min(request.max_tokens, self._room(len(ids)))})
        with self.lock:
            if request.max_tokens == 0:
                answers = [""] * request.n
            elif request.temperature == 0:
                answer = _first_line(self.backend.generate([prompt], request.max_tokens)[0])
                answers = [answer] * request.n
            else:
                seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
                answers = self.backend.sample([prompt], request.n, request.max_tokens, request.temperature, seed)[0]
        answers = [_cut(answer, request.stop)[0] for answer in answers]
        choices = [
            {"index": j, "message": {"role": "assistant", "content": answer}, "logprobs": None, "finish_reason": "stop"}
            for j, answer in enumerate(answers)
        ]
        completion_tokens = sum(self._count(answer) for answer in answers)
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": _usage(len(ids), completion_tokens),
        }

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The tokenizer's chat template when it has one, else one "role: content" line per message."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def _check_model(self, request: _Request) -> None:
        if request.stream:
            raise ApiError(400, "stream=true is not supported by this server")
        if request.model not in (None, self.model_name):
            raise ApiError(404, f"The model `{request.model}` does not exist.", code="model_not_found")

    def _room(self, prompt_tokens: int) -> int:
        """How many tokens fit after a prompt: ``max_tokens`` is cut to that (finish_reason "length")."""
        if self.max_positions is None:
            return 2**31
        if prompt_tokens > self.max_positions:
            raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's limit is {self.max_positions}")
        return self.max_positions - prompt_tokens

    def _encode(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids as the model sees them (BOS first, as ``HFBackend``) and each token's start in ``text``."""
        ids, starts = self._tokens(text)
        prefix = self.backend.prefix_for(text)
        return prefix + ids, [0] * len(prefix) + starts

    def _tokens(self, text: str) -> tuple[list[int], list[int]]:
        """``text``'s token ids (no special tokens) and the character offset where each token starts."""
        if not text:
            return [], []
        try:
            encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return encoding["input_ids"], [start for start, _ in encoding["offset_mapping"]]
        except NotImplementedError:  # a slow tokenizer has no offset mapping: measure decoded prefixes
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids, [len(self.tokenizer.decode(ids[:i])) for i in range(len(ids))]

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def _complete(self, prompts: list[str], request: CompletionRequest) -> tuple[list[list[str]], list[list[str]]]:
        """Completion texts and finish reasons, ``n`` per prompt (greedy at temperature 0)."""
        if request.max_tokens == 0:
            return [[""] * request.n for _ in prompts], [["length"] * request.n for _ in prompts]
        if request.temperature == 0:
            drawn = [[text] * request.n for text in self.backend.generate(prompts, request.max_tokens)]
        else:
            seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
            drawn = self.backend.sample(prompts, request.n, request.max_tokens, request.temperature, seed)
        texts, finish = [], []
        for group in drawn:
            cut = [_cut(text, request.stop) for text in group]
            texts.append([text for text, _ in cut])
            finish.append(
                ["stop" if stopped or self._count(text) < request.max_tokens else "length" for text, stopped in cut]
            )
        return texts, finish

    def _logprobs(
        self,
        prompts: list[str],
        encoded: list[tuple[list[int], list[int]]],
        texts: list[list[str]],
        request: CompletionRequest,
    ) -> list[dict[str, Any] | None]:
        """OpenAI legacy ``logprobs`` per choice: the echoed prompt's tokens (if ``echo``), then the completion's."""
        sequences, offsets, firsts = [], [], []
        for prompt, (ids, starts), group in zip(prompts, encoded, texts):
            for text in group:
                completion_ids, completion_starts = self._tokens(text)
                sequences.append(ids + completion_ids)
                offsets.append(starts + [len(prompt) + start for start in completion_starts])
                firsts.append(0 if request.echo else len(ids))
        scored = self._score(sequences, request.logprobs or 0)
        out: list[dict[str, Any] | None] = []
        for sequence, starts, first, scores in zip(sequences, offsets, firsts, scored):
            out.append(
                {
                    "tokens": [self.tokenizer.decode([token]) for token in sequence[first:]],
                    "token_logprobs": [logprob for logprob, _ in scores[first:]],
                    "top_logprobs": [top for _, top in scores[first:]],
                    "text_offset": starts[first:],
                }
            )
        return out

    @torch.inference_mode()
    def _score(self, sequences: list[list[int]], top: int) -> list[list[tuple[float | None, dict[str, float] | None]]]:
        """Per sequence and token: its log-prob given the tokens before it and the ``top`` likeliest tokens there
        (plus itself, as OpenAI and vLLM); ``(None, None)`` for the first token. Left-padded batches, position ids
        following the padding, as ``HFBackend``."""
        model = self.backend.model
        decode = self.tokenizer.decode
        results = []
        for start in range(0, len(sequences), self.backend.batch_size):
            chunk = sequences[start : start + self.backend.batch_size]
            input_ids, attention_mask = self.backend._left_pad(chunk)
            logits = model(
                input_ids=input_ids.to(model.device),
                attention_mask=attention_mask.to(model.device),
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0).to(model.device),
            ).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # position p predicts token p + 1
            chosen = logprobs.gather(-1, input_ids[:, 1:, None].to(logprobs.device))[..., 0].tolist()
            best_values, best_ids = logprobs.topk(max(top, 1), dim=-1)
            best_values, best_ids = best_values[..., :top].tolist(), best_ids[..., :top].tolist()
            width = input_ids.shape[1]
            for row, sequence in enumerate(chunk):
                scores: list[tuple[float | None, dict[str, float] | None]] = [(None, None)]
                for position in range(width - len(sequence), width - 1):
                    entries = {decode([c]): v for v, c in zip(best_values[row][position], best_ids[row][position])}
                    entries.setdefault(decode([input_ids[row, position + 1].item()]), chosen[row][position])
                    scores.append((chosen[row][position], entries))
                results.append(scores)
        return results


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        raise ApiError(400, problems) from None


def _cut(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """``text`` up to its first stop string, and whether one was found."""
    stops = [stop] if isinstance(stop, str) else (stop or [])
    cuts = [text.index(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ApiServer(ThreadingHTTPServer):
    """A threading HTTP server holding the model server and the expected key (never logged)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: ModelServer, api_key: str | None, quiet: bool) -> None:
        self.app = app
        self.api_key = api_key
        self.quiet = quiet
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server: ApiServer

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._handle({"/v1/models": lambda _: self.server.app.models()}, with_body=False)

    def do_POST(self) -> None:  # noqa: N802
        app = self.server.app
        self._handle({"/v1/completions": app.completions, "/v1/chat/completions": app.chat_completions})

    def _handle(self, routes: dict[str, Callable[[dict[str, Any]], dict]], with_body: bool = True) -> None:
        try:
            body = self._read_body() if with_body else {}
            if not self._authorized():
                raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in routes:
                raise ApiError(404, f"no route {self.command} {path}", code="not_found")
            self._send(200, routes[path](body))
        except ApiError as error:
            self._send(error.status, error.body)
        except Exception:  # never a traceback to the client; the log has it
            logger.exception("request failed")
            self._send(500, ApiError(500, "internal server error", kind="server_error").body)

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError as error:
            raise ApiError(400, f"body is not valid JSON: {error.msg}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    def _authorized(self) -> bool:
        expected = self.server.api_key
        if not expected:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        # The request line and status only: never headers (the key) or bodies.
        if not self.server.quiet:
            logger.info("%s %s", self.address_string(), format % args)


def make_server(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_name: str = "model",
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    quiet: bool = False,
) -> ApiServer:
    """A bound, not yet running server (``port=0``: any free port; ``server.url`` says which)."""
    try:
        return ApiServer((host, port), ModelServer(model, tokenizer, model_name), api_key or None, quiet)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def host_warning(host: str, api_key_env: str, has_key: bool) -> str | None:
    """The loud warning for a host other than loopback (None for loopback)."""
    if host in LOCAL_HOSTS:
        return None
    return (
        f"WARNING: listening on {host}, not 127.0.0.1: anyone who can reach this machine can query the model"
        + ("" if has_key else f"; no API key is required (set ${api_key_env} to require one)")
    )


def serve(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str = "REVCURSE_API_KEY",
    model_name: str | None = None,
    log: Callable[[str], None] = print,
    allow_pickle: bool = False,
) -> None:
    """Load ``model_dir`` (safetensors only unless ``allow_pickle``; no remote code) and answer requests until
    interrupted."""
    from revcurse.config import ModelConfig
    from revcurse.model import load_checkpoint

    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise InputError("no such model folder", folder)
    model, tokenizer = load_checkpoint(
        ModelConfig(checkpoint=str(folder), trust_remote_code=False, allow_pickle=allow_pickle)
    )
    api_key = os.environ.get(api_key_env) or None
    warning = host_warning(host, api_key_env, has_key=api_key is not None)
    if warning:
        log(warning)
    server = make_server(model, tokenizer, model_name or folder.resolve().name, host, port, api_key)
    log(
        f"serving {server.app.model_name!r} at {server.url} "
        + (f"(API key required: ${api_key_env})" if api_key else f"(no API key: ${api_key_env} is not set)")
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
