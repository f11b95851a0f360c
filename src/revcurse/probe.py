"""Probe: ask a model each question, by greedy generation and by likelihood.

Backends answer the two requests of lm-evaluation-harness:

- ``loglikelihood([(context, continuation), ...]) -> [(summed log-prob, is_greedy), ...]``: the log-probability
  of ``continuation`` after ``context``, and whether greedy decoding would produce exactly it;
- ``generate([context, ...], max_new_tokens) -> [completion, ...]``: greedy continuations.

Every probe is scored against matched distractors: up to K targets of other facts of its (subset, asked
direction) group, in its phrasing (``corpus.draw_distractors``). Recorded: the correct target's log-prob, the
mean over the distractors (the paper's "random name of the same subset"), and the correct target's rank among
them. Accuracy is the paper's: the greedy completion starts with the target, case-insensitive; ``answer_correct``
asks only for the answer inside a target that runs on after it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
from rich.progress import Progress
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.corpus import DEFAULT_DISTRACTORS, Corpus, Probe, draw_distractors, label
from revcurse.errors import NotGivenError
from revcurse.sampling import SAMPLE_TOKENS, draw, draw_all, names_any


class ProbeBackend(Protocol):
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]: ...

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]: ...


class HFBackend:
    """A local ``transformers`` causal LM, batched with left padding (position ids follow the padding)."""

    greedy_check_is_exact = True  # is_greedy is computed as greedy decoding would go: see run_probes

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prefix = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]

    def prefix_for(self, text: str) -> list[int]:
        """BOS before a text, as in training, unless the text brings its own (a rendered chat template does)."""
        bos = self.tokenizer.bos_token
        return [] if bos and text.startswith(bos) else self.prefix

    def encode(self, text: str) -> list[int]:
        return self.prefix_for(text) + self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_pairs(self, requests: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """Split tokens at the context/continuation boundary, the one place this is decided.

        Encode the whole text and the context alone, and give the continuation the tokens past the context, as
        lm-evaluation-harness does: the word-boundary space belongs to the continuation (" Daphne" is one token).
        Texts are encoded in one batched call, each distinct context once.
        """
        encode = self.tokenizer
        unique_contexts = list(dict.fromkeys(context for context, _ in requests))
        context_ids = dict(zip(unique_contexts, encode(unique_contexts, add_special_tokens=False)["input_ids"]))
        wholes = encode([c + x for c, x in requests], add_special_tokens=False)["input_ids"] if requests else []
        pairs = []
        for (context, continuation), whole in zip(requests, wholes):
            ids = context_ids[context]
            prefixed = self.prefix_for(context) + ids
            if whole[: len(ids)] == ids:
                pairs.append((prefixed, whole[len(ids) :]))
            else:  # a token straddles the boundary: encode the parts apart
                pairs.append((prefixed, encode(continuation, add_special_tokens=False)["input_ids"]))
        return pairs

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.encode_pairs([(context, continuation)])[0]

    @torch.inference_mode()
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Score requests; the candidates of one context share a single forward pass over that context.

        Each distinct context is run once (left-padded, cached); its key/value cache is then copied to one row
        per continuation, and the continuations run on top of it. A probe ranks ~30 candidates on one prompt, so
        this does a fraction of the work of scoring every (context, continuation) sequence from scratch.
        """
        pairs = self.encode_pairs(requests)
        if any(not continuation for _, continuation in pairs):
            raise ValueError("every continuation needs at least one token")
        by_context: dict[tuple[int, ...], list[int]] = {}
        for index, (context, _) in enumerate(pairs):
            by_context.setdefault(tuple(context), []).append(index)
        contexts = sorted(by_context, key=len)  # similar lengths share a batch, so little is padded
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        chunk: list[tuple[int, ...]] = []
        rows = 0
        for context in contexts:
            if chunk and rows + len(by_context[context]) > self.batch_size:
                self._score_chunk(chunk, by_context, pairs, results)
                chunk, rows = [], 0
            chunk.append(context)
            rows += len(by_context[context])
        if chunk:
            self._score_chunk(chunk, by_context, pairs, results)
        return results

    def _score_chunk(
        self,
        contexts: list[tuple[int, ...]],
        by_context: dict[tuple[int, ...], list[int]],
        pairs: list[tuple[list[int], list[int]]],
        results: list[tuple[float, bool]],
    ) -> None:
        context_ids, context_mask = self._left_pad([list(c) for c in contexts])
        first = self.model(
            input_ids=context_ids,
            attention_mask=context_mask,
            position_ids=(context_mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
        )
        owner = [c for c, context in enumerate(contexts) for _ in by_context[context]]
        requests = [i for context in contexts for i in by_context[context]]
        owner_index = torch.tensor(owner, device=self.device)
        cache = first.cache
        cache.batch_select_indices(owner_index)  # one copy of the context's cache per continuation
        continuations = [pairs[i][1] for i in requests]
        width = max(len(c) for c in continuations)
        input_ids = torch.full((len(requests), width), self.tokenizer.pad_token_id, dtype=torch.long)
        continuation_mask = torch.zeros_like(input_ids)
        for row, continuation in enumerate(continuations):  # right-padded after the cached context
            input_ids[row, : len(continuation)] = torch.tensor(continuation)
            continuation_mask[row, : len(continuation)] = 1
        input_ids, continuation_mask = input_ids.to(self.device), continuation_mask.to(self.device)
        context_lengths = context_mask.sum(-1)[owner_index]
        logits = self.model(
            input_ids=input_ids,
            attention_mask=torch.cat([context_mask[owner_index], continuation_mask], dim=1),
            position_ids=context_lengths[:, None] + torch.arange(width, device=self.device)[None, :],
            cache=cache,
        ).logits
        # token k of a continuation is predicted at continuation position k-1 (token 0: by the context)
        predicting = torch.cat([first.logits[owner_index][:, -1:], logits[:, :-1]], dim=1).float()
        token_logprobs = predicting.gather(-1, input_ids[..., None])[..., 0] - predicting.logsumexp(-1)
        is_real = continuation_mask.bool()
        totals = (token_logprobs * is_real).sum(-1).tolist()
        greedy = ((predicting.argmax(-1) == input_ids) | ~is_real).all(-1).tolist()
        for row, i in enumerate(requests):
            results[i] = (totals[row], bool(greedy[row]))

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad to the longest sequence: the last real token of every row sits at the end."""
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, sequence in enumerate(sequences):
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, width - len(sequence) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are: inputs go there (CPU, or the GPU a run trained on)."""
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        # Left padding: every row's last real token sits at the end, where generation continues.
        encoded = [self.encode(c) for c in contexts]
        completions: list[str] = []
        for start in range(0, len(encoded), self.batch_size):
            input_ids, attention_mask = self._left_pad(encoded[start : start + self.batch_size])
            width = input_ids.shape[1]
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            completions += self.continuation_texts(input_ids, output[:, width:])
        return completions

    def continuation_texts(self, contexts: torch.Tensor, continuations: torch.Tensor) -> list[str]:
        """Each continuation's text as it reads after its context: decoded alone, a SentencePiece-style decoder
        strips the word space of its first piece ("▁the" gives "the", not " the")."""
        decode = self.tokenizer.batch_decode
        heads, alone = decode(contexts, skip_special_tokens=True), decode(continuations, skip_special_tokens=True)
        wholes = decode(torch.cat([contexts, continuations], dim=1), skip_special_tokens=True)
        return [whole[len(head) :] if whole.startswith(head) else text
                for head, text, whole in zip(heads, alone, wholes)]

    @torch.inference_mode()
    def sample(
        self, contexts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0
    ) -> list[list[str]]:
        """``n`` sampled answers per context, each cut at its first newline or special token (end of turn/text).

        Pure sampling at ``temperature`` (top-k and top-p off, whatever the checkpoint's generation config says),
        as the paper sampled its chat models. Batched with left padding like ``generate``; each context expands
        to ``n`` rows, so a batch holds ``batch_size // n`` contexts. The draws come from ``seed`` inside a forked
        RNG: the same call gives the same answers and the caller's random state is left alone.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        if temperature <= 0:
            raise ValueError("temperature must be > 0; greedy answers come from generate()")
        encoded = [self.encode(c) for c in contexts]
        ends = {self.tokenizer.eos_token_id}  # stop at the tokenizer's EOS and the checkpoint's end-of-turn ids
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ends.update(configured if isinstance(configured, list) else [configured])
        stops = ["\n", *self.tokenizer.all_special_tokens]
        device = self.model.device
        per_batch = max(1, self.batch_size // n)
        answers: list[list[str]] = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, len(encoded), per_batch):
                input_ids, attention_mask = self._left_pad(encoded[start : start + per_batch])
                width = input_ids.shape[1]
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    num_return_sequences=n,  # rows come out grouped: context 0's n answers, then context 1's
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(i for i in ends if i is not None),
                )
                texts = self.tokenizer.batch_decode(output[:, width:], skip_special_tokens=False)
                cut = []
                for text in texts:
                    for stop in stops:
                        text = text.split(stop, 1)[0]
                    cut.append(text.strip())
                answers += [cut[row : row + n] for row in range(0, len(cut), n)]
        return answers


@dataclass
class ProbeResult:
    """One probe's outcome: the model's greedy answer, and the likelihood of the correct target and of its
    distractors (other facts' targets in the same phrasing, see ``corpus.draw_distractors``).

    ``correct`` is the paper's accuracy (the completion starts with the whole target); ``answer_correct`` asks
    only for the answer inside a target that runs on after it. ``logprob_random`` is the mean log-prob of the
    distractors (the paper's "random name"), ``rank`` the correct target's rank among itself and them (ties
    count half), ``n_candidates`` their number. ``distractor_keys`` and ``distractor_logprobs`` keep each
    distractor's fact and score, so a placebo test can be run on the run folder alone.
    """

    fact_key: str
    subset: str
    asked: str
    trained: bool
    phrasing: str
    prompt: str
    target: str
    completion: str
    correct: bool
    is_greedy: bool
    logprob_correct: float
    logprob_random: float
    rank: float
    n_candidates: int
    answer: str = ""
    answer_correct: bool = False
    distractor_keys: list[str] = field(default_factory=list)
    distractor_logprobs: list[float] = field(default_factory=list)
    setting: str = ""
    samples: list[str] = field(default_factory=list)  # sampled answers (probe.samples > 0), each cut at a newline
    samples_correct: list[bool] = field(default_factory=list)  # each names the answer or an accepted one
    accepted: list[str] = field(default_factory=list)
    not_given: str = ""  # the numbers this backend could not give (then NaN), and why
    after: str = ""  # text after the blank the model filled (Probe.after, given to a masked model only)

    def to_json(self) -> dict:
        """The result as a JSON object; the optional fields only when set (older records stay as they were)."""
        return {k: v for k, v in asdict(self).items() if k not in OPTIONAL_FIELDS or v}


OPTIONAL_FIELDS = ("setting", "samples", "samples_correct", "accepted", "not_given", "after")


def rank_among(correct: float, others: list[float]) -> float:
    """1 + the number of scores above ``correct``, ties counted half: the one rank rule of every experiment."""
    if math.isnan(correct):
        return math.nan  # not scored (a backend without log-probs): no rank, not rank 1
    return 1 + sum(s > correct for s in others) + sum(s == correct for s in others) / 2


def is_correct(completion: str, target: str) -> bool:
    """The paper's accuracy: the completion starts with the target, ignoring case and leading whitespace."""
    return completion.lstrip().lower().startswith(target.strip().lower())


def generation_budget(probes: list[Probe], tokenizer: PreTrainedTokenizerBase | None = None) -> int:
    """Greedy tokens when ``probe.max_new_tokens`` is unset: the longest target in tokens (characters without a
    tokenizer) + 2. One rule, so an export (``inspect_export``) generates as far as probing does."""
    return 2 + max(len(tokenizer(p.target)["input_ids"]) if tokenizer else len(p.target) for p in probes)


def run_probes(
    backend: ProbeBackend,
    corpus: Corpus,
    max_new_tokens: int | None = None,
    show_progress: bool = True,
    generate_all: bool = False,
    distractors: int = DEFAULT_DISTRACTORS,
    seed: int = 0,
    samples: int = 0,
    temperature: float = 1.0,
    sample_seed: int = 0,
) -> list[ProbeResult]:
    """Score every probe of ``corpus``: one batched likelihood pass, then greedy generation where it can differ.

    Each probe's correct target is scored with up to ``distractors`` targets of other facts in its phrasing
    (``draw_distractors``, drawn from ``seed``): ``distractors + 1`` requests a probe, linear in the facts.
    When the backend's greedy check is exact (``greedy_check_is_exact``: the local HF backend), a probe whose
    target is the greedy continuation (``is_greedy``) needs no generation: greedy decoding would produce exactly
    the target, so its completion is recorded as the target. Only the other probes are generated, which is most
    of the probing time saved on a model that knows its facts. ``generate_all`` generates every probe (the
    benchmark checks both ways agree on every item).

    ``samples > 0`` also draws that many answers per probe at ``temperature`` (0: the greedy answer, repeated),
    each right when it names the answer or one of ``probe.accepted`` (``names_any``). Probes that still carry
    ``messages`` go to a backend's chat endpoint (``sample_chat``): it gives answers but no log-probs, which are
    then NaN and said in ``not_given``, as they are when a server returns no prompt log-probs at all.
    """
    probes: list[Probe] = corpus.probes
    sample_tokens = max_new_tokens or SAMPLE_TOKENS
    drawn = draw_distractors(probes, distractors, seed)
    chat = [bool(p.messages) and hasattr(backend, "sample_chat") for p in probes]
    # Text after the blank (Probe.after) goes only to a backend that reads both ways; a causal one is asked the
    # prompt alone, as it is in training: it cannot see later tokens.
    both_ways = getattr(backend, "reads_both_ways", False)
    requests: list[tuple[str, ...]] = []
    for probe, chosen, asked_by_chat in zip(probes, drawn, chat):
        if not asked_by_chat:
            after = (probe.after,) if both_ways and probe.after else ()
            requests += [(probe.prompt, target, *after) for target in (probe.target, *chosen.targets)]
    not_given = ["log-probs: a chat endpoint gives none for a given answer" if c else "" for c in chat]
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("probe", total=2)
        try:
            scores = backend.loglikelihood(requests) if requests else []
        except NotGivenError as error:
            scores = [(math.nan, False)] * len(requests)
            not_given = [f"log-probs: {error}"] * len(probes)
        progress.advance(task)
        groups = []
        cursor = 0
        for chosen, asked_by_chat in zip(drawn, chat):
            size = 1 + len(chosen.targets)
            groups.append([(math.nan, False)] * size if asked_by_chat else scores[cursor : cursor + size])
            cursor += 0 if asked_by_chat else size
        skip = getattr(backend, "greedy_check_is_exact", False) and not generate_all
        to_generate = [i for i, group in enumerate(groups) if not (skip and group[0][1]) and not chat[i]]
        if max_new_tokens is None:
            max_new_tokens = generation_budget(probes, getattr(backend, "tokenizer", None))
        completions = [probe.target for probe in probes]
        blanks = [i for i in to_generate if both_ways and probes[i].after]
        to_generate = [i for i in to_generate if i not in set(blanks)]
        generated = backend.generate([probes[i].prompt for i in to_generate], max_new_tokens) if to_generate else []
        if blanks:
            generated += backend.fill_blanks([(probes[i].prompt, probes[i].target, probes[i].after) for i in blanks])
        for i, completion in zip(to_generate + blanks, generated):
            completions[i] = completion
        in_chat = [i for i in range(len(probes)) if chat[i]]
        for i, answers in zip(in_chat, draw(backend, [probes[i] for i in in_chat], 1, 0.0, 0, sample_tokens)):
            completions[i] = answers[0]  # the chat endpoint's greedy answer
        sampled = draw_all(backend, probes, chat, completions, samples, temperature, sample_seed, sample_tokens)
        progress.advance(task)
    results = []
    for probe, completion, chosen, group, answers, note in zip(probes, completions, drawn, groups, sampled, not_given):
        (correct_logprob, is_greedy), others = group[0], [score for score, _ in group[1:]]
        results.append(
            ProbeResult(
                fact_key=probe.fact_key,
                subset=label(probe.subset),
                asked=label(probe.asked),
                trained=probe.trained,
                phrasing=probe.phrasing,
                prompt=probe.prompt,
                target=probe.target,
                completion=completion,
                correct=is_correct(completion, probe.target),
                is_greedy=is_greedy,
                logprob_correct=correct_logprob,
                logprob_random=sum(others) / len(others) if others else float("nan"),
                rank=rank_among(correct_logprob, others),
                n_candidates=1 + len(others),
                answer=probe.expected_answer,
                answer_correct=is_correct(completion, probe.expected_answer),
                distractor_keys=list(chosen.fact_keys),
                distractor_logprobs=others,
                setting=probe.setting,
                samples=answers,
                samples_correct=[names_any(a, [probe.expected_answer, *probe.accepted]) for a in answers],
                accepted=list(probe.accepted),
                not_given=note,
                after=probe.after if both_ways else "",
            )
        )
    return results

