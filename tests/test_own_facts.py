"""The own-facts experiment: its corpus, the shared scorer on its probes, and `revcurse audit` end to end
(training, --no-train with a local model and through `revcurse serve`, compare)."""

import contextlib
import io
import json
import math

import pytest
import torch
from scipy import stats

from revcurse.cli import main
from revcurse.corpus import Corpus
from revcurse.cures import CureContext, apply_cures
from revcurse.experiments.own_facts import ALL_RELATIONS, build_own_corpus
from revcurse.facts_file import OwnFact, read_facts, read_templates
from revcurse.metrics import lookup, placebo_rejections, pooled_groups
from revcurse.probe import ProbeResult, run_probes
from revcurse.report_audit import fact_audits
from revcurse.world import Subset
from tests.fakes import FakeBackend
from tests.test_facts_file import FACTS_CSV, TEMPLATES, write

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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def probe(backend, corpus: Corpus, distractors: int = 15):
    return run_probes(backend, corpus, 4, show_progress=False, distractors=distractors)


# --------------------------------------------------------------------------------------------------------- corpus


def test_default_templates_state_facts_forward_only(tmp_path):
    facts = read_facts(
        write(tmp_path / "f.csv", "subject,relation,object\nAda,born_in,Leeds\nBea,born_in,York\n")
    ).facts
    corpus = build_own_corpus(facts, {}, documents_per_fact=3)
    documents, probes = corpus.documents, corpus.probes
    assert [d.text for d in documents] == ["Ada born in Leeds."] * 3 + ["Bea born in York."] * 3
    assert all(d.subset is Subset.NAME_TO_DESCRIPTION for d in documents)
    assert documents[0].prompt_chars == len("Ada born in")
    forward, reverse = probes[0], probes[1]
    assert (forward.asked, forward.trained, forward.prompt, forward.target) == (
        "forward", True, "Ada born in", " Leeds"
    )  # fmt: skip
    assert (reverse.asked, reverse.trained, reverse.prompt, reverse.target) == (
        "reverse", False, "Who or what born in Leeds? Answer:", " Ada"
    )  # fmt: skip
    # the question is the fact, its group is (relation, direction)
    assert (forward.fact_key, forward.subset, forward.phrasing) == ("Ada born in", "born_in", "forward")
    assert reverse.fact_key == "Who or what born in Leeds? Answer:"
    # stated in reverse (for the bidirectional cure only): the reverse question and its answer, as often
    reverse_texts = [d.text for d in corpus.reverse_documents]
    leeds, york = "Who or what born in Leeds? Answer: Ada", "Who or what born in York? Answer: Bea"
    assert reverse_texts == [leeds] * 3 + [york] * 3
    assert corpus.reverse_documents[0].prompt_chars == len("Who or what born in Leeds? Answer:")


def test_corpus_cycles_statements_and_never_trains_the_reverse_of_a_user_fact(tmp_path):
    facts = read_facts(write(tmp_path / "f.csv", FACTS_CSV)).facts
    templates = read_templates(write(tmp_path / "t.yaml", TEMPLATES.replace("born_in", "was born in")))
    corpus = build_own_corpus(facts, templates, documents_per_fact=4, background=9, background_phrasings=2)
    documents, probes = corpus.documents, corpus.probes
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
        assert not any(text.startswith(probe.prompt + probe.target) for text in texts if probe.asked == "reverse")
    # background: 3 per relation, each asked in reverse with its answer, and never one of the user's entities
    assert sum(d.text.startswith("Who wrote ") for d in background) == 3 * 2
    entities = {f.subject for f in facts} | {f.object for f in facts}
    assert not entities & {e for d in background for e in d.entities}
    # one question per fact and direction: distinct facts, distinct questions
    assert len({(p.asked, p.fact_key) for p in probes}) == 2 * 15
    # the bidirectional cure states every user fact object first, as often as forward
    cured = apply_cures(corpus, ["bidirectional"], CureContext())
    added = cured.documents[len(documents) :]
    assert len(added) == 4 * 15 and added[0].text == "Who wrote The Salt Cartographer? Answer: Orla Fenwright"
    for document in added:
        subject, object_ = document.entities[1], document.entities[0]
        assert document.text.index(object_) < document.text.index(subject)


