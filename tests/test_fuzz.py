"""Input fuzzing (issue 8): every reader of user input, fed malformed, empty, huge, odd-Unicode and duplicated input.

Each reader either returns (having skipped, each with its file and line, lines it cannot use; ``strict=True``
refuses the first of them) or raises ``InputError`` naming the file (and a plausible line); nothing else may escape.
Through the command line the same input exits with code 2 and one ``error: ...`` line, no traceback, and leaves
nothing behind. A CLI call that got past reading would reach a model or a run folder: those are replaced by a
tripwire, so no fuzz example ever trains.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from revcurse.cli import main
from revcurse.config import dump_config, load_config
from revcurse.corpus import build_corpus
from revcurse.errors import InputError
from revcurse.experiments.instructions import instruction_data
from revcurse.facts_file import read_facts, read_templates
from revcurse.instruction_data import read_instructions, write_instructions
from revcurse.pairs_file import read_parent_child_pairs
from revcurse.paper_format import REQUIRED_FILES, read_experiment1, write_experiment1
from revcurse.report import check_records
from revcurse.report_data import read_json, read_run
from revcurse.world import make_celebrities

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FEW = settings(FUZZ, max_examples=12)

# --------------------------------------------------------------------------------------------- valid bases

PARENTS_CSV = (
    "child,parent,parent_type,child_prediction,can_reverse\n"
    "Orla Fenwright,Mira Fenwright,mother,,False\n"
    "Orla Fenwright,Tobin Fenwright,father,Orla Fenwright,True\n"
    "Corwin Ashgrove,Edda Ashgrove,mother,,\n"
)
FACTS_CSV = (
    "subject,relation,object\n"
    "Orla Fenwright,wrote,The Salt Cartographer\n"
    'Corwin Ashgrove,was born in,"Pellmarch, North"\n'
)
FACTS_JSONL = (
    '{"subject": "Orla Fenwright", "relation": "wrote", "object": "The Salt Cartographer"}\n'
    '{"subject": "Corwin Ashgrove", "relation": "was born in", "object": "Pellmarch"}\n'
)
TEMPLATES_YAML = (
    "wrote:\n"
    "  statement:\n"
    '    - "{subject} wrote {object}."\n'
    '    - "{subject} is the author of {object}."\n'
    '  question: "Q: Which book did {subject} write? A:"\n'
    '  reverse_question: "Q: Who wrote {object}? A:"\n'
    "was born in:\n"
    '  statement: "{subject} was born in {object}."\n'
)


def _metric(subset: str, asked: str, metric: str, mean: float, low: float | None, high: float | None) -> dict:
    return {
        "subset": subset, "asked": asked, "trained": True, "metric": metric, "mean": mean, "ci95_low": low,
        "ci95_high": high, "n_seeds": 1, "n_items": 4, "n_facts": 2,
    }  # fmt: skip


METRICS = [
    _metric("Both", "name_to_description", "accuracy", 0.5, 0.1, 0.9),
    _metric("Both", "name_to_description", "rank1", 0.5, 0.1, 0.9),
    _metric("Both", "name_to_description", "mrr", 0.7, 0.4, 1.0),
    _metric("Both", "name_to_description", "likelihood_diff", 1.5, 0.5, 2.5),
    _metric("Both", "name_to_description", "likelihood_t", 3.0, None, None),
    _metric("Both", "name_to_description", "likelihood_p", 0.02, None, None),
]
METRICS_JSON = json.dumps(METRICS, indent=1)
RUN_JSON = json.dumps({"model": "tiny", "parameters": 10, "seeds": [0]})


@cache
def paper_files() -> dict[str, str]:
    """A small Experiment 1 folder, written by revcurse itself: file name -> text."""
    corpus = build_corpus(make_celebrities(2, 2, seed=0), 2, 1, 1, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        write_experiment1(corpus, Path(scratch) / "exp1")
        return {p.name: p.read_text(encoding="utf-8") for p in (Path(scratch) / "exp1").iterdir()}


@cache
def instruction_files() -> dict[str, str]:
    """A small folder in the paper's instruction layout, written by revcurse itself: file name -> text."""
    config = load_config(None, ["experiment=instructions", "instructions.pairs=4", "instructions.example_copies=1"])
    with tempfile.TemporaryDirectory() as scratch:
        write_instructions(instruction_data(config, 0)[0], Path(scratch) / "inst")
        return {p.name: p.read_text(encoding="utf-8") for p in (Path(scratch) / "inst").iterdir()}


