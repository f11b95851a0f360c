"""Own facts: reading CSV/JSONL and templates (every bad input names file and line), the corpus, the audit."""

import contextlib
import io
import json
import math

import pytest
import torch
from scipy import stats

from revcurse.cli import main
from revcurse.errors import InputError
from revcurse.metrics import lookup, placebo_rejections
from revcurse.own_facts import (
    ALL_RELATIONS,
    DEFAULT_REVERSE_QUESTION,
    OwnFact,
    RelationTemplates,
    audit_records,
    build_own_corpus,
    probe_own_facts,
    read_facts,
    read_templates,
)
from revcurse.world import Subset
from tests.fakes import FakeBackend

FACTS_CSV = """subject,relation,object,source
Orla Fenwright,wrote,The Salt Cartographer,notes
Tobiah Quillane,wrote,A Ledger of Small Winters,
Marisol Vantreece,wrote,The Glass Orchard Letters,
Ewan Pellicott,wrote,Nine Doors to Harrowmere,
Ilse Brandquist,wrote,The Lamplighter's Almanac,
Corwin Ashgrove,was born in,Pellmarch,
Saskia Thornell,was born in,Quillhaven,
Dariel Munro-Vance,was born in,Brackwater Ferry,
Nell Okonkwo-Reyes,was born in,Ostendell,
Fabian Kettleworth,was born in,Lower Hexford,
Petra Vollmark,founded,the Duskmere Rowing Society,
Aurelio Blanchard,founded,the Ferncliff Observatory Trust,
Yusra Calderwood,founded,the Little Tern Bookbinders,
Halvard Renshaw,founded,the Saltmarsh Choir School,
Jorunn Abernethy-Lisk,founded,the Windrow Seed Library,
"""

# Measured on this 2-core machine, 1 thread: 15/15 forward, 0/15 reverse, ~6 s of training, ~11 s in all.
TINY = [
    "train.threads=1", "model.hidden_size=32", "model.intermediate_size=64", "model.heads=2", "model.layers=1",
    "model.vocab_size=600", "corpus.train_phrasings=10", "world.background=30", "train.epochs=20",
    "train.batch_size=16",
]  # fmt: skip


def sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def run_cli(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------- reading facts


def test_csv_and_jsonl_give_the_same_facts(tmp_path):
    from_csv = read_facts(write(tmp_path / "facts.csv", FACTS_CSV)).facts
    lines = [
        json.dumps({"subject": f.subject, "relation": f.relation, "object": f.object, "extra": 1}) for f in from_csv
    ]
    from_jsonl = read_facts(write(tmp_path / "facts.jsonl", "\n".join(lines) + "\n\n")).facts
    assert len(from_csv) == 15
    assert [(f.subject, f.relation, f.object) for f in from_csv] == [
        (f.subject, f.relation, f.object) for f in from_jsonl
    ]
    assert from_csv[0].line == 2 and from_jsonl[0].line == 1  # CSV: the header is line 1
    assert from_csv[4].object == "The Lamplighter's Almanac"


def test_csv_header_is_read_loosely_and_quoted_commas_survive(tmp_path):
    path = write(tmp_path / "f.csv", '\ufeff Subject ,RELATION,object\n"Lovelace, Ada",wrote,"Notes, annotated"\n')
    (fact,) = read_facts(path).facts
    assert (fact.subject, fact.relation, fact.object, fact.line) == ("Lovelace, Ada", "wrote", "Notes, annotated", 2)


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("missing column", "subject,relation\nAda,wrote\n", 1, ["missing column 'object'"]),
        ("missing column", "subject,object,relation\n", 1, []),  # header only: no facts
        ("missing value", "subject,relation,object\nAda,wrote\n", 2, ["2 values for 3 columns", "empty with ,,"]),
        ("unquoted comma", "subject,relation,object\nAda,wrote,Notes, annotated\n", 2, ["4 values for 3 columns"]),
        ("empty file", "", 1, ["header"]),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, name, text, line, words):
    path = write(tmp_path / "facts.csv", text)
    with pytest.raises(InputError) as error:
        read_facts(path)
    message = str(error.value)
    if not words:  # a header and nothing else
        assert "no facts" in message and str(path) in message
        return
    assert error.value.path == str(path) and error.value.line == line
    assert f"{path}, line {line}: " in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('{"subject": "Ada", "relation": "wrote", "object": "Notes"}\n{"subject": "Bea", "relation": ', 2, ["JSON"]),
        ('{"subject": "Ada", "relation": "wrote"}\n', 1, ["missing field 'object'"]),
        ('["Ada", "wrote", "Notes"]\n', 1, ["expected an object"]),
        ('{"subject": "Ada", "relation": "wrote", "object": ["Notes"]}\n', 1, ["must be text"]),
        (
            '{"subject": "Ada", "relation": "wrote", "object": 3}\n{"subject": "Ada", "relation": {}, "object": ""}',
            2,
            ["field 'relation' must be text, got dict"],
        ),  # a wrong type is refused before an empty field is skipped
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path / "facts.jsonl", text)
    with pytest.raises(InputError) as error:
        read_facts(path)
    assert f"{path}, line {line}: " in str(error.value)
    for word in words:
        assert word in str(error.value)


