"""A linear probe on hidden states: does the model store a reverse fact that it cannot say?

The question (issue 18, part 4): reading a name, does the model's hidden state hold what that person's
description is, even for facts it was only ever told description-first (DescriptionToName), which it cannot
complete name-first? A greedy answer of 0 says nothing about what is stored; a linear read-out can.

Design, so that the probe learns a property shared across facts rather than memorising facts:

- label: the description's first content word (its ``role`` in the made-up world: "the *composer* of the ...",
  one of ~40), a class that many people share;
- features: the hidden state of every layer at the last token of the name, read as a name-first probe's prompt
  begins (BOS, then the name);
- fitted on facts the probe is never tested on: the background people (stated both ways), with a k-fold
  cross-validation over them (the accuracy a probe reaches where the model certainly knows the facts), then
  applied to each subset under test: NameToDescription (trained name-first), Both, and DescriptionToName (the
  reverse: never trained name-first);
- placebo: the DescriptionToName facts' labels given to names the model never saw (drawn from the same name
  pools), ``placebo_draws`` times: the share of those draws that the test calls significant is the test's
  false-positive rate, which must be near its 5% level.

Per group: accuracy (pooled over seeds and facts) with a Wilson 95% interval, the chance level (the accuracy a
read-out independent of the labels reaches with these predicted and true class frequencies), and a one-sided
permutation test (``metrics.label_accuracy_test``: labels re-paired with predictions at random; statistic the
accuracy). The layer reported as the headline is chosen on the background cross-validation alone, never on the
groups under test.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from revcurse import vocabulary
from revcurse.config import RunConfig, load_config
from revcurse.errors import InputError
from revcurse.metrics import label_accuracy_test, rejection_rate
from revcurse.records import write_record
from revcurse.world import Fact, Subset

HIDDEN_PROBE_FILE = "hidden_probe.json"
ARTICLES = {"the", "a", "an"}
FOLDS = 5
L2 = 1e-2  # weight decay of the logistic regression (on standardised features); fixed, never tuned on test facts
PERMUTATIONS = 4999
PLACEBO_PERMUTATIONS = 999
PLACEBO = "placebo: unseen names"


def description_class(description: str) -> str:
    """The class a probe predicts: the description's first word that is not an article ("composer")."""
    words = [w.strip(",.;:").lower() for w in description.split()]
    return next((w for w in words if w and w not in ARTICLES), "")