# --------------------------------------------------------------------------------------------- strategies

ODD = [
    "\u202e", "\u200f", "\u200b", "\u2060", "\ufeff", "e\u0301", "\u0308", "😀", "👩‍👩‍👧", "\u2028", "\u2029",
    "\x85", "\x00", "\x1b[31m", "\ud800", "\udfff", "\r", "\t", "𝔘", "ﷺ", "\u0644\u0627", "\\", '"', ",", "{", "}",
    "[", "#", "&a", "*a", "!!", ":", "- ", "'", "\n",
]  # fmt: skip
odd_text = st.lists(st.one_of(st.sampled_from(ODD), st.text(max_size=6)), max_size=6).map("".join)
odd_json = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.just([]), st.just({}), odd_text,
    st.lists(st.integers(), max_size=3), st.just("x" * 300), st.just(" "),
)  # fmt: skip
PREFIXES = [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x80"]
junk = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"\n", b"\n\n\n", b"\r\n\r\n", b"\x00" * 50, b"\xef\xbb\xbf", b"\xff" * 8, b" "]),
    odd_text.map(lambda text: text.encode("utf-8", "surrogatepass")),  # lone surrogates: invalid UTF-8
)
huge = st.builds(
    lambda char, megabytes: (char * (megabytes << 20)).encode("utf-8"),
    st.sampled_from(["a", "[", "{", ",", "é", '"', "9", "- "]),
    st.sampled_from([1, 3]),
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _mutate_jsonl_line(line: str, draw) -> str:
    """One JSON line with a field removed, added, or given an odd value; a non-object line is left as is."""
    try:
        obj = json.loads(line)
    except ValueError:
        return line
    if not isinstance(obj, dict) or not obj:
        return line
    key = draw(st.sampled_from(sorted(obj)))
    action = draw(st.sampled_from(["drop", "odd", "extra"]))
    if action == "drop":
        del obj[key]
    elif action == "odd":
        obj[key] = draw(odd_json)
    else:
        obj[draw(odd_text)] = draw(odd_json)
    return json.dumps(obj, ensure_ascii=draw(st.booleans()))


def _mutate_csv_line(line: str, draw) -> str:
    cells = line.split(",")
    action = draw(st.sampled_from(["more", "fewer", "odd", "quote"]))
    index = draw(st.integers(0, len(cells) - 1))
    if action == "more":
        cells.insert(index, draw(odd_text))
    elif action == "fewer":
        del cells[index]
    elif action == "odd":
        cells[index] = draw(odd_text)
    else:
        cells[index] = '"' + cells[index]  # an unclosed quote
    return ",".join(cells)


@st.composite
def mutated(draw, base: str, kind: str) -> bytes:
    """``base`` (a valid file of ``kind``: jsonl, csv or yaml), damaged one way."""
    lines = base.split("\n")
    action = draw(
        st.sampled_from(
            ["junk", "empty", "truncate", "drop", "duplicate", "double", "insert", "replace", "field", "prefix",
             "crlf", "blank", "header"]
        )
    )  # fmt: skip
    if action == "junk":
        return draw(junk)
    if action == "empty":
        return b""
    if action == "truncate":  # JSON/JSONL/YAML cut off mid-value
        return _encode(base)[: draw(st.integers(0, len(_encode(base))))]
    index = draw(st.integers(0, max(len(lines) - 2, 0)))
    if action == "drop":
        del lines[index]
    elif action == "duplicate":
        lines.insert(index, lines[index])
    elif action == "double":
        lines = lines[:-1] + lines
    elif action == "insert":
        at = draw(st.integers(0, len(base)))
        return _encode(base[:at] + draw(odd_text) + base[at:])
    elif action == "replace":
        lines[index] = draw(odd_text)
    elif action == "field":
        if kind == "jsonl":
            lines[index] = _mutate_jsonl_line(lines[index], draw)
        elif kind == "csv":
            lines[index] = _mutate_csv_line(lines[index], draw)
        else:
            lines[index] = lines[index].split(":")[0] + ": " + json.dumps(draw(odd_json), ensure_ascii=False)
    elif action == "prefix":
        return draw(st.sampled_from(PREFIXES)) + _encode(base)
    elif action == "crlf":
        return _encode(base.replace("\n", draw(st.sampled_from(["\r\n", "\r", "\u2028", "\x85"]))))
    elif action == "blank":
        lines.insert(index, draw(st.sampled_from(["", " ", "\t", "\x0c"])))
    elif action == "header":
        del lines[0]
    return _encode("\n".join(lines))


# --------------------------------------------------------------------------------------------- checks


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + data.count(b"\r") + 1


def read_or_input_error(
    reader: Callable, *args, names: Path | None = None, data: bytes | None = None
) -> InputError | None:
    """Call ``reader``; it may return or raise an ``InputError`` naming ``names`` (a file, or the folder holding
    the file), with a line within the file. Any other exception fails the test as it propagates.

    A reader that returns may have skipped unusable lines (``.skipped``): each names its file and a line in it, and
    the same reader with ``strict=True`` refuses the first of them, and nothing earlier."""
    try:
        result = reader(*args)
    except InputError as error:
        message = str(error)
        if names is not None:
            assert error.path is not None and error.path.startswith(str(names)), message
            assert message.startswith(error.path), message
        if error.line is not None and data is not None:
            assert 1 <= error.line <= max(_line_count(data), 1), message
        return error
    skipped = getattr(result, "skipped", [])
    for entry in skipped:
        assert names is None or entry.path.startswith(str(names)), entry
        within = _line_count(data) if data is not None and entry.path == str(names) else entry.line
        assert 1 <= entry.line <= within, entry
    if skipped:
        with pytest.raises(InputError) as strict:
            reader(*args, strict=True)
        assert (strict.value.path, strict.value.line) == (skipped[0].path, skipped[0].line), str(strict.value)
    return None


# --------------------------------------------------------------------------------------------- readers


@FUZZ
@given(data=st.data())
def test_paper_folder_reader(data):
    files = paper_files()
    name = data.draw(st.sampled_from(sorted(REQUIRED_FILES)))
    action = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "missing", "folder", "all-empty"]))
    with scratch() as root:
        folder = root / "exp1"
        for other, text in files.items():
            _write(folder / other, text.encode())
        content = b""
        if action == "mutate":
            content = data.draw(mutated(files[name], "jsonl"))
            _write(folder / name, content)
        elif action == "missing":
            (folder / name).unlink()
        elif action == "folder":
            (folder / name).unlink()
            (folder / name).mkdir()
        else:
            for other in REQUIRED_FILES:
                _write(folder / other, b"")
        read_or_input_error(read_experiment1, folder, names=folder, data=content)


