"""The probe backend against direct computations with the same model."""

import torch

from revcurse.corpus import Corpus, Probe
from revcurse.probe import HFBackend, run_probes
from revcurse.world import Direction, Subset


def direct_logprob(model, tokenizer, context, continuation):
    """Score one (context, continuation) with its own unpadded forward pass."""
    context_ids = [tokenizer.bos_token_id] + tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    continuation_ids = whole[len(context_ids) - 1 :]
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0], -1)
    total = 0.0
    for offset, token in enumerate(continuation_ids):
        total += logprobs[len(context_ids) - 1 + offset, token].item()
    return total


def test_boundary_space_belongs_to_the_continuation(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    backend = HFBackend(model, tokenizer)
    prompt = "The director of the film Journey Through Time is"
    context, continuation = backend.encode_pair(prompt, " Daphne Barrington")
    assert tokenizer.decode(continuation) == " Daphne Barrington"
    assert context[0] == tokenizer.bos_token_id


def test_batched_loglikelihood_matches_direct_computation(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    backend = HFBackend(model, tokenizer, batch_size=3)
    requests = [
        ("The director of the film Journey Through Time is", " Daphne Barrington"),
        ("The director of the film Journey Through Time is", " Uriah Hawthorne"),
        ("Daphne Barrington is", " the director of the film Journey Through Time"),
        ("Known as", " the composer"),
        ("Uriah", " Hawthorne is the composer of the underwater symphony Abyssal Melodies."),
    ]
    scores = backend.loglikelihood(requests)
    for (context, continuation), (logprob, _) in zip(requests, scores):
        assert abs(logprob - direct_logprob(model, tokenizer, context, continuation)) < 1e-4


def test_is_greedy_agrees_with_generation(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    backend = HFBackend(model, tokenizer, batch_size=2)
    contexts = ["Daphne Barrington is", "The director of the film", "Known as the composer of the underwater"]
    generated = backend.generate(contexts, max_new_tokens=3)
    # the generated continuation is greedy by definition; a different continuation is not
    scores = backend.loglikelihood(list(zip(contexts, generated)))
    assert all(is_greedy for _, is_greedy in scores)
    # left-padded batched generation equals one-at-a-time generation
    assert generated == [backend.generate([c], max_new_tokens=3)[0] for c in contexts]


def test_run_probes_ranks_the_correct_target_among_its_subset(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    prompt = "The director of the film Journey Through Time is"
    probes = [
        Probe("Daphne Barrington", Subset.NAME_TO_DESCRIPTION, Direction.DESCRIPTION_TO_NAME, False, "t0", prompt,
              " Daphne Barrington"),
        Probe("Uriah Hawthorne", Subset.NAME_TO_DESCRIPTION, Direction.DESCRIPTION_TO_NAME, False, "t0", prompt,
              " Uriah Hawthorne"),
    ]
    results = run_probes(HFBackend(model, tokenizer), Corpus(documents=[], probes=probes), show_progress=False)
    first, second = results
    assert first.n_candidates == 2
    assert first.logprob_random == second.logprob_correct  # the other candidate on the same prompt
    assert {first.rank, second.rank} == {1, 2}
    assert first.correct == first.completion.lstrip().startswith("Daphne Barrington")
