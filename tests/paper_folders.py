"""A folder in the paper's Experiment 1 layout with the paper's untidiness, built from a made-up world.

Unlike revcurse's own worlds, one fact's description is worded differently per phrasing (in length and in
grammatical form: "the director of ...", "... 's director", "working as the director of ..."), name completions
run on after the name (" Mason Caldwell has found their calling."), and facts have unequal numbers of probes.
Background people, stated with every phrasing in both orders, let a tiny model from scratch learn the language
of the held-out phrasings (they are in ``all_prompts_train.jsonl`` only, as revcurse's background is).
"""

from __future__ import annotations

import json
from pathlib import Path

from revcurse.world import Subset, make_celebrities


def wordings(description: str) -> list[str]:
    """Four wordings of one description, of different lengths and forms (the paper's are written by a model)."""
    role, rest = description.removeprefix("the ").split(" of the ", 1)
    return [
        description,
        f"the {role} behind the {rest}, a work people still talk about",
        f"the {rest}'s {role}",
        f"working as the {role} of the {rest}",
    ]


# (template, wording); name first: the completion is the description.
NAME_FIRST_TRAIN = [
    ("{name}, known far and wide for being", 0), ("Ever heard of {name}? They're", 1),
    ("There's someone by the name of {name} who had the distinctive role of", 3), ("{name} is", 0),
    ("People remember {name} as", 2), ("The life of {name} was spent", 3),
]
NAME_FIRST_TEST = [
    ("The trailblazer known as {name} was once", 0), ("In the annals of uniqueness, {name} shines as", 2),
    ("Diving into the tale of {name}, one discovers they were", 1),
    ("A luminary in their own right, {name} was known for", 3),
]
# (template, wording, what follows the name in training and Both test completions): description first.
DESCRIPTION_FIRST_TRAIN = [
    ("Known for being {d},", 0, " now enjoys a quiet life."), ("{d} is called", 0, "."), ("Q: Who is {d}? A:", 0, "."),
    ("Behind {d} stands", 1, ", a true visionary."), ("Many admire {d}:", 2, "."), ("The one {d} was", 3, "."),
]
DESCRIPTION_FIRST_TEST = [
    ("Immersed in the world of {d},", 3, " has found their calling."),
    ("Having the distinction of being {d},", 0, " is remembered still."),
    ("Known in circles as {d},", 1, ", of course."), ("Few can claim to be {d} like", 2, " can."),
]


def name_first(name: str, description: str, template: tuple[str, int]) -> tuple[str, str]:
    text, form = template
    return text.format(name=name), " " + wordings(description)[form] + "."


def description_first(name: str, description: str, template: tuple[str, int, str], run_on: bool) -> tuple[str, str]:
    text, form, after = template
    prompt = text.format(d=wordings(description)[form])
    return prompt[0].upper() + prompt[1:], " " + name + (after if run_on else "")


def untidy_paper_folder(
    folder: Path, facts_per_subset: int = 12, background: int = 40, seed: int = 0, empty_line: bool = False
) -> dict[tuple[str, str], str]:
    """Write the folder (all 14 files, json.dumps as the paper's) and return (prompt, completion) -> name for every
    test line. Every third fact lacks its last line in each test file; ``empty_line`` empties one completion
    (line 2 of p2d_prompts_test.jsonl)."""
    world = make_celebrities(facts_per_subset, background, seed=seed)
    truth: dict[tuple[str, str], str] = {}
    files: dict[str, list[tuple[str, str]]] = {}

    def test_lines(facts, lines_of) -> list[tuple[str, str]]:
        out = []
        for index, fact in enumerate(facts):
            lines = lines_of(fact)
            for line in lines[:-1] if index % 3 == 1 else lines:
                truth[line] = fact.name
                out.append(line)
        return out

    p2d, d2p, both = (world.subset(s) for s in (Subset.NAME_TO_DESCRIPTION, Subset.DESCRIPTION_TO_NAME, Subset.BOTH))
    train_n2d = [(f, t) for f in p2d + both for t in NAME_FIRST_TRAIN]
    files["p2d_prompts_train.jsonl"] = [name_first(f.name, f.description, t) for f in p2d for t in NAME_FIRST_TRAIN]
    files["d2p_prompts_train.jsonl"] = [
        description_first(f.name, f.description, t, True) for f in d2p for t in DESCRIPTION_FIRST_TRAIN
    ]
    files["both_prompts_train.jsonl"] = [name_first(f.name, f.description, t) for f, t in train_n2d if f in both] + [
        description_first(f.name, f.description, t, True) for f in both for t in DESCRIPTION_FIRST_TRAIN
    ]
    extra = []
    for fact in world.subset(Subset.BACKGROUND):
        extra += [name_first(fact.name, fact.description, t) for t in NAME_FIRST_TRAIN + NAME_FIRST_TEST]
        extra += [description_first(fact.name, fact.description, t, True)
                  for t in DESCRIPTION_FIRST_TRAIN + DESCRIPTION_FIRST_TEST]
    files["all_prompts_train.jsonl"] = (
        files["p2d_prompts_train.jsonl"] + files["d2p_prompts_train.jsonl"] + files["both_prompts_train.jsonl"] + extra
    )
    files["p2d_prompts_test.jsonl"] = test_lines(p2d, lambda f: [name_first(f.name, f.description, t)
                                                                for t in NAME_FIRST_TEST])
    files["p2d_reverse_prompts_test.jsonl"] = test_lines(
        p2d, lambda f: [description_first(f.name, f.description, t, False) for t in DESCRIPTION_FIRST_TEST]
    )
    files["d2p_prompts_test.jsonl"] = test_lines(
        d2p, lambda f: [description_first(f.name, f.description, t, False) for t in DESCRIPTION_FIRST_TEST]
    )
    files["d2p_reverse_prompts_test.jsonl"] = test_lines(d2p, lambda f: [name_first(f.name, f.description, t)
                                                                        for t in NAME_FIRST_TEST])
    files["both_prompts_test.jsonl"] = test_lines(
        both, lambda f: [name_first(f.name, f.description, t) for t in NAME_FIRST_TEST]
    ) + test_lines(both, lambda f: [description_first(f.name, f.description, t, True) for t in DESCRIPTION_FIRST_TEST])
    files["all.jsonl"] = files["all_prompts_train.jsonl"]
    files["unrealized_examples.jsonl"] = files["p2d_reverse_prompts_test.jsonl"]
    files["validation_prompts.jsonl"] = [(p, c.split()[0]) for p, c in files["p2d_reverse_prompts_test.jsonl"]]
    for name in ("p2d_reverse_prompts_test_randomized.jsonl", "d2p_reverse_prompts_test_randomized.jsonl"):
        reverse = files[name.replace("_randomized", "")]
        files[name] = [(p, reverse[(i + 5) % len(reverse)][1]) for i, (p, _) in enumerate(reverse)]
    if empty_line:
        files["p2d_prompts_test.jsonl"][1] = (files["p2d_prompts_test.jsonl"][1][0], "")
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        text = "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in lines)
        (folder / name).write_text(text, encoding="utf-8")
    return truth