def jsonl(*facts: tuple) -> str:
    return "".join(json.dumps(dict(zip(("subject", "relation", "object"), fact))) + "\n" for fact in facts)


SKIPPED_CASES = [  # file, text, the line skipped, why, the facts kept
    ("facts.csv", "subject,relation,object\nAda,wrote,Notes\nBea,  ,Poems\nCal,wrote,Songs\n", 3,
     "empty column 'relation'", 2),
    ("facts.csv", "subject,relation,object\nAda,wrote,Notes\nBea,wrote,Poems\nada,wrote, notes \n", 4,
     "duplicate fact (ada, wrote, notes): first given on line 2", 2),
    ("facts.jsonl", jsonl(("Ada", "wrote", "Notes"), ("Bea", "wrote", " "), ("Cal", "wrote", 7)), 2,
     "empty field 'object'", 2),
    ("facts.jsonl", jsonl(("Bea", "wrote", "Poems"), (None, "wrote", "Notes")), 2, "empty field 'subject'", 1),
    ("facts.jsonl", jsonl(("Ada", "wrote", "Notes"), ("Ada", "wrote", "Notes")), 2,
     "duplicate fact (Ada, wrote, Notes): first given on line 1", 1),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "line", "reason", "kept"), SKIPPED_CASES)
def test_an_unusable_fact_is_skipped_and_strict_refuses_it(tmp_path, name, text, line, reason, kept):
    path = write(tmp_path / name, text)
    read = read_facts(path)
    assert [entry.to_json() for entry in read.skipped] == [{"file": str(path), "line": line, "reason": reason}]
    assert len(read.facts) == kept and line not in [fact.line for fact in read.facts]
    with pytest.raises(InputError) as error:
        read_facts(path, strict=True)
    assert (error.value.path, error.value.line) == (str(path), line)
    assert str(error.value).startswith(f"{path}, line {line}: {reason} (--strict refuses")


def test_a_file_of_unusable_facts_only_is_refused(tmp_path):
    path = write(tmp_path / "facts.csv", "subject,relation,object\nAda,,Notes\n, wrote ,Poems\n")
    with pytest.raises(InputError) as error:
        read_facts(path)
    assert str(error.value) == f"{path}: no usable facts: all 2 skipped (first: line 2: empty column 'relation')"


def test_missing_file_and_unknown_extension_name_the_file(tmp_path):
    with pytest.raises(InputError, match="facts file not found") as error:
        read_facts(tmp_path / "nowhere.csv")
    assert str(tmp_path / "nowhere.csv") in str(error.value)
    with pytest.raises(InputError, match=r"unknown file type '\.tsv'.*\.csv or \.jsonl"):
        read_facts(write(tmp_path / "facts.tsv", "subject\trelation\tobject\n"))
    with pytest.raises(InputError, match="templates file not found"):
        read_templates(tmp_path / "nowhere.yaml")


