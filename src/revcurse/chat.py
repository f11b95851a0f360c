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


PLAIN_RENDERING = "plain 'System: / User: / Assistant:' text (no chat template)"
TEMPLATE_RENDERING = "the tokenizer's chat template"


def render_conversations(corpus: Corpus, tokenizer: PreTrainedTokenizerBase | None) -> tuple[Corpus, str]:
    """The corpus with each probe that carries ``messages`` asked as one text, and how it was rendered.

    With a chat template: the template's generation prompt, a leading BOS text removed (backends add BOS
    themselves; two would be a prompt the model never saw), and a system turn folded into the first user turn
    when the template refuses one. Without: plain ``System: / User: / Assistant:`` lines. The target loses its
    leading space when the rendered prompt ends in whitespace (a template's ``<|assistant|>\\n``).
    """
    if not any(p.messages for p in corpus.probes):
        return corpus, ""
    templated = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    probes = []
    for probe in corpus.probes:
        if probe.messages:
            messages = [{"role": role, "content": content} for role, content in probe.messages]
            text = _template_prompt(tokenizer, messages) if templated else render_plain(messages)
            target = probe.target.lstrip() if text[-1:].isspace() else probe.target
            probe = replace(probe, prompt=text, target=target, messages=())
        probes.append(probe)
    return replace(corpus, probes=probes), TEMPLATE_RENDERING if templated else PLAIN_RENDERING


def render_plain(messages: list[dict]) -> str:
    """Chat as text for a model without a chat template; the answer follows ``Assistant:``."""
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\nAssistant:"


def _template_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> str:
    try:
        text = _render(tokenizer, messages, generation_prompt=True)
    except Exception as error:  # jinja raises its own TemplateError from the template's raise_exception
        if messages[0]["role"] != "system" or "system" not in str(error).lower() or len(messages) < 2:
            raise
        folded = {"role": messages[1]["role"], "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
        text = _render(tokenizer, [folded, *messages[2:]], generation_prompt=True)
    bos = getattr(tokenizer, "bos_token", None)
    return text[len(bos) :] if bos and text.startswith(bos) else text
