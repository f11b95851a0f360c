"""A backend that needs no model: the null of "the model knows nothing" holds by construction when it scores
every (prompt, continuation) pair with an independent pseudo-random value."""

from __future__ import annotations

import random


class FakeBackend:
    """Scores a continuation from ``scores`` keyed on (prompt, continuation), else ``default``, else a fixed
    pseudo-random log-prob per pair (N(-5, 1) seeded by the pair); generates ``completions[prompt]`` (else "")."""

    tokenizer = None

    def __init__(
        self,
        scores: dict[tuple[str, str], float] | None = None,
        completions: dict[str, str] | None = None,
        default: float | None = None,
    ) -> None:
        self.scores = scores or {}
        self.completions = completions or {}
        self.default = default
        self.requests: list[tuple[str, str]] = []

    def score(self, request: tuple[str, str]) -> float:
        if request in self.scores:
            return self.scores[request]
        if self.default is not None:
            return self.default
        return random.Random("|".join(request)).gauss(-5.0, 1.0)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        self.requests += requests
        return [(self.score(request), False) for request in requests]

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        return [self.completions.get(context, "") for context in contexts]

    def candidates(self, sizes: list[int]) -> list[list[str]]:
        """The continuations scored for each probe, when probe i was scored with ``sizes[i]`` of them in turn."""
        out, cursor = [], 0
        for size in sizes:
            out.append([continuation for _, continuation in self.requests[cursor : cursor + size]])
            cursor += size
        assert cursor == len(self.requests)
        return out
