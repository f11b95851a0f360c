"""The masked model's backend: a blank before text (Probe.after) is scored and filled with that text in view,
and only a backend that reads both ways is given it."""

import torch

from revcurse.config import ModelConfig
from revcurse.corpus import Corpus, Probe
from revcurse.masked_probe import MaskedLMBackend
from revcurse.model import build_tiny_model
from revcurse.probe import run_probes
from tests.fakes import FakeBackend


def masked_backend(tokenizer) -> MaskedLMBackend:
    torch.manual_seed(1)
    model = build_tiny_model(
        ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64, bidirectional=True
    ).eval()
    return MaskedLMBackend(model, tokenizer, batch_size=3)


def test_a_blank_is_scored_with_the_text_after_it_in_view(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    backend = masked_backend(tokenizer)
    request = ("The director of the film", " Journey Through", " Time is Daphne Barrington.")
    (logprob, greedy), = backend.loglikelihood([request])
    context, continuation = backend.encode_pair(request[0], request[1])
    after = backend.encode_after([request])[0]
    assert after and tokenizer.decode(after) == request[2]
    mask, expected, expected_greedy = tokenizer.mask_token_id, 0.0, True
    for k, token in enumerate(continuation):
        ids = context + continuation[:k] + [mask] * (len(continuation) - k) + after
        with torch.no_grad():
            row = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0, len(context) + k], -1)
        expected += row[token].item()
        expected_greedy &= row.argmax().item() == token
    assert abs(logprob - expected) < 1e-4 and greedy == expected_greedy
    # the text after the blank changes the score (it is read), and a two-item request is the plain one
    assert abs(backend.loglikelihood([request[:2]])[0][0] - logprob) > 1e-6
    assert backend.loglikelihood([request[:2]]) == backend.loglikelihood([(*request[:2], "")])


def test_fill_blanks_is_the_greedy_fill_the_scorer_checks(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    backend = masked_backend(tokenizer)
    requests = [("The director of the film", " Journey Through", " Time is Daphne Barrington."),
                ("", "Uriah", " Hawthorne is the composer")]
    filled = backend.fill_blanks(requests)
    assert filled == [backend.fill_blanks([r])[0] for r in requests]  # batching and left padding change nothing
    # greedy fill is exact: it reproduces a target exactly when the scorer calls the target greedy
    scores = backend.loglikelihood([(c, t, a) for c, t, a in requests])
    for (_, answer, _), text, (_, greedy) in zip(requests, filled, scores):
        assert greedy == (text.strip() == answer.strip())


def test_run_probes_gives_the_text_after_the_blank_only_to_a_backend_that_reads_both_ways():
    probes = [Probe("k", "Pairs", "value_to_key", False, "vk", "", "abc", after=" = xyz"),
              Probe("m", "Pairs", "value_to_key", False, "vk", "", "def", after=" = uvw")]
    causal = FakeBackend(default=-1.0)
    run_probes(causal, Corpus([], probes), max_new_tokens=4, show_progress=False, distractors=1)
    assert causal.requests and all(len(request) == 2 for request in causal.requests)

    class BothWays(FakeBackend):
        reads_both_ways = True

        def fill_blanks(self, requests):
            self.filled = requests
            return [answer for _, answer, _ in requests]

    masked = BothWays(default=-1.0, completions={"abc =": " xyz"})
    forward = Probe("k", "Pairs", "key_to_value", True, "kv", "abc =", " xyz")
    results = run_probes(masked, Corpus([], [*probes, forward]), max_new_tokens=4, show_progress=False,
                         distractors=1)
    assert ("", "abc", " = xyz") in masked.requests and ("", "def", " = xyz") in masked.requests
    # a blank before text is filled with as many masks as the target has tokens; a plain prompt is generated
    assert masked.filled == [("", "abc", " = xyz"), ("", "def", " = uvw")]
    assert all(result.correct for result in results) and results[0].after == " = xyz"
