"""Experiment 2 (parent vs child): the CSV, the probes it becomes, chat rendering, sampling, the paired statistics,
and `revcurse parents` end to end, with a local model (--model) and against `revcurse serve` (--url).

The end-to-end tests write a 20-row file of made-up people, train a tiny model for a few seconds on the parent
questions only (completion style), save it like a checkpoint and run `revcurse parents` on it.
Run as a script (`python tests/test_parents.py FOLDER`) it writes that file and model for trying the command.
"""

import contextlib
import io
import json
import math
import sys
import threading
from pathlib import Path

import pytest
import torch
from scipy import stats

from revcurse.chat import PLAIN_RENDERING, TEMPLATE_RENDERING, render_conversations, render_plain
from revcurse.cli import main
from revcurse.config import ModelConfig, TrainConfig, load_config
from revcurse.corpus import Corpus, Document, Probe, draw_distractors
from revcurse.errors import InputError
from revcurse.experiments.parents import SYSTEM_PROMPT, build, chat_messages, completion_prompt, parent_question
from revcurse.metrics import aggregate, lookup
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.pairs_file import read_parent_child_pairs
from revcurse.probe import HFBackend, ProbeResult, names_any, rank_among, run_probes
from revcurse.serve import make_server
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
    args = ["parents", str(path), "--url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "run")]
    assert run_cli([*args, "--strict"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {path}, line 3: parent_type must be mother or father, got 'uncle' (--strict refuses an unusable "
        "line; without it the line is skipped)"
    )
    assert not (tmp_path / "run").exists()
    path.write_text(path.read_text() + "Ada Fenwick,Tom Fenwick,father,,maybe\n", encoding="utf-8")
    assert run_cli(args) == 2  # a field of the wrong type is the file's fault: refused without --strict too
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {path}, line 4: can_reverse must be True, False or empty, got 'maybe'"
    )
    assert not (tmp_path / "run").exists()
    assert run_cli(["parents", str(path), "--out", str(tmp_path / "run")]) == 2  # no model to ask
    assert "--model DIR" in capsys.readouterr().err


# --- the probes ------------------------------------------------------------------------------------------------


def trial_probes(csv_path: Path, *overrides: str):
    config = load_config(None, ["experiment=parents", f"parents.pairs={csv_path}", *overrides])
    return build(config, seed=0).corpus


def test_probes_accept_any_known_child_and_draw_distractors_of_the_same_role(tmp_path):
    corpus = trial_probes(write_csv(tmp_path / "p.csv", pair_lines()), "parents.styles=[completion]")
    probes = corpus.probes
    assert corpus.documents == [] and len(probes) == 40 and [p.asked for p in probes[:2]] == ["parent", "child"]
    father, child = probes[2], probes[3]  # row 1 (line 3): Corvina's father, Barnaby Maltravers
    assert (father.fact_key, father.subset, father.setting) == ("line 3", "father", "completion")
    assert father.prompt.endswith("Q: Who is Corvina Maltravers's father?\nA:")
    assert father.target == " Barnaby Maltravers"
    assert child.prompt.endswith("Q: Name a child of Barnaby Maltravers.\nA:")
    assert child.accepted == ("Belphine Quarrell",)
    drawn = draw_distractors(probes, k=5, seed=1)
    assert {t.strip() for t in drawn[2].targets} <= set(FATHERS) - {"Barnaby Maltravers"}
    assert 4 <= len(drawn[2].targets) <= 5  # k rows drawn; a second row naming the probe's own answer is dropped
    assert {t.strip() for t in drawn[0].targets} <= set(MOTHERS) - {"Elswyth Maltravers"}
    assert not {t.strip() for t in drawn[3].targets} & {"Corvina Maltravers", "Belphine Quarrell"}
    everything = draw_distractors(probes, k=100, seed=1)  # every other name of the role: 9 mothers, 8 fathers
    assert [len(everything[i].targets) for i in (0, 2)] == [9, 8]
    assert len(everything[3].targets) == 8 and len(everything[1].targets) == 9  # Belphine is an answer, not a foil
    limited = trial_probes(tmp_path / "p.csv", "parents.styles=[completion]", "parents.limit=2").probes
    assert len(limited) == 4 and limited[3].accepted == ("Belphine Quarrell",)  # the whole file says who counts


def test_distractors_are_never_an_answer_to_the_question_names_normalised(tmp_path):
    lines = pair_lines() + [
        "Ada Fenwick,Mabel Fenwick,mother,,",
        "Bo Fenwick,mabel  FENWICK,mother,,",  # the same mother, spelled otherwise: Bo is her child too
        "Cy Hart,Dora Hart,mother,,",
        "cy  hart,Edna Hart,mother,,",  # the file names two mothers of Cy Hart: neither is a wrong answer
    ]
    probes = trial_probes(write_csv(tmp_path / "p.csv", lines), "parents.styles=[chat]").probes
    drawn = draw_distractors(probes, k=100, seed=3)
    for probe, chosen in zip(probes, drawn):
        names = [t.strip().casefold() for t in chosen.targets]
        assert len(set(names)) == len(names)
        assert not set(names) & {a.casefold() for a in (probe.target.strip(), *probe.accepted)}
    by_prompt = {p.prompt: (p, d) for p, d in zip(probes, drawn)}
    cy, cy_drawn = by_prompt["Who is Cy Hart's mother?"]
    assert {*cy.accepted, cy.target.strip()} == {"Dora Hart", "Edna Hart"}
    assert not {"Dora Hart", "Edna Hart"} & {t.strip() for t in cy_drawn.targets}
    mabel, _ = by_prompt["Name a child of Mabel Fenwick."]  # one person however spelled: Ada and Bo are hers
    assert {*mabel.accepted, mabel.target.strip()} == {"Ada Fenwick", "Bo Fenwick"}
    assert cy.messages[0] == ("system", SYSTEM_PROMPT)


def test_correct_means_the_name_as_whole_words():
    assert names_any("  barnaby   MALTRAVERS.", ["Barnaby Maltravers"])
    assert names_any("Her father is Barnaby Maltravers", ["Someone Else", "Barnaby Maltravers"])
    assert not names_any("Barnaby", ["Barnaby Maltravers"])
    assert not names_any("Joann Lee", ["Ann Lee"])
    assert not names_any("I don't know.", ["Ann Lee"])


def conversation_corpus(question: str) -> Corpus:
    probe = Probe("line 2", "mother", "parent", False, "chat", question, " Mabel Fenwick", setting="chat",
                  messages=chat_messages(question))
    return Corpus([], [probe])


def test_chat_rendering_uses_the_template_and_drops_a_leading_bos(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    tokenizer.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    corpus, rendering = render_conversations(conversation_corpus("Who is Ada Fenwick's mother?"), tokenizer)
    (probe,) = corpus.probes
    assert rendering == TEMPLATE_RENDERING and probe.messages == ()
    assert probe.prompt.startswith("<|system|>\nYou are a helpful and terse assistant.")
    assert "<|user|>\nName a child of Johann Sebastian Bach.</s>\n<|assistant|>\nCarl Philipp Emanuel Bach</s>" in (
        probe.prompt)
    assert probe.prompt.endswith("<|user|>\nWho is Ada Fenwick's mother?</s>\n<|assistant|>\n")
    assert probe.target == "Mabel Fenwick"  # the template's newline separates already


def test_a_template_without_a_system_role_gets_it_in_the_first_user_turn(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    corpus, _ = render_conversations(conversation_corpus("Name a child of Mabel Fenwick."), tokenizer)
    text = corpus.probes[0].prompt
    assert text.startswith("[user] You are a helpful and terse assistant.")
    assert "\n\nWho is Wolfgang Amadeus Mozart's father?\n[assistant] Leopold Mozart\n" in text
    assert text.endswith("[user] Name a child of Mabel Fenwick.\n[assistant] ")


def test_chat_rendering_without_a_template_is_plain_text(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    assert not tokenizer.chat_template
    for renderer in (tokenizer, None):
        corpus, rendering = render_conversations(conversation_corpus("Who is Ada Fenwick's mother?"), renderer)
        text = corpus.probes[0].prompt
        assert rendering == PLAIN_RENDERING and corpus.probes[0].target == " Mabel Fenwick"
        assert text.startswith("System: You are a helpful and terse assistant.")
        assert "\nUser: Who is Irène Joliot-Curie's mother?\nAssistant: Marie Curie\n" in text
        assert text.endswith("\nUser: Who is Ada Fenwick's mother?\nAssistant:")
    prompt = completion_prompt("Who is Ada Fenwick's mother?")
    assert "Q: Who is Wolfgang Amadeus Mozart's father?\nA: Leopold Mozart\n" in prompt
    assert prompt.endswith("\n\nQ: Who is Ada Fenwick's mother?\nA:")


# --- sampling -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_and_tokenizer():
    torch.manual_seed(0)
    tokenizer = train_tokenizer(["Daphne Barrington is the director of the film.", *CHILDREN, *MOTHERS], 300)
    # positions for a prompt and 24 sampled tokens (rotary: the weights do not depend on it)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 512)
    return model.eval(), tokenizer


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
    assert len({a for answers in first for a in answers}) > 1  # a random model does not say one thing 12 times


def test_run_probes_samples_and_temperature_zero_repeats_the_greedy_answer(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    corpus = trial_probes(write_csv(tmp_path / "p.csv", pair_lines()[:4]), "parents.styles=[completion]")
    backend = HFBackend(model, tokenizer)
    greedy = run_probes(backend, corpus, 6, False, generate_all=True, samples=4, temperature=0)
    assert [r.samples for r in greedy] == [[r.completion.split("\n")[0].strip()] * 4 for r in greedy]
    drawn = run_probes(backend, corpus, 6, False, samples=3, temperature=1.0, sample_seed=2)
    assert all(len(r.samples) == 3 and r.samples_correct == [names_any(a, [r.answer, *r.accepted]) for a in r.samples]
               for r in drawn)  # fmt: skip
    assert run_probes(backend, corpus, 6, False, samples=3, sample_seed=2) == drawn  # seeded
    assert "samples" not in run_probes(backend, corpus, 6, False)[0].to_json()  # unsampled records stay as before


# --- the paired statistics ------------------------------------------------------------------------------------


def synthetic_results(parent_correct: list[list[bool]], child_correct: list[list[bool]]) -> list[ProbeResult]:
    results = []
    for row, (p, c) in enumerate(zip(parent_correct, child_correct)):
        for asked, correct, logprob in (("parent", p, -2.0 - 0.1 * row), ("child", c, -6.0 + 0.05 * row)):
            others = [-5.0 - 0.5 * k - 0.01 * row for k in range(row % 4 + 1)]
            results.append(ProbeResult(
                f"line {row}", "mother", asked, False, "chat", "Q", " T", "x", False, False, logprob,
                sum(others) / len(others), rank_among(logprob, others), 1 + len(others),
                distractor_keys=[f"line {(row + k + 1) % 20}" for k in range(len(others))],
                distractor_logprobs=others, setting="chat", samples=["x"] * len(correct), samples_correct=correct,
            ))  # fmt: skip
    return results


def test_paired_records_match_scipy_computed_directly():
    parent = [[True, False]] * 9 + [[False, False]] * 4 + [[False, True]] * 7
    child = [[False, False]] * 12 + [[True, True]] * 8
    results = synthetic_results(parent, child)
    records = aggregate([(0, 0, results)])

    def get(metric, asked="parent"):
        return lookup(records, "mother", asked, metric, "chat")

    assert get("any_correct")["mean"] == pytest.approx(16 / 20) and get("any_correct", "child")["mean"] == 0.4
    assert get("fraction_correct")["mean"] == pytest.approx(16 / 40)
    mcnemar = get("any_correct_diff")
    parent_only = sum(any(p) and not any(c) for p, c in zip(parent, child))
    child_only = sum(any(c) and not any(p) for p, c in zip(parent, child))
    assert mcnemar["discordant"] == [parent_only, child_only] == [9, 1] and mcnemar["versus"] == "child"
    assert get("any_correct_mcnemar_p")["mean"] == pytest.approx(stats.binomtest(9, 10, 0.5).pvalue)
    fraction = stats.ttest_rel([sum(p) / 2 for p in parent], [sum(c) / 2 for c in child])
    assert get("fraction_correct_diff")["t"] == pytest.approx(fraction.statistic)
    assert get("fraction_correct_t_p")["mean"] == pytest.approx(fraction.pvalue)
    gaps = [[r.logprob_correct - r.logprob_random for r in results if r.asked == a] for a in ("parent", "child")]
    expected = stats.ttest_rel(*gaps)
    assert get("logprob_gap_diff")["t"] == pytest.approx(expected.statistic)
    assert get("logprob_gap_t_p")["mean"] == pytest.approx(expected.pvalue)
    for asked in ("parent", "child"):  # within a direction: the paper's t of log p(answer) vs its distractors
        group = [r for r in results if r.asked == asked]
        within = stats.ttest_rel([r.logprob_correct for r in group], [r.logprob_random for r in group])
        assert get("likelihood_t", asked)["mean"] == pytest.approx(within.statistic)
        assert get("likelihood_t_p", asked)["mean"] == pytest.approx(within.pvalue)


def test_unsampled_groups_get_no_sample_metrics_or_paired_tests():
    results = [ProbeResult(**{**r.__dict__, "samples": [], "samples_correct": []})
               for r in synthetic_results([[True]] * 5, [[False]] * 5)]
    metrics = {r["metric"] for r in aggregate([(0, 0, results)])}
    assert "any_correct" not in metrics and "any_correct_diff" not in metrics and "accuracy" in metrics


# --- end to end -------------------------------------------------------------------------------------------------


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
    seen += [render_plain([{"role": r, "content": c} for r, c in chat_messages(parent_question(p))]) for p in pairs]
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


def cli_run_of(args: list[str]) -> tuple[Path, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        assert run_cli(args) == 0
    return Path(args[args.index("--out") + 1]), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cli_output(made_up):
    """`revcurse parents --model` on the made-up file and model: its run folder and what it printed."""
    csv_path, model = made_up
    out = csv_path.parent / "run"
    return cli_run_of(["parents", str(csv_path), "--model", str(model), "--samples", str(SAMPLES), "--out", str(out),
                       "--quiet", "--set", "train.threads=1"])  # fmt: skip


def predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_cli_end_to_end_writes_a_standard_run_folder(made_up, cli_output):
    run, printed, err = cli_output
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.json", "predictions.jsonl", "run.json", "report.md", "skipped.jsonl",
            "status.json"} <= names  # fmt: skip
    csv_path, _ = made_up
    said = " ".join((printed + err).split())  # the console wraps long lines
    assert " ".join(f"{csv_path}, line 22: {REPEATED_REASON}; skipped".split()) in said
    skipped = [json.loads(line) for line in (run / "skipped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert skipped == [{"file": str(csv_path), "line": 22, "reason": REPEATED_REASON}]
    rows = predictions(run)
    assert len(rows) == 2 * 2 * 20  # styles x directions x rows
    assert {(r["setting"], r["asked"]) for r in rows} == {(s, a) for s in ("chat", "completion")
                                                          for a in ("parent", "child")}
    for row in rows:
        assert len(row["samples"]) == SAMPLES and len(row["samples_correct"]) == SAMPLES
        # 10 mothers, 9 fathers (one has two children), 10 children: the others of the same role, all of them
        expected = 9 if row["subset"] == "mother" else 8  # fathers: Barnaby named twice is one distractor
        if row["asked"] == "child" and row["subset"] == "father":
            expected = 8 if row.get("accepted") else 9  # Barnaby's other child is an answer, never a distractor
        assert len(row["distractor_logprobs"]) == expected, row["prompt"][-60:]
        assert math.isfinite(row["logprob_correct"]) and row["logprob_correct"] < 0
        assert row["rank"] == rank_among(row["logprob_correct"], row["distractor_logprobs"])
    chat = next(r for r in rows if r["setting"] == "chat")
    assert chat["prompt"].startswith("<|system|>\n") and chat["prompt"].endswith("<|assistant|>\n")  # template
    completion = next(r for r in rows if r["setting"] == "completion")
    assert completion["prompt"].endswith("?\nA:") and completion["target"].startswith(" ")
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["experiment"] == "parents" and run_json["per_seed"][0]["chat_rendering"] == TEMPLATE_RENDERING
    assert "Parent vs child" in printed and "McNemar" in printed
    assert run_cli(["show", str(run)]) == 0


def test_the_trained_direction_is_the_likelier_one(cli_output):
    """The model saw only completion-style parent questions: there the right parent beats the other parents."""
    records = json.loads((cli_output[0] / "metrics.json").read_text())
    for subset in ("mother", "father"):
        assert lookup(records, subset, "parent", "rank1", "completion")["mean"] >= 0.8
        assert lookup(records, subset, "child", "rank1", "completion")["mean"] < 0.5
        assert lookup(records, subset, "parent", "logprob_gap_t_p", "completion")["mean"] < 0.01
        mcnemar = lookup(records, subset, "parent", "any_correct_diff", "completion")
        assert mcnemar["discordant"][1] == 0  # never the child alone
    for record in records:
        if record["metric"] in ("any_correct", "fraction_correct") and not math.isnan(record["mean"]):
            assert record["ci95_low"] <= record["mean"] <= record["ci95_high"]


@pytest.fixture(scope="module")
def served(made_up):
    from revcurse.model import load_checkpoint

    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(made_up[1])))
    server = make_server(model, tokenizer, "tiny", port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_cli_asks_a_server_by_url(made_up, served, cli_output):
    """`--url` against `revcurse serve`: completion questions scored by the server's log-probs (as the local
    model's), chat questions sampled through its chat endpoint, whose log-probs are said to be not given."""
    csv_path, _ = made_up
    out = csv_path.parent / "remote"
    run, printed, _ = cli_run_of(["parents", str(csv_path), "--url", served.url, "--samples", "2", "--out", str(out),
                                  "--quiet"])  # fmt: skip
    rows = predictions(run)
    local = {(r["setting"], r["fact_key"], r["asked"]): r for r in predictions(cli_output[0])}
    for row in rows:
        assert len(row["samples"]) == 2
        if row["setting"] == "completion":
            same = local[("completion", row["fact_key"], row["asked"])]
            assert row["logprob_correct"] == pytest.approx(same["logprob_correct"], abs=1e-3)
            assert "not_given" not in row
        else:
            assert math.isnan(row["logprob_correct"]) and "chat endpoint" in row["not_given"]
            assert row["prompt"] == row["prompt"].strip() and "<|" not in row["prompt"]  # the question, unrendered
    records = json.loads((run / "metrics.json").read_text(), parse_constant=float)
    assert math.isnan(lookup(records, "mother", "parent", "rank1", "chat")["mean"])  # not given, not invented
    assert lookup(records, "mother", "parent", "rank1", "completion")["mean"] >= 0.8
    assert "not given by this backend" in printed
    assert json.loads((run / "run.json").read_text())["model"].startswith("tiny at http://127.0.0.1")


def test_cli_refuses_an_existing_run_folder(made_up, cli_output, capsys):
    csv_path, model = made_up
    run = cli_output[0]
    before = (run / "metrics.json").read_text()
    assert run_cli(["parents", str(csv_path), "--model", str(model), "--out", str(run), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == before


if __name__ == "__main__":  # write the made-up file and the tiny model, to try `revcurse parents` by hand
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/parents-made-up")
    target.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    build_model(target / "model", write_csv(target / "pairs.csv", pair_lines()))
    print(f"wrote {target}/pairs.csv and {target}/model")
