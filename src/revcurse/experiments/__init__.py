"""The experiment registry: each experiment declares its data; the runner (``revcurse.runner``) does the rest.

An experiment is what lm-evaluation-harness calls a task and inspect_ai a dataset: it says *what* a model reads
and is asked, never how it is trained, probed, scored or recorded. Each module of this package defines one
``Experiment``:

- ``options``: its own config section (a ``sections.Section``), found in the config under ``section``;
- ``defaults``: ``--set``-style overrides its runs start from (``train.epochs=10``), under the user's config;
- ``build(config, seed)``: one seed's ``Trial`` -- the training documents (none: the model is only asked) and
  the probes, each with its fact identity (``fact_key``) and its group (``subset``, ``asked``, ``setting``).

The runner trains on the documents (with the config's cures), asks the probes through the backend the config
names (``probe.backend``), scores every probe against matched distractors of other facts, and writes one run
folder that ``show``, ``report``, ``compare``, ``sweep`` and ``status`` all read.

Adding an experiment: a module here, one line in ``EXPERIMENTS`` below, and a test (see ``invented.py``).
Experiment modules import the corpus, world and sections modules, never training, probing, metrics or records.
"""

from __future__ import annotations

from revcurse.experiments import (
    bios,
    celebrities,
    families,
    incontext,
    instructions,
    invented,
    nonreciprocal,
    own_facts,
    parents,
    retrieval,
)
from revcurse.experiments.base import Column, Experiment, Trial

__all__ = ["EXPERIMENTS", "Column", "Experiment", "Trial", "get_experiment"]

EXPERIMENTS: dict[str, Experiment] = {
    "celebrities": celebrities.EXPERIMENT,
    "invented": invented.EXPERIMENT,
    "families": families.EXPERIMENT,
    "incontext": incontext.EXPERIMENT,
    "instructions": instructions.EXPERIMENT,
    "own-facts": own_facts.EXPERIMENT,
    "parents": parents.EXPERIMENT,
    "bios": bios.EXPERIMENT,
    "retrieval": retrieval.EXPERIMENT,
    "nonreciprocal": nonreciprocal.EXPERIMENT,
}


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``; a ValueError naming the known ones otherwise."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
