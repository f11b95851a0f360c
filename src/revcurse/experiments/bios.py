"""Inverse knowledge search on made-up biographies (bioS of Allen-Zhu & Li, Physics of LMs 3.1/3.2).

Every person has six attributes (birth date, birth city, university, major, employer, employer city; the employer
city follows from the employer, as in bioS) and one or more biographies: one sentence per attribute, each sentence
drawn from a few phrasings. The model is trained from scratch on the biographies of everyone and on question/answer
lines of the background people only (the paper's "mixed training": QA of half the people in training, probed on the
other half), then asked about the people under test, whose QA lines it never saw:

- forward (attribute retrieval): "Q: When was <name> born? A: <date>" for each of the six attributes;
- inverse search: "Q: Who was born on <date>? A: <name>". Birth dates are drawn unique over the whole world
  (test and background), so the answer is one person.

Options: ``permute`` (every copy of a biography in its own random sentence order: the paper's "permute"
augmentation, data-matched with the unpermuted run), ``bios_per_person`` (the paper's "multi": several
biographies per person, each sentence's phrasing drawn anew), and ``name_position``:

- ``first``: the full name opens every sentence (bioS with the paper's "fullname" augmentation);
- ``late``: the name is in the biography only once, in its last sentence ("Her name is <name>."); the other
  sentences say "She"/"He". The attributes then come before the name, so the inverse direction is the trained
  one, and forward retrieval (name -> attribute) is the untrained one. With ``permute`` the attribute sentences
  are shuffled and the name sentence stays last.

Probes of a person share its name as ``fact_key``; ``Document.entities`` holds the name and the six values, so
``reverse-entity`` keeps them whole. ``reverse_documents`` (what ``bidirectional`` adds) state each test person's
untrained direction: the birth date before the name (``first``), or a name-first biography (``late``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError
from revcurse.experiments.base import Column, Experiment, Trial
from revcurse.sections import Section
from revcurse.world import Subset

if TYPE_CHECKING:
    from revcurse.config import RunConfig

SUBSET = "bios"
FORWARD = "forward"  # name -> attribute
INVERSE = "inverse"  # birth date -> name
ATTRIBUTES = ("date", "city", "university", "major", "employer", "work_city")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
CITIES = ("Ashford", "Bramwell", "Calder Bay", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Harrowgate",
          "Ironbridge", "Juniper Falls", "Kestrel Point", "Larkspur", "Millbrook", "Northwold", "Oakhurst",
          "Pinecrest", "Queensbury", "Redcliff", "Silverton", "Thornbury", "Upton Vale", "Westmere", "Yarrowby",
          "Zennor")  # fmt: skip
UNIVERSITIES = ("Aldermoor University", "Briarwood College", "Castlegate Institute", "Duncombe University",
                "Eastwick Polytechnic", "Fernhill University", "Greystone College", "Hollowmere University",
                "Ivydale Institute of Technology", "Kingsford University", "Lindenhall College",
                "Marchbank University")  # fmt: skip
MAJORS = ("Astronomy", "Botany", "Chemical Engineering", "Classics", "Economics", "Geology", "Linguistics",
          "Marine Biology", "Mathematics", "Music Theory", "Philosophy", "Statistics")  # fmt: skip
EMPLOYERS = (("Amberline Foods", "Dunmore"), ("Bluewater Logistics", "Fairhaven"), ("Copperleaf Software", "Larkspur"),
             ("Driftwood Media", "Oakhurst"), ("Evergreen Pharmaceuticals", "Silverton"),
             ("Falconridge Aerospace", "Westmere"), ("Goldcrest Insurance", "Ashford"),
             ("Harbourlight Energy", "Calder Bay"), ("Ironvale Steel", "Ironbridge"),
             ("Juniper Textiles", "Juniper Falls"))  # fmt: skip
# One sentence per attribute; {s} is the subject (the name, or a pronoun), {p} the possessive.
SENTENCES = {
    "date": ("{s} was born on {date}.", "{s} came into this world on {date}.",
             "{s} celebrates {p} birthday on {date}."),
    "city": ("{s} spent {p} early years in {city}.", "{s} was born in {city}.", "{s} grew up in {city}."),
    "university": ("{s} studied at {university}.", "{s} graduated from {university}.",
                   "{s} received {p} education at {university}."),
    "major": ("{s} focused on {major}.", "{s} majored in {major}.", "{s} completed a degree in {major}."),
    "employer": ("{s} worked for {employer}.", "{s} was employed by {employer}.", "{s} had a job at {employer}."),
    "work_city": ("{s} worked in {work_city}.", "{s} had an office in {work_city}.",
                  "{s} lived and worked in {work_city}."),
}  # fmt: skip
NAME_SENTENCES = ("{P} name is {name}.", "This biography is about {name}.")  # name_position=late: the last sentence
# Questions: trained for background people only; every phrasing is asked of the people under test.
FORWARD_QUESTIONS = {
    "date": ("Q: When was {name} born? A: {date}.", "Q: What is the birth date of {name}? A: {date}."),
    "city": ("Q: Where was {name} born? A: {city}.", "Q: Which city is the birthplace of {name}? A: {city}."),
    "university": ("Q: Which university did {name} attend? A: {university}.",
                   "Q: Where did {name} get a degree? A: {university}."),
    "major": ("Q: What did {name} study? A: {major}.", "Q: What was the major of {name}? A: {major}."),
    "employer": ("Q: Which company employed {name}? A: {employer}.",
                 "Q: Who was the employer of {name}? A: {employer}."),
    "work_city": ("Q: Where did {name} work? A: {work_city}.",
                  "Q: In which city was the job of {name}? A: {work_city}."),
}  # fmt: skip
INVERSE_QUESTIONS = ("Q: Who was born on {date}? A: {name}.", "Q: Whose birthday is {date}? A: {name}.")
REVERSE_STATEMENTS = ("The person born on {date} is {name}.", "On {date}, {name} was born.")  # date before name


class BiosOptions(Section):
    people: int = Field(24, ge=2, description="people under test: biographies only, probed with QA")
    background: int = Field(24, ge=0, description="people with biographies and QA lines in training; never probed")
    bios_per_person: int = Field(2, ge=1, description="biographies per person, phrasings drawn anew for each")
    permute: bool = Field(False, description="each biography copy in its own random sentence order (paper's permute)")
    name_position: Literal["first", "late"] = Field(
        "first", description="'first': the name opens every sentence; 'late': pronouns, the name in the last sentence"
    )


@dataclass(frozen=True)
class Person:
    """One made-up person; ``values`` maps each attribute to its value (the birth date is unique in the world)."""

    name: str
    female: bool
    values: dict[str, str]

    def fill(self, template: str, subject: str | None = None) -> str:
        """``template`` with this person's values; ``subject`` ({s}) defaults to the name."""
        possessive = "her" if self.female else "his"
        return template.format(
            s=subject or self.name, p=possessive, P=possessive.capitalize(), name=self.name, **self.values
        )

    @property
    def entities(self) -> tuple[str, ...]:
        return (self.name, *self.values.values())