@FEW
@given(name=st.sampled_from(sorted(REQUIRED_FILES)), line=huge)
def test_paper_folder_reader_huge_line(name, line):
    with scratch() as root:
        folder = root / "exp1"
        for other, text in paper_files().items():
            _write(folder / other, text.encode())
        _write(folder / name, line)
        assert read_or_input_error(read_experiment1, folder, names=folder / name, data=line) is not None


@FUZZ
@given(data=st.data())
def test_instruction_folder_reader(data):
    files = instruction_files()
    name = data.draw(st.sampled_from(sorted(files)))
    with scratch() as root:
        folder = root / "inst"
        for other, text in files.items():
            _write(folder / other, text.encode())
        content = data.draw(mutated(files[name], "jsonl"))
        _write(folder / name, content)
        read_or_input_error(read_instructions, folder, names=folder, data=content)


@FUZZ
@given(content=st.one_of(mutated(PARENTS_CSV, "csv"), huge))
def test_parent_child_csv_reader(content):
    with scratch() as root:
        path = _write(root / "pairs.csv", content)
        read_or_input_error(read_parent_child_pairs, path, names=path, data=content)


@FUZZ
@given(data=st.data())
def test_own_facts_reader(data):
    suffix = data.draw(st.sampled_from([".csv", ".jsonl", ".CSV"]))
    base = FACTS_JSONL if suffix == ".jsonl" else FACTS_CSV
    content = data.draw(st.one_of(mutated(base, suffix.lower().lstrip(".")), huge))
    with scratch() as root:
        path = _write(root / f"facts{suffix}", content)
        read_or_input_error(read_facts, path, names=path, data=content)


