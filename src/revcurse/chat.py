"""Chat rendering: facts and probes as conversations, for instruct models fine-tuned the way they are used.

With ``model.chat: true`` each training document becomes a user turn (the text before the second entity) and an
assistant turn (the rest), rendered by the checkpoint's own chat template; a document with no such split (a
reversed cure copy) becomes one user turn. Each probe becomes a user turn plus the template's generation prompt,
and its target the assistant's answer (leading space dropped: an answer does not start with one). The split
keeps its meaning: ``prompt_chars`` still marks where the completion starts, for completion-only loss.
"""

from __future__ import annotations

from dataclasses import replace

from transformers import PreTrainedTokenizerBase

from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError


def render_as_chat(corpus: Corpus, tokenizer: PreTrainedTokenizerBase) -> Corpus:
    """The corpus with every document and probe rendered by ``tokenizer``'s chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("model.chat is set, but this tokenizer has no chat template (tokenizer_config.json)")
    return replace(
        corpus,
        documents=[_document(d, tokenizer) for d in corpus.documents],
        probes=[_probe(p, tokenizer) for p in corpus.probes],
    )


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _document(document: Document, tokenizer: PreTrainedTokenizerBase) -> Document:
    if document.prompt_chars == 0:
        return replace(document, text=_render(tokenizer, [{"role": "user", "content": document.text}]))
    question = {"role": "user", "content": document.text[: document.prompt_chars].strip()}
    answer = {"role": "assistant", "content": document.text[document.prompt_chars :].strip()}
    text = _render(tokenizer, [question, answer])
    prompt = _render(tokenizer, [question], generation_prompt=True)
    return replace(document, text=text, prompt_chars=len(prompt) if text.startswith(prompt) else 0)


def _probe(probe: Probe, tokenizer: PreTrainedTokenizerBase) -> Probe:
    prompt = _render(tokenizer, [{"role": "user", "content": probe.prompt.strip()}], generation_prompt=True)
    return replace(probe, prompt=prompt, target=probe.target.lstrip())