def test_a_question_shared_by_two_facts_lists_the_other_answer(tmp_path):
    facts = read_facts(
        write(tmp_path / "f.csv", "subject,relation,object\nAda,born_in,Leeds\nBea,born_in,Leeds\n")
    ).facts
    probes = build_own_corpus(facts, {}, documents_per_fact=1).probes
    # both reverse probes ask one question: one fact, so neither answer is the other's distractor
    assert probes[1].fact_key == probes[3].fact_key and probes[0].fact_key != probes[2].fact_key


# --------------------------------------------------------------------------------------------------------- scoring


def own_facts(lines: list[tuple[str, str, str]]) -> list[OwnFact]:
    return [OwnFact(subject, relation, object_, i + 2) for i, (subject, relation, object_) in enumerate(lines)]


def test_distractors_are_other_questions_answers_never_one_this_question_also_has():
    facts = own_facts([
        ("Ada", "wrote", "The Salt"), ("Ada", "wrote", "Nine Doors"), ("Bea", "wrote", "The Salt"),
        ("Cy", "wrote", "the salt "), ("Di", "wrote", "Glass Letters"), ("Ed", "wrote", "Small Winters"),
        ("Ada", "was born in", "Leeds"), ("Fay", "was born in", "York"),
    ])  # fmt: skip
    corpus = build_own_corpus(facts, {}, documents_per_fact=1)
    probes = corpus.probes
    backend = FakeBackend()
    results = probe(backend, corpus, 15)
    scored = backend.candidates([r.n_candidates for r in results])
    for question, result, candidates in zip(probes, results, scored):
        assert candidates[0] == question.target and result.n_candidates == len(candidates)
        group = [p for p in probes if (p.subset, p.asked) == (question.subset, question.asked)]
        own = {p.target.strip().casefold() for p in group if p.fact_key == question.fact_key}
        assert set(candidates[1:]) <= {p.target for p in group}
        assert not {c.strip().casefold() for c in candidates[1:]} & own
        assert len({c.strip().casefold() for c in candidates}) == len(candidates)  # no text twice
        assert question.fact_key not in result.distractor_keys
    asked = [(f.subject, f.object, d) for f in facts for d in ("forward", "reverse")]  # the probes' order
    by_key = dict(zip(asked, scored))
    # "Ada wrote" has two answers: neither is the other's distractor, nor is Cy's "the salt" (the same text)
    assert by_key[("Ada", "The Salt", "forward")][1:] == by_key[("Ada", "Nine Doors", "forward")][1:]
    assert sorted(by_key[("Ada", "The Salt", "forward")][1:]) == [" Glass Letters", " Small Winters"]
    # "Who or what wrote The Salt?" is answered by Ada and Bea: both are the one question's, never distractors
    assert sorted(by_key[("Bea", "The Salt", "reverse")]) == [" Bea", " Cy", " Di", " Ed"]
    assert by_key[("Ada", "Leeds", "reverse")] == [" Ada", " Fay"]  # another relation's people never come in


@pytest.mark.parametrize("n_facts", [3, 60])
def test_candidates_are_capped_at_k_whatever_the_number_of_facts(n_facts):
    facts = own_facts([(f"Person {i}", "wrote", f"Book {i}") for i in range(n_facts)])
    corpus = build_own_corpus(facts, {}, documents_per_fact=1)
    backend = FakeBackend()
    results = probe(backend, corpus, 5)
    assert {r.n_candidates for r in results} == {min(n_facts, 6)}
    assert len(backend.requests) == 2 * n_facts * min(n_facts, 6)  # linear in the facts


def test_audit_records_average_each_questions_answers_first_and_match_scipy():
    lines = [("Ada", "wrote", f"Book {i}") for i in range(4)] + [("Bea", "wrote", "Tale 0"), ("Bea", "wrote", "Tale 1")]
    lines += [(f"Person {i}", "wrote", f"Work {i}") for i in range(10)]
    corpus = build_own_corpus(own_facts(lines), {}, documents_per_fact=1)
    completions = {"Ada wrote": " Book 0", "Person 1 wrote": " Work 1", "Person 2 wrote": " Work 2"}
    results = probe(FakeBackend(completions=completions), corpus, 5)
    records = pooled_groups([(0, 0, results)], ALL_RELATIONS)
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
    results = probe(FakeBackend(), build_own_corpus(facts, {}, documents_per_fact=1))
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
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert run_cli(["audit", str(facts), "--quiet", "--out", str(out), *sets(TINY)]) == 0
    return facts, out, printed.getvalue()


