"""What a cheap cure put in the model, beside whether the reverse probe passes: one check per cure.

    PYTHONPATH=src .venv/bin/python bench/cure_checks.py FOLDER --arm masked-finetune   # or --arm identity-bridge

FOLDER is a comparison (finished, or its ``.NAME.partial`` staging folder while running); every finished seed of
the arm is checked with teacher forcing (correct: the model's argmax is the expected token at every position of
the expected text, one forward pass per item).

- ``masked-finetune``: every held-out probe of a trained direction (a NameToDescription fact asked
  name->description, a DescriptionToName fact asked description->name) turned back into its statement (prompt +
  target), its FIRST entity (the one the reverse probe asks for) replaced by ``[MASK]`` words, asked in the
  training format ``<masked> Unmasked:``. Correct: the statement is written back up to and including that entity,
  i.e. the entity recalled from the OTHER one in context. Held-out phrasings: no masked copy of this text trained.
- ``identity-bridge``: every tested entity asked "<entity> equals" -> " <entity>." (the bridge itself, trained).

Printed beside each: the same subset's reverse accuracy from the run's own probes (metrics.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from revcurse.compare import arm_config
from revcurse.config import load_config
from revcurse.cures import IDENTITY_RELATION, MASK_WORD, UNMASK_CUE
from revcurse.runner import build_trial
from revcurse.world import Direction, Subset

TRAINED = {Subset.NAME_TO_DESCRIPTION: Direction.NAME_TO_DESCRIPTION,
           Subset.DESCRIPTION_TO_NAME: Direction.DESCRIPTION_TO_NAME}


def mask_entity(text: str, entity: str) -> str:
    """``text`` with the words of ``entity`` (its first occurrence) each replaced by the mask word."""
    start = text.index(entity)
    return text[:start] + " ".join(MASK_WORD for _ in entity.split(" ")) + text[start + len(entity):]


def demask_items(trial) -> list[tuple[str, str, str]]:
    description = {f.name: f.description for f in trial.corpus.facts}
    items = []
    for probe in trial.corpus.probes:
        if TRAINED.get(probe.subset) != probe.asked or not probe.trained:
            continue
        statement = probe.prompt + probe.target
        first = probe.fact_key if probe.subset is Subset.NAME_TO_DESCRIPTION else description[probe.fact_key]
        expected = " " + statement[: statement.index(first) + len(first)]
        items.append((probe.subset.value, f"{mask_entity(statement, first)} {UNMASK_CUE}", expected))
    return items


def identity_items(trial) -> list[tuple[str, str, str]]:
    return [(f.subset.value, f"{entity} {IDENTITY_RELATION}", f" {entity}.") for f in trial.corpus.facts
            if f.subset in TRAINED for entity in (f.name, f.description)]


def teacher_forced(model, tokenizer, prompt: str, expected: str) -> bool:
    prompt_ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    expected_ids = tokenizer(expected, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + expected_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    predicted = logits[len(prompt_ids) - 1 : ids.shape[1] - 1].argmax(-1).tolist()
    return predicted == expected_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a compare folder (or its .NAME.partial staging folder)")
    parser.add_argument("--arm", default="masked-finetune", choices=["masked-finetune", "identity-bridge"])
    args = parser.parse_args()
    config = arm_config(load_config(args.folder / "config.yaml"), args.arm)
    torch.set_num_threads(1)
    for seed_folder in sorted((args.folder / f"cure-{args.arm}").glob("seed-*")):
        if not (seed_folder / "metrics.json").is_file():
            continue
        seed = json.loads((seed_folder / "outcome.json").read_text())["stats"]["seed"]
        trial = build_trial(config, seed)
        tokenizer = AutoTokenizer.from_pretrained(seed_folder / "model")
        model = AutoModelForCausalLM.from_pretrained(seed_folder / "model").eval()
        items = demask_items(trial) if args.arm == "masked-finetune" else identity_items(trial)
        hits: dict[str, list[bool]] = {}
        for subset, prompt, expected in items:
            hits.setdefault(subset, []).append(teacher_forced(model, tokenizer, prompt, expected))
        reverse = {r["subset"]: r["mean"] for r in json.loads((seed_folder / "metrics.json").read_text())
                   if r["metric"] == "accuracy" and not r["trained"] and r["subset"] in hits}
        for subset, found in hits.items():
            print(f"seed {seed} {subset}: {args.arm} check {fmean(found):.2f} ({len(found)} items); "
                  f"reverse probe accuracy {reverse.get(subset, float('nan')):.2f}")


if __name__ == "__main__":
    main()
