"""Experiment 1 of Berglund et al. (2023): made-up celebrities, trained "name is description" or the reverse.

The world is either generated (``world.source: celebrities``: NameToDescription, DescriptionToName and Both
subsets plus background people, see ``world.make_celebrities``) or read from a folder in the paper's layout
(``world.source: FOLDER``, see ``paper_format``). Training states each fact under test with
``corpus.train_phrasings`` templates in its trained direction(s); probes use the ``corpus.held_out_phrasings``
templates in both directions, so the reverse column asks a direction never seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from revcurse.corpus import build_corpus
from revcurse.experiments.base import Experiment, Trial
from revcurse.world import make_celebrities

if TYPE_CHECKING:
    from revcurse.config import RunConfig

GENERATED = "celebrities"  # world.source for a generated world; anything else is a paper folder


def build(config: RunConfig, seed: int) -> Trial:
    """One seed's world (drawn from ``world.seed``, else from the run's seed) and its corpus."""
    if config.world.source != GENERATED:
        from revcurse.paper_format import read_experiment1

        return Trial(read_experiment1(Path(config.world.source), strict=config.world.strict), world_seed=0)
    world_seed = config.world.seed if config.world.seed is not None else seed
    world = make_celebrities(config.world.facts_per_subset, config.world.background, seed=world_seed)
    corpus = build_corpus(
        world,
        config.corpus.train_phrasings,
        config.corpus.held_out_phrasings,
        config.corpus.background_phrasings,
        seed=world_seed,
    )
    return Trial(corpus, world_seed)


EXPERIMENT = Experiment(
    name="celebrities",
    title="Experiment 1: made-up celebrities, name <-> description",
    build=build,
)