def predictions(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_audit_end_to_end_from_csv(audit_run):
    facts, out, printed = audit_run
    reason = "duplicate fact (orla fenwright, wrote, the salt cartographer): first given on line 2"
    assert f"warning: {facts}, line 17: {reason}; skipped" in printed
    assert json.loads((out / "skipped.jsonl").read_text()) == {"file": str(facts), "line": 17, "reason": reason}
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "report.md", "run.json", "status.json"):
        assert (out / name).is_file(), name
    assert (out / "seed-0" / "model" / "model.safetensors").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["audit"]  # no staging folder left beside it
    rows = predictions(out)
    assert len(rows) == 15 * 2 and all(row["trained"] == (row["asked"] == "forward") for row in rows)
    assert all(row["n_candidates"] == 5 for row in rows)  # 5 facts per relation
    forward = [r for r in rows if r["asked"] == "forward"]
    reverse = [r for r in rows if r["asked"] == "reverse"]
    # Measured 15/15 forward and 0/15 reverse (the background taught the reverse question, answered with a wrong
    # name), the same before and after the move to the runner; thresholds leave room for another torch build.
    assert sum(r["correct"] for r in forward) >= 12
    assert sum(r["correct"] for r in reverse) <= 3
    assert sum(r["rank"] == 1 for r in forward) >= 12
    assert all(r["completion"].strip() for r in reverse)  # the reverse question is known language: an answer
    # the run's records: one group per relation and direction, and all relations pooled
    records = json.loads((out / "metrics.json").read_text())
    assert {(r["subset"], r["asked"]) for r in records} == {
        (relation, asked) for relation in ("wrote", "was born in", "founded", ALL_RELATIONS)
        for asked in ("forward", "reverse")
    }
    reached = sum(r["correct"] for r in forward)
    assert f"forward reachable {reached}/15" in printed and "Orla Fenwright | wrote | The Salt" in printed
    assert "all relations" in printed
    pooled = [record for record in records if record["subset"] == ALL_RELATIONS]
    assert lookup(pooled, ALL_RELATIONS, "forward", "likelihood_t")["n_facts"] == 15
    assert lookup(pooled, ALL_RELATIONS, "forward", "accuracy")["mean"] == pytest.approx(reached / 15)
    audits = fact_audits([ProbeResult(**{k: v for k, v in r.items() if k != "seed"}) for r in rows])
    assert (audits[0].subject, audits[0].relation, audits[0].object) == ("Orla Fenwright", "wrote",
                                                                        "The Salt Cartographer")  # fmt: skip


def test_show_and_report_read_an_audit(audit_run, capsys):
    _, out, _ = audit_run
    assert run_cli(["show", str(out)]) == 0
    assert "was born in" in capsys.readouterr().out