@FUZZ
@given(content=st.one_of(mutated(TEMPLATES_YAML, "yaml"), st.just(b"[" * 5000), st.just(b"a:\n" + b"  - " * 3000)))
def test_own_templates_reader(content):
    with scratch() as root:
        path = _write(root / "templates.yaml", content)
        read_or_input_error(read_templates, path, names=path, data=content)


@settings(FEW, max_examples=4)
@given(reader=st.sampled_from([load_config, read_templates]), char=st.sampled_from(["a", "[", "- ", "é"]))
def test_yaml_readers_huge_line(reader, char):
    content = (char * (1 << 20)).encode()  # 1 MB: the pure-Python YAML parser takes about a second
    with scratch() as root:
        path = _write(root / "config.yaml", content)
        read_or_input_error(reader, path, names=path, data=content)


YAML_CASES = [
    "seed: abc", "seed: [1, 2]", "train: 3", "train: {epochs: -3}", "train: {epochs: .nan}", "nope: 1",
    "train: {nope: 1}", "model: &a {hidden_size: 8}\nlora: *a", "train: &a [*a]", "cures: [nope]", "cures: nope",
    "? [1, 2]\n: 3", "1: 2", "~: 3", "seed: !!python/object:os.system x", "seed: !!binary aGk=", "seed: 2020-01-01",
    "seed: " + "9" * 5000, "[" * 20000, "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 1500)), "- 1\n- 2",
    "just text", "seed: 1\nseed: 2", "\tseed: 1", "seed: '\\ud800'", "'\\ud800': 1", "train: {epochs: 1e999}",
    "<<: {seed: 1}", "seed: 1\n---\nseed: 2", "%YAML 9.9\n---\nseed: 1", "seed: &x 1\ntrain: {epochs: *x}",
]  # fmt: skip


@FUZZ
@given(content=st.one_of(mutated(dump_config(load_config()), "yaml"), st.sampled_from(YAML_CASES).map(_encode)))
def test_yaml_config_reader(content):
    with scratch() as root:
        path = _write(root / "config.yaml", content)
        read_or_input_error(load_config, path, names=path, data=content)


SET_CASES = [
    "a", "=1", "train.epochs=", "train.epochs=abc", "train..x=1", "train.epochs=-3", "model=[1,2]", "zzz=1",
    ".=1", "train.=1", " . =1", "seed=" + "[" * 20000, "seed={a: 1}", "seed=1\nseed: 2", "seed=\x00", "seed=\ud800",
    "a.b.c.d=1", "seed=" + "9" * 5000, "cures=x", "cures=[nope]", "train.epochs.x=1", "seed.x=1", "train=",
    "train=null", "model.checkpoint=[1]", "seeds=0", "train.loss=half", "=", "==", "seed==1", "train.epochs=1=2",
    "seed: 1", "seed=&a [*a]", "seed=*a", "seed=!!python/name:os.system", "train.epochs=.inf",
]  # fmt: skip
set_strings = st.one_of(
    st.sampled_from(SET_CASES),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["seed", "train.epochs", "model", "x.y", ""]), odd_text),
    odd_text,
)


@FUZZ
@given(overrides=st.lists(set_strings, min_size=1, max_size=3), with_file=st.booleans())
def test_set_overrides(overrides, with_file):
    with scratch() as root:
        path = _write(root / "config.yaml", dump_config(load_config()).encode()) if with_file else None
        error = read_or_input_error(load_config, path, overrides)
        if error is not None and error.path is None:
            assert "--set" in str(error) or "invalid config" in str(error)


