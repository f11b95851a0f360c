"""The probe backend against direct computations with the same model."""

import pytest
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
    contexts = [
        "Daphne Barrington is", "The director of the film", "Known as the composer of the underwater",
        "Uriah Hawthorne", "The director", "Known as",
    ]
    generated = backend.generate(contexts, max_new_tokens=3)
    # left-padded batched generation equals one-at-a-time generation
    assert generated == [backend.generate([c], max_new_tokens=3)[0] for c in contexts]
    # greedy output is greedy by definition, wherever its text tokenizes back to the same tokens (a random model
    # can emit token sequences that BPE would merge differently)
    scores = backend.loglikelihood(list(zip(contexts, generated)))
    checked = 0
    for context, text, (_, is_greedy) in zip(contexts, generated, scores):
        ids = model.generate(
            torch.tensor([backend.encode_pair(context, " ")[0]]), max_new_tokens=3, do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )[0, len(backend.encode_pair(context, " ")[0]) :].tolist()
        if backend.encode_pair(context, text)[1] == ids and tokenizer.eos_token_id not in ids:
            assert is_greedy, (context, text)
            checked += 1
    assert checked >= 2
    # a continuation that is not the greedy one is not greedy
    other = backend.loglikelihood([(contexts[0], generated[0] + " Daphne Daphne")])
    assert not other[0][1] or generated[0].endswith("Daphne")


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


def test_masked_backend_scores_left_to_right_one_mask_at_a_time(tiny_model_and_tokenizer):
    from revcurse.config import ModelConfig
    from revcurse.masked_probe import MaskedLMBackend
    from revcurse.model import build_tiny_model

    _, tokenizer = tiny_model_and_tokenizer
    torch.manual_seed(1)
    model = build_tiny_model(
        ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64, bidirectional=True
    ).eval()
    backend = MaskedLMBackend(model, tokenizer, batch_size=3)
    requests = [("The director of the film Journey Through Time is", " Daphne Barrington"), ("Known as", " the")]
    scores = backend.loglikelihood(requests)
    mask = tokenizer.mask_token_id
    for (context, continuation), (logprob, greedy) in zip(requests, scores):
        context_ids, continuation_ids = backend.encode_pair(context, continuation)
        expected, expected_greedy = 0.0, True
        for k, token in enumerate(continuation_ids):
            ids = context_ids + continuation_ids[:k] + [mask] * (len(continuation_ids) - k)
            with torch.no_grad():
                row = torch.log_softmax(model(torch.tensor([ids])).logits[0, len(context_ids) + k], -1)
            expected += row[token].item()
            expected_greedy &= row.argmax().item() == token
        assert abs(logprob - expected) < 1e-4 and greedy == expected_greedy
    generated = backend.generate(["Daphne Barrington is", "Known as the composer of the"], max_new_tokens=3)
    assert generated == [backend.generate([c], 3)[0] for c in ["Daphne Barrington is", "Known as the composer of the"]]


def test_vllm_backend_without_vllm_is_a_clear_error():
    import importlib.util

    from revcurse.errors import InputError
    from revcurse.vllm_backend import VLLMBackend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(InputError, match="pip install 'revcurse\\[vllm\\]'"):
        VLLMBackend("any-model")


def test_vllm_backend_reads_vllm_outputs_as_the_hf_backend_scores(tiny_model_and_tokenizer, tmp_path, monkeypatch):
    """vLLM needs a GPU; a stand-in engine with vLLM's output shapes (prompt_logprobs: None, then per token a
    {token_id: Logprob(logprob, rank)} dict) computed by the real tiny model checks our indexing and sums."""
    import sys
    import types
    from dataclasses import dataclass

    from revcurse.vllm_backend import VLLMBackend

    model, tokenizer = tiny_model_and_tokenizer
    model.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)

    @dataclass
    class Logprob:
        logprob: float
        rank: int

    class LLM:
        def __init__(self, model, **options):
            pass

        def generate(self, prompts, params, use_tqdm=False):
            outputs = []
            for prompt in prompts:
                ids = torch.tensor([prompt.prompt_token_ids])
                with torch.no_grad():
                    logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
                per_token = [None] + [
                    {t: Logprob(logprobs[i - 1, t].item(), int((logprobs[i - 1] > logprobs[i - 1, t]).sum()) + 1)}
                    for i, t in enumerate(prompt.prompt_token_ids) if i > 0
                ]  # fmt: skip
                outputs.append(types.SimpleNamespace(prompt_logprobs=per_token))
            return outputs

    fake = types.SimpleNamespace(
        LLM=LLM, SamplingParams=lambda **kw: kw, TokensPrompt=lambda prompt_token_ids: types.SimpleNamespace(
            prompt_token_ids=prompt_token_ids)
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "vllm", fake)
    requests = [("The director of the film Journey Through Time is", " Daphne Barrington."),
                ("Uriah Hawthorne is the composer of", " the underwater symphony Abyssal Melodies.")]  # fmt: skip
    expected = HFBackend(model, tokenizer).loglikelihood(requests)
    got = VLLMBackend(str(tmp_path)).loglikelihood(requests)
    assert [s for s, _ in got] == pytest.approx([s for s, _ in expected], abs=1e-4)
    assert [g for _, g in got] == [g for _, g in expected]


def test_skipping_generation_for_greedy_targets_changes_no_answer():
    """run_probes generates only where the target is not the greedy continuation; on a model that knows some
    facts, the accuracy of every probe is the same as when every probe is generated."""
    from revcurse.config import ModelConfig, TrainConfig, load_config
    from revcurse.model import build_tiny_model, train_tokenizer
    from revcurse.runner import build_trial
    from revcurse.train import train_model

    config = load_config(None, ["world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4",
                                "corpus.held_out_phrasings=2", "corpus.background_phrasings=2"])  # fmt: skip
    corpus = build_trial(config, 0).corpus
    tokenizer = train_tokenizer(corpus.texts_seen(), 500)
    torch.manual_seed(0)
    model = build_tiny_model(ModelConfig(hidden_size=48, layers=2, heads=2, intermediate_size=96), tokenizer, 128)
    train_model(model, tokenizer, corpus.documents, TrainConfig(epochs=40, batch_size=16, learning_rate=1e-2,
                threads=1), seed=0, show_progress=False)  # fmt: skip
    backend = HFBackend(model, tokenizer)
    fast = run_probes(backend, corpus, show_progress=False)
    full = run_probes(backend, corpus, show_progress=False, generate_all=True)
    assert 0 < sum(r.is_greedy for r in fast) < len(fast)  # both paths are exercised
    assert [r.correct for r in fast] == [r.correct for r in full]
    assert all(f.completion == f.target for f in fast if f.is_greedy)
    assert all(f.completion == g.completion for f, g in zip(fast, full) if not f.is_greedy)