# ------------------------------------------------------------------------------------------------------ templates


TEMPLATES = """# comment line
wrote:
  statement:
    - "{subject} wrote {object}."
    - "{subject} is the author of {object}."
  question: "Which book did {subject} write? Answer:"
  reverse_question: "Who wrote {object}? Answer:"
born_in:
  statement: "{subject} was born in {object}, they say."
"""


def test_templates_are_read_with_defaults_for_what_is_left_out(tmp_path):
    templates = read_templates(write(tmp_path / "t.yaml", TEMPLATES))
    assert templates["wrote"] == RelationTemplates(
        ("{subject} wrote {object}.", "{subject} is the author of {object}."),
        "Which book did {subject} write? Answer:",
        "Who wrote {object}? Answer:",
    )
    born = templates["born_in"]
    assert born.question == "{subject} was born in"  # the statement's own prefix
    assert born.reverse_question == DEFAULT_REVERSE_QUESTION
    assert read_templates(write(tmp_path / "empty.yaml", "# nothing\n")) == {}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('wrote:\n  statement:\n    - "{subject} wrote {object}."\n    - "{person} wrote {object}."\n', 4,
         ["unknown placeholder {person}", "'wrote'"]),
        ('wrote:\n  question: "Which book did {subjct} write?"\n', 2, ["unknown placeholder {subjct}"]),
        ('wrote:\n  question: "Which book was written? Answer:"\n', 2, ["question", "{subject} exactly once"]),
        ('wrote:\n  reverse_question: "Who wrote it? Answer:"\n', 2, ["reverse_question", "{object} exactly once"]),
        ('wrote:\n  reverse_question: "Did {subject} write {object}?"\n', 2, ["must not contain {subject}"]),
        ('wrote:\n  question: "What did {subject} write: {object}?"\n', 2, ["must not contain {object}"]),
        ('wrote:\n  statement: "{object} was written by {subject}."\n', 2, ["{subject} before {object}"]),
        ('wrote:\n  statement: "{subject} wrote {object"\n', 2, ["literal brace"]),
        ('wrote:\n  statement: "{subject!r} wrote {object}"\n', 2, ["without a format"]),
        ('wrote:\n  statement: []\n', 2, ["statement list is empty"]),
        ('\nwrote:\n  reverse: "Who wrote {object}?"\n', 3, ["unknown key 'reverse'"]),
        ('wrote: "{subject} wrote {object}."\n', 1, ["expected a mapping"]),
        ('wrote:\n  statement: "{subject} wrote {object}."\n wrong: [\n', None, ["not valid YAML"]),
        ('wrote:\n  question: "Q: What did {subject} write? A:"\n  question: "{subject} wrote"\n', 3,
         ["key 'wrote.question' given twice (first on line 2)"]),
    ],
)  # fmt: skip
def test_bad_templates_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path / "templates.yaml", text)
    with pytest.raises(InputError) as error:
        read_templates(path)
    message = str(error.value)
    assert str(path) in message
    if line is not None:
        assert f"{path}, line {line}: " in message
    else:
        assert error.value.line is not None
    for word in words:
        assert word in message


# --------------------------------------------------------------------------------------------------------- corpus


def test_default_templates_state_facts_forward_only(tmp_path):
    facts = read_facts(
        write(tmp_path / "f.csv", "subject,relation,object\nAda,born_in,Leeds\nBea,born_in,York\n")
    ).facts
    documents, probes = build_own_corpus(facts, {}, documents_per_fact=3)
    assert [d.text for d in documents] == ["Ada born in Leeds."] * 3 + ["Bea born in York."] * 3
    assert all(d.subset is Subset.NAME_TO_DESCRIPTION for d in documents)
    assert documents[0].prompt_chars == len("Ada born in")
    forward, reverse = probes[0], probes[1]
    assert (forward.direction, forward.trained, forward.prompt, forward.target) == (
        "forward", True, "Ada born in", " Leeds"
    )  # fmt: skip
    assert (reverse.direction, reverse.trained, reverse.prompt, reverse.target) == (
        "reverse", False, "Who or what born in Leeds? Answer:", " Ada"
    )  # fmt: skip
    # the shared probe: the question is the fact, its group is (relation, direction)
    shared = forward.as_probe()
    assert (shared.fact_key, shared.subset, shared.asked) == ("Ada born in", "born_in", "forward")
    assert reverse.as_probe().fact_key == "Who or what born in Leeds? Answer:"