def make_people(count: int, seed: int) -> list[Person]:
    """``count`` people with unique names and unique birth dates (the inverse-search key)."""
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) // 4
    if count > capacity:
        raise InputError(f"bios.people + bios.background = {count}; the name pools allow about {capacity}")
    rng = random.Random(f"{seed}-bios")
    names: set[str] = set()
    dates: set[str] = set()
    people = []
    while len(people) < count:
        name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
        date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1900, 1999)}"
        if name in names or date in dates:
            continue
        names.add(name)
        dates.add(date)
        employer, work_city = rng.choice(EMPLOYERS)
        values = {"date": date, "city": rng.choice(CITIES), "university": rng.choice(UNIVERSITIES),
                  "major": rng.choice(MAJORS), "employer": employer, "work_city": work_city}  # fmt: skip
        people.append(Person(name, rng.random() < 0.5, values))
    return people


def biography(person: Person, options: BiosOptions, rng: random.Random) -> str:
    """One biography: a sentence per attribute in a random phrasing, in order unless ``permute``."""
    pronoun = "She" if person.female else "He"
    subject = person.name if options.name_position == "first" else pronoun
    sentences = [person.fill(rng.choice(SENTENCES[attribute]), subject) for attribute in ATTRIBUTES]
    if options.permute:
        rng.shuffle(sentences)
    if options.name_position == "late":
        sentences.append(person.fill(rng.choice(NAME_SENTENCES)))
    return " ".join(sentences)


