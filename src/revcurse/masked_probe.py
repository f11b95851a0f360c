"""The probing backend of a bidirectional mask-filling model (``train.objective`` mlm-u or mlm).

It answers the same two requests as every backend (``probe.ProbeBackend``), filling masks left to right, and
one more that only a model reading both ways can: a blank *between* a prompt and text after it (``Probe.after``),
how Kitouni et al. (2024) ask an any-order model for the key that comes before a value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from revcurse.probe import HFBackend


class MaskedLMBackend(HFBackend):
    """A bidirectional model trained with MLM-U (or fixed-rate MLM), answering left to right, one mask at a time.

    To score a continuation of n tokens after a context, the model sees ``context + c[:k] + <mask> * (n - k)``
    (then the request's text after the blank, if any) for k = 0..n-1 and predicts token k at the first mask; the
    log-probs add up as for a causal model (the number of masks is the candidate's length, as in masked-LM
    scoring). Generation appends ``max_new_tokens`` masks and fills the first one greedily, then the next, until
    end of text; a blank with text after it (``fill_blanks``) has as many masks as the expected answer's tokens,
    so the text after it stands where it stood in training.
    """

    greedy_check_is_exact = False  # scoring sees len(candidate) masks, generation max_new_tokens: they can differ
    reads_both_ways = True  # run_probes passes Probe.after (text after the blank) to this backend

    def encode_after(self, requests: Sequence[tuple[str, ...]]) -> list[list[int]]:
        """The tokens of each request's text after the blank (third item; none when absent): the tokens of the
        whole text past those of context + continuation, as ``encode_pairs`` splits a context from its
        continuation."""
        afters: list[list[int]] = []
        for request in requests:
            if len(request) < 3 or not request[2]:
                afters.append([])
                continue
            head = self.tokenizer(request[0] + request[1], add_special_tokens=False)["input_ids"]
            whole = self.tokenizer(request[0] + request[1] + request[2], add_special_tokens=False)["input_ids"]
            same = whole[: len(head)] == head
            afters.append(whole[len(head) :] if same else self.tokenizer(request[2], add_special_tokens=False)[
                "input_ids"])
        return afters

    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[tuple[str, ...]]) -> list[tuple[float, bool]]:
        """(context, continuation) or (context, continuation, text after the blank) requests."""
        mask = self.tokenizer.mask_token_id
        pairs = self.encode_pairs([(request[0], request[1]) for request in requests])
        afters = self.encode_after(requests)
        steps = [
            (index, k, context + continuation[:k] + [mask] * (len(continuation) - k) + afters[index],
             len(context) + k)
            for index, (context, continuation) in enumerate(pairs)
            for k in range(len(continuation))
        ]
        totals = [0.0] * len(pairs)
        greedy = [True] * len(pairs)
        for start in range(0, len(steps), self.batch_size):
            chunk = steps[start : start + self.batch_size]
            input_ids, attention_mask = self._left_pad([sequence for _, _, sequence, _ in chunk])
            offsets = input_ids.shape[1] - attention_mask.sum(-1)  # left padding shifts every row
            logits = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            ).logits
            rows = torch.arange(len(chunk), device=self.device)
            positions = offsets + torch.tensor([position for _, _, _, position in chunk], device=self.device)
            tokens = torch.tensor([pairs[index][1][k] for index, k, _, _ in chunk], device=self.device)
            scores = logits[rows, positions].float()
            token_logprobs = (scores[rows, tokens] - scores.logsumexp(-1)).tolist()
            hits = (scores.argmax(-1) == tokens).tolist()
            for (index, _, _, _), logprob, hit in zip(chunk, token_logprobs, hits):
                totals[index] += logprob
                greedy[index] &= hit
        return list(zip(totals, greedy))

    @torch.inference_mode()
    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        encoded = [self.encode(c) for c in contexts]
        return self._fill_masks(encoded, [max_new_tokens] * len(encoded), lambda logits: logits.argmax(-1))

    @torch.inference_mode()
    def fill_blanks(self, requests: list[tuple[str, str, str]]) -> list[str]:
        """Greedy answers to (context, expected answer, text after the blank): as many masks as the expected
        answer has tokens (its length is all that is used of it), filled left to right with the text after the
        blank in view."""
        pairs = self.encode_pairs([(context, answer) for context, answer, _ in requests])
        afters = self.encode_after(requests)
        return self._fill_masks([context for context, _ in pairs], [len(answer) for _, answer in pairs],
                                lambda logits: logits.argmax(-1), afters)

    @torch.inference_mode()
    def sample(
        self, contexts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0
    ) -> list[list[str]]:
        """As ``generate``, but each mask is filled by a draw from the softmax at ``temperature`` (``n`` answers
        per context, each cut at its first newline); the draws come from a generator seeded with ``seed``."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if temperature <= 0:
            raise ValueError("temperature must be > 0; greedy answers come from generate()")
        generator = torch.Generator().manual_seed(seed)
        encoded = [self.encode(c) for c in contexts]
        rows = [ids for ids in encoded for _ in range(n)]  # context 0's n rows, then context 1's

        def draw(logits: torch.Tensor) -> torch.Tensor:
            probabilities = torch.softmax(logits.float() / temperature, -1)
            return torch.multinomial(probabilities, 1, generator=generator)[:, 0]

        flat = [text.split("\n", 1)[0].strip() for text in self._fill_masks(rows, [max_new_tokens] * len(rows), draw)]
        return [flat[row : row + n] for row in range(0, len(flat), n)]

    def _fill_masks(
        self, encoded: list[list[int]], lengths: list[int], choose: Callable[[torch.Tensor], torch.Tensor],
        afters: list[list[int]] | None = None,
    ) -> list[str]:
        """Put ``lengths[i]`` masks after row i (then ``afters[i]``, text after the blank) and fill them left to
        right with ``choose(logits)``, until end of text."""
        mask, eos = self.tokenizer.mask_token_id, self.tokenizer.eos_token_id
        afters = afters or [[] for _ in encoded]
        completions: list[str] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(encoded)))
            input_ids, attention_mask = self._left_pad([encoded[i] + [mask] * lengths[i] + afters[i] for i in chunk])
            rows = torch.arange(len(chunk), device=self.device)
            width = input_ids.shape[1]
            first = torch.tensor([width - lengths[i] - len(afters[i]) for i in chunk], device=self.device)
            blank = torch.tensor([lengths[i] for i in chunk], device=self.device)
            done = torch.zeros(len(chunk), dtype=torch.bool, device=self.device)
            for step in range(max(lengths[i] for i in chunk)):
                done |= step >= blank  # a shorter blank is full
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
                ).logits
                where = (first + step).clamp(max=width - 1)
                chosen = choose(logits[rows, where])
                current = input_ids[rows, where]
                input_ids[rows, where] = torch.where(done, current, chosen)
                done |= chosen == eos
                if done.all():
                    break
            for row, i in enumerate(chunk):
                new = input_ids[row, int(first[row]) : int(first[row]) + lengths[i]].tolist()
                new = new[: new.index(eos)] if eos in new else new
                completions.append(self.tokenizer.decode([t for t in new if t != mask], skip_special_tokens=True))
        return completions
