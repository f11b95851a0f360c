"""Does a trained bios model say the name from its own training context, and from the birth date alone?

``name_position=late`` models only: for each person under test, greedy-complete (a) its first training biography
up to the name, and (b) only the birth-date sentence followed by the opening of the name sentence ("His name
is"), the training-language form of inverse search by date.
``reversed`` (name-first runs): the entity-reversed date sentence cut before the name ("<date>. on born was"),
inverse search in the language ``reverse-entity`` trains on.
Usage: python bench/bios_in_context.py RUN_FOLDER/cure-none/seed-0 late|reversed
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from revcurse.config import load_config
from revcurse.cures import reverse_entities
from revcurse.runner import build_trial


def greedy(model, tokenizer, prompt: str, tokens: int = 6) -> str:
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = torch.tensor([ids + tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id or 0)
    return tokenizer.decode(out[0, ids.shape[1] :])


def main(seed_folder: str, position: str = "first") -> None:
    folder = Path(seed_folder)
    seed = int(folder.name.split("-")[1])
    model = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    names = ["experiment=bios", f"bios.name_position={'first' if position == 'reversed' else position}"]
    corpus = build_trial(load_config(None, names), seed, False).corpus
    if position == "reversed":
        return reversed_language(model, tokenizer, corpus)
    hits = {"name after the whole training biography": 0, "name after the date sentence alone": 0}
    people = {}
    for document in corpus.documents:
        if document.subset == "bios" and document.fact_key not in people:
            people[document.fact_key] = document
    for name, document in people.items():
        context = document.text[: document.text.rindex(name)].rstrip()
        hits["name after the whole training biography"] += greedy(model, tokenizer, context).strip().startswith(name)
        sentences = context.split(". ")
        date_sentence = next(s for s in sentences if document.entities[1] in s).rstrip(".")
        short = f"{date_sentence}. {sentences[-1]}"
        hits["name after the date sentence alone"] += greedy(model, tokenizer, short).strip().startswith(name)
    print(json.dumps({k: f"{v}/{len(people)}" for k, v in hits.items()}), seed_folder, position)


def reversed_language(model, tokenizer, corpus) -> None:
    """Inverse search in the language reverse-entity trains on: "<date>. on born was" -> the name?"""
    hits, people = 0, {}
    for document in corpus.documents:
        if document.subset == "bios" and document.fact_key not in people:
            people[document.fact_key] = document
    for name, document in people.items():
        date_sentence = next(s for s in document.text.split(". ") if document.entities[1] in s).rstrip(".") + "."
        prompt = reverse_entities(date_sentence, document.entities).removesuffix(name).rstrip()
        hits += greedy(model, tokenizer, prompt).strip().startswith(name)
    print(json.dumps({"name after the entity-reversed date sentence": f"{hits}/{len(people)}"}))


if __name__ == "__main__":
    main(*sys.argv[1:])
