"""The facts and templates readers: every bad input names file and line; an unusable fact is skipped (or refused)."""

import json

import pytest

from revcurse.errors import InputError
from revcurse.facts_file import DEFAULT_REVERSE_QUESTION, RelationTemplates, read_facts, read_templates

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


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


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
    assert templates["wrote"].reverse_statements == born.reverse_statements == ()  # none given: the default
    reverse = 'wrote:\n  reverse_statement: "{object} was written by {subject}."\n'
    given = read_templates(write(tmp_path / "r.yaml", reverse))
    assert given["wrote"].reverse_statements == ("{object} was written by {subject}.",)


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
        ('wrote:\n  reverse_statement: "{subject} wrote {object}."\n', 2, ["{object} before {subject}"]),
        ('wrote:\n  reverse_statement: ["{object} is by someone."]\n', 2, ["{subject} exactly once"]),
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
