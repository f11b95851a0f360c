"""A vLLM probe backend: the same two requests as ``probe.HFBackend``, run by vLLM's engine on a GPU.

vLLM is an optional extra (``pip install 'revcurse[vllm]'``), imported only when this backend is built, so the
package installs and tests on machines without it. Token boundaries come from ``HFBackend.encode_pairs`` (the
same tokenizer, the same BOS rule), and requests go to vLLM as token ids, so both backends score exactly the
same sequences:

- likelihood: ``prompt_logprobs=1`` over context + continuation; the continuation's tokens' log-probs are summed,
  and it is greedy when each of its tokens is the top-1 one (as lm-evaluation-harness's vLLM model does);
- generation: temperature 0, ``max_tokens`` new tokens, decoded without special tokens.

Use: ``run_probes(VLLMBackend("runs/demo/seed-0/model"), corpus)``. Not run in CI (no GPU there); its token
handling is shared with the tested HF backend.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoTokenizer

from revcurse.errors import InputError
from revcurse.probe import HFBackend


class VLLMBackend:
    """Probe a model folder (or hub id) with vLLM; ``engine_options`` go to ``vllm.LLM`` as they are."""

    def __init__(self, model: str, trust_remote_code: bool = False, seed: int = 0, **engine_options: Any) -> None:
        try:
            import vllm
        except ImportError:
            raise InputError("the vLLM backend needs vllm: pip install 'revcurse[vllm]' (a GPU machine)") from None
        self.vllm = vllm
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.engine = vllm.LLM(model=model, trust_remote_code=trust_remote_code, seed=seed, **engine_options)
        self._tokens = HFBackend.__new__(HFBackend)  # only its tokenization: no torch model is loaded
        self._tokens.tokenizer = self.tokenizer
        self._tokens.prefix = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]

    def _prompts(self, sequences: list[list[int]]) -> list[Any]:
        return [self.vllm.TokensPrompt(prompt_token_ids=ids) for ids in sequences]

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        pairs = self._tokens.encode_pairs(requests)
        params = self.vllm.SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=1, detokenize=False)
        outputs = self.engine.generate(self._prompts([c + x for c, x in pairs]), params, use_tqdm=False)
        results = []
        for (context, continuation), output in zip(pairs, outputs):
            total, greedy = 0.0, True
            for token, options in zip(continuation, output.prompt_logprobs[len(context) :]):
                total += options[token].logprob
                greedy &= options[token].rank == 1
            results.append((total, greedy))
        return results

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        params = self.vllm.SamplingParams(temperature=0, max_tokens=max_new_tokens, skip_special_tokens=True)
        sequences = [self._tokens.encode(c) for c in contexts]
        outputs = self.engine.generate(self._prompts(sequences), params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]
