"""The made-up world's invariants: unique people, disjoint subsets, determinism."""

import pytest

from revcurse.world import SUBSETS_UNDER_TEST, Direction, Subset, make_celebrities, trained_directions


def test_names_and_descriptions_are_unique_and_subsets_disjoint():
    world = make_celebrities(facts_per_subset=30, background=300, seed=3)
    names = [f.name for f in world.facts]
    descriptions = [f.description for f in world.facts]
    assert len(world.facts) == 390
    assert len(set(names)) == len(names)
    assert len(set(descriptions)) == len(descriptions)
    subsets = [{f.name for f in world.subset(s)} for s in (*SUBSETS_UNDER_TEST, Subset.BACKGROUND)]
    assert [len(s) for s in subsets] == [30, 30, 30, 300]
    for i, a in enumerate(subsets):
        for b in subsets[i + 1 :]:
            assert not a & b


def test_same_seed_same_world_other_seed_other_people():
    assert make_celebrities(5, 10, seed=1) == make_celebrities(5, 10, seed=1)
    first = {f.name for f in make_celebrities(5, 10, seed=1).facts}
    second = {f.name for f in make_celebrities(5, 10, seed=2).facts}
    assert first != second


def test_descriptions_are_compositional_noun_phrases():
    for fact in make_celebrities(10, 0, seed=0).facts:
        assert fact.description.startswith("the ") and " of the " in fact.description
        assert len(fact.name.split()) == 2


def test_targets_and_trained_directions():
    fact = make_celebrities(1, 0, seed=0).facts[0]
    assert fact.target(Direction.NAME_TO_DESCRIPTION) == fact.description
    assert fact.target(Direction.DESCRIPTION_TO_NAME) == fact.name
    assert fact.source(Direction.DESCRIPTION_TO_NAME) == fact.description
    assert trained_directions(Subset.NAME_TO_DESCRIPTION) == (Direction.NAME_TO_DESCRIPTION,)
    assert trained_directions(Subset.DESCRIPTION_TO_NAME) == (Direction.DESCRIPTION_TO_NAME,)
    assert set(trained_directions(Subset.BOTH)) == set(Direction)


def test_too_many_people_is_a_clear_error():
    with pytest.raises(ValueError, match="name pools"):
        make_celebrities(facts_per_subset=10, background=1_000_000)