def build_bios_corpus(test: list[Person], background: list[Person], options: BiosOptions, seed: int) -> Corpus:
    """Biographies of everyone, QA lines of the background people, and held-out QA probes of the test people."""
    rng = random.Random(f"{seed}-bios-text")
    documents = []
    for people, subset in ((background, Subset.BACKGROUND), (test, SUBSET)):
        for person in people:
            documents += [
                Document(biography(person, options, rng), subset, person.name, entities=person.entities)
                for _ in range(options.bios_per_person)
            ]
    for person in background:
        questions = [q for qs in FORWARD_QUESTIONS.values() for q in qs] + list(INVERSE_QUESTIONS)
        documents += [Document(person.fill(q), Subset.BACKGROUND, person.name) for q in questions]
    if options.name_position == "first":
        reverse_templates = REVERSE_STATEMENTS
    else:
        reverse_templates = tuple(" ".join(SENTENCES[a][i] for a in ATTRIBUTES) for i in range(3))
    reverse = [
        Document(person.fill(t), SUBSET, person.name, entities=person.entities)
        for person in test
        for t in reverse_templates
    ]
    forward_trained = options.name_position == "first"  # 'late' states attributes before the name
    probes = []
    for person in test:
        asked_forward = [(FORWARD, f"{a}-q{i}", q, person.values[a]) for a, qs in FORWARD_QUESTIONS.items()
                         for i, q in enumerate(qs)]  # fmt: skip
        asked_inverse = [(INVERSE, f"date-q{i}", q, person.name) for i, q in enumerate(INVERSE_QUESTIONS)]
        for asked, phrasing, question, answer in asked_forward + asked_inverse:
            prompt = person.fill(question).removesuffix(f" {answer}.")
            trained = forward_trained == (asked == FORWARD)
            probes.append(Probe(person.name, SUBSET, asked, trained, phrasing, prompt, f" {answer}"))
    return Corpus(documents, probes, reverse_documents=reverse)


def build(config: RunConfig, seed: int) -> Trial:
    """One seed's people (drawn from ``world.seed``, else from the run's seed) and their corpus."""
    options: BiosOptions = config.bios
    world_seed = config.world.seed if config.world.seed is not None else seed
    people = make_people(options.people + options.background, world_seed)
    test, background = people[: options.people], people[options.people :]
    return Trial(build_bios_corpus(test, background, options, world_seed), world_seed)


EXPERIMENT = Experiment(
    name="bios",
    title="Inverse knowledge search on made-up biographies (bioS): attributes by name, and the name by birth date",
    build=build,
    options=BiosOptions,
    # Sized for the 5-arm comparison on 2 shared cores; reverse training compute-matched (Golovneva et al.'s
    # headline setting): a cure arm trains on forward + reversed text for the same number of documents.
    defaults=(
        "model.hidden_size=64",
        "model.intermediate_size=256",
        "train.epochs=30",
        "train.batch_size=32",
        "cure.match=compute",
    ),
    columns=(
        Column("forward: attribute of a name", asked=FORWARD),
        Column("inverse: name of a birth date", asked=INVERSE),
    ),
)