def test_corpus_cycles_statements_and_never_trains_the_reverse_of_a_user_fact(tmp_path):
    facts = read_facts(write(tmp_path / "f.csv", FACTS_CSV)).facts
    templates = read_templates(write(tmp_path / "t.yaml", TEMPLATES.replace("born_in", "was born in")))
    documents, probes = build_own_corpus(facts, templates, documents_per_fact=4, background=9, background_phrasings=2)
    own = [d for d in documents if d.subset is Subset.NAME_TO_DESCRIPTION]
    background = [d for d in documents if d.subset is Subset.BACKGROUND]
    assert len(own) == 4 * 15 and len(probes) == 2 * 15
    assert [d.text for d in own[:3]] == [
        "Orla Fenwright wrote The Salt Cartographer.",
        "Orla Fenwright is the author of The Salt Cartographer.",
        "Orla Fenwright wrote The Salt Cartographer.",
    ]
    for document in own:
        subject, object_ = document.entities
        assert document.text.index(subject) < document.text.index(object_)
    texts = [d.text for d in documents]
    for probe in probes:
        assert not any(text.startswith(probe.prompt + probe.target) for text in texts if probe.direction == "reverse")
    # background: 3 per relation, each asked in reverse with its answer, and never one of the user's entities
    assert sum(d.text.startswith("Who wrote ") for d in background) == 3 * 2
    entities = {f.subject for f in facts} | {f.object for f in facts}
    assert not entities & {e for d in background for e in d.entities}
    # one question per fact and direction: distinct facts, distinct questions
    assert len({(p.direction, p.as_probe().fact_key) for p in probes}) == 2 * 15


def test_a_question_shared_by_two_facts_lists_the_other_answer(tmp_path):
    facts = read_facts(
        write(tmp_path / "f.csv", "subject,relation,object\nAda,born_in,Leeds\nBea,born_in,Leeds\n")
    ).facts
    _, probes = build_own_corpus(facts, {}, documents_per_fact=1)
    assert probes[1].also_valid == (" Bea",) and probes[0].also_valid == ()
    # both reverse probes ask one question: one fact, so neither answer is the other's distractor
    assert probes[1].as_probe().fact_key == probes[3].as_probe().fact_key


# --------------------------------------------------------------------------------------------------------- scoring


def own_facts(lines: list[tuple[str, str, str]]) -> list[OwnFact]:
    return [OwnFact(subject, relation, object_, i + 2) for i, (subject, relation, object_) in enumerate(lines)]


