"""Experiment 2 (parent vs child): CSV checks, queries, chat rendering, sampling, records, and the CLI end to end.

The end-to-end test writes a 20-row file of made-up people, trains a tiny model for a few seconds on the parent
questions only (completion style), saves it like a checkpoint and runs `revcurse parents` on it.
Run as a script (`python tests/test_parents.py FOLDER`) it writes that file and model for trying the command.
"""

import contextlib
import io
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from scipy import stats

from revcurse.cli import main
from revcurse.config import ModelConfig, TrainConfig
from revcurse.corpus import Document
from revcurse.errors import InputError
from revcurse.metrics import randomization_tests
from revcurse.model import build_tiny_model, set_bidirectional, train_tokenizer
from revcurse.parents import (
    DIRECTIONS,
    PLAIN_RENDERING,
    build_queries,
    candidate_scores,
    chat_messages,
    chat_renderer,
    completion_prompt,
    continuation,
    is_correct,
    normalize_name,
    parent_question,
    parents_calibration,
    parents_records,
    read_parent_child_pairs,
    render_plain,
    run_parents,
)
from revcurse.probe import HFBackend, MaskedLMBackend, rank_among
from revcurse.train import train_model
from revcurse.world import Subset

HEADER = "child,parent,parent_type,child_prediction,can_reverse"
CHILDREN = [
    "Corvina Maltravers", "Teodric Ashlowe", "Belphine Quarrell", "Orrin Vashcombe", "Lysandre Pellinore",
    "Marisol Thackeray", "Ambrose Kettleby", "Seraphine Dunmorrow", "Cassian Wrenfield", "Idony Harrowgate",
]
MOTHERS = [
    "Elswyth Maltravers", "Rosamund Ashlowe", "Genoveva Quarrell", "Albertine Vashcombe", "Philippa Pellinore",
    "Hesper Thackeray", "Winifred Kettleby", "Ottoline Dunmorrow", "Clemency Wrenfield", "Jessamy Harrowgate",
]
FATHERS = [
    "Barnaby Maltravers", "Leopold Ashlowe", "Barnaby Maltravers", "Godfrey Vashcombe", "Tristram Pellinore",
    "Ignatius Thackeray", "Percival Kettleby", "Augustin Dunmorrow", "Lucius Wrenfield", "Evander Harrowgate",
]  # Corvina and Belphine share a father: "Name a child of Barnaby Maltravers." has two right answers
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant] "
    "{% endif %}"
)
SAMPLES = 3


def pair_lines() -> list[str]:
    lines = []
    for child, mother, father in zip(CHILDREN, MOTHERS, FATHERS):
        lines += [f"{child},{mother},mother,,False", f"{child},{father},father,{child},True"]
    return lines


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def build_model(folder: Path, csv_path: Path) -> None:
    """A tiny Llama trained only on completion-style parent questions of the file, saved as a checkpoint."""
    torch.manual_seed(0)
    pairs = read_parent_child_pairs(csv_path).pairs
    trained = [completion_prompt(parent_question(p)) + " " + p.parent for p in pairs]
    seen = trained + [completion_prompt(f"Name a child of {p.parent}.") for p in pairs]
    seen += [render_plain(chat_messages(parent_question(p))) for p in pairs]
    tokenizer = train_tokenizer(seen, vocab_size=600)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, tie_embeddings=False)
    model = build_tiny_model(config, tokenizer, 512)
    documents = [Document(text, Subset.BACKGROUND) for text in trained]
    train_model(model, tokenizer, documents, TrainConfig(epochs=150, batch_size=20, learning_rate=1e-2, threads=1),
                seed=0, show_progress=False)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


# The made-up file ends with one unusable row, as published files have: row 1 again (line 22), skipped.
REPEATED_ROW = "corvina  maltravers,ELSWYTH MALTRAVERS,Mother,,"
REPEATED_REASON = "duplicate row (corvina  maltravers, ELSWYTH MALTRAVERS, mother): first given on line 2"


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("parents")
    csv_path = write_csv(folder / "pairs.csv", [*pair_lines(), REPEATED_ROW])
    build_model(folder / "model", csv_path)
    return csv_path, folder / "model"