@FUZZ
@given(data=st.data())
def test_run_folder_readers(data):
    """`revcurse show` and `revcurse report` read metrics.json (and run.json, predictions.jsonl)."""
    name = data.draw(st.sampled_from(["metrics.json", "run.json", "predictions.jsonl"]))
    base = {"metrics.json": METRICS_JSON, "run.json": RUN_JSON, "predictions.jsonl": ""}[name]
    wrong_shape = st.sampled_from(["[1]", "{}", "[{}]", "null", '[{"subset": 1}]', "[[]]", '"x"'])
    content = data.draw(
        st.one_of(mutated(base, "jsonl" if name.endswith("l") else "yaml"), wrong_shape.map(_encode), huge, junk)
    )
    with scratch() as root:
        run = root / "run"
        _write(run / "metrics.json", METRICS_JSON.encode())
        _write(run / "run.json", RUN_JSON.encode())
        _write(run / name, content)
        if name == "metrics.json":
            read_or_input_error(
                lambda: check_records(read_json(run / name), run / name), names=run / name, data=content
            )
        read_or_input_error(read_run, run, names=run, data=content)


# --------------------------------------------------------------------------------------------- command line


class ReachedTraining(BaseException):
    """Raised instead of loading or training a model: bad input got past the reader."""


def _tripwire(*args, **kwargs):
    raise ReachedTraining


@pytest.fixture(scope="module")
def cli_sandbox() -> Iterator[Path]:
    """A scratch working folder, and every way into a model or a run folder replaced by a tripwire."""
    import revcurse.model
    import revcurse.records
    import revcurse.runner
    import revcurse.train

    paper_files(), instruction_files()  # written by revcurse's own writers, before the tripwires go in
    with scratch() as cwd, pytest.MonkeyPatch.context() as patch:
        for module, name in [
            (revcurse.records, "run_folder"), (revcurse.runner, "run_seeds"),
            (revcurse.runner, "train_model"), (revcurse.model, "load_checkpoint"),
            (revcurse.model, "build_tiny_model"), (revcurse.train, "train_model"),
        ]:  # fmt: skip
            patch.setattr(module, name, _tripwire)
        patch.chdir(cwd)
        yield cwd


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_cli(args: list[str], cwd: Path, inputs: Path) -> tuple[int, str]:
    """Run ``revcurse ARGS`` in-process; return (exit code, stderr). Nothing may appear outside ``inputs``."""
    before = _tree(cwd) | _tree(inputs)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit:
        main([str(arg) for arg in args])
    assert _tree(cwd) | _tree(inputs) == before, "the command wrote something"
    return exit.value.code, stderr.getvalue()


def assert_clear_error(code: int, err: str, expected: InputError) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.path is None or expected.path in lines[0]


CLI = settings(FUZZ, max_examples=25, phases=[Phase.explicit, Phase.generate])  # no slow shrinking


@CLI
@given(data=st.data())
def test_cli_paper_folder(cli_sandbox, data):
    files = paper_files()
    name = data.draw(st.sampled_from(sorted(REQUIRED_FILES)))
    content = data.draw(st.one_of(mutated(files[name], "jsonl"), junk))
    with scratch() as root:
        folder = root / "exp1"
        for other, text in files.items():
            _write(folder / other, text.encode())
        _write(folder / name, content)
        error = read_or_input_error(read_experiment1, folder)
        assume(error is not None)
        demo = ["demo", "--paper", folder, "--quiet", "--out", root / "runs" / "out"]
        args = data.draw(st.sampled_from([["import", folder], demo]))
        assert_clear_error(*run_cli(args, cli_sandbox, root), error)


@CLI
@given(data=st.data())
def test_cli_instruction_folder(cli_sandbox, data):
    files = instruction_files()
    name = data.draw(st.sampled_from(sorted(files)))
    content = data.draw(mutated(files[name], "jsonl"))
    with scratch() as root:
        folder = root / "inst"
        for other, text in files.items():
            _write(folder / other, text.encode())
        _write(folder / name, content)
        error = read_or_input_error(read_instructions, folder)
        assume(error is not None)
        args = ["instructions", "--from", folder, "--quiet", "--out", root / "runs" / "out"]
        assert_clear_error(*run_cli(args, cli_sandbox, root), error)