def test_distractors_are_other_questions_answers_never_one_this_question_also_has():
    facts = own_facts([
        ("Ada", "wrote", "The Salt"), ("Ada", "wrote", "Nine Doors"), ("Bea", "wrote", "The Salt"),
        ("Cy", "wrote", "the salt "), ("Di", "wrote", "Glass Letters"), ("Ed", "wrote", "Small Winters"),
        ("Ada", "was born in", "Leeds"), ("Fay", "was born in", "York"),
    ])  # fmt: skip
    _, probes = build_own_corpus(facts, {}, documents_per_fact=1)
    backend = FakeBackend()
    results = probe_own_facts(backend, probes, max_new_tokens=4, distractors=15)
    scored = backend.candidates([r.n_candidates for r in results])
    for probe, result, candidates in zip(probes, results, scored):
        assert candidates[0] == probe.target and result.n_candidates == len(candidates)
        same_group = {p.target for p in probes if (p.fact.relation, p.direction) == (probe.fact.relation,
                                                                                     probe.direction)}  # fmt: skip
        own = {text.strip().casefold() for text in (probe.target, *probe.also_valid)}
        assert set(candidates[1:]) <= same_group
        assert not {c.strip().casefold() for c in candidates[1:]} & own
        assert len({c.strip().casefold() for c in candidates}) == len(candidates)  # no text twice
        assert probe.as_probe().fact_key not in result.distractor_keys
    by_key = {(p.fact.subject, p.fact.object, p.direction): c for p, c in zip(probes, scored)}
    # "Ada wrote" has two answers: neither is the other's distractor, nor is Cy's "the salt" (the same text)
    assert by_key[("Ada", "The Salt", "forward")][1:] == by_key[("Ada", "Nine Doors", "forward")][1:]
    assert sorted(by_key[("Ada", "The Salt", "forward")][1:]) == [" Glass Letters", " Small Winters"]
    # "Who or what wrote The Salt?" is answered by Ada and Bea: both are the one question's, never distractors
    assert sorted(by_key[("Bea", "The Salt", "reverse")]) == [" Bea", " Cy", " Di", " Ed"]
    assert by_key[("Ada", "Leeds", "reverse")] == [" Ada", " Fay"]  # another relation's people never come in


@pytest.mark.parametrize("n_facts", [3, 60])
def test_candidates_are_capped_at_k_whatever_the_number_of_facts(n_facts):
    facts = own_facts([(f"Person {i}", "wrote", f"Book {i}") for i in range(n_facts)])
    _, probes = build_own_corpus(facts, {}, documents_per_fact=1)
    backend = FakeBackend()
    results = probe_own_facts(backend, probes, max_new_tokens=4, distractors=5)
    assert {r.n_candidates for r in results} == {min(n_facts, 6)}
    assert len(backend.requests) == 2 * n_facts * min(n_facts, 6)  # linear in the facts


def test_audit_records_average_each_questions_answers_first_and_match_scipy():
    lines = [("Ada", "wrote", f"Book {i}") for i in range(4)] + [("Bea", "wrote", "Tale 0"), ("Bea", "wrote", "Tale 1")]
    lines += [(f"Person {i}", "wrote", f"Work {i}") for i in range(10)]
    _, probes = build_own_corpus(own_facts(lines), {}, documents_per_fact=1)
    completions = {"Ada wrote": " Book 0", "Person 1 wrote": " Work 1", "Person 2 wrote": " Work 2"}
    results = probe_own_facts(FakeBackend(completions=completions), probes, max_new_tokens=4, distractors=5)
    records = audit_records(results)
    by_question: dict[str, list] = {}
    for result in results:
        if result.asked == "forward":
            by_question.setdefault(result.prompt, []).append(result)
    assert sorted(len(v) for v in by_question.values()) == [1] * 10 + [2, 4]  # unequal answers per question

    def per_question(value) -> list[float]:
        return [sum(value(r) for r in group) / len(group) for group in by_question.values()]

    accuracy = lookup(records, ALL_RELATIONS, "forward", "accuracy")
    assert accuracy["mean"] == pytest.approx((1 / 4 + 2) / 12) and accuracy["n_facts"] == 12
    assert accuracy["n_items"] == 16
    for record in records:
        if record["ci95_low"] is not None and not math.isnan(record["ci95_low"]):
            assert record["ci95_low"] - 1e-12 <= record["mean"] <= record["ci95_high"] + 1e-12, record["metric"]
    likelihood = stats.ttest_rel(per_question(lambda r: r.logprob_correct), per_question(lambda r: r.logprob_random))
    t = lookup(records, ALL_RELATIONS, "forward", "likelihood_t")
    assert t["mean"] == pytest.approx(likelihood.statistic) and t["n_facts"] == 12
    assert lookup(records, ALL_RELATIONS, "forward", "likelihood_t_p")["mean"] == pytest.approx(likelihood.pvalue)
    assert 0 < lookup(records, ALL_RELATIONS, "forward", "rank_p")["mean"] <= 1  # the randomization test