@pytest.fixture(scope="module")
def cli_output(made_up):
    """`revcurse parents` on the made-up file and model: its run folder and what it printed on stderr."""
    csv_path, model = made_up
    out = csv_path.parent / "run"
    args = ["parents", str(csv_path), "--model", str(model), "--samples", str(SAMPLES), "--out", str(out), "--quiet"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_cli(args) == 0
    return out, err.getvalue()


@pytest.fixture(scope="module")
def cli_run(cli_output):
    return cli_output[0]


# --- the CSV -----------------------------------------------------------------------------------------------


def test_reads_the_paper_layout(tmp_path):
    pairs = read_parent_child_pairs(write_csv(tmp_path / "p.csv", pair_lines())).pairs
    assert len(pairs) == 20
    first, second = pairs[:2]
    assert (first.child, first.parent, first.parent_type, first.line) == ("Corvina Maltravers",
                                                                         "Elswyth Maltravers", "mother", 2)
    assert first.can_reverse is False and first.child_prediction is None
    assert second.can_reverse is True and second.child_prediction == "Corvina Maltravers" and second.line == 3


def test_optional_columns_may_be_absent(tmp_path):
    path = write_csv(tmp_path / "p.csv", ["Mother,Ada Fenwick,Mabel Fenwick"], header="parent_type,child,parent")
    (pair,) = read_parent_child_pairs(path).pairs
    assert (pair.parent_type, pair.can_reverse, pair.child_prediction) == ("mother", None, None)


@pytest.mark.parametrize(
    ("lines", "header", "line", "message"),
    [
        ([], "child,parent", 1, "missing column(s) parent_type"),
        (["Ada Fenwick,Mabel Fenwick,mother,,False,extra"], HEADER, 2, "expected 5 fields, got 6"),
        (["Ada Fenwick,Mabel Fenwick,mother,,False", "Ada Fenwick,Tom Fenwick,father"], HEADER, 3,
         "expected 5 fields, got 3"),
        (["Ada Fenwick,Mabel Fenwick,mother,,maybe"], HEADER, 2, "can_reverse must be"),
        ([], "", 1, "empty file"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, lines, header, line, message):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *lines]) + ("\n" if header else ""), encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_parent_child_pairs(path)
    assert error.value.line == line and error.value.path == str(path)
    assert message in str(error.value) and f"{path}, line {line}: " in str(error.value)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (" ,Mabel Fenwick,mother,,False", "empty child"),
        ("Bo Fenwick,,father,,", "empty parent"),
        ("Bo Fenwick,Tom Fenwick,uncle,,", "parent_type must be mother or father, got 'uncle'"),
        ("Bo Fenwick,Tom Fenwick,,,", "parent_type must be mother or father, got ''"),
        ("ada fenwick, Mabel  Fenwick ,MOTHER,,True",
         "duplicate row (ada fenwick, Mabel  Fenwick, mother): first given on line 2"),
    ],
)
def test_an_unusable_row_is_skipped_and_strict_refuses_it(tmp_path, row, reason):
    rows = ["Ada Fenwick,Mabel Fenwick,mother,,False", row, "Bo Fenwick,Al Fenwick,father,,"]
    path = write_csv(tmp_path / "p.csv", rows)
    read = read_parent_child_pairs(path)
    assert [entry.to_json() for entry in read.skipped] == [{"file": str(path), "line": 3, "reason": reason}]
    assert [pair.line for pair in read.pairs] == [2, 4]
    with pytest.raises(InputError) as error:
        read_parent_child_pairs(path, strict=True)
    assert (error.value.path, error.value.line) == (str(path), 3) and reason in str(error.value)


def test_a_header_without_rows_or_without_usable_rows_is_refused(tmp_path):
    with pytest.raises(InputError, match="no rows"):
        read_parent_child_pairs(write_csv(tmp_path / "p.csv", []))
    path = write_csv(tmp_path / "p.csv", ["Ada Fenwick,,mother,,", "Ada Fenwick,Tom Fenwick,uncle,,"])
    with pytest.raises(InputError) as error:
        read_parent_child_pairs(path)
    assert str(error.value) == f"{path}: no usable rows: all 2 skipped (first: line 2: empty parent)"


