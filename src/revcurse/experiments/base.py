"""What an experiment declares (``Experiment``) and builds for one seed (``Trial``); see ``revcurse.experiments``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from revcurse.corpus import Corpus
from revcurse.sections import Section

if TYPE_CHECKING:  # the config root is built from the registry: importing it here at run time would be a cycle
    from revcurse.config import RunConfig


@dataclass(frozen=True)
class Trial:
    """One seed of an experiment: what the model trains on (``corpus.documents``) and is asked (``probes``).

    ``world_seed`` is the seed the facts were drawn from: seeds of a run that share it ask about the same facts
    (a fixed world, or a user's file), which the statistics must know to count each fact once.
    """

    corpus: Corpus
    world_seed: int


@dataclass(frozen=True)
class Column:
    """One column of an experiment's own summary table: the mean and 95% interval of ``metric`` for a group."""

    header: str
    subset: str | None = None  # None: the row's
    asked: str | None = None
    setting: str | None = None
    metric: str = "accuracy"


@dataclass(frozen=True)
class Experiment:
    """What an experiment declares; see the module docstring."""

    name: str
    title: str
    build: Callable[[RunConfig, int], Trial]
    options: type[Section] | None = None
    defaults: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()  # an extra summary table (rows: the groups its columns leave open)
    pooled: str = ""  # when set, the records also hold one group of all subsets under this subset label

    @property
    def section(self) -> str:
        """The config key of this experiment's options: its name with ``-`` as ``_`` (``own-facts``: own_facts)."""
        return self.name.replace("-", "_")