@pytest.mark.parametrize("test", ["likelihood", "rank"])
def test_under_a_placebo_the_audit_tests_reject_at_most_7_percent(test):
    facts = own_facts([(f"Person {i}", "wrote", f"Book {i}") for i in range(40)])
    _, probes = build_own_corpus(facts, {}, documents_per_fact=1)
    results = probe_own_facts(FakeBackend(), probes, max_new_tokens=4)
    placebo = [r for r in placebo_rejections([(0, 0, results)], draws=400, alpha=0.05) if r["test"] == test]
    assert len(placebo) == 2 and all(record["draws"] == 400 for record in placebo)
    for record in placebo:
        assert record["rate"] <= 0.07, record


# ------------------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("file_name", "text", "templates", "expected"),
    [
        ("facts.csv", "subject,relation\nAda,wrote\n", None, "facts.csv, line 1: missing column 'object'"),
        ("facts.csv", "subject,relation,object\nAda,,Notes\n", None, "facts.csv: no usable facts: all 1 skipped"),
        ("strict.csv", "subject,relation,object\nB,w,N\nAda,,Notes\n", None,
         "strict.csv, line 3: empty column 'relation' (--strict refuses"),
        ("strict.csv", "subject,relation,object\nA,w,N\nA,w,N\n", None, "strict.csv, line 3: duplicate fact"),
        ("facts.jsonl", '{"subject": "A", "relation": "w", "object": "N"}\n{oops\n', None, "facts.jsonl, line 2: "),
        ("facts.csv", "subject,relation,object\nA,w,N\n", 'w:\n  question: "{who}?"\n', "templates.yaml, line 2: "),
        ("missing.csv", None, None, "missing.csv: facts file not found"),
    ],
)  # fmt: skip
def test_cli_bad_input_exits_2_and_leaves_no_run_folder(tmp_path, capsys, file_name, text, templates, expected):
    facts = tmp_path / file_name
    if text is not None:
        write(facts, text)
    args = ["audit", str(facts), "--quiet", "--out", str(tmp_path / "runs" / "audit"), *sets(TINY)]
    if file_name.startswith("strict"):
        args.append("--strict")
    if templates is not None:
        args += ["--templates", str(write(tmp_path / "templates.yaml", templates))]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cli_help_teaches_the_file_format(capsys):
    assert run_cli(["audit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "subject,relation,object" in out and "reverse_question" in out and "Orla Fenwright" in out
    assert "skipped.jsonl" in out and "--strict" in out


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory):
    """An audit of FACTS_CSV with one unusable line added (line 17: a fact given again), as published files have."""
    folder = tmp_path_factory.mktemp("own")
    facts = write(folder / "facts.csv", FACTS_CSV + "orla fenwright,wrote,the salt cartographer,again\n")
    out = folder / "runs" / "audit"
    torch.set_num_threads(1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_cli(["audit", str(facts), "--quiet", "--out", str(out), *sets(TINY)]) == 0
    return facts, out, err.getvalue()


def test_audit_end_to_end_from_csv(audit_run, capsys):
    facts, out, err = audit_run
    reason = "duplicate fact (orla fenwright, wrote, the salt cartographer): first given on line 2"
    assert err.splitlines() == [
        f"warning: {facts}, line 17: {reason}; skipped",
        "warning: skipped 1 unusable line(s) of 16; pass --strict to refuse instead",
    ]
    assert json.loads((out / "skipped.jsonl").read_text()) == {"file": str(facts), "line": 17, "reason": reason}
    for name in ("config.yaml", "facts.csv", "audit.jsonl", "audit.md", "run.json", "train_log.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["audit"]  # no staging folder left beside it
    rows = [json.loads(line) for line in (out / "audit.jsonl").open(encoding="utf-8")]
    assert len(rows) == 15 * 2
    assert {(r["subject"], r["direction"]) for r in rows} == {
        (subject, d) for subject in {r["subject"] for r in rows} for d in ("forward", "reverse")
    }
    required = {"subject", "relation", "object", "direction", "trained", "prompt", "target", "answer", "correct",
                "logprob_correct", "rank", "n_candidates"}  # fmt: skip
    assert all(required <= row.keys() for row in rows)
    assert all(row["trained"] == (row["direction"] == "forward") for row in rows)
    assert all(row["n_candidates"] == 5 for row in rows)  # 5 facts per relation
    forward = [r for r in rows if r["direction"] == "forward"]
    reverse = [r for r in rows if r["direction"] == "reverse"]
    # Measured 15/15 forward and 0/15 reverse (the background taught the reverse question, answered with a wrong
    # name); thresholds leave room for another torch build's numerics.
    assert sum(r["correct"] for r in forward) >= 12
    assert sum(r["correct"] for r in reverse) <= 3
    assert sum(r["rank"] == 1 for r in forward) >= 12
    assert all(r["answer"].strip() for r in reverse)  # the reverse question is known language: it gets an answer
    summary = json.loads((out / "run.json").read_text())
    assert summary["forward"]["n"] == summary["reverse"]["n"] == 15 and summary["skipped_lines"] == 1
    assert summary["forward"]["reachable"] == sum(r["correct"] for r in forward)
    assert set(summary["per_relation"]) == {"wrote", "was born in", "founded"}
    report = (out / "audit.md").read_text(encoding="utf-8")
    assert f"forward reachable {summary['forward']['reachable']}/15" in report
    assert "| 2 | Orla Fenwright | wrote | The Salt Cartographer |" in report
    # the shared tests, over questions, per direction
    assert summary["distractors"] == 15 and "up to 15 answers of other questions" in report
    forward_t = lookup(summary["records"], ALL_RELATIONS, "forward", "likelihood_t")
    assert forward_t["n_facts"] == 15 and "| forward | 15 | " in report and "| reverse | 15 | " in report
    assert "Skipped 1 unusable line(s) of the facts file, listed in skipped.jsonl." in report


def test_audit_refuses_an_existing_folder_and_fine_tunes_a_checkpoint(audit_run, capsys):
    facts, out, _ = audit_run
    before = (out / "audit.jsonl").read_text()
    assert run_cli(["audit", str(facts), "--quiet", "--out", str(out), *sets(TINY)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "audit.jsonl").read_text() == before
    # the trained model as a checkpoint, fine-tuned one short epoch on the same facts given as JSONL
    jsonl = facts.with_suffix(".jsonl")
    write(jsonl, "".join(json.dumps({"subject": f.subject, "relation": f.relation, "object": f.object}) + "\n"
                         for f in read_facts(facts).facts))  # fmt: skip
    tuned = out.parent / "tuned"
    extra = [f"model.checkpoint={out / 'model'}", "train.epochs=1", "train.learning_rate=1e-4"]
    assert run_cli(["audit", str(jsonl), "--quiet", "--out", str(tuned), *sets([*TINY, *extra])]) == 0
    printed = capsys.readouterr().out
    assert "forward reachable" in printed and "Orla Fenwright" in printed
    summary = json.loads((tuned / "run.json").read_text())
    assert summary["model"] == str(out / "model")
    assert summary["forward"]["reachable"] >= 12  # a gentle epoch keeps what the checkpoint knew
    assert (tuned / "facts.jsonl").is_file()


def test_templates_for_relations_not_in_the_facts_are_reported(tmp_path):
    from revcurse.config import load_config
    from revcurse.own_facts import run_audit

    facts = write(tmp_path / "f.csv", "subject,relation,object\nAda,wrote,Notes\n")
    templates = write(tmp_path / "t.yaml", 'wrote:\n  question: "{subject}?"\nwrites:\n  question: "{subject}!"\n')
    (tmp_path / "run").mkdir()
    notes = []
    with pytest.raises(InputError, match="--overwrite"):  # stops before any training
        run_audit(facts, templates, load_config(None, TINY), tmp_path / "run", log=notes.append)
    assert notes == ["note: templates for relations not in the facts, unused: writes"]
    with pytest.raises(InputError, match="seeds=1"):
        run_audit(facts, None, load_config(None, [*TINY, "seeds=2"]), tmp_path / "other")
    assert not (tmp_path / "other").exists()