@torch.inference_mode()
def name_states(model, tokenizer, names: list[str], batch_size: int = 256) -> np.ndarray:
    """Hidden states at each name's last token, read after BOS as a name-first prompt begins:
    (layers + 1, names, hidden) with the embeddings first."""
    model.eval()
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    encoded = [bos + ids for ids in tokenizer(names, add_special_tokens=False)["input_ids"]]
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(chunk):  # right-padded: the name's last token sits at len(ids) - 1
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        hidden = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                       output_hidden_states=True).hidden_states
        last = torch.tensor([len(ids) - 1 for ids in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        out.append(torch.stack([h[rows, last].float().cpu() for h in hidden]))
    return torch.cat(out, dim=1).numpy()


def fit_logistic(features: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0):
    """Multinomial logistic regression (L-BFGS, L2 ``L2``) on standardised features; returns a predict function."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    x = torch.tensor((features - mean) / scale, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    weight = (0.01 * torch.randn(x.shape[1], classes, generator=generator, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + L2 * (weight**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()

    def predict(new: np.ndarray) -> np.ndarray:
        scores = torch.tensor((new - mean) / scale, dtype=torch.float64) @ weight + bias
        return scores.argmax(-1).numpy()

    return predict


def unseen_names(facts: list[Fact], count: int, rng: random.Random) -> list[str]:
    """``count`` names from the world's name pools that no fact of this run has (the model never read them)."""
    taken = {f.name for f in facts}
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


@dataclass
class SeedPredictions:
    """One seed's out-of-sample predictions, per layer: group -> (predicted, true) class indices."""

    seed: int
    layers: list[dict[str, tuple[np.ndarray, np.ndarray]]]
    placebo: list[list[tuple[np.ndarray, np.ndarray]]]  # per layer, per draw


def probe_seed(states_of: Callable[[list[str]], np.ndarray], facts: list[Fact], seed: int, placebo_draws: int,
               ) -> SeedPredictions:
    """Fit the probe on the background people of one seed's world and predict every group's classes;
    ``states_of(names)`` gives the names' hidden states, (layers, names, hidden) (``name_states``)."""
    background = [f for f in facts if f.subset is Subset.BACKGROUND]
    tested = {s.value: [f for f in facts if f.subset is s] for s in
              (Subset.NAME_TO_DESCRIPTION, Subset.BOTH, Subset.DESCRIPTION_TO_NAME)}
    names = sorted({description_class(f.description) for f in facts} - {""})
    index = {name: i for i, name in enumerate(names)}
    if len(background) < 2 * FOLDS or len({description_class(f.description) for f in background}) < 2:
        raise InputError(f"the hidden-state probe is fitted on the background people: at least {2 * FOLDS} with "
                         "two or more description classes are needed (world.background)")
    rng = random.Random(f"hidden-probe|{seed}")
    reverse = tested[Subset.DESCRIPTION_TO_NAME.value]
    placebo_names = [unseen_names(facts, len(reverse), rng) for _ in range(placebo_draws)]
    everyone = [f.name for f in background] + [f.name for group in tested.values() for f in group]
    everyone += [n for draw in placebo_names for n in draw]
    states = states_of(everyone)
    at = {name: i for i, name in enumerate(everyone)}
    train_y = np.array([index[description_class(f.description)] for f in background])
    order = list(range(len(background)))
    random.Random(seed).shuffle(order)
    folds = [order[k::FOLDS] for k in range(FOLDS)]
    layers, placebo = [], []
    for layer in states:
        train_x = layer[[at[f.name] for f in background]]
        cross = np.empty_like(train_y)
        for fold in folds:
            rest = np.setdiff1d(order, fold)
            cross[fold] = fit_logistic(train_x[rest], train_y[rest], len(names), seed)(train_x[fold])
        predict = fit_logistic(train_x, train_y, len(names), seed)
        groups = {"Background (5-fold cross-validation)": (cross, train_y)}
        for group, members in tested.items():
            truth = np.array([index[description_class(f.description)] for f in members])
            groups[group] = (predict(layer[[at[f.name] for f in members]]), truth)
        reverse_truth = groups[Subset.DESCRIPTION_TO_NAME.value][1]
        placebo.append([(predict(layer[[at[n] for n in draw]]), reverse_truth) for draw in placebo_names])
        layers.append(groups)
    return SeedPredictions(seed, layers, placebo)


def summarise(seeds: list[SeedPredictions], alpha: float = 0.05) -> dict:
    """Records per layer and group, the placebo's false-positive rate, and the headline layer."""
    layers = []
    for layer in range(len(seeds[0].layers)):
        groups = {group: label_accuracy_test([s.layers[layer][group] for s in seeds], PERMUTATIONS, layer)
                  for group in seeds[0].layers[layer]}
        draws = len(seeds[0].placebo[layer])
        placebo = [label_accuracy_test([s.placebo[layer][d] for s in seeds], PLACEBO_PERMUTATIONS, 1000 + d)
                   for d in range(draws)]
        rate, low, high = rejection_rate(sum(p["p_value"] < alpha for p in placebo), draws)
        groups[PLACEBO] = {
            "accuracy": float(np.mean([p["accuracy"] for p in placebo])) if placebo else math.nan,
            "chance": float(np.mean([p["chance"] for p in placebo])) if placebo else math.nan,
            "draws": draws, "false_positive_rate": rate, "fpr_ci95_low": low, "fpr_ci95_high": high, "alpha": alpha}
        layers.append({"layer": layer, "groups": groups})
    best = max(layers, key=lambda entry: entry["groups"]["Background (5-fold cross-validation)"]["accuracy"])
    return {"seeds": [s.seed for s in seeds], "headline_layer": best["layer"], "layers": layers}


def run_hidden_probe(run: Path, placebo_draws: int = 40) -> dict:
    """Probe every seed's saved model of an Experiment 1 run folder; writes ``RUN/hidden_probe.json``."""
    from revcurse.model import load_checkpoint
    from revcurse.runner import build_trial

    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise InputError("not a run folder: expected config.yaml", run)
    config: RunConfig = load_config(config_path)
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per seed
    seeds = []
    for seed in range(config.seed, config.seed + config.seeds):
        folder = run / f"seed-{seed}" / "model"
        if not (folder / "config.json").is_file():
            raise InputError("no trained model saved for this seed", folder)
        facts = build_trial(config, seed, cured=False).corpus.facts
        if not any(f.subset is Subset.BACKGROUND for f in facts):
            raise InputError(f"the hidden-state probe needs Experiment 1's people (experiment={config.experiment} "
                             "has no background facts)", config_path)
        torch.set_num_threads(config.train.threads)
        model, tokenizer = load_checkpoint(config.model.model_copy(update={"checkpoint": str(folder)}))
        states_of = functools.partial(name_states, model, tokenizer)
        seeds.append(probe_seed(states_of, facts, seed, placebo_draws))
    result = summarise(seeds)
    write_record(run / HIDDEN_PROBE_FILE, json.dumps(result, indent=1, allow_nan=False))
    return result


def hidden_probe_rows(result: dict) -> list[list[str]]:
    """Table rows (layer, group, accuracy [95% CI], chance, permutation p / false-positive rate)."""
    rows = []
    for entry in result["layers"]:
        mark = " (headline)" if entry["layer"] == result["headline_layer"] else ""
        for group, r in entry["groups"].items():
            if group == PLACEBO:
                test = (f"false positives {r['false_positive_rate']:.2f} [{r['fpr_ci95_low']:.2f}, "
                        f"{r['fpr_ci95_high']:.2f}] of {r['draws']} draws at p<{r['alpha']}")
                rows.append([f"{entry['layer']}{mark}", group, f"{r['accuracy']:.3f} (mean)", f"{r['chance']:.3f}",
                             test])
            else:
                rows.append([f"{entry['layer']}{mark}", group,
                             f"{r['accuracy']:.3f} [{r['ci95_low']:.3f}, {r['ci95_high']:.3f}] n={r['n_items']}",
                             f"{r['chance']:.3f}", f"p={r['p_value']:.4f}"])
    return rows