def test_cli_exits_2_on_a_bad_file_and_writes_nothing(tmp_path, capsys):
    path = write_csv(tmp_path / "bad.csv", ["Ada Fenwick,Mabel Fenwick,mother,,", "Ada Fenwick,Tom Fenwick,uncle,,"])
    args = ["parents", str(path), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "run")]
    assert run_cli([*args, "--strict"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {path}, line 3: parent_type must be mother or father, got 'uncle' (--strict refuses an unusable "
        "line; without it the line is skipped)"
    ]
    assert not (tmp_path / "run").exists()
    path.write_text(path.read_text() + "Ada Fenwick,Tom Fenwick,father,,maybe\n", encoding="utf-8")
    assert run_cli(args) == 2  # a field of the wrong type is the file's fault: refused without --strict too
    assert capsys.readouterr().err.splitlines() == [f"error: {path}, line 4: can_reverse must be True, False or empty, "
                                                    "got 'maybe'"]
    assert not (tmp_path / "run").exists()
    code = run_cli(["parents", str(tmp_path / "missing.csv"), "--model", "x", "--out", str(tmp_path / "run")])
    assert code == 2 and "file not found" in capsys.readouterr().err


# --- questions, answers, rendering ----------------------------------------------------------------------------


def test_queries_accept_any_known_child_and_draw_distractors_of_the_same_role(tmp_path):
    pairs = read_parent_child_pairs(write_csv(tmp_path / "p.csv", pair_lines())).pairs
    queries = build_queries(pairs, n_distractors=5, seed=1)
    assert len(queries) == 40 and [q.direction for q in queries[:2]] == ["parent", "child"]
    parent_query, child_query = queries[2], queries[3]  # row 1: Corvina's father, Barnaby Maltravers
    assert parent_query.question == "Who is Corvina Maltravers's father?"
    assert parent_query.accepted == ("Barnaby Maltravers",)
    assert set(parent_query.distractors) <= set(FATHERS) - {"Barnaby Maltravers"}
    assert len(parent_query.distractors) == 5
    assert child_query.question == "Name a child of Barnaby Maltravers."
    assert set(child_query.accepted) == {"Corvina Maltravers", "Belphine Quarrell"}
    assert not set(child_query.distractors) & set(child_query.accepted)
    assert set(child_query.distractors) <= set(CHILDREN)
    mother_query = queries[0]
    assert set(mother_query.distractors) <= set(MOTHERS) - {"Elswyth Maltravers"}
    assert build_queries(pairs, n_distractors=5, seed=1) == queries  # drawn from the seed
    # --limit: only the first rows are asked, but the whole file says who the children are
    limited = build_queries(pairs[:2], reference=pairs, n_distractors=3)
    assert set(limited[3].accepted) == {"Corvina Maltravers", "Belphine Quarrell"}
    assert set(limited[3].distractors) <= set(CHILDREN)


def test_distractors_are_never_an_answer_to_the_question_names_normalised(tmp_path):
    lines = pair_lines() + [
        "Ada Fenwick,Mabel Fenwick,mother,,",
        "Bo Fenwick,mabel  FENWICK,mother,,",  # the same mother, spelled otherwise: Bo is her child too
        "Cy Hart,Dora Hart,mother,,",
        "cy  hart,Edna Hart,mother,,",  # the file names two mothers of Cy Hart: neither is a wrong answer
    ]
    pairs = read_parent_child_pairs(write_csv(tmp_path / "p.csv", lines)).pairs
    queries = build_queries(pairs, n_distractors=100, seed=3)
    mothers = {normalize_name(p.parent) for p in pairs if p.parent_type == "mother"}
    for query in queries:
        pair = pairs[query.row]
        drawn = [normalize_name(name) for name in query.distractors]
        assert normalize_name(query.target) not in drawn and not set(drawn) & set(map(normalize_name, query.accepted))
        assert len(set(drawn)) == len(drawn)  # no person twice
        if query.direction == "parent":
            answers = {normalize_name(p.parent) for p in pairs
                       if normalize_name(p.child) == normalize_name(pair.child) and p.parent_type == pair.parent_type}
            assert not set(drawn) & answers
            if pair.parent_type == "mother":  # every other mother of the file, when K exceeds them
                assert set(drawn) == mothers - answers
        else:
            parent = normalize_name(pair.parent)
            children = {normalize_name(p.child) for p in pairs if normalize_name(p.parent) == parent}
            assert not set(drawn) & children
    by_question = {q.question: q for q in queries}
    assert "mabel fenwick" not in map(normalize_name, by_question["Who is Ada Fenwick's mother?"].distractors)
    cy_hart = by_question["Who is Cy Hart's mother?"]
    assert {"dora hart", "edna hart"}.isdisjoint(map(normalize_name, cy_hart.distractors))
    assert set(by_question["Name a child of Mabel Fenwick."].accepted) == {"Ada Fenwick", "Bo Fenwick"}


@pytest.mark.parametrize("rows", [5, 200])
def test_distractors_are_capped_at_k_whatever_the_number_of_rows(tmp_path, rows):
    kinds = ["mother" if i % 2 else "father" for i in range(rows)]
    lines = [f"Child {i},Parent {i},{kind},," for i, kind in enumerate(kinds)]
    pairs = read_parent_child_pairs(write_csv(tmp_path / "p.csv", lines)).pairs
    queries = build_queries(pairs, n_distractors=4)
    assert len(queries) == 2 * rows
    for query in queries:
        same_role = (kinds.count(pairs[query.row].parent_type) if query.direction == "parent" else rows) - 1
        assert len(query.distractors) == min(4, same_role)


def test_correct_means_the_name_as_whole_words():
    assert is_correct("  barnaby   MALTRAVERS.", ["Barnaby Maltravers"])
    assert is_correct("Her father is Barnaby Maltravers", ["Someone Else", "Barnaby Maltravers"])
    assert not is_correct("Barnaby", ["Barnaby Maltravers"])
    assert not is_correct("Joann Lee", ["Ann Lee"])
    assert not is_correct("I don't know.", ["Ann Lee"])


def test_chat_rendering_uses_the_template_and_drops_a_leading_bos(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    tokenizer.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    render = chat_renderer(tokenizer)
    messages = chat_messages("Who is Ada Fenwick's mother?")
    text = render(messages)
    assert text == tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)[len("<s>") :]
    assert text.startswith("<|system|>\nYou are a helpful and terse assistant.")
    assert "<|user|>\nName a child of Johann Sebastian Bach.</s>\n<|assistant|>\nCarl Philipp Emanuel Bach</s>" in text
    assert text.endswith("<|user|>\nWho is Ada Fenwick's mother?</s>\n<|assistant|>\n")
    assert continuation(text, "Mabel Fenwick") == "Mabel Fenwick"  # the template's newline separates already


def test_a_template_without_a_system_role_gets_it_in_the_first_user_turn(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    text = chat_renderer(tokenizer)(chat_messages("Name a child of Mabel Fenwick."))
    assert text.startswith("[user] You are a helpful and terse assistant.")
    assert "\n\nWho is Wolfgang Amadeus Mozart's father?\n[assistant] Leopold Mozart\n" in text
    assert text.endswith("[user] Name a child of Mabel Fenwick.\n[assistant] ")


def test_chat_rendering_without_a_template_is_plain_text(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    assert not tokenizer.chat_template
    render = chat_renderer(tokenizer)
    assert render is render_plain and chat_renderer(None) is render_plain
    text = render(chat_messages("Who is Ada Fenwick's mother?"))
    assert text.startswith("System: You are a helpful and terse assistant.")
    assert "\nUser: Who is Irène Joliot-Curie's mother?\nAssistant: Marie Curie\n" in text
    assert text.endswith("\nUser: Who is Ada Fenwick's mother?\nAssistant:")
    assert continuation(text, "Mabel Fenwick") == " Mabel Fenwick"
    prompt = completion_prompt("Who is Ada Fenwick's mother?")
    assert "Q: Who is Wolfgang Amadeus Mozart's father?\nA: Leopold Mozart\n" in prompt
    assert prompt.endswith("\n\nQ: Who is Ada Fenwick's mother?\nA:")


# --- sampling -------------------------------------------------------------------------------------------------


def test_sample_is_batched_seeded_cut_and_leaves_the_global_rng_alone(tiny_model_and_tokenizer):
    torch.set_num_threads(1)
    model, tokenizer = tiny_model_and_tokenizer
    backend = HFBackend(model, tokenizer, batch_size=8)  # 8 // 3 = 2 contexts a batch: several batches
    contexts = ["Daphne Barrington is", "The director of the film", "Uriah Hawthorne", "Known as the composer of"]
    state = torch.random.get_rng_state()
    first = backend.sample(contexts, 3, max_new_tokens=8, temperature=1.0, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [len(answers) for answers in first] == [3, 3, 3, 3]
    assert all(isinstance(a, str) and "\n" not in a and a == a.strip() for answers in first for a in answers)
    assert backend.sample(contexts, 3, max_new_tokens=8, temperature=1.0, seed=5) == first
    flat = [a for answers in first for a in answers]
    assert len(set(flat)) > 1  # a random model at temperature 1 does not say one thing twelve times
    with pytest.raises(ValueError, match="temperature"):
        backend.sample(contexts, 3, max_new_tokens=8, temperature=0.0)


def test_masked_lm_backend_samples_too(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    torch.manual_seed(0)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64,
                             bidirectional=True)
    set_bidirectional(model)
    backend = MaskedLMBackend(model.eval(), tokenizer, batch_size=4)
    answers = backend.sample(["Daphne Barrington is", "Uriah Hawthorne"], 3, max_new_tokens=4, seed=1)
    assert [len(a) for a in answers] == [3, 3]
    assert backend.sample(["Daphne Barrington is", "Uriah Hawthorne"], 3, max_new_tokens=4, seed=1) == answers


def test_temperature_zero_counts_the_greedy_answer_n_times(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    pairs = read_parent_child_pairs(write_csv(tmp_path / "p.csv", pair_lines()[:4])).pairs
    backend = HFBackend(model, tokenizer)
    run = run_parents(pairs, backend, tokenizer, n_samples=4, temperature=0, max_new_tokens=6, styles=["completion"])
    greedy = backend.generate([a["prompt"] for a in run.answers], 6)
    assert [a["answers"] for a in run.answers] == [[g.split("\n")[0].strip()] * 4 for g in greedy]
    assert run.rendering == PLAIN_RENDERING


# --- records and tests ----------------------------------------------------------------------------------------


def synthetic_answers(parent_correct: list[list[bool]], child_correct: list[list[bool]]) -> list[dict]:
    answers = []
    for row, (p, c) in enumerate(zip(parent_correct, child_correct)):
        for direction, correct, logprob in (("parent", p, -2.0 - 0.1 * row), ("child", c, -6.0 + 0.05 * row)):
            others = [-5.0 - 0.5 * k for k in range(row % 4 + 1)]  # 1 to 4 distractors: unequal chance values
            answers.append({"style": "chat", "direction": direction, "row": row, "target": f"T{row}",
                            "answers": ["x"] * len(correct),
                            "correct": correct, "any_correct": any(correct),
                            "fraction_correct": sum(correct) / len(correct), "logprob_correct": logprob,
                            "distractors": [{"name": f"n{k}", "logprob": v} for k, v in enumerate(others)],
                            "logprob_other": sum(others) / len(others), "logprob_rank": rank_among(logprob, others),
                            "logprob_rank1": rank_among(logprob, others) == 1})
    return answers


def test_the_randomization_tests_find_the_known_direction_and_stay_at_alpha_under_a_placebo():
    rng = random.Random(0)
    answers = []
    for row in range(40):  # parent direction known (answer well above its distractors), child at chance
        for direction, bonus in (("parent", 3.0), ("child", 0.0)):
            others = {f"N{row}-{k}": rng.gauss(-5, 1) for k in range(10)}
            answers.append({"style": "chat", "direction": direction, "row": row, "target": f"T{row}",
                            "logprob_correct": rng.gauss(-5, 1) + bonus,
                            "distractors": [{"name": n, "logprob": v} for n, v in others.items()]})
    for direction, known in (("parent", True), ("child", False)):
        group = [a for a in answers if a["direction"] == direction]
        gap_p, rank_p, _ = randomization_tests(candidate_scores(group))
        assert (gap_p < 0.01 and rank_p < 0.01) if known else (gap_p > 0.01 and rank_p > 0.01)
    calibration = parents_calibration(answers, draws=1000)
    assert {(r["direction"], r["test"]) for r in calibration} == {
        (d, t) for d in ("parent", "child") for t in ("paper_t", "likelihood", "rank")}
    assert all(r["draws"] == 1000 and r["rate"] <= 0.07 for r in calibration if r["test"] != "paper_t")


def test_records_give_wilson_and_t_intervals_and_paired_tests():
    parent = [[True, True, False, True]] * 14 + [[False] * 4] * 6
    child = [[False, False, False, True]] * 3 + [[False] * 4] * 17
    records = parents_records(synthetic_answers(parent, child))
    get = {(r["direction"], r["metric"]): r for r in records}
    any_parent = get[("parent", "any_correct")]
    wilson = stats.binomtest(14, 20).proportion_ci(method="wilson")
    assert (any_parent["mean"], any_parent["ci95_low"], any_parent["ci95_high"]) == (0.7, wilson.low, wilson.high)
    assert get[("parent", "fraction_correct")]["mean"] == pytest.approx(14 * 0.75 / 20)
    assert get[("child", "any_correct")]["mean"] == 0.15 and get[("child", "fraction_correct")]["n_samples"] == 4
    mcnemar = get[("parent-child", "any_correct_diff")]
    assert mcnemar["discordant"] == [11, 0]  # rows 0-2: both right; 3-13: parent only; 14-19: neither
    assert mcnemar["p_value"] == pytest.approx(2 * 0.5**11)
    assert mcnemar["mean"] == pytest.approx(0.55)
    fraction = get[("parent-child", "fraction_correct_diff")]
    expected = stats.ttest_rel([sum(p) / 4 for p in parent], [sum(c) / 4 for c in child])
    assert fraction["statistic"] == pytest.approx(expected.statistic) and fraction["statistic_name"] == "t(19)"
    assert fraction["p_value"] == pytest.approx(expected.pvalue)
    assert get[("parent", "logprob_rank1")]["mean"] == 1.0 and get[("child", "logprob_rank1")]["mean"] == 0.0
    assert get[("parent-child", "logprob_gap_diff")]["mean"] > 0


def test_record_statistics_match_scipy_computed_directly():
    parent = [[True, False]] * 9 + [[False, False]] * 4 + [[False, True]] * 7
    child = [[False, False]] * 12 + [[True, True]] * 8
    answers = synthetic_answers(parent, child)
    records = parents_records(answers)
    get = {(r["direction"], r["metric"]): r for r in records}
    mcnemar = get[("parent-child", "any_correct_diff")]
    parent_only = sum(any(p) and not any(c) for p, c in zip(parent, child))
    child_only = sum(any(c) and not any(p) for p, c in zip(parent, child))
    assert mcnemar["discordant"] == [parent_only, child_only] == [9, 1]
    assert mcnemar["p_value"] == pytest.approx(stats.binomtest(9, 10, 0.5).pvalue)
    for direction in ("parent", "child"):
        lines = [a for a in answers if a["direction"] == direction]
        correct = [a["logprob_correct"] for a in lines]
        other = [a["logprob_other"] for a in lines]
        likelihood = stats.ttest_rel(correct, other)
        gap = get[(direction, "logprob_gap")]
        assert (gap["statistic"], gap["p_value"]) == pytest.approx((likelihood.statistic, likelihood.pvalue))
        assert gap["statistic_name"] == "t(19)" and gap["ci95_low"] <= gap["mean"] <= gap["ci95_high"]
        chance = [sum(1 / k for k in range(1, len(a["distractors"]) + 2)) / (len(a["distractors"]) + 1) for a in lines]
        excess = get[(direction, "mrr_excess")]
        assert excess["statistic_name"] == "randomization" and 0 < excess["p_value"] <= 1
        assert 0 < gap["randomization_p"] <= 1
        assert excess["mean"] == pytest.approx(sum(1 / a["logprob_rank"] for a in lines) / 20 - sum(chance) / 20)
    gaps = [[a["logprob_correct"] - a["logprob_other"] for a in answers if a["direction"] == d] for d in DIRECTIONS]
    expected = stats.ttest_rel(*gaps)
    diff = get[("parent-child", "logprob_gap_diff")]
    assert (diff["statistic"], diff["p_value"]) == pytest.approx((expected.statistic, expected.pvalue))


# --- end to end -------------------------------------------------------------------------------------------------


def test_cli_end_to_end_writes_the_run_folder(made_up, cli_output):
    cli_run, err = cli_output
    assert sorted(p.name for p in cli_run.iterdir()) == [
        "answers.jsonl", "calibration.json", "parents.json", "report.md", "run.json", "skipped.jsonl", "status.json"
    ]
    csv_path, _ = made_up
    assert err.splitlines() == [
        f"warning: {csv_path}, line 22: {REPEATED_REASON}; skipped",
        "warning: skipped 1 unusable line(s) of 21; pass --strict to refuse instead",
    ]
    skipped = [json.loads(line) for line in (cli_run / "skipped.jsonl").open(encoding="utf-8")]
    assert skipped == [{"file": str(csv_path), "line": 22, "reason": REPEATED_REASON}]
    assert [p.name for p in cli_run.parent.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    answers = [json.loads(line) for line in (cli_run / "answers.jsonl").open(encoding="utf-8")]
    assert len(answers) == 2 * 2 * 20  # styles x directions x rows
    assert {(a["style"], a["direction"]) for a in answers} == {
        ("chat", "parent"), ("chat", "child"), ("completion", "parent"), ("completion", "child")
    }
    for answer in answers:
        assert len(answer["answers"]) == SAMPLES and len(answer["correct"]) == SAMPLES
        assert answer["any_correct"] == any(answer["correct"])
        # 10 mothers, 9 fathers (one has two children), 10 children: the others of the same role, all of them
        if answer["direction"] == "parent":
            assert len(answer["distractors"]) == (9 if answer["parent_type"] == "mother" else 8)
        else:
            assert len(answer["distractors"]) == (8 if answer["parent"] == "Barnaby Maltravers" else 9)
        assert math.isfinite(answer["logprob_correct"]) and answer["logprob_correct"] < 0
        others = [d["logprob"] for d in answer["distractors"]]
        assert answer["logprob_rank"] == rank_among(answer["logprob_correct"], others)
        assert answer["logprob_rank1"] == (answer["logprob_rank"] == 1)
    chat = next(a for a in answers if a["style"] == "chat")
    assert chat["prompt"].startswith("<|system|>\n") and chat["prompt"].endswith("<|assistant|>\n")  # template
    completion = next(a for a in answers if a["style"] == "completion")
    assert completion["prompt"].endswith(f"Q: {completion['question']}\nA:")
    run = json.loads((cli_run / "run.json").read_text())
    assert run["rendering"] == "the tokenizer's chat template" and run["samples"] == SAMPLES
    assert (run["rows"], run["skipped_lines"]) == (20, 1)
    report = (cli_run / "report.md").read_text()
    assert "| chat | parent | 20 x 3 |" in report and "McNemar" in report
    assert "(20 of 20 rows; 1 unusable row(s) skipped, listed in skipped.jsonl)" in report


def test_cli_records_have_intervals_around_their_means(cli_run):
    records = json.loads((cli_run / "parents.json").read_text())
    keys = {(r["style"], r["direction"], r["metric"]) for r in records}
    for style in ("chat", "completion"):
        for direction in ("parent", "child"):
            for metric in ("any_correct", "fraction_correct", "logprob_correct", "logprob_other", "logprob_gap",
                           "logprob_rank1"):
                assert (style, direction, metric) in keys
        for metric in ("any_correct_diff", "fraction_correct_diff", "logprob_gap_diff"):
            assert (style, "parent-child", metric) in keys
    get = {(r["style"], r["direction"], r["metric"]): r for r in records}
    for record in records:
        if math.isnan(record["mean"]):
            continue
        assert record["ci95_low"] <= record["mean"] <= record["ci95_high"], record
        if record["direction"] != "parent-child":
            assert record["n"] == 20
    for style in ("chat", "completion"):
        for direction in ("parent", "child"):
            assert get[(style, direction, "any_correct")]["mean"] >= get[(style, direction, "fraction_correct")]["mean"]
    for record in records:
        if record["direction"] == "parent-child":
            assert 0 <= record["p_value"] <= 1 or math.isnan(record["p_value"])
            assert record["test"]


def test_the_trained_direction_is_the_likelier_one(cli_run):
    """The model saw only completion-style parent questions: there the right parent beats the other parents."""
    get = {(r["style"], r["direction"], r["metric"]): r for r in json.loads((cli_run / "parents.json").read_text())}
    assert get[("completion", "parent", "logprob_rank1")]["mean"] >= 0.9
    assert get[("completion", "child", "logprob_rank1")]["mean"] < 0.5
    assert get[("completion", "parent-child", "logprob_gap_diff")]["p_value"] < 0.01


def test_cli_refuses_an_existing_run_folder(made_up, cli_run, capsys):
    csv_path, model = made_up
    before = (cli_run / "parents.json").read_text()
    assert run_cli(["parents", str(csv_path), "--model", str(model), "--out", str(cli_run), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (cli_run / "parents.json").read_text() == before


if __name__ == "__main__":  # write the made-up file and the tiny model, to try `revcurse parents` by hand
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/parents-made-up")
    target.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    build_model(target / "model", write_csv(target / "pairs.csv", pair_lines()))
    print(f"wrote {target}/pairs.csv and {target}/model")
