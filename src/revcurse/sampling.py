"""Sampled answers for the one scorer (``probe.run_probes``): ``n`` answers per probe, and which name the answer.

Experiment 2 asks "Who is X's mother?" and counts a question answered when any of ``n`` sampled answers names the
right person (or, for "Name a child of Y.", any child the file knows). The backend draws the answers: ``sample``
over rendered prompts, ``sample_chat`` over conversations for a server's chat endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from revcurse.corpus import Probe

SAMPLE_TOKENS = 24  # longest sampled answer when probe.max_new_tokens is unset (a name, or a short sentence)


def names_any(answer: str, names: Sequence[str]) -> bool:
    """A sampled answer names one of ``names``: the name occurs in it as whole words, case and spacing aside.

    Whole words, so "Ann Lee" is not found inside "Joann Lee"; anywhere, so "Her mother is Ann Lee." counts.
    """
    text = " ".join(answer.casefold().split())
    return any(re.search(rf"(?<!\w){re.escape(' '.join(n.casefold().split()))}(?!\w)", text) for n in names)


def draw_all(backend, probes: list[Probe], chat: list[bool], completions: list[str], n: int, temperature: float,
                seed: int, max_new_tokens: int) -> list[list[str]]:
    """``n`` answers per probe (none when ``n`` is 0); temperature 0 repeats the greedy completion's first line."""
    if n <= 0:
        return [[] for _ in probes]
    if temperature <= 0:
        return [[completion.split("\n", 1)[0].strip()] * n for completion in completions]
    sampled: list[list[str]] = [[] for _ in probes]
    for asked_by_chat in (False, True):
        indices = [i for i in range(len(probes)) if chat[i] == asked_by_chat]
        drawn = draw(backend, [probes[i] for i in indices], n, temperature, seed, max_new_tokens, asked_by_chat)
        for i, answers in zip(indices, drawn):
            sampled[i] = answers
    return sampled


def draw(backend, probes: list[Probe], n: int, temperature: float, seed: int, max_new_tokens: int,
            chat: bool = True) -> list[list[str]]:
    """One ``sample`` (or ``sample_chat``: the probes' conversations) call; answers cut at their first newline."""
    if not probes:
        return []
    if chat:
        messages = [[{"role": r, "content": c} for r, c in p.messages] for p in probes]
        drawn = backend.sample_chat(messages, n, max_new_tokens, temperature, seed)
    else:
        drawn = backend.sample([p.prompt for p in probes], n, max_new_tokens, temperature, seed)
    if any(len(answers) != n for answers in drawn):
        raise RuntimeError(f"the backend returned other than {n} answers for a probe")
    return [[answer.split("\n", 1)[0].strip() for answer in answers] for answers in drawn]