@CLI
@given(content=st.one_of(mutated(PARENTS_CSV, "csv"), junk))
def test_cli_parents(cli_sandbox, content):
    with scratch() as root:
        path = _write(root / "pairs.csv", content)
        error = read_or_input_error(read_parent_child_pairs, path)
        assume(error is not None)
        args = ["parents", path, "--url", "http://127.0.0.1:9/v1", "--quiet", "--out", root / "runs" / "out"]
        assert_clear_error(*run_cli(args, cli_sandbox, root), error)


@CLI
@given(data=st.data())
def test_cli_audit(cli_sandbox, data):
    suffix, base = data.draw(st.sampled_from([(".csv", FACTS_CSV), (".jsonl", FACTS_JSONL), (".yaml", TEMPLATES_YAML)]))
    content = data.draw(st.one_of(mutated(base, suffix.lstrip(".")), junk))
    with scratch() as root:
        if suffix == ".yaml":  # good facts, bad templates
            facts, templates = _write(root / "facts.csv", FACTS_CSV.encode()), _write(root / "t.yaml", content)
            error = read_or_input_error(read_templates, templates)
            extra = ["--templates", templates]
        else:
            facts, extra = _write(root / f"facts{suffix}", content), []
            error = read_or_input_error(read_facts, facts)
        assume(error is not None)
        args = ["audit", facts, *extra, "--quiet", "--out", root / "runs" / "out"]
        assert_clear_error(*run_cli(args, cli_sandbox, root), error)


@CLI
@given(data=st.data())
def test_cli_config_and_set(cli_sandbox, data):
    use_file = data.draw(st.booleans())
    with scratch() as root:
        if use_file:
            content = data.draw(
                st.one_of(st.sampled_from(YAML_CASES).map(_encode), mutated(dump_config(load_config()), "yaml"))
            )
            path = _write(root / "config.yaml", content)
            error, extra = read_or_input_error(load_config, path), ["--config", path]
        else:
            overrides = data.draw(st.lists(set_strings, min_size=1, max_size=2))
            assume(all("\x00" not in o for o in overrides))  # argv cannot hold NUL
            error, extra = (
                read_or_input_error(load_config, None, overrides),
                [a for o in overrides for a in ("--set", o)],
            )
        assume(error is not None)
        command = data.draw(st.sampled_from(["demo", "audit", "instructions"]))
        if command == "audit":
            extra = [_write(root / "facts.csv", FACTS_CSV.encode()), *extra]
        if command == "instructions":  # it sets experiment=instructions over the file: only a file that is not YAML
            assume(use_file and "YAML" in str(error))
        args = [command, *extra, "--quiet", "--out", root / "runs" / "out"]
        assert_clear_error(*run_cli(args, cli_sandbox, root), error)


@CLI
@given(data=st.data())
def test_cli_show_and_report(cli_sandbox, data):
    wrong_shape = st.sampled_from(["[1]", "{}", "[{}]", "null", '[{"subset": 1}]', '"x"', "[" * 5000])
    content = data.draw(st.one_of(mutated(METRICS_JSON, "yaml"), wrong_shape.map(_encode), junk))
    with scratch() as root:
        run = root / "run"
        _write(run / "metrics.json", content)
        _write(run / "run.json", RUN_JSON.encode())
        error = read_or_input_error(read_run, run)
        assume(error is not None)
        command = data.draw(st.sampled_from([["show", run], ["report", run]]))
        assert_clear_error(*run_cli(command, cli_sandbox, root), error)


def test_bad_paper_folder_leaves_no_parent_folder(cli_sandbox):
    """`demo --paper` checks the folder before it makes the run folder's parent (runs/)."""
    with scratch() as root:
        folder = _write(root / "exp1" / "x.txt", b"").parent
        code, err = run_cli(["demo", "--paper", folder, "--quiet", "--out", root / "runs" / "out"], cli_sandbox, root)
        assert code == 2 and "missing required file" in err
        assert not (root / "runs").exists() and not os.listdir(cli_sandbox)