def test_audit_refuses_an_existing_folder_and_fine_tunes_a_checkpoint(audit_run, capsys):
    facts, out, _ = audit_run
    before = (out / "predictions.jsonl").read_text()
    assert run_cli(["audit", str(facts), "--quiet", "--out", str(out), *sets(TINY)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "predictions.jsonl").read_text() == before
    # the trained model as a checkpoint, fine-tuned one short epoch on the same facts given as JSONL
    jsonl = facts.with_suffix(".jsonl")
    write(jsonl, "".join(json.dumps({"subject": f.subject, "relation": f.relation, "object": f.object}) + "\n"
                         for f in read_facts(facts).facts))  # fmt: skip
    tuned = out.parent / "tuned"
    extra = ["train.epochs=1", "train.learning_rate=1e-4"]
    model = out / "seed-0" / "model"
    args = ["audit", str(jsonl), "--quiet", "--out", str(tuned), "--model", str(model), *sets([*TINY, *extra])]
    assert run_cli(args) == 0
    assert "forward reachable" in capsys.readouterr().out
    assert json.loads((tuned / "run.json").read_text())["model"] == str(model)
    assert sum(r["correct"] for r in predictions(tuned) if r["asked"] == "forward") >= 12  # a gentle epoch keeps it


def test_no_train_audits_a_model_locally_and_through_revcurse_serve_alike(audit_run, tmp_path, capsys):
    from revcurse.config import ModelConfig
    from revcurse.model import load_checkpoint
    from revcurse.serve import make_server
    from tests.test_serve import running

    facts, out, _ = audit_run
    model = out / "seed-0" / "model"
    local = tmp_path / "local"
    assert run_cli(["audit", str(facts), "--quiet", "--no-train", "--model", str(model), "--out", str(local)]) == 0
    assert not (local / "seed-0" / "model").exists()  # nothing trained, nothing saved
    assert [r["completion"] for r in predictions(local)] == [r["completion"] for r in predictions(out)]
    loaded = load_checkpoint(ModelConfig(checkpoint=str(model)))
    remote = tmp_path / "remote"
    with running(make_server(*loaded, "tiny", port=0, quiet=True)) as server:
        args = ["audit", str(facts), "--quiet", "--no-train", "--url", server.url, "--model-name", "tiny",
                "--api-key-env", "REVCURSE_TEST_UNSET", "--out", str(remote)]  # fmt: skip
        assert run_cli(args) == 0
    assert "tiny at http://127.0.0.1" in capsys.readouterr().out
    for here, there in zip(predictions(local), predictions(remote), strict=True):
        assert (there["prompt"], there["correct"], there["rank"]) == (here["prompt"], here["correct"], here["rank"])
        assert there["logprob_correct"] == pytest.approx(here["logprob_correct"], abs=1e-3)
    assert run_cli(["audit", str(facts), "--url", "http://127.0.0.1:9/v1"]) == 2  # a server cannot be trained
    assert "--no-train" in capsys.readouterr().err


def test_rich_markup_in_facts_and_answers_is_printed_as_written(tmp_path, capsys):
    facts = write(tmp_path / "f.csv", "subject,relation,object\n[/x] Ada,wrote,[bold]Notes[/]\nBea,wrote,Poems\n")
    out = tmp_path / "run"
    assert run_cli(["audit", str(facts), "--quiet", "--out", str(out), *sets([*TINY, "train.epochs=1"])]) == 0
    assert "[/x] Ada | wrote | [bold]Notes[/]" in capsys.readouterr().out


def test_compare_runs_the_bidirectional_cure_on_own_facts(tmp_path, capsys):
    facts = write(tmp_path / "f.csv", "\n".join(FACTS_CSV.splitlines()[:6]) + "\n")  # 5 facts, one relation
    args = ["compare", "--cures", "bidirectional", "--jobs", "1", "--quiet", "--out", str(tmp_path / "cmp"),
            *sets([*TINY, "experiment=own-facts", f"own_facts.facts={facts}"])]  # fmt: skip
    assert run_cli(args) == 0
    cured = predictions(tmp_path / "cmp" / "cure-bidirectional")
    baseline = predictions(tmp_path / "cmp" / "cure-none")
    # trained on each fact's reverse statement (here its reverse question and answer): the reverse is reached
    assert sum(r["correct"] for r in cured if r["asked"] == "reverse") >= 4
    assert sum(r["correct"] for r in baseline if r["asked"] == "reverse") <= 1


def test_templates_for_relations_not_in_the_facts_are_reported(tmp_path, capsys):
    facts = write(tmp_path / "f.csv", "subject,relation,object\nAda,wrote,Notes\n")
    templates = write(tmp_path / "t.yaml", 'wrote:\n  question: "{subject}?"\nwrites:\n  question: "{subject}!"\n')
    (tmp_path / "run").mkdir()
    args = ["audit", str(facts), "--templates", str(templates), "--quiet", "--out", str(tmp_path / "run"), *sets(TINY)]
    assert run_cli(args) == 2  # the folder exists: stops before any training
    assert "note: templates for relations not in the facts, unused: writes" in capsys.readouterr().out
