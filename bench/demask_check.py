"""Did masked fine-tuning teach reverse recall in context, even where the bare reverse probe fails?

    PYTHONPATH=src .venv/bin/python bench/demask_check.py runs/cheap-data [--arm masked-finetune]

For each finished seed of one arm of a comparison folder (finished or still running), every held-out probe of
a trained direction (a NameToDescription fact asked name->description, a DescriptionToName fact asked
description->name) is turned back into its statement (prompt + target), the FIRST entity of that statement (the
one the model would have to recall from the second: the reverse of the text's order) is replaced by ``[MASK]``
words, and the model is asked, in the training format ``<masked> Unmasked:``, to write the statement back.
Correct: the greedy continuation reproduces the statement up to and including the masked entity. Held-out
phrasings, so no masked copy of this very text was trained on. Printed beside it: the same facts' reverse
accuracy from the run's own probes (metrics.json), so the two read as "in context" vs "from memory".
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
from revcurse.cures import MASK_WORD, UNMASK_CUE
from revcurse.runner import build_trial
from revcurse.world import Direction, Subset

CHECKED = {Subset.NAME_TO_DESCRIPTION: Direction.NAME_TO_DESCRIPTION,
           Subset.DESCRIPTION_TO_NAME: Direction.DESCRIPTION_TO_NAME}


def mask_entity(text: str, entity: str) -> str:
    """``text`` with the words of ``entity`` (its first occurrence) each replaced by the mask word."""
    start = text.index(entity)
    return text[:start] + " ".join(MASK_WORD for _ in entity.split(" ")) + text[start + len(entity):]


def check_seed(folder: Path, config, seed: int) -> dict[str, float]:
    trial = build_trial(config, seed)
    description = {f.name: f.description for f in trial.corpus.facts}
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    model = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    scores: dict[str, list[bool]] = {}
    for probe in trial.corpus.probes:
        if CHECKED.get(probe.subset) != probe.asked or not probe.trained:
            continue
        statement = probe.prompt + probe.target
        first = probe.fact_key if probe.subset is Subset.NAME_TO_DESCRIPTION else description[probe.fact_key]
        expected = " " + statement[: statement.index(first) + len(first)]
        prompt = f"{mask_entity(statement, first)} {UNMASK_CUE}"
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
        wanted = len(tokenizer(expected, add_special_tokens=False)["input_ids"]) + 2
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=wanted, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        scores.setdefault(probe.subset.value, []).append(text.startswith(expected))
    return {subset: fmean(hits) for subset, hits in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a compare folder (or its .NAME.partial staging folder)")
    parser.add_argument("--arm", default="masked-finetune")
    args = parser.parse_args()
    config = arm_config(load_config(args.folder / "config.yaml"), args.arm)
    for seed_folder in sorted((args.folder / f"cure-{args.arm}").glob("seed-*")):
        if not (seed_folder / "metrics.json").is_file():
            continue
        seed = json.loads((seed_folder / "outcome.json").read_text())["stats"]["seed"]
        in_context = check_seed(seed_folder, config, seed)
        reverse = {r["subset"]: r["mean"] for r in json.loads((seed_folder / "metrics.json").read_text())
                   if r["metric"] == "accuracy" and not r["trained"] and r["subset"] in in_context}
        for subset, hit in in_context.items():
            print(f"seed {seed} {subset}: demasking the first entity in context {hit:.2f}; "
                  f"reverse probe from memory {reverse.get(subset, float('nan')):.2f}")


if __name__ == "__main__":
    main()
